//! Row types, written once for both backends and both SQLite readers (sqlx,
//! and the direct reader of `sqlite::reader`). Timestamps decode through
//! [`Ts`]: microseconds (`INTEGER`) in SQLite, `timestamptz` in PostgreSQL.

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use serde::de::DeserializeOwned;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Sqlite, Type, TypeInfo, ValueRef as _};
use uuid::Uuid;

use crate::domain::settings::Settings;
use crate::domain::stored::{StoredCustomer, StoredDocument};

use super::{micros_to_time, ClientRecord, SigningKeyRecord};

/// A stored timestamp, whichever backend it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Ts(pub DateTime<Utc>);

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(micros_to_time(<i64 as Decode<Sqlite>>::decode(value)?)))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

/// A customer's document, decoded as text: the answers copy it as it is
/// (`domain::stored`). Both backends hold the text serde wrote. A
/// PostgreSQL document stored before migration 0006 (a `jsonb` column then)
/// is `jsonb`'s rendering, with a space after every `:` and `,`, which is
/// taken out so that every answer reads alike.
impl Type<Sqlite> for StoredDocument {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for StoredDocument {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        document(<String as Decode<Sqlite>>::decode(value)?)
    }
}

impl Type<Postgres> for StoredDocument {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty) || <Json<serde_json::Value> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for StoredDocument {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let jsonb = value.type_info().name() == "JSONB";
        let mut bytes = value.as_bytes()?;
        if jsonb && value.format() == PgValueFormat::Binary {
            // jsonb's binary form is a version byte, then the text.
            match bytes.split_first() {
                Some((1, text)) => bytes = text,
                _ => return Err("unsupported jsonb format version".into()),
            }
        }
        let text = if jsonb || rendered_by_jsonb(bytes) { compact_json(bytes) } else { bytes.to_vec() };
        document(String::from_utf8(text)?)
    }
}

/// Whether an object's text is `jsonb`'s rendering rather than serde's:
/// `jsonb` puts a space after the colon that ends the first key; serde never
/// does. (Only the first key is read: a document is one or the other.)
fn rendered_by_jsonb(object: &[u8]) -> bool {
    let Some(key) = object.strip_prefix(b"{\"") else { return false };
    let mut escaped = false;
    for (at, &byte) in key.iter().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return key[at + 1..].starts_with(b": "),
            _ => {}
        }
    }
    false
}

fn document(text: String) -> Result<StoredDocument, BoxDynError> {
    StoredDocument::from_object_text(text).ok_or_else(|| "a customer document is not a JSON object".into())
}

/// `json` without whitespace outside its strings (only ASCII whitespace
/// goes, so UTF-8 stays valid).
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte.is_ascii_whitespace() {
            continue;
        }
        out.push(byte);
    }
    out
}

/// A row type every reader can decode.
pub trait DbRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + DirectRow
    + Send
    + Unpin
{
}

impl<T> DbRow for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + DirectRow
        + Send
        + Unpin
{
}

/// A row as SQLite's direct reader (rusqlite) hands it over, decoded by
/// column name as sqlx's `FromRow` does.
pub trait DirectRow: Sized {
    /// The field names, in field order (a raw identifier keeps its `r#`).
    const COLUMNS: &'static [&'static str];

    /// Decodes one row; `columns` holds the statement's column index for
    /// each of [`Self::COLUMNS`], from [`column_indexes`].
    fn from_direct(row: &rusqlite::Row<'_>, columns: &[usize]) -> rusqlite::Result<Self>;
}

/// Declares a row struct once for every reader: it derives sqlx's `FromRow`
/// and implements [`DirectRow`] with the same column names (the field's,
/// without a raw identifier's `r#`, as sqlx names them).
macro_rules! db_row {
    ($(#[$attr:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$attr])*
        #[derive(sqlx::FromRow)]
        $vis struct $name { $($fvis $field: $ty),* }

        impl $crate::store::rows::DirectRow for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn from_direct(row: &rusqlite::Row<'_>, columns: &[usize]) -> rusqlite::Result<Self> {
                let mut columns = columns.iter();
                Ok(Self { $($field: $crate::store::rows::column(row, &mut columns)?),* })
            }
        }
    };
}
pub(crate) use db_row;

/// Where each of `names` is among a statement's columns, found once per
/// query rather than once per row and column (comparing names per row was
/// about 5 % of a list request's CPU). Queries select the columns in field
/// order, so the column at the field's position is tried first; a column
/// elsewhere is found by name, as sqlx's `FromRow` finds it.
pub fn column_indexes(statement: &rusqlite::Statement<'_>, names: &[&str]) -> rusqlite::Result<Vec<usize>> {
    names
        .iter()
        .enumerate()
        .map(|(position, name)| {
            let name = name.strip_prefix("r#").unwrap_or(name);
            match statement.column_name(position) {
                Ok(found) if found == name => Ok(position),
                _ => statement.column_index(name),
            }
        })
        .collect()
}

