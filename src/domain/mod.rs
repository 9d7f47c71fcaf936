//! Domain types and rules: what a valid account, scope, customer and list
//! query are, independent of HTTP and of the database.

pub mod customer;
pub mod ids;
pub mod listing;
pub mod patch;
pub mod validate;
