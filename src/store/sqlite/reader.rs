//! SQLite's read path: reads run on the calling thread, through rusqlite on
//! the same SQLite library sqlx links, instead of through sqlx's worker
//! thread, which hands every statement and row across a channel (two
//! wake-ups per query, about 40 % of a GET's CPU).
//!
//! A read holds the async worker it runs on for the time of the query: tens
//! of microseconds for a point read or a page. Reads that can take long (a
//! search, a count) leave the worker first for a blocking-pool thread
//! (`sql_store::off_worker`), one per long-read slot, so that point reads
//! are not held behind them. Writes stay on sqlx: they wait for SQLite's
//! write lock, and that wait must not hold an async worker. Figures:
//! `docs/performance.md`.
//!
//! Connections are read-only (a write through one fails, it never lands),
//! opened on demand, at most `max_connections` at a time (each keeps a page
//! cache), and kept for reuse. WAL mode lets them read while a writer
//! commits; each statement sees the last commit before it started, like a
//! read through the pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{OpenFlags, ToSql};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::admission::{acquire, LongReadSlot, LongReads};
use crate::store::engine::Conn;
use crate::store::rows::{self, DbRow};
use crate::store::sql::{Dialect, Param, SqlBuilder};
use crate::store::StoreError;

/// Prepared statements kept per connection: the list filters combine into
/// a few dozen distinct queries.
const STATEMENT_CACHE: usize = 128;

/// Virtual-machine steps between two checks of a statement's deadline
/// (about a tenth of a millisecond of work).
const PROGRESS_STEPS: std::os::raw::c_int = 10_000;

#[derive(Clone)]
pub struct Reader(Arc<Shared>);

struct Shared {
    path: PathBuf,
    cache_kib: i64,
    busy_timeout: Duration,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// One permit per connection that may be open, idle or in use.
    permits: Arc<Semaphore>,
    /// Reads that may take long run one per core by default: more at once
    /// only share the cores, each on its own thread with its own page cache.
    long_reads: LongReads,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
}

/// How the reader's connections are set up.
pub struct ReaderOptions {
    pub cache_kib: i64,
    pub busy_timeout: Duration,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub long_reads: u32,
    /// A statement running longer is interrupted (see `PoolOptions`).
    pub statement_timeout: Option<Duration>,
}

impl Reader {
    /// Opens one connection at once, so that a path SQLite cannot read fails
    /// at start-up (the database must exist: the pool has created it).
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self, StoreError> {
        let shared = Shared {
            path: path.to_owned(),
            cache_kib: options.cache_kib,
            busy_timeout: options.busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.max_connections.max(1) as usize)),
            long_reads: LongReads::new(options.long_reads, options.acquire_timeout),
            acquire_timeout: options.acquire_timeout,
            statement_timeout: options.statement_timeout,
        };
        let first = shared.connect()?;
        shared.put_back(first);
        Ok(Reader(Arc::new(shared)))
    }

    /// A slot for a read that may take long (see `Shared::long_reads`);
    /// waits at most the acquire timeout.
    pub async fn long_read_slot(&self, account: &str) -> Result<LongReadSlot, StoreError> {
        self.0.long_reads.slot(account).await
    }

    /// A connection: an idle one, or a new one while fewer than
    /// `max_connections` are open; waits at most the acquire timeout.
    pub async fn read(&self) -> Result<ReadConn, StoreError> {
        let permit = acquire(&self.0.permits, self.0.acquire_timeout, "a read connection").await?;
        let idle = self.0.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.0.connect()?,
        };
        Ok(ReadConn { conn: Some(conn), reader: self.0.clone(), _permit: permit })
    }

    /// Refuses new reads and drops the idle connections (ones in use are
    /// dropped when they come back).
    pub fn close(&self) {
        self.0.permits.close();
        self.0.long_reads.close();
        if let Ok(mut idle) = self.0.idle.lock() {
            idle.clear();
        }
    }
}

impl Shared {
    fn connect(&self) -> Result<rusqlite::Connection, StoreError> {
        // No mutex in SQLite: a connection is used by one thread at a time.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags).map_err(translate)?;
        conn.busy_timeout(self.busy_timeout).map_err(translate)?;
        conn.pragma_update(None, "cache_size", -self.cache_kib).map_err(translate)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn put_back(&self, conn: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if !self.permits.is_closed() {
                idle.push(conn);
            }
        }
    }
}

