//! Row types, written once for both backends. Timestamps decode through
//! [`Ts`]: microseconds (`INTEGER`) in SQLite, `timestamptz` in PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Sqlite, Type};
use uuid::Uuid;

use crate::domain::customer::{Customer, CustomerData};
use crate::domain::settings::Settings;

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

/// A row type both backends can decode.
pub trait DbRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin
{
}

impl<T> DbRow for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
{
}

#[derive(sqlx::FromRow)]
pub struct CustomerRow {
    pub id: Uuid,
    pub customer_id: String,
    pub doc: Json<CustomerData>,
    pub created_at: Ts,
    pub created_by: String,
    pub updated_at: Ts,
    pub deleted_at: Option<Ts>,
    pub deleted_by: Option<String>,
}

impl From<CustomerRow> for Customer {
    fn from(row: CustomerRow) -> Self {
        let deleted_at = row.deleted_at.map(|t| t.0);
        Customer {
            id: row.id,
            customer_id: row.customer_id,
            // An erased customer keeps no details (§4.2).
            data: deleted_at.is_none().then_some(row.doc.0),
            created_at: row.created_at.0,
            created_by: row.created_by,
            updated_at: row.updated_at.0,
            deleted_at,
            deleted_by: row.deleted_by,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ClientRow {
    pub client_id: String,
    pub account_id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_at: Ts,
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

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: Ts,
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

#[derive(sqlx::FromRow)]
pub struct IdempotencyRow {
    pub fingerprint: String,
    pub etag: String,
    pub response: String,
}

#[derive(sqlx::FromRow)]
pub struct SettingsRow {
    pub doc: Json<Settings>,
}
