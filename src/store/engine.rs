//! The storage engine both backends plug into: a connection runs
//! dialect-aware SQL from [`SqlBuilder`] ([`Conn`]); a [`Backend`] hands out
//! connections and says what is special about it; the macros run a flow
//! once more on a lost read connection and implement [`Conn`] for a pooled
//! one; migrations run through one function. No flow lives here.

use async_trait::async_trait;

use crate::domain::customer::Customer;
use crate::domain::ids::AccountId;
use crate::domain::stored::StoredCustomer;

use super::admission::LongReadSlot;
use super::rows::{CustomerRow, DbRow};
use super::sql::{Dialect, Param, SqlBuilder};
use super::StoreError;

/// What a flow needs from a backend connection (plain or in a transaction).
#[async_trait]
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    async fn execute(&mut self, q: SqlBuilder) -> Result<u64, StoreError>;
    /// Every row of `q`, decoded as `R`.
    async fn fetch_all<R: DbRow>(&mut self, q: SqlBuilder) -> Result<Vec<R>, StoreError>;
    async fn fetch_i64(&mut self, q: SqlBuilder) -> Result<Option<i64>, StoreError>;
    async fn fetch_strings(&mut self, q: SqlBuilder) -> Result<Vec<String>, StoreError>;

    /// Streams `rows` into `statement` (a `COPY … FROM STDIN`) and returns
    /// how many it wrote; `None` where the backend has no COPY (SQLite).
    async fn copy_in(&mut self, statement: &str, rows: &[Vec<Param>]) -> Result<Option<u64>, StoreError>;

    /// Customers as read for an answer: documents unparsed.
    async fn fetch_stored(&mut self, q: SqlBuilder) -> Result<Vec<StoredCustomer>, StoreError> {
        let rows: Vec<CustomerRow> = self.fetch_all(q).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// `SELECT count(*)` and what `from_where` adds, when `wanted`.
    async fn count_if(
        &mut self,
        wanted: bool,
        from_where: &(dyn for<'q> Fn(&'q mut SqlBuilder) + Sync),
    ) -> Result<Option<i64>, StoreError> {
        if !wanted {
            return Ok(None);
        }
        let mut q = SqlBuilder::new(self.dialect(), "SELECT count(*)");
        from_where(&mut q);
        self.fetch_i64(q).await
    }

    /// Customers with their documents parsed, for the flows that change them.
    async fn fetch_customers(&mut self, q: SqlBuilder) -> Result<Vec<Customer>, StoreError> {
        self.fetch_stored(q).await?.into_iter().map(parsed).collect()
    }
    /// Commits a transaction; a plain connection just goes back to the pool.
    async fn commit(self) -> Result<(), StoreError>
    where
        Self: Sized;
}

/// A stored customer with its document parsed.
pub fn parsed(customer: StoredCustomer) -> Result<Customer, StoreError> {
    customer.into_customer().map_err(|e| StoreError::Other(format!("a stored customer document: {e}")))
}

/// A backend: how to get connections, and the few things that are not SQL.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Conn: Conn;
    type ReadConn: Conn + 'static;
    fn name(&self) -> &'static str;
    /// A connection for reads (no transaction; it may refuse writes).
    async fn read(&self) -> Result<Self::ReadConn, StoreError>;
    /// A pooled connection outside a transaction, for maintenance
    /// statements that write but cannot run in a transaction (`VACUUM`).
    async fn connection(&self) -> Result<Self::Conn, StoreError>;
    /// A slot for a read that may take long (see `admission`), waited for
    /// before its connection is taken. `None`: no slot needed.
    async fn long_read_slot(&self, _account: &AccountId) -> Result<Option<LongReadSlot>, StoreError> {
        Ok(None)
    }
    /// A GET by `customer_id` answered the backend's own way (PostgreSQL
    /// batches concurrent GETs into one statement); `None`: the store runs
    /// its own statement.
    async fn get_customer(
        &self,
        _account: &AccountId,
        _customer_id: &str,
    ) -> Option<Result<Option<StoredCustomer>, StoreError>> {
        None
    }
    /// Whether a read runs on the calling thread (SQLite's direct reader)
    /// rather than wait for a database server; a long one then leaves the
    /// async worker first (`off_worker`).
    fn reads_block_thread(&self) -> bool {
        false
    }
    /// Whether two write transactions make progress at once (PostgreSQL)
    /// rather than one after the other (SQLite's single writer).
    fn concurrent_writes(&self) -> bool {
        false
    }
    /// Called when a statement on a read connection answered `Unavailable`:
    /// drops the idle connections, which most likely broke with it, and
    /// says whether the read should run once more on a new connection.
    /// SQLite's connections are files on this machine and cannot break
    /// that way: no.
    fn recover_from_lost_connection(&self) -> bool {
        false
    }
    /// A transaction that may write; in SQLite it holds the write lock from
    /// the start, so a read-modify-write cannot be overtaken. (A broken
    /// connection found by its `BEGIN` is replaced by the pool: nothing had
    /// run on it.)
    async fn write(&self) -> Result<Self::Conn, StoreError>;
    async fn migrate(&self) -> Result<Vec<String>, StoreError>;
    async fn close(&self);
}

