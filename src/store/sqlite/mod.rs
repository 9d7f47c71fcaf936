//! The SQLite backend: the embedded default. WAL journal, full sync, and
//! `BEGIN IMMEDIATE` write transactions so writers queue on the database
//! lock (across processes too, through `busy_timeout`) instead of failing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Arguments, Sqlite};

use crate::domain::ids::AccountId;

mod reader;

use super::admission::LongReadSlot;
use super::engine::{impl_conn, run_migrations, Backend, Conn, Handle};
use super::pool::Pool;
use super::rows::DbRow;
use super::sql::{Dialect, Param, SqlBuilder};
use super::sql_store::SqlStore;
use super::{Constraint, PoolOptions, StoreError};
use reader::{ReadConn, Reader, ReaderOptions};

/// The bulk writer's page cache, 256 MiB: the indexes of a million
/// customers stay in memory while an import inserts into all of them.
const BULK_CACHE_KIB: i64 = 262_144;

/// A serving connection's page cache, 4 MiB (the default is 2 MiB): a
/// customer row touches ten indexes, but every connection keeps its own
/// cache, which counts against the process's memory (8 MiB each took the
/// process past 128 MiB under load; the OS page cache still holds the file).
const CACHE_KIB: i64 = 4096;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub type SqliteStore = SqlStore<SqliteBackend>;

pub struct SqliteBackend {
    pool: Pool<Sqlite>,
    /// Reads on the calling thread (see `reader`); `None` for an
    /// in-memory database, which only the pool's connections can see.
    reader: Option<Reader>,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        let cache_kib = if options.bulk { BULK_CACHE_KIB } else { CACHE_KIB };
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", (-cache_kib).to_string())
            .pragma("temp_store", "memory");
        let in_memory = is_in_memory(url, connect.get_filename());
        // A bulk writer's transactions touch thousands of index pages each:
        // a check-point after every commit (at the default 1,000 WAL pages)
        // writes and syncs most of them again, so it check-points every
        // 400 MB of WAL instead (closing the last connection check-points
        // the rest).
        let connect = if options.bulk { connect.pragma("wal_autocheckpoint", "100000") } else { connect };
        let path = connect.get_filename().to_owned();
        // The pool's first connection creates the file and sets WAL mode,
        // which the read-only reader needs.
        // SQLite takes its allocator only before its first connection.
        crate::allocator::route_sqlite_allocations();
        let pool = Pool::connect(connect, options).await?;
        let reader = if in_memory {
            None
        } else {
            Some(Reader::open(
                &path,
                ReaderOptions {
                    // Reads need no bulk writer's cache.
                    cache_kib: CACHE_KIB,
                    busy_timeout: BUSY_TIMEOUT,
                    max_connections: options.max_connections,
                    acquire_timeout: options.acquire_timeout,
                    long_reads: options.long_reads,
                    statement_timeout: options.statement_timeout,
                },
            )?)
        };
        Ok(SqlStore::new(SqliteBackend { pool, reader }))
    }
}

/// sqlx names an in-memory database `file:sqlx-in-memory-N`; a URL can also
/// ask for one with `mode=memory`.
fn is_in_memory(url: &str, filename: &std::path::Path) -> bool {
    url.contains("mode=memory") || filename.to_string_lossy().starts_with("file:sqlx-in-memory-")
}

#[async_trait]
impl Backend for SqliteBackend {
    type Conn = Handle<Sqlite>;
    type ReadConn = SqliteRead;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn read(&self) -> Result<Self::ReadConn, StoreError> {
        match &self.reader {
            Some(reader) => reader.read().await.map(SqliteRead::Direct),
            None => self.connection().await.map(SqliteRead::Pooled),
        }
    }

    async fn connection(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease().await.map_err(translate)
    }

    async fn long_read_slot(&self, account: &AccountId) -> Result<Option<LongReadSlot>, StoreError> {
        match &self.reader {
            Some(reader) => reader.long_read_slot(account.as_str()).await.map(Some),
            None => Ok(None),
        }
    }

    fn reads_block_thread(&self) -> bool {
        self.reader.is_some()
    }

    async fn write(&self) -> Result<Self::Conn, StoreError> {
        self.pool.lease_in_transaction("BEGIN IMMEDIATE").await.map_err(translate)
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        run_migrations(&MIGRATOR, &self.pool, translate, None).await
    }

    async fn close(&self) {
        if let Some(reader) = &self.reader {
            reader.close();
        }
        self.pool.close().await
    }
}

/// A read connection: the direct reader's, or the pool's for an in-memory
/// database.
pub enum SqliteRead {
    Direct(ReadConn),
    Pooled(Handle<Sqlite>),
}

