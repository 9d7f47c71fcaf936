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

pub use http::server::serve;
pub use http::{router as app, AppState, HttpLimits};