/// A connection of the [`Reader`], back in its idle list when dropped.
pub struct ReadConn {
    conn: Option<rusqlite::Connection>,
    reader: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl ReadConn {
    fn conn(&self) -> &rusqlite::Connection {
        self.conn.as_ref().expect("a read connection holds its connection until dropped")
    }

    /// Runs `q` and hands each row to `each`.
    fn for_each_row(
        &self,
        q: &SqlBuilder,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        if let Some(limit) = self.reader.statement_timeout {
            // SQLite calls this every few thousand steps of its virtual
            // machine; `true` interrupts the statement.
            let deadline = std::time::Instant::now() + limit;
            self.conn().progress_handler(PROGRESS_STEPS, Some(move || std::time::Instant::now() >= deadline));
        }
        let mut statement = self.conn().prepare_cached(q.sql()).map_err(translate)?;
        let mut rows = statement.query(rusqlite::params_from_iter(q.params())).map_err(translate)?;
        while let Some(row) = rows.next().map_err(translate)? {
            each(row).map_err(translate)?;
        }
        Ok(())
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.reader.put_back(conn);
        }
    }
}

#[async_trait]
impl Conn for ReadConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    /// Runs a statement that returns no rows (a read-only connection refuses
    /// any that would write).
    async fn execute(&mut self, q: SqlBuilder) -> Result<u64, StoreError> {
        let mut statement = self.conn().prepare_cached(q.sql()).map_err(translate)?;
        let changed = statement.execute(rusqlite::params_from_iter(q.params())).map_err(translate)?;
        Ok(changed as u64)
    }

    async fn fetch_all<R: DbRow>(&mut self, q: SqlBuilder) -> Result<Vec<R>, StoreError> {
        let mut found = Vec::new();
        let mut columns = Vec::new();
        self.for_each_row(&q, |row| {
            if found.is_empty() {
                columns = rows::column_indexes(row.as_ref(), R::COLUMNS)?;
            }
            found.push(R::from_direct(row, &columns)?);
            Ok(())
        })?;
        Ok(found)
    }

    async fn fetch_i64(&mut self, q: SqlBuilder) -> Result<Option<i64>, StoreError> {
        let mut first = None;
        self.for_each_row(&q, |row| {
            if first.is_none() {
                first = row.get::<_, Option<i64>>(0)?;
            }
            Ok(())
        })?;
        Ok(first)
    }

    async fn fetch_strings(&mut self, q: SqlBuilder) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        self.for_each_row(&q, |row| {
            found.push(row.get(0)?);
            Ok(())
        })?;
        Ok(found)
    }

    async fn copy_in(&mut self, _: &str, _: &[Vec<Param>]) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A parameter as the sqlx SQLite driver binds it (see `sqlite::arguments`),
/// so that both readers compare against the same stored values.
impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Param::Time(v) => ToSqlOutput::Owned(Value::Integer(v.timestamp_micros())),
            Param::Id(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v.as_bytes())),
            Param::Json(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_str().as_bytes())),
            Param::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Param::Null | Param::NullJson | Param::NullTime | Param::NullId | Param::NullInt => {
                ToSqlOutput::Owned(Value::Null)
            }
        })
    }
}

