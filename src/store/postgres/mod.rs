//! The PostgreSQL backend: the production store. Constraint violations are
//! recognised by index name; connection-level failures become `Unavailable`
//! so the API answers 503 while the database is away.

mod copy;
mod point_reads;

use copy::CopyRows;
use point_reads::{Fetch, PointReads};

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection};
use sqlx::types::Json;
use sqlx::{Arguments, Postgres};

use std::sync::Arc;

use crate::domain::ids::AccountId;
use crate::domain::stored::StoredCustomer;

use super::admission::{LongReadSlot, LongReads};
use super::customers::by_customer_ids;
use super::engine::{impl_conn, read_again_if_lost, run_migrations, Backend, Conn, Handle};
use super::pool::{connection_lost, Pool};
use super::sql::{Dialect, Param};
use super::sql_store::SqlStore;
use super::{Constraint, PoolOptions, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub type PostgresStore = SqlStore<PostgresBackend>;

pub struct PostgresBackend {
    pool: Pool<Postgres>,
    long_reads: LongReads,
    point_reads: PointReads,
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        let mut connect: PgConnectOptions = url.parse()?;
        if let Some(limit) = options.statement_timeout {
            // A session default: each statement of a request is stopped by
            // the server itself once the request has given up on it.
            // And a backend whose client went away (a request dropped
            // mid-statement closes its connection) stops within a second
            // rather than at the end of its statement (PostgreSQL 14+).
            connect = connect.options([
                ("statement_timeout", format!("{}ms", limit.as_millis())),
                ("client_connection_check_interval", "1000".to_owned()),
            ]);
        }
        let pool = Pool::connect(connect, options).await?;
        let long_reads = LongReads::new(options.long_reads, options.acquire_timeout);
        let batches = super::cores();
        let point_reads = PointReads::new(batches, options.acquire_timeout, fetch_customers(pool.clone()));
        Ok(SqlStore::new(PostgresBackend { pool, long_reads, point_reads }))
    }
}

/// A batch of point reads: one statement on a pooled connection, run once
/// more on a new one when the statement finds its connection lost (as
/// every read does, see `Backend::recover_from_lost_connection`).
fn fetch_customers(pool: Pool<Postgres>) -> Fetch {
    Arc::new(move |account, customer_ids| {
        let pool = pool.clone();
        Box::pin(async move {
            read_again_if_lost!(
                connect: pool.lease().await.map_err(translate)?,
                recover: discard_idle(&pool),
                |conn| conn.fetch_stored(by_customer_ids(Dialect::Postgres, &account, &customer_ids)).await
            )
        })
    })
}

/// After a lost connection: the idle ones most likely broke with it (the
/// database restarted), so a read tried again gets a new one.
fn discard_idle(pool: &Pool<Postgres>) -> bool {
    pool.discard_idle();
    true
}

#[async_trait]
impl Backend for PostgresBackend {
    type Conn = Handle<Postgres>;
    type ReadConn = Handle<Postgres>;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn concurrent_writes(&self) -> bool {
        true
    }

    async fn read(&self) -> Result<Self::ReadConn, StoreError> {
        self.connection().await
    }

    async fn connection(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease().await.map_err(translate)
    }

    /// Concurrent GETs go out together, one statement per batch.
    async fn get_customer(
        &self,
        account: &AccountId,
        customer_id: &str,
    ) -> Option<Result<Option<StoredCustomer>, StoreError>> {
        Some(self.point_reads.get(account, customer_id).await)
    }

    async fn long_read_slot(&self, account: &AccountId) -> Result<Option<LongReadSlot>, StoreError> {
        self.long_reads.slot(account.as_str()).await.map(Some)
    }

    async fn write(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease_in_transaction("BEGIN").await.map_err(translate)
    }

    fn recover_from_lost_connection(&self) -> bool {
        discard_idle(&self.pool)
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        // Building an index on a large table may take longer than any
        // request's statement: no limit while migrating.
        run_migrations(&MIGRATOR, &self.pool, translate, Some(("SET statement_timeout = 0", "RESET statement_timeout")))
            .await
    }

    async fn close(&self) {
        self.long_reads.close();
        self.point_reads.close();
        self.pool.close().await
    }
}

impl_conn!(Postgres, Dialect::Postgres, arguments, translate, copy_in);

/// One `COPY … FROM STDIN` of text-format rows, sent 500 rows at a time so
/// that the server writes a batch while the next is being encoded. A row the
/// server refuses (a unique violation) fails the whole statement, and the
/// connection is ready for the next one.
async fn copy_in(conn: &mut PgConnection, statement: &str, rows: &[Vec<Param>]) -> Result<Option<u64>, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in rows.chunks(500) {
        let mut data = CopyRows::default();
        for row in chunk {
            data.push_row(row);
        }
        copy.send(data.into_bytes()).await?;
    }
    copy.finish().await.map(Some)
}

fn arguments(params: Vec<Param>) -> Result<PgArguments, StoreError> {
    let mut args = PgArguments::default();
    for param in params {
        let added = match param {
            Param::Text(v) => args.add(v),
            Param::Int(v) => args.add(v),
            Param::Time(v) => args.add(v),
            Param::Id(v) => args.add(v),
            Param::Json(v) => args.add(Json(v.raw())),
            Param::Bytes(v) => args.add(v),
            Param::Null => args.add(Option::<String>::None),
            Param::NullTime => args.add(Option::<chrono::DateTime<chrono::Utc>>::None),
            Param::NullJson => args.add(Option::<Json<serde_json::Value>>::None),
            Param::NullId => args.add(Option::<uuid::Uuid>::None),
            Param::NullInt => args.add(Option::<i64>::None),
        };
        added.map_err(|e| StoreError::Other(e.to_string()))?;
    }
    Ok(args)
}

fn translate(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict { constraint: Constraint::from_index_name(db.constraint().unwrap_or_default()) }
        }
        // Class 22 (data exception): a value the database cannot take, such
        // as a NUL character. Validation should catch these first; this is
        // the net that keeps a client's mistake from becoming a 500.
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
            StoreError::invalid("request", "invalid_value", "the request holds a value that cannot be stored")
        }
        // 57014: stopped by `statement_timeout` (or a cancel request).
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => StoreError::TimedOut,
        // A lost connection (class 08, 57P), or class 53 (insufficient
        // resources).
        sqlx::Error::Database(db) if connection_lost(&error) || db.code().is_some_and(|c| c.starts_with("53")) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}
