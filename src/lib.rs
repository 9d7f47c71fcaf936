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

/// mimalloc rather than glibc's malloc, for every binary built on this crate
/// (the server, the benchmark's store ceiling, the tests): a list page makes
/// hundreds of small allocations, and glibc's took 16 % of its CPU
/// (`malloc_consolidate`, arena locks). Measured on 2 cores, SQLite, 32
/// connections: list first page 9.7k → 12.6k req/s, PostgreSQL 6.5k → 8.4k.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use http::server::serve;
pub use http::{router as app, AppState, HttpLimits};
