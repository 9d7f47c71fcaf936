//! `/customers/tags…` and a customer's tags (§5).

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ids::Scope;
use crate::domain::records::{Tag, TagInput};

use super::customers::{own_or_forbidden, reachable, CustomerPath};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, ApiJson, ApiJsonList, Auth, QueryPairs};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/customers/tags", get(list_tags).post(create_tag))
        .route("/v1/accounts/{aid}/customers/tags/{tag_id}", delete(delete_tag))
        .route("/v1/accounts/{aid}/customers/users/{customer_id}/tags", get(get_customer_tags).put(set_customer_tags))
}

const READERS: &[Scope] = &[Scope::Admin, Scope::Read];
const WRITERS: &[Scope] = &[Scope::Admin, Scope::Write];

/// The account's tags, by name.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/tags", tag = "tags",
    params(("aid" = String, Path)),
    responses((status = 200, body = Vec<Tag>)),
    security(("bearer" = ["admin:customers", "read:customers"])))]
pub async fn list_tags(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
) -> ApiResult<Json<Vec<Tag>>> {
    require(&auth, READERS)?;
    query.flags(&[])?;
    Ok(Json(state.store.list_tags(&auth.account).await?))
}

/// Create a tag; names are unique in the account.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/tags", tag = "tags",
    params(("aid" = String, Path)), request_body = TagInput,
    responses((status = 200, body = Tag)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn create_tag(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(input): ApiJson<TagInput>,
) -> ApiResult<Json<Tag>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    input.validate().map_err(ApiError::invalid)?;
    Ok(Json(state.store.create_tag(&auth.account, input, &auth.subject).await?))
}

#[derive(Deserialize)]
pub struct TagPath {
    #[allow(dead_code)]
    aid: String,
    tag_id: String,
}

/// Delete a tag; every customer loses it.
#[utoipa::path(delete, path = "/v1/accounts/{aid}/customers/tags/{tag_id}", tag = "tags",
    params(("aid" = String, Path), ("tag_id" = String, Path)),
    responses((status = 200, body = Tag), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn delete_tag(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<TagPath>,
    query: QueryPairs,
) -> ApiResult<Json<Tag>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let missing = || ApiError::not_found("tag_not_found", "no such tag");
    let id = Uuid::parse_str(&path.tag_id).map_err(|_| missing())?;
    let tag =
        state.store.delete_tag(&auth.account, id).await.map_err(ApiError::missing("tag_not_found", "no such tag"))?;
    Ok(Json(tag))
}

/// A customer's tags.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/users/{customer_id}/tags", tag = "tags",
    params(("aid" = String, Path), ("customer_id" = String, Path)),
    responses((status = 200, body = Vec<Tag>), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers", "user:customers"])))]
pub async fn get_customer_tags(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<CustomerPath>,
    query: QueryPairs,
) -> ApiResult<Json<Vec<Tag>>> {
    require(&auth, &[Scope::Admin, Scope::Read, Scope::User])?;
    query.flags(&[])?;
    let customer = reachable(&auth, &path.customer_id, READERS);
    Ok(Json(own_or_forbidden(customer, state.store.customer_tags(&auth.account, customer).await)?))
}

/// Replace a customer's tags with the given tag ids; returns the new set.
#[utoipa::path(put, path = "/v1/accounts/{aid}/customers/users/{customer_id}/tags", tag = "tags",
    params(("aid" = String, Path), ("customer_id" = String, Path)),
    request_body(content = Vec<String>, description = "tag ids"),
    responses((status = 200, body = Vec<Tag>), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "user:customers"])))]
pub async fn set_customer_tags(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<CustomerPath>,
    query: QueryPairs,
    ApiJsonList(ids): ApiJsonList<Uuid>,
) -> ApiResult<Json<Vec<Tag>>> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::User])?;
    query.flags(&[])?;
    if ids.len() > 1000 {
        return Err(ApiError::bad_request("too_many_tags", "at most 1000 tags per customer"));
    }
    let customer = reachable(&auth, &path.customer_id, WRITERS);
    Ok(Json(own_or_forbidden(
        customer,
        state.store.set_customer_tags(&auth.account, customer, &ids, auth.actor()).await,
    )?))
}
