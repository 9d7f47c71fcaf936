//! Row types shared by both backends. `T` is the backend's timestamp type
//! (microseconds as `i64` in SQLite, `timestamptz` in PostgreSQL).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::customer::{Customer, CustomerData};

use super::{micros_to_time, ClientRecord, SigningKeyRecord};

pub trait IntoUtc {
    fn into_utc(self) -> DateTime<Utc>;
}

impl IntoUtc for i64 {
    fn into_utc(self) -> DateTime<Utc> {
        micros_to_time(self)
    }
}

impl IntoUtc for DateTime<Utc> {
    fn into_utc(self) -> DateTime<Utc> {
        self
    }
}

#[derive(sqlx::FromRow)]
pub struct CustomerRow<T> {
    pub id: Uuid,
    pub customer_id: String,
    pub doc: Json<CustomerData>,
    pub created_at: T,
    pub created_by: String,
    pub updated_at: T,
    pub deleted_at: Option<T>,
    pub deleted_by: Option<String>,
}

impl<T: IntoUtc> From<CustomerRow<T>> for Customer {
    fn from(row: CustomerRow<T>) -> Self {
        let deleted_at = row.deleted_at.map(IntoUtc::into_utc);
        Customer {
            id: row.id,
            customer_id: row.customer_id,
            // An erased customer keeps no details (§4.2).
            data: deleted_at.is_none().then_some(row.doc.0),
            created_at: row.created_at.into_utc(),
            created_by: row.created_by,
            updated_at: row.updated_at.into_utc(),
            deleted_at,
            deleted_by: row.deleted_by,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ClientRow<T> {
    pub client_id: String,
    pub account_id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_at: T,
}

impl<T: IntoUtc> From<ClientRow<T>> for ClientRecord {
    fn from(row: ClientRow<T>) -> Self {
        ClientRecord {
            client_id: row.client_id,
            account_id: row.account_id,
            secret_hash: row.secret_hash,
            scopes: row.scopes,
            created_at: row.created_at.into_utc(),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct KeyRow<T> {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: T,
}

impl<T: IntoUtc> From<KeyRow<T>> for SigningKeyRecord {
    fn from(row: KeyRow<T>) -> Self {
        SigningKeyRecord {
            kid: row.kid,
            private_pkcs8: row.private_pkcs8,
            public_key: row.public_key,
            created_at: row.created_at.into_utc(),
        }
    }
}
