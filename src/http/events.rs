//! The event log (§10): `/v1/accounts/{aid}/customers/events`, the account's
//! changes oldest first, and `…/customers/users/{customer_id}/events`, one
//! customer's history newest first.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::domain::events::{Event, EventQuery};
use crate::domain::ids::Scope;
use crate::store::Page;

use super::customers::CustomerPath;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, Auth, QueryPairs};
use super::paging::page_headers;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/customers/events", get(list_events))
        .route("/v1/accounts/{aid}/customers/users/{customer_id}/events", get(customer_history))
}

const READERS: &[Scope] = &[Scope::Admin, Scope::Read];

/// The account's events, oldest first.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/events", tag = "events",
    params(("aid" = String, Path),
        ("since_seq" = Option<i64>, Query, minimum = 0, description = "only events with a greater seq"),
        ("customer_id" = Option<String>, Query, description = "only events about this customer (its events from before a change of customer_id included)"),
        ("event" = Option<String>, Query, description = "only events of this name"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "the id of the previous page's last event (the Link header gives it)")),
    responses((status = 200, body = Vec<Event>)),
    security(("bearer" = ["admin:customers", "read:customers"])))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(auth): Auth,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let query = EventQuery::parse(&pairs, true).map_err(ApiError::invalid)?;
    let page = state.store.list_events(&auth.account, &query).await?;
    Ok(answer(uri, &pairs, page))
}

/// One customer's history, newest first; a deleted customer's too.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/users/{customer_id}/events", tag = "events",
    params(("aid" = String, Path), ("customer_id" = String, Path),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "the id of the previous page's last event (the Link header gives it)")),
    responses((status = 200, body = Vec<Event>), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers"])))]
pub async fn customer_history(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(CustomerPath { customer_id, .. }): Path<CustomerPath>,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let query = EventQuery::parse(&pairs, false).map_err(ApiError::invalid)?;
    let page = state.store.customer_history(&auth.account, &customer_id, &query).await?;
    Ok(answer(uri, &pairs, page))
}

/// A page of events with its `Link` to the next.
fn answer(uri: Uri, pairs: &[(String, String)], page: Page<Event>) -> Response {
    let next = page.items.last().filter(|_| page.has_more).map(|e| ("starting_after", e.id.to_string()));
    (page_headers(uri.path(), pairs, next, None), Json(page.items)).into_response()
}
