//! A customer's tokens (§6) and token events (§7).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ids::Scope;
use crate::domain::listing::PageParams;
use crate::domain::records::{ClearTokenEvents, Token, TokenDetail, TokenEventRequest, TokenEvents, TokenInput};
use crate::store::EventListParams;

use super::customers::{own_or_forbidden, reachable, CustomerPath};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, ApiJson, Auth, QueryPairs};
use super::paging::page_headers;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/customers/users/{customer_id}/tokens", get(list_tokens).post(add_token))
        .route("/v1/accounts/{aid}/customers/users/{customer_id}/tokens/{token_id}", delete(delete_token))
        .route("/v1/accounts/{aid}/customers/tokens/events", get(list_events).post(record_event).delete(clear_events))
}

const READERS: &[Scope] = &[Scope::Admin, Scope::Read];
const WRITERS: &[Scope] = &[Scope::Admin, Scope::Write];

/// A customer's tokens, newest first.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/users/{customer_id}/tokens", tag = "tokens",
    params(("aid" = String, Path), ("customer_id" = String, Path), ("type" = Option<String>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "default 10"),
        ("starting_after" = Option<String>, Query),
        ("total" = Option<bool>, Query), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Vec<Token>), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers", "user:customers"])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<CustomerPath>,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::Read, Scope::User])?;
    let params = PageParams::parse(&pairs, &["type"]).map_err(ApiError::invalid)?;
    let customer = reachable(&auth, &path.customer_id, READERS);
    let page = own_or_forbidden(customer, state.store.list_tokens(&auth.account, customer, &params).await)?;
    let next = page.items.last().filter(|_| page.has_more).map(|t| ("starting_after", t.token_id.clone()));
    Ok((page_headers(uri.path(), &pairs, next, page.total), Json(page.items)).into_response())
}

/// Give a customer a token; a (type, value) belongs to one customer.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/users/{customer_id}/tokens", tag = "tokens",
    params(("aid" = String, Path), ("customer_id" = String, Path),
        ("delete_token_events" = Option<bool>, Query, description = "also clear the token's events")),
    request_body = TokenInput,
    responses((status = 201, body = Token), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "user:customers"])))]
pub async fn add_token(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<CustomerPath>,
    query: QueryPairs,
    ApiJson(input): ApiJson<TokenInput>,
) -> ApiResult<(StatusCode, Json<Token>)> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::User])?;
    let delete_events = query.flags(&["delete_token_events"])?[0];
    input.validate().map_err(ApiError::invalid)?;
    let customer = reachable(&auth, &path.customer_id, WRITERS);
    let added = state.store.add_token(&auth.account, customer, input, delete_events, auth.actor()).await;
    let token = own_or_forbidden(customer, added)?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(Deserialize)]
pub struct TokenPath {
    #[allow(dead_code)]
    aid: String,
    customer_id: String,
    token_id: String,
}

/// Delete one of a customer's tokens; returns it.
#[utoipa::path(delete, path = "/v1/accounts/{aid}/customers/users/{customer_id}/tokens/{token_id}", tag = "tokens",
    params(("aid" = String, Path), ("customer_id" = String, Path), ("token_id" = String, Path)),
    responses((status = 200, body = Token), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "user:customers"])))]
pub async fn delete_token(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<TokenPath>,
    query: QueryPairs,
) -> ApiResult<Json<Token>> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::User])?;
    query.flags(&[])?;
    // The customer and the token are looked up in the delete's transaction:
    // a missing customer is NotFound (customer_not_found), a missing token None.
    let customer = reachable(&auth, &path.customer_id, WRITERS);
    let deleted = state.store.delete_token(&auth.account, customer, &path.token_id, auth.actor()).await;
    let deleted = own_or_forbidden(customer, deleted)?;
    deleted.map(Json).ok_or_else(|| ApiError::not_found("token_not_found", "no such token"))
}

/// Record an event against a token (which no customer need own yet) and
/// answer what is known of the token.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/tokens/events", tag = "tokens",
    params(("aid" = String, Path)), request_body = TokenEventRequest,
    responses((status = 200, body = TokenDetail)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn record_event(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(request): ApiJson<TokenEventRequest>,
) -> ApiResult<Json<TokenDetail>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    request.validate().map_err(ApiError::invalid)?;
    Ok(Json(state.store.record_token_event(&auth.account, request, auth.actor()).await?))
}

/// Tokens with events, one item per token with its events and resolved
/// status, in the order of each token's newest listed event (oldest
/// first): live events (`since_datetime`), or cleared ones (`deleted_since`).
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/tokens/events", tag = "tokens",
    params(("aid" = String, Path),
        ("since_datetime" = Option<String>, Query, description = "RFC 3339; tokens with an event created at or after"),
        ("deleted_since" = Option<String>, Query, description = "RFC 3339; tokens with events cleared at or after"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "the id of the last event of the previous page's last item (the Link header gives it)")),
    responses((status = 200, body = Vec<TokenEvents>)),
    security(("bearer" = ["admin:customers", "read:customers"])))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(auth): Auth,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let page_params = PageParams::parse(&pairs, &["since_datetime", "deleted_since"]).map_err(ApiError::invalid)?;
    if page_params.total || page_params.include_deleted {
        return Err(ApiError::bad_request("invalid_parameter", "use deleted_since to list cleared events"));
    }
    let starting_after = match &page_params.starting_after {
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::bad_request("invalid_cursor", "starting_after must be the id of an event"))?,
        ),
        None => None,
    };
    let params = EventListParams {
        limit: page_params.limit,
        starting_after,
        since: page_params.time("since_datetime").map_err(ApiError::invalid)?,
        deleted_since: page_params.time("deleted_since").map_err(ApiError::invalid)?,
    };
    let page = state.store.list_token_events(&auth.account, &params).await?;
    let next = page
        .items
        .last()
        .filter(|_| page.has_more)
        .and_then(|item| item.events.last())
        .map(|e| ("starting_after", e.id.to_string()));
    Ok((page_headers(uri.path(), &pairs, next, None), Json(page.items)).into_response())
}

/// Clear a token's events, recording the given event as `DELETED`.
#[utoipa::path(delete, path = "/v1/accounts/{aid}/customers/tokens/events", tag = "tokens",
    params(("aid" = String, Path)), request_body = ClearTokenEvents,
    responses((status = 204)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn clear_events(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(request): ApiJson<ClearTokenEvents>,
) -> ApiResult<StatusCode> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    request.validate().map_err(ApiError::invalid)?;
    state.store.clear_token_events(&auth.account, request, auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
