//! The HTTP-level test suite: one binary, every behaviour test run against
//! SQLite and PostgreSQL (see `helpers::both_backends!`).

mod helpers;

mod auth;
mod contract;
mod customers;
mod errors;
mod events;
mod faults;
mod hooks;
mod isolation;
mod limits;
mod listing;
mod openapi;
mod operations;
mod processes;
mod schema;
mod settings;
mod tags;
mod tokens;
