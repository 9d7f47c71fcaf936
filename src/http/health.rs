//! Operations endpoints (§9): liveness, readiness (checks the database) and
//! Prometheus metrics. (The OpenAPI document is served by `openapi`.)

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready)).route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200)))]
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200), (status = 503, body = super::error::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ok", "database": state.store.backend()}))),
        Err(_) => Err(ApiError::from_status(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
