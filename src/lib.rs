//! customers: a customer-records service following the Dintero Customers API.
//! `app` builds the HTTP application; `serve` runs it until shutdown. Both
//! are used by the binary and by the integration tests.
// Unsafe code is refused everywhere but in the allocator (`GlobalAlloc` is
// an unsafe trait) and `sys` (the open-file limit, through libc).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub(crate) mod allocator;

pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod telemetry;
pub mod webhooks;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

pub use http::server::serve;
pub use http::{router as app, AppState, HttpLimits};