macro_rules! delegate {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            SqliteRead::Direct($conn) => $call,
            SqliteRead::Pooled($conn) => $call,
        }
    };
}

#[async_trait]
impl Conn for SqliteRead {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, q: SqlBuilder) -> Result<u64, StoreError> {
        delegate!(self, conn => conn.execute(q).await)
    }

    async fn fetch_all<R: DbRow>(&mut self, q: SqlBuilder) -> Result<Vec<R>, StoreError> {
        delegate!(self, conn => conn.fetch_all(q).await)
    }

    async fn fetch_i64(&mut self, q: SqlBuilder) -> Result<Option<i64>, StoreError> {
        delegate!(self, conn => conn.fetch_i64(q).await)
    }

    async fn fetch_strings(&mut self, q: SqlBuilder) -> Result<Vec<String>, StoreError> {
        delegate!(self, conn => conn.fetch_strings(q).await)
    }

    async fn copy_in(&mut self, statement: &str, rows: &[Vec<Param>]) -> Result<Option<u64>, StoreError> {
        delegate!(self, conn => conn.copy_in(statement, rows).await)
    }

    async fn commit(self) -> Result<(), StoreError> {
        delegate!(self, conn => conn.commit().await)
    }
}

impl_conn!(Sqlite, Dialect::Sqlite, arguments, translate, no_copy);

/// SQLite has no COPY; bulk writes use multi-row `INSERT`s.
async fn no_copy(_: &mut SqliteConnection, _: &str, _: &[Vec<Param>]) -> Result<Option<u64>, sqlx::Error> {
    Ok(None)
}

pub(super) fn arguments(params: Vec<Param>) -> Result<SqliteArguments<'static>, StoreError> {
    let mut args = SqliteArguments::default();
    for param in params {
        let added = match param {
            Param::Text(v) => args.add(v),
            Param::Int(v) => args.add(v),
            Param::Time(v) => args.add(v.timestamp_micros()),
            Param::Id(v) => args.add(v),
            Param::Json(v) => args.add(v.into_string()),
            Param::Bytes(v) => args.add(v),
            Param::Null | Param::NullJson => args.add(Option::<String>::None),
            Param::NullTime | Param::NullInt => args.add(Option::<i64>::None),
            Param::NullId => args.add(Option::<uuid::Uuid>::None),
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
            StoreError::Conflict { constraint: Constraint::from_sqlite_message(db.message()) }
        }
        // sqlx reports the extended result code; its low byte is the primary.
        sqlx::Error::Database(db)
            if db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| cannot_serve(c & 0xff)) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}

/// Whether a primary result code means the database cannot serve now rather
/// than that the statement was wrong: SQLITE_BUSY and SQLITE_LOCKED (after
/// the busy timeout), SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN.
pub(super) fn cannot_serve(primary_code: i32) -> bool {
    matches!(primary_code, 5 | 6 | 13 | 8 | 14)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{now_micros, ClientRecord, Store};

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "c1".into(),
            account_id: "T00000001".into(),
            secret_hash: "h".into(),
            scopes: "admin:customers".into(),
            created_at: now_micros(),
        }
    }

    /// Reads go to the direct reader for a file, to the pool for an
    /// in-memory database (which only the pool's connections can see); either
    /// way a read sees what a write committed.
    #[tokio::test]
    async fn reads_see_writes_on_a_file_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("sqlite://{}", dir.path().join("t.db").display());
        for (url, direct) in [(file.as_str(), true), ("sqlite::memory:", false)] {
            let store = SqliteStore::connect(url, &PoolOptions::default()).await.unwrap();
            assert_eq!(store.backend.reader.is_some(), direct, "{url}");
            store.migrate().await.unwrap();
            store.insert_client(client()).await.unwrap();
            let found = store.find_client("c1").await.unwrap().expect("the client just written");
            assert_eq!(found.scopes, "admin:customers");
            assert!(store.has_clients().await.unwrap());
            store.close().await;
        }
    }

    /// A full disk (here: the file at its page limit) is the server's
    /// trouble, not the client's: `Unavailable` (503), never `Other` (500).
    #[tokio::test]
    async fn a_full_database_cannot_serve() {
        use sqlx::{ConnectOptions, Executor};
        let mut conn = SqliteConnectOptions::from_str("sqlite::memory:").unwrap().connect().await.unwrap();
        conn.execute("CREATE TABLE t (v TEXT)").await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut conn).await.unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {pages}")).execute(&mut conn).await.unwrap();
        let error = sqlx::query("INSERT INTO t VALUES (?)")
            .bind("x".repeat(100_000))
            .execute(&mut conn)
            .await
            .expect_err("no page left for the row");
        assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some("13"), "SQLITE_FULL: {error}");
        assert!(matches!(translate(error), StoreError::Unavailable(_)));
    }
}
