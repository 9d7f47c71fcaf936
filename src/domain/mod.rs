//! Domain types and rules: what a valid account, scope, customer, list
//! query, settings document, tag, token and terms record are, independent of
//! HTTP and of the database.

pub mod customer;
pub mod ids;
pub mod listing;
pub mod patch;
pub mod records;
pub mod settings;
pub mod stored;
pub mod strict;
pub mod time;
pub mod validate;

/// Lower-case hexadecimal, for digests shown to people and stored as text.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
