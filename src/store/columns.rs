//! The columns a customer's data writes, derived in one place for create,
//! update, erasure and import: the lower-cased copies search indexes, the
//! attribute rows, the stored document and the secret hashes.

use chrono::{DateTime, Utc};

use crate::domain::customer::CustomerData;
use crate::domain::patch::Patch;
use crate::domain::settings::Settings;

use super::sql::{opt_text, text, Param};
use super::SecretHashes;

/// The lower-cased, indexed copies of a customer's searchable fields. Both
/// stores write exactly these, so search behaves the same on each.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexedColumns {
    pub customer_id_lower: String,
    pub email: Option<String>,
    pub email_lower: Option<String>,
    pub phone_number: Option<String>,
    pub last_name_lower: Option<String>,
    pub full_name_lower: Option<String>,
    /// One row per attribute value: `(key, value-as-text)`; `None` marks a
    /// key whose value is not a scalar or list of scalars (still "has key").
    pub attributes: Vec<(String, Option<String>)>,
}

impl IndexedColumns {
    pub fn of(customer_id: &str, data: &CustomerData) -> Self {
        let lower = |v: &Option<String>| v.as_ref().map(|s| s.to_lowercase());
        // "first last", or the one name given: a prefix of it is a prefix of
        // the first name too, so search needs no first-name index.
        let full_name_lower = match (&data.first_name, &data.last_name) {
            (Some(first), Some(last)) => Some(format!("{first} {last}").to_lowercase()),
            (Some(name), None) | (None, Some(name)) => Some(name.to_lowercase()),
            (None, None) => None,
        };
        Self {
            customer_id_lower: customer_id.to_lowercase(),
            email: data.email.clone(),
            email_lower: lower(&data.email),
            phone_number: data.phone_number.clone(),
            last_name_lower: lower(&data.last_name),
            full_name_lower,
            attributes: attribute_rows(data),
        }
    }
}

pub(super) fn attribute_rows(data: &CustomerData) -> Vec<(String, Option<String>)> {
    data.attributes.as_ref().map(crate::domain::validate::attribute_entries).unwrap_or_default()
}

/// The hash columns a write of `password` and `pin` sets (none for absent).
pub(super) fn secret_columns(secrets: SecretHashes) -> Vec<(&'static str, Param)> {
    let SecretHashes { password, pin } = secrets;
    [("password_hash", password), ("pin_hash", pin)]
        .into_iter()
        .filter_map(|(column, patch)| match patch {
            Patch::Absent => None,
            Patch::Null => Some((column, Param::Null)),
            Patch::Value(hash) => Some((column, Param::Text(hash))),
        })
        .collect()
}

/// The columns a customer's data writes, in one place for insert and update.
pub(super) fn customer_columns(
    cols: &IndexedColumns,
    doc: Param,
    data: &CustomerData,
    settings: &Settings,
    at: DateTime<Utc>,
) -> Vec<(&'static str, Param)> {
    let phone_unique = if settings.users.phone_number_validation.allow_duplicates {
        Param::Null
    } else {
        opt_text(cols.phone_number.as_ref())
    };
    vec![
        ("customer_id_lower", text(&cols.customer_id_lower)),
        ("type", text(data.customer_type.as_str())),
        ("email", opt_text(cols.email.as_ref())),
        ("email_lower", opt_text(cols.email_lower.as_ref())),
        ("phone_number", opt_text(cols.phone_number.as_ref())),
        ("phone_unique", phone_unique),
        ("last_name_lower", opt_text(cols.last_name_lower.as_ref())),
        ("full_name_lower", opt_text(cols.full_name_lower.as_ref())),
        ("doc", doc),
        ("updated_at", Param::Time(at)),
    ]
}

/// The stored document of a customer's data: JSON bound as text. The
/// database keeps it without looking inside (a `TEXT` column in both
/// backends, migration 0006 in PostgreSQL), so it is neither parsed on the
/// way in nor rendered on the way out, and reads answer serde's own bytes.
pub(super) fn document(data: &CustomerData) -> Result<Param, serde_json::Error> {
    serde_json::to_string(data).map(Param::Text)
}
