//! The SQLite backend: the embedded default. WAL journal, full sync, and
//! `BEGIN IMMEDIATE` write transactions so writers queue on the database
//! lock (across processes too, through `busy_timeout`) instead of failing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Arguments, Sqlite};

use super::ops::{impl_conn, run_migrations, Backend, Handle, SqlStore};
use super::pool::Pool;
use super::query::{Dialect, Param};
use super::{PoolOptions, StoreError};

/// The bulk writer's page cache, 256 MiB: the indexes of a million
/// customers stay in memory while an import inserts into all of them.
const BULK_CACHE_KIB: &str = "-262144";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub type SqliteStore = SqlStore<SqliteBackend>;

pub struct SqliteBackend {
    pool: Pool<Sqlite>,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 4 MiB of page cache per connection (the default is 2 MiB): a
            // customer row touches ten indexes, but every pooled connection
            // keeps its own cache, which counts against the process's memory
            // (8 MiB each took the process past 128 MiB under load; the OS
            // page cache still holds the file).
            .pragma("cache_size", if options.bulk { BULK_CACHE_KIB } else { "-4096" })
            .pragma("temp_store", "memory");
        // A bulk writer's transactions touch thousands of index pages each:
        // a check-point after every commit (at the default 1,000 WAL pages)
        // writes and syncs most of them again, so it check-points every
        // 400 MB of WAL instead (closing the last connection check-points
        // the rest).
        let connect = if options.bulk { connect.pragma("wal_autocheckpoint", "100000") } else { connect };
        let pool = Pool::connect(connect, options.max_connections, options.acquire_timeout).await?;
        Ok(SqlStore(SqliteBackend { pool }))
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Conn = Handle<Sqlite>;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn read(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease().await.map_err(translate)
    }

    async fn write(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease_in_transaction("BEGIN IMMEDIATE").await.map_err(translate)
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        run_migrations(&MIGRATOR, &self.pool, translate).await
    }

    async fn close(&self) {
        self.pool.close().await
    }
}

impl_conn!(Sqlite, Dialect::Sqlite, arguments, translate, no_copy);

/// SQLite has no COPY; bulk writes use multi-row `INSERT`s.
async fn no_copy(_: &mut SqliteConnection, _: &str, _: &[Vec<Param>]) -> Result<Option<u64>, sqlx::Error> {
    Ok(None)
}

fn arguments(params: &[Param]) -> Result<SqliteArguments<'static>, StoreError> {
    let mut args = SqliteArguments::default();
    for param in params {
        let added = match param {
            Param::Text(v) => args.add(v.clone()),
            Param::Int(v) => args.add(*v),
            Param::Time(v) => args.add(v.timestamp_micros()),
            Param::Id(v) => args.add(*v),
            Param::Json(v) => args.add(v.to_string()),
            Param::Bytes(v) => args.add(v.clone()),
            Param::Null | Param::NullJson => args.add(Option::<String>::None),
            Param::NullTime => args.add(Option::<i64>::None),
        };
        added.map_err(|e| StoreError::Other(e.to_string()))?;
    }
    Ok(args)
}

/// SQLite names no constraint in its errors ("UNIQUE constraint failed:
/// customers.account_id, customers.type, customers.email_lower"), so the
/// index is recognised by its distinguishing column.
fn translate(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let message = db.message();
            let constraint = [
                ("customers.email_lower", "customers_email_key"),
                ("customers.phone_unique", "customers_phone_number_key"),
                ("customers.customer_id", "customers_customer_id_key"),
                ("api_clients.client_id", "api_clients_pkey"),
                (" tags.tag", "tags_tag_key"),
                ("customer_tokens.token_id", "customer_tokens_token_id_key"),
                ("customer_tokens.value", "customer_tokens_value_key"),
            ]
            .into_iter()
            .find(|(column, _)| message.contains(column))
            .map_or("unknown", |(_, name)| name);
            StoreError::Conflict { constraint }
        }
        // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout, SQLITE_FULL,
        // SQLITE_READONLY, SQLITE_CANTOPEN: the database cannot take writes.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "13" | "8" | "14")) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}