fn translate(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) if failure.code == rusqlite::ErrorCode::OperationInterrupted => {
            StoreError::TimedOut
        }
        rusqlite::Error::SqliteFailure(failure, _) if super::cannot_serve(failure.extended_code & 0xff) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rusqlite::StatementStatus;
    use serde_json::json;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::types::Json;
    use sqlx::{ConnectOptions, Connection, SqliteConnection};
    use uuid::Uuid;

    use super::*;
    use crate::store::rows::{db_row, Ts};
    use crate::store::sqlite::arguments;

    struct Database {
        dir: tempfile::TempDir,
    }

    impl Database {
        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("t.db")
        }

        /// A sqlx connection, as the store's writes use, in WAL mode.
        async fn sqlx(&self) -> SqliteConnection {
            SqliteConnectOptions::new()
                .filename(self.path())
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .connect()
                .await
                .unwrap()
        }

        fn reader(&self, max_connections: u32) -> Reader {
            let options = ReaderOptions {
                cache_kib: 1024,
                busy_timeout: Duration::from_secs(1),
                max_connections,
                acquire_timeout: Duration::from_millis(200),
                long_reads: LONG_READS,
                statement_timeout: Some(Duration::from_secs(5)),
            };
            Reader::open(&self.path(), options).unwrap()
        }
    }

    const LONG_READS: u32 = 3;

    async fn database() -> (Database, SqliteConnection) {
        let db = Database { dir: tempfile::tempdir().unwrap() };
        let conn = db.sqlx().await;
        (db, conn)
    }

    fn every_kind_of_param() -> Vec<Param> {
        let at = chrono::Utc.timestamp_micros(1_700_000_000_123_456).unwrap();
        vec![
            Param::Text("Åse \\ 'quoted' \t".into()),
            Param::Int(-42),
            Param::Time(at),
            Param::Id(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            Param::json(&json!({"a": [1, "two"], "b": null})).unwrap(),
            Param::Bytes(vec![0, 1, 254, 255]),
            Param::Null,
            Param::NullTime,
            Param::NullJson,
        ]
    }

    #[tokio::test]
    async fn parameters_bind_as_the_sqlx_driver_binds_them() {
        let (db, mut sqlx_conn) = database().await;
        let reader = db.reader(1);
        let mut direct = reader.read().await.unwrap();
        for param in every_kind_of_param() {
            let mut q = SqlBuilder::new(Dialect::Sqlite, "SELECT typeof(");
            q.bind(param.clone()).push(") || ':' || quote(").bind(param.clone()).push(")");
            let through_sqlx: String = sqlx::query_scalar_with(q.sql(), arguments(q.params().to_vec()).unwrap())
                .fetch_one(&mut sqlx_conn)
                .await
                .unwrap();
            let through_rusqlite = direct.fetch_strings(q).await.unwrap();
            assert_eq!(through_rusqlite, vec![through_sqlx], "{param:?}");
        }
    }

    db_row! {
        #[derive(Debug)]
        #[allow(dead_code)] // compared through Debug
        struct EveryKindRow {
            id: Uuid,
            name: String,
            count: i64,
            at: Ts,
            gone_at: Option<Ts>,
            never_at: Option<Ts>,
            doc: Json<serde_json::Value>,
            no_doc: Option<Json<serde_json::Value>>,
            bytes: Vec<u8>,
            r#type: String,
        }
    }

    #[tokio::test]
    async fn rows_decode_as_the_sqlx_driver_decodes_them() {
        let (db, mut sqlx_conn) = database().await;
        sqlx::query(
            "CREATE TABLE every (id BLOB, name TEXT, count INTEGER, at INTEGER, gone_at INTEGER, never_at INTEGER, \
             doc TEXT, no_doc TEXT, bytes BLOB, type TEXT)",
        )
        .execute(&mut sqlx_conn)
        .await
        .unwrap();
        let mut values = every_kind_of_param();
        values.truncate(6); // text, int, time, id, json, bytes
        let [text, int, time, id, doc, bytes] = <[Param; 6]>::try_from(values).unwrap();
        let row = vec![id, text.clone(), int, time.clone(), time, Param::NullTime, doc, Param::NullJson, bytes, text];
        sqlx::query_with("INSERT INTO every VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", arguments(row).unwrap())
            .execute(&mut sqlx_conn)
            .await
            .unwrap();

        let reader = db.reader(1);
        // In field order (decoded by position), and in another order (by name).
        for columns in ["*", "type, bytes, no_doc, doc, never_at, gone_at, at, count, name, id"] {
            let sql = format!("SELECT {columns} FROM every");
            let through_sqlx: Vec<EveryKindRow> = sqlx::query_as(&sql).fetch_all(&mut sqlx_conn).await.unwrap();
            let direct: Vec<EveryKindRow> =
                reader.read().await.unwrap().fetch_all(SqlBuilder::new(Dialect::Sqlite, &sql)).await.unwrap();
            assert_eq!(format!("{direct:?}"), format!("{through_sqlx:?}"), "{columns}");
            assert_eq!(direct.len(), 1);
        }
    }

    #[tokio::test]
    async fn a_read_connection_refuses_writes_and_changes_nothing() {
        let (db, mut sqlx_conn) = database().await;
        sqlx::query("CREATE TABLE t (a INTEGER)").execute(&mut sqlx_conn).await.unwrap();
        let reader = db.reader(1);
        let mut direct = reader.read().await.unwrap();
        let insert = SqlBuilder::new(Dialect::Sqlite, "INSERT INTO t VALUES (1)");
        assert!(matches!(direct.execute(insert).await, Err(StoreError::Unavailable(_))));
        let count = direct.fetch_i64(SqlBuilder::new(Dialect::Sqlite, "SELECT count(*) FROM t")).await.unwrap();
        assert_eq!(count, Some(0));
    }

    #[tokio::test]
    async fn reads_see_what_was_committed_before_them() {
        let (db, mut sqlx_conn) = database().await;
        sqlx::query("CREATE TABLE t (a INTEGER)").execute(&mut sqlx_conn).await.unwrap();
        let reader = db.reader(1);
        let count = || async {
            reader
                .read()
                .await
                .unwrap()
                .fetch_i64(SqlBuilder::new(Dialect::Sqlite, "SELECT count(*) FROM t"))
                .await
                .unwrap()
        };
        assert_eq!(count().await, Some(0));
        let mut tx = sqlx_conn.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *tx).await.unwrap();
        assert_eq!(count().await, Some(0), "not before the commit");
        tx.commit().await.unwrap();
        assert_eq!(count().await, Some(1));
    }

    #[tokio::test]
    async fn at_most_max_connections_are_open_and_a_closed_reader_refuses_reads() {
        let (db, _sqlx_conn) = database().await;
        let reader = db.reader(2);
        let first = reader.read().await.unwrap();
        let _second = reader.read().await.unwrap();
        assert!(matches!(reader.read().await, Err(StoreError::Unavailable(_))), "a third waits, then times out");
        drop(first);
        let third = reader.read().await.expect("one came back");
        reader.close();
        assert!(matches!(reader.read().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(reader.long_read_slot("T00000001").await, Err(StoreError::Unavailable(_))));
        drop(third);
        assert!(reader.0.idle.lock().unwrap().is_empty(), "connections are not kept after close");
    }

    #[tokio::test]
    async fn long_reads_get_the_slots_configured() {
        let (db, _sqlx_conn) = database().await;
        let reader = db.reader(8);
        let mut slots = Vec::new();
        for account in 0..LONG_READS {
            slots.push(reader.long_read_slot(&format!("T{account:08}")).await.unwrap());
        }
        assert!(
            matches!(reader.long_read_slot("T99999999").await, Err(StoreError::Unavailable(_))),
            "one more waits, then times out"
        );
        let _point_read = reader.read().await.expect("point reads need no slot");
        slots.pop();
        let _slot = reader.long_read_slot("T99999999").await.expect("a slot came back");
    }

    /// SQLite built with STAT4 compiles a statement again on the first step
    /// after a bind when its samples might change the plan, which made every
    /// list query parse and plan anew (see .cargo/config.toml).
    #[tokio::test]
    async fn prepared_statements_are_not_compiled_again_after_a_bind() {
        let (db, mut sqlx_conn) = database().await;
        for statement in [
            "CREATE TABLE t (account TEXT, name TEXT)",
            "CREATE INDEX t_account_name ON t (account, name)",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO t SELECT CASE WHEN i % 100 = 0 THEN 'small' ELSE 'big' END, 'n' || i FROM n",
            "ANALYZE",
        ] {
            sqlx::query(statement).execute(&mut sqlx_conn).await.unwrap();
        }
        let reader = db.reader(1);
        let direct = reader.read().await.unwrap();
        let sql = "SELECT count(*) FROM t WHERE account = ? AND name >= ?";
        for (account, low) in [("big", "n1"), ("small", "n5"), ("big", "n9"), ("small", "n")] {
            let mut statement = direct.conn().prepare_cached(sql).unwrap();
            let _: i64 = statement.query_row((account, low), |row| row.get(0)).unwrap();
        }
        let statement = direct.conn().prepare_cached(sql).unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}