/// A leased connection of one backend, perhaps in a transaction.
pub type Handle<DB> = super::pool::Lease<DB>;

/// Runs `flow` on the connection `connect` gives. When a statement finds
/// the connection broken (the database restarted under load, before the
/// pool's idle check could catch it) and `recover` says a new one may
/// work, `flow` runs once more on a new connection: a read can be repeated
/// without effect, so the client gets an answer instead of a 503. A
/// failure to get a connection is not repeated. (A macro, not a function
/// taking async closures: the flows borrow their arguments, and the
/// compiler cannot yet prove such a closure's future `Send` for every
/// borrow, which `async_trait` requires.)
macro_rules! read_again_if_lost {
    (connect: $connect:expr, recover: $recover:expr, |$conn:ident| $flow:expr) => {{
        let first = {
            let mut $conn = $connect;
            $flow
        };
        match first {
            Err(StoreError::Unavailable(_)) if $recover => {
                let mut $conn = $connect;
                $flow
            }
            result => result,
        }
    }};
}
pub(crate) use read_again_if_lost;

/// Implements [`Conn`] for one backend's [`Handle`]; the backend supplies its
/// dialect, how to bind [`Param`]s and how to translate errors.
macro_rules! impl_conn {
    ($db:ty, $dialect:expr, $arguments:path, $translate:path, $copy_in:path) => {
        #[async_trait::async_trait]
        impl $crate::store::engine::Conn for $crate::store::engine::Handle<$db> {
            fn dialect(&self) -> $crate::store::sql::Dialect {
                $dialect
            }

            async fn execute(&mut self, q: $crate::store::sql::SqlBuilder) -> Result<u64, StoreError> {
                let (sql, params) = q.into_parts();
                let args = $arguments(params)?;
                let done = sqlx::query_with(&sql, args).execute(self.start()).await;
                self.settle(&done);
                Ok(done.map_err($translate)?.rows_affected())
            }

            async fn fetch_all<R: $crate::store::rows::DbRow>(
                &mut self,
                q: $crate::store::sql::SqlBuilder,
            ) -> Result<Vec<R>, StoreError> {
                let (sql, params) = q.into_parts();
                let args = $arguments(params)?;
                let rows = sqlx::query_as_with(&sql, args).fetch_all(self.start()).await;
                self.settle(&rows);
                rows.map_err($translate)
            }

            async fn fetch_i64(&mut self, q: $crate::store::sql::SqlBuilder) -> Result<Option<i64>, StoreError> {
                let (sql, params) = q.into_parts();
                let args = $arguments(params)?;
                let value = sqlx::query_scalar_with(&sql, args).fetch_optional(self.start()).await;
                self.settle(&value);
                value.map_err($translate)
            }

            async fn fetch_strings(&mut self, q: $crate::store::sql::SqlBuilder) -> Result<Vec<String>, StoreError> {
                let (sql, params) = q.into_parts();
                let args = $arguments(params)?;
                let values = sqlx::query_scalar_with(&sql, args).fetch_all(self.start()).await;
                self.settle(&values);
                values.map_err($translate)
            }

            async fn copy_in(
                &mut self,
                statement: &str,
                rows: &[Vec<$crate::store::sql::Param>],
            ) -> Result<Option<u64>, StoreError> {
                let written = $copy_in(self.start(), statement, rows).await;
                self.settle(&written);
                written.map_err($translate)
            }

            async fn commit(mut self) -> Result<(), StoreError> {
                $crate::store::pool::Lease::commit(&mut self).await.map_err($translate)
            }
        }
    };
}
pub(crate) use impl_conn;

/// Applies the embedded migrations that have not run yet and names them.
/// `around`: statements run on the migrating connection before and after.
pub async fn run_migrations<DB>(
    migrator: &sqlx::migrate::Migrator,
    pool: &super::pool::Pool<DB>,
    translate: fn(sqlx::Error) -> StoreError,
    around: Option<(&'static str, &'static str)>,
) -> Result<Vec<String>, StoreError>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate + super::pool::RawStatements,
{
    use super::pool::RawStatements;
    use sqlx::migrate::Migrate;
    let mut lease = pool.lease().await.map_err(translate)?;
    let conn = lease.start();
    if let Some((before, _)) = around {
        conn.execute_raw(before).await.map_err(translate)?;
    }
    conn.ensure_migrations_table().await.map_err(|e| StoreError::Other(e.to_string()))?;
    let applied: Vec<i64> = conn
        .list_applied_migrations()
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
        .into_iter()
        .map(|m| m.version)
        .collect();
    migrator.run_direct(&mut *conn).await.map_err(|e| StoreError::Other(e.to_string()))?;
    if let Some((_, after)) = around {
        conn.execute_raw(after).await.map_err(translate)?;
    }
    lease.settle(&Ok(()));
    Ok(migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{}_{}", m.version, m.description))
        .collect())
}