/// The next field's column of a direct-reader row, decoded.
pub fn column<T: FromColumn>(
    row: &rusqlite::Row<'_>,
    columns: &mut std::slice::Iter<'_, usize>,
) -> rusqlite::Result<T> {
    let index = *columns.next().ok_or_else(|| rusqlite::Error::InvalidColumnIndex(usize::MAX))?;
    let value = row.get_ref(index)?;
    T::from_column(value).map_err(|error| rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), error))
}

/// A value as the sqlx SQLite driver stores it, read back from rusqlite.
pub trait FromColumn: Sized {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError>;
}

impl FromColumn for i64 {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(value.as_i64()?)
    }
}

impl FromColumn for String {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(value.as_str()?.to_owned())
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(value.as_blob()?.to_vec())
    }
}

/// sqlx stores a UUID as its 16 bytes.
impl FromColumn for Uuid {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(Uuid::from_slice(value.as_blob()?)?)
    }
}

impl FromColumn for Ts {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(Ts(micros_to_time(value.as_i64()?)))
    }
}

impl FromColumn for StoredDocument {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        document(String::from_column(value)?)
    }
}

/// JSON is stored as text.
impl<T: DeserializeOwned> FromColumn for Json<T> {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(Json(serde_json::from_slice(value.as_bytes()?)?))
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(value: ValueRef<'_>) -> Result<Self, BoxDynError> {
        match value {
            ValueRef::Null => Ok(None),
            value => T::from_column(value).map(Some),
        }
    }
}

db_row! {
    pub struct CustomerRow {
        pub id: Uuid,
        pub customer_id: String,
        pub doc: StoredDocument,
        pub created_at: Ts,
        pub created_by: String,
        pub updated_at: Ts,
        pub deleted_at: Option<Ts>,
        pub deleted_by: Option<String>,
    }
}

impl From<CustomerRow> for StoredCustomer {
    fn from(row: CustomerRow) -> Self {
        StoredCustomer {
            id: row.id,
            customer_id: row.customer_id,
            doc: row.doc,
            created_at: row.created_at.0,
            created_by: row.created_by,
            updated_at: row.updated_at.0,
            deleted_at: row.deleted_at.map(|t| t.0),
            deleted_by: row.deleted_by,
        }
    }
}

db_row! {
    pub struct ClientRow {
        pub client_id: String,
        pub account_id: String,
        pub secret_hash: String,
        pub scopes: String,
        pub created_at: Ts,
    }
}

impl From<ClientRow> for ClientRecord {
    fn from(row: ClientRow) -> Self {
        ClientRecord {
            client_id: row.client_id,
            account_id: row.account_id,
            secret_hash: row.secret_hash,
            scopes: row.scopes,
            created_at: row.created_at.0,
        }
    }
}

db_row! {
    pub struct KeyRow {
        pub kid: String,
        pub private_pkcs8: Vec<u8>,
        pub public_key: Vec<u8>,
        pub created_at: Ts,
    }
}

impl From<KeyRow> for SigningKeyRecord {
    fn from(row: KeyRow) -> Self {
        SigningKeyRecord {
            kid: row.kid,
            private_pkcs8: row.private_pkcs8,
            public_key: row.public_key,
            created_at: row.created_at.0,
        }
    }
}

db_row! {
    pub struct IdempotencyRow {
        pub fingerprint: String,
        pub etag: String,
        pub response: String,
    }
}

db_row! {
    pub struct SettingsRow {
        pub doc: Json<Settings>,
    }
}

#[cfg(test)]
mod tests {
    use super::{compact_json, rendered_by_jsonb};

    #[test]
    fn compacting_keeps_strings_and_drops_the_rest_of_the_whitespace() {
        let spaced = "{\"a b\": \"x, \\\"y\\\": z\\\\\", \"n\": [1, 2.5, {\"t\": true}],\n\t\"ø\": \" \"}";
        let compact = String::from_utf8(compact_json(spaced.as_bytes())).unwrap();
        assert_eq!(compact, "{\"a b\":\"x, \\\"y\\\": z\\\\\",\"n\":[1,2.5,{\"t\":true}],\"ø\":\" \"}");
        let a: serde_json::Value = serde_json::from_str(spaced).unwrap();
        assert_eq!(a, serde_json::from_str::<serde_json::Value>(&compact).unwrap());
    }

    #[test]
    fn only_jsonb_renderings_are_taken_for_jsonb() {
        // jsonb renderings, as PostgreSQL prints them.
        for jsonb in ["{\"a\": 1}", "{\"q\\\"\": {\"b\":1}}", "{\"\": []}"] {
            assert!(rendered_by_jsonb(jsonb.as_bytes()), "{jsonb}");
        }
        // serde's text, whatever its values hold.
        for serde in ["{}", "{\"a\":1}", "{\"q\\\"\":\": \"}", "{\"a\":\"x\": y\"}", "{\"a\""] {
            assert!(!rendered_by_jsonb(serde.as_bytes()), "{serde}");
        }
    }
}
