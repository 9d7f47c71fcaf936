//! `/v1/accounts/{aid}/hooks/subscriptions…` (§11): webhook subscriptions,
//! their deliveries, ping and redeliver.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::hooks::{Delivery, Subscription, SubscriptionInput, SubscriptionSpec};
use crate::domain::ids::Scope;
use crate::domain::listing::PageParams;
use crate::domain::validate::FieldError;
use crate::store::StoreError;
use crate::webhooks::target;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, ApiJson, Auth, QueryPairs};
use super::paging::page_headers;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/hooks/subscriptions", get(list_subscriptions).post(create_subscription))
        .route(
            "/v1/accounts/{aid}/hooks/subscriptions/{hid}",
            get(get_subscription).put(update_subscription).delete(delete_subscription),
        )
        .route("/v1/accounts/{aid}/hooks/subscriptions/{hid}/ping", post(ping))
        .route("/v1/accounts/{aid}/hooks/subscriptions/{hid}/deliveries", get(list_deliveries))
        .route("/v1/accounts/{aid}/hooks/subscriptions/{hid}/deliveries/{did}/redeliver", post(redeliver))
}

const READERS: &[Scope] = &[Scope::HooksAdmin, Scope::HooksWrite, Scope::HooksRead];
const WRITERS: &[Scope] = &[Scope::HooksAdmin, Scope::HooksWrite];

#[derive(Deserialize)]
pub struct HookPath {
    #[allow(dead_code)]
    aid: String,
    hid: String,
}

#[derive(Deserialize)]
pub struct DeliveryPath {
    #[allow(dead_code)]
    aid: String,
    hid: String,
    did: String,
}

fn subscription_not_found() -> ApiError {
    ApiError::not_found("subscription_not_found", "no such subscription")
}

/// A path id; one that is no UUID names nothing.
fn path_id(raw: &str, not_found: fn() -> ApiError) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

/// The store's answer, its `NotFound` said as `not_found`.
fn found<T>(result: Result<T, StoreError>, not_found: fn() -> ApiError) -> ApiResult<T> {
    result.map_err(|error| match error {
        StoreError::NotFound => not_found(),
        other => other.into(),
    })
}

/// A valid subscription whose target may receive deliveries.
async fn accepted(state: &AppState, input: SubscriptionInput) -> ApiResult<SubscriptionSpec> {
    let spec = input.validate().map_err(ApiError::invalid)?;
    if let Err(refused) = target::check(&spec.url, state.private_targets).await {
        let error = FieldError::new("config.url", "target_not_allowed", refused.to_string());
        return Err(ApiError::invalid(vec![error]));
    }
    Ok(spec)
}

/// Subscribe to events.
#[utoipa::path(post, path = "/v1/accounts/{aid}/hooks/subscriptions", tag = "webhooks",
    params(("aid" = String, Path)), request_body = SubscriptionInput,
    responses((status = 201, body = Subscription),
        (status = 400, description = "invalid input, or a target that is not a public address", body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks"])))]
pub async fn create_subscription(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let spec = accepted(&state, input).await?;
    let created = state.store.create_subscription(&auth.account, spec, auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The account's subscriptions, oldest first.
#[utoipa::path(get, path = "/v1/accounts/{aid}/hooks/subscriptions", tag = "webhooks",
    params(("aid" = String, Path)), responses((status = 200, body = Vec<Subscription>)),
    security(("bearer" = ["admin:hooks", "write:hooks", "read:hooks"])))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
) -> ApiResult<Json<Vec<Subscription>>> {
    require(&auth, READERS)?;
    query.flags(&[])?;
    Ok(Json(state.store.list_subscriptions(&auth.account).await?))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks", "read:hooks"])))]
pub async fn get_subscription(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<HookPath>,
    query: QueryPairs,
) -> ApiResult<Json<Subscription>> {
    require(&auth, READERS)?;
    query.flags(&[])?;
    let id = path_id(&path.hid, subscription_not_found)?;
    state.store.get_subscription(&auth.account, id).await?.map(Json).ok_or_else(subscription_not_found)
}

/// Replace a subscription (an absent `config.secret` keeps the stored one;
/// `null` removes it). Made active, a disabled subscription is resumed.
#[utoipa::path(put, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path)), request_body = SubscriptionInput,
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks"])))]
pub async fn update_subscription(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<HookPath>,
    query: QueryPairs,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> ApiResult<Json<Subscription>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let id = path_id(&path.hid, subscription_not_found)?;
    let spec = accepted(&state, input).await?;
    Ok(Json(found(state.store.update_subscription(&auth.account, id, spec).await, subscription_not_found)?))
}

/// Delete a subscription and its deliveries.
#[utoipa::path(delete, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks"])))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<HookPath>,
    query: QueryPairs,
) -> ApiResult<Json<Subscription>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let id = path_id(&path.hid, subscription_not_found)?;
    Ok(Json(found(state.store.delete_subscription(&auth.account, id).await, subscription_not_found)?))
}

/// Send a `ping` event to the subscription's target.
#[utoipa::path(post, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}/ping", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path)),
    responses((status = 202, description = "the ping's delivery, queued", body = Delivery), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks"])))]
pub async fn ping(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<HookPath>,
    query: QueryPairs,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let id = path_id(&path.hid, subscription_not_found)?;
    let delivery = found(state.store.ping_subscription(&auth.account, id, auth.actor()).await, subscription_not_found)?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// A subscription's deliveries, newest first, each with its attempts.
#[utoipa::path(get, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}/deliveries", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "the id of the previous page's last delivery (the Link header gives it)")),
    responses((status = 200, body = Vec<Delivery>), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks", "read:hooks"])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<HookPath>,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let id = path_id(&path.hid, subscription_not_found)?;
    let params = PageParams::parse(&pairs, &[]).map_err(ApiError::invalid)?;
    if params.total || params.include_deleted {
        return Err(ApiError::bad_request("invalid_parameter", "deliveries take only limit and starting_after"));
    }
    let starting_after = match &params.starting_after {
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::bad_request("invalid_cursor", "starting_after must be the id of a delivery"))?,
        ),
        None => None,
    };
    let page = state.store.list_deliveries(&auth.account, id, params.limit, starting_after).await;
    let page = found(page, subscription_not_found)?;
    let next = page.items.last().filter(|_| page.has_more).map(|d| ("starting_after", d.id.to_string()));
    Ok((page_headers(uri.path(), &pairs, next, None), Json(page.items)).into_response())
}

/// Queue a delivery again, now (with a new retry window).
#[utoipa::path(post, path = "/v1/accounts/{aid}/hooks/subscriptions/{hid}/deliveries/{did}/redeliver", tag = "webhooks",
    params(("aid" = String, Path), ("hid" = String, Path), ("did" = String, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:hooks", "write:hooks"])))]
pub async fn redeliver(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<DeliveryPath>,
    query: QueryPairs,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let not_found = || ApiError::not_found("delivery_not_found", "no such delivery");
    let (hid, did) = (path_id(&path.hid, subscription_not_found)?, path_id(&path.did, not_found)?);
    let delivery = found(state.store.redeliver(&auth.account, hid, did).await, not_found)?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
