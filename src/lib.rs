//! customers: a customer-records service following the Dintero Customers API.
//! `app` builds the HTTP application; `serve` runs it until shutdown. Both
//! are used by the binary and by the integration tests.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod store;
pub mod telemetry;

use std::future::Future;

pub use http::{router as app, AppState, HttpLimits};

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
