//! `/customers/settings` and `/customers/terms…` (§8).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ids::Scope;
use crate::domain::listing::PageParams;
use crate::domain::records::{Terms, TermsInput};
use crate::domain::settings::Settings;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, ApiJson, Auth, QueryPairs};
use super::paging::page_headers;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/customers/settings", get(get_settings).put(put_settings))
        .route("/v1/accounts/{aid}/customers/terms", get(list_terms).post(create_terms))
        .route("/v1/accounts/{aid}/customers/terms/{tid}", get(get_terms).delete(delete_terms))
}

const READERS: &[Scope] = &[Scope::Admin, Scope::Read, Scope::Public];
const WRITERS: &[Scope] = &[Scope::Admin, Scope::Write];
const SETTINGS_READERS: &[Scope] = &[Scope::Admin, Scope::Read, Scope::Public, Scope::Write];

/// The account's settings. HMAC secrets are shown only to admin and write.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/settings", tag = "settings",
    params(("aid" = String, Path)),
    responses((status = 200, body = Settings)),
    security(("bearer" = ["admin:customers", "read:customers", "public:customers", "write:customers"])))]
pub async fn get_settings(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
) -> ApiResult<Json<Settings>> {
    // Writers too: they replace the settings whole, so they read them whole
    // (HMAC secrets included, which readers do not see).
    require(&auth, SETTINGS_READERS)?;
    query.flags(&[])?;
    let settings = state.store.get_settings(&auth.account).await?;
    Ok(Json(if auth.has_any(WRITERS) { settings } else { settings.without_secrets() }))
}

/// Replace the account's settings.
#[utoipa::path(put, path = "/v1/accounts/{aid}/customers/settings", tag = "settings",
    params(("aid" = String, Path)), request_body = Settings,
    responses((status = 200, body = Settings)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn put_settings(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(settings): ApiJson<Settings>,
) -> ApiResult<Json<Settings>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    settings.validate().map_err(ApiError::invalid)?;
    let stored = state.store.put_settings(&auth.account, settings, auth.actor()).await?;
    Ok(Json(stored))
}

/// Record a terms text customers can accept.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/terms", tag = "terms",
    params(("aid" = String, Path)), request_body = TermsInput,
    responses((status = 200, body = Terms)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn create_terms(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    ApiJson(input): ApiJson<TermsInput>,
) -> ApiResult<Json<Terms>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    input.validate().map_err(ApiError::invalid)?;
    Ok(Json(state.store.create_terms(&auth.account, &input.terms, &auth.subject).await?))
}

/// Terms, newest first, paged like customers.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/terms", tag = "terms",
    params(("aid" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "default 10"),
        ("starting_after" = Option<String>, Query),
        ("include_deleted" = Option<bool>, Query), ("total" = Option<bool>, Query)),
    responses((status = 200, body = Vec<Terms>)),
    security(("bearer" = ["admin:customers", "read:customers", "public:customers"])))]
pub async fn list_terms(
    State(state): State<AppState>,
    Auth(auth): Auth,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let params = PageParams::parse(&pairs, &[]).map_err(ApiError::invalid)?;
    let page = state.store.list_terms(&auth.account, &params).await?;
    let next = page.items.last().filter(|_| page.has_more).map(|t| ("starting_after", t.id.to_string()));
    Ok((page_headers(uri.path(), &pairs, next, page.total), Json(page.items)).into_response())
}

#[derive(Deserialize)]
pub struct TermsPath {
    #[allow(dead_code)]
    aid: String,
    tid: String,
}

fn terms_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("terms_not_found", "no such terms"))
}

/// One terms record.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/terms/{tid}", tag = "terms",
    params(("aid" = String, Path), ("tid" = String, Path)),
    responses((status = 200, body = Terms), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers", "public:customers"])))]
pub async fn get_terms(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<TermsPath>,
    query: QueryPairs,
) -> ApiResult<Json<Terms>> {
    require(&auth, READERS)?;
    query.flags(&[])?;
    match state.store.get_terms(&auth.account, terms_id(&path.tid)?).await? {
        Some(terms) if terms.deleted_at.is_none() => Ok(Json(terms)),
        _ => Err(ApiError::not_found("terms_not_found", "no such terms")),
    }
}

/// Delete a terms record (soft: it stays listed with `include_deleted`).
#[utoipa::path(delete, path = "/v1/accounts/{aid}/customers/terms/{tid}", tag = "terms",
    params(("aid" = String, Path), ("tid" = String, Path)),
    responses((status = 200, body = Terms), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers"])))]
pub async fn delete_terms(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(path): Path<TermsPath>,
    query: QueryPairs,
) -> ApiResult<Json<Terms>> {
    require(&auth, WRITERS)?;
    query.flags(&[])?;
    let terms = state
        .store
        .delete_terms(&auth.account, terms_id(&path.tid)?, &auth.subject)
        .await
        .map_err(ApiError::missing("terms_not_found", "no such terms"))?;
    Ok(Json(terms))
}
