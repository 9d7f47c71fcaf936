//! The HTTP layer: routes, extractors and error mapping. `router` merges the
//! resource routers and wraps them in the middleware every request passes:
//! request id, tracing (no URIs or bodies: they carry personal data),
//! JSON errors for every failure, metrics, timeout, body limit, compression.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{HashingSlots, Keys};
use crate::store::Store;

pub mod auth;
pub mod customers;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod hooks;
pub mod openapi;
pub mod paging;
pub mod server;
pub mod settings;
pub mod tags;
pub mod throttle;
pub mod tokens;

use error::ApiError;
use throttle::{RateLimit, Throttle};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub metrics: PrometheusHandle,
    pub throttle: Arc<Throttle>,
    /// Argon2 (token requests, customer passwords and pins) runs in these.
    pub hashing: Arc<HashingSlots>,
    /// Webhook subscriptions may target loopback and private addresses
    /// (`--webhooks-allow-private`).
    pub private_targets: bool,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>, limits: &HttpLimits) -> Self {
        Self {
            store,
            keys,
            metrics: metrics_handle(),
            throttle: Arc::new(Throttle::new(limits.rate_limit, limits.token_rate_limit)),
            hashing: Arc::new(HashingSlots::per_core()),
            private_targets: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a new connection may stay silent before its first byte.
    pub first_byte_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Open connections at most; at the cap the longest idle one is closed.
    pub max_connections: usize,
    /// Requests per client (per address when anonymous); `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Token requests per peer address (each costs an Argon2 computation).
    pub token_rate_limit: RateLimit,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            rate_limit: None,
            token_rate_limit: RateLimit { per_second: 5, burst: 20 },
        }
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// router a process builds, as tests build many).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder =
                || PrometheusBuilder::new().set_buckets(DURATION_BUCKETS).expect("the bucket list is not empty");
            builder().install_recorder().unwrap_or_else(|_| builder().build_recorder().handle())
        })
        .clone()
}

/// Request durations are histograms with these buckets (seconds), not
/// summaries: bucket counts add up across the processes sharing a database
/// (quantiles do not), and a sample costs a bucket increment rather than a
/// sketch update (1.7 % of a SQLite list page's instructions went to the
/// summaries' sketches).
const DURATION_BUCKETS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds.
/// The recorder keeps every sample until then, and only a `/metrics` scrape
/// folds them otherwise: a server nobody scraped grew by 8 bytes a request
/// (RSS 12 → 100 MiB over the PostgreSQL benchmark).
pub fn spawn_metrics_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}

pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(customers::router())
        .merge(events::router())
        .merge(hooks::router())
        .merge(settings::router())
        .merge(tags::router())
        .merge(tokens::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(middleware::from_fn_with_state(state.clone(), limit_anonymous_callers))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
                .layer(middleware::from_fn(json_errors))
                .layer(middleware::from_fn(record_metrics))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
                .layer(CompressionLayer::new())
                .layer(DefaultBodyLimit::max(limits.body_limit)),
        )
}

/// The request span: method, route template and request id only. The URI
/// is left out on purpose: query strings carry emails and phone numbers.
fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

/// Gives every error response the contract's JSON body, including the ones
/// produced below our handlers (timeouts, limits, axum's own rejections).
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let mut replacement = ApiError::from_status(status).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            replacement.headers_mut().insert(name, value.clone());
        }
    }
    replacement
}

/// Rate-limits account requests without credentials by peer address (those
/// with credentials are limited per client once `Auth` has verified them).
async fn limit_anonymous_callers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let anonymous = !request.headers().contains_key(header::AUTHORIZATION);
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if let (true, Some(ip)) = (anonymous && request.uri().path().starts_with("/v1/accounts/"), peer) {
        if let Err(wait) = state.throttle.request(|| format!("ip:{ip}")) {
            return ApiError::rate_limited(wait).into_response();
        }
    }
    next.run(request).await
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
