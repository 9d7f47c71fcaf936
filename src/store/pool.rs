//! The connection pool both backends share. It exists because sqlx's pool
//! pings every connection it takes back: one more round trip to PostgreSQL
//! (or to SQLite's worker thread) per request, which measured 15–30 % of a
//! point read's throughput. This pool takes a connection back without a
//! round trip when it knows the connection's state:
//! - every statement ran to completion (a request dropped mid-statement,
//!   by a timeout or a client hanging up, leaves the connection in an
//!   unknown state: it is closed, not reused);
//! - no transaction is open (one left open, by an error inside a write
//!   flow, is rolled back by a background task before reuse).
//!
//! Connections are opened on demand, at most `max_connections` at a time,
//! and live until they fail, sit idle for the pool's idle timeout (a
//! background task closes them, so a burst's connections do not stay open
//! on the database for good), or the pool closes. One that sat idle for
//! [`CHECK_IDLE_AFTER`] or longer is pinged before it is handed out, and
//! replaced if that fails: a database restarted in a quiet moment costs no
//! request a 503. Under load connections never idle that long, so the
//! check costs nothing there.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{ConnectOptions, Connection, Database, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::PoolOptions;

/// A connection that can run a statement without parameters (the pool's
/// `BEGIN`, `COMMIT` and `ROLLBACK`). Written per driver: sqlx's executor
/// traits are too lifetime-generic to name in a generic bound here.
pub trait RawStatements: Connection {
    fn execute_raw(&mut self, sql: &'static str) -> BoxFuture<'_, Result<(), sqlx::Error>>;
}

macro_rules! raw_statements {
    ($connection:ty) => {
        impl RawStatements for $connection {
            fn execute_raw(&mut self, sql: &'static str) -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async move { Executor::execute(self, sql).await.map(|_| ()) })
            }
        }
    };
}
raw_statements!(SqliteConnection);
raw_statements!(PgConnection);

/// Whether `error` means the connection itself is gone (the database
/// restarted or the network dropped it) rather than that a statement
/// failed: an I/O error, or PostgreSQL's connection-exception (08) and
/// operator-intervention (57P, such as a shutdown) classes. SQLite's codes
/// are plain numbers and never match.
pub fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// How long a connection may sit idle before it is checked on its way out.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

pub struct Pool<DB: Database> {
    shared: Arc<Shared<DB>>,
}

struct Shared<DB: Database> {
    options: <DB::Connection as Connection>::Options,
    /// Idle connections, each with the time it came back.
    idle: Mutex<Vec<(DB::Connection, Instant)>>,
    /// One permit per connection that may be open, idle or leased.
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl<DB: Database> Clone for Pool<DB> {
    fn clone(&self) -> Self {
        Pool { shared: self.shared.clone() }
    }
}

impl<DB> Pool<DB>
where
    DB: Database,
    DB::Connection: RawStatements,
{
    /// Opens one connection at once, so that a wrong URL or an absent
    /// database fails at start-up rather than on the first request.
    pub async fn connect(
        options: <DB::Connection as Connection>::Options,
        pool: &PoolOptions,
    ) -> Result<Self, sqlx::Error> {
        // A bulk import's statements and commits take seconds by design:
        // logged at debug level, not as sqlx's slow-statement warnings.
        let options = if pool.bulk {
            options.log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
        } else {
            options
        };
        let first = options.connect().await?;
        let shared = Shared {
            options,
            idle: Mutex::new(vec![(first, Instant::now())]),
            permits: Arc::new(Semaphore::new(pool.max_connections.max(1) as usize)),
            acquire_timeout: pool.acquire_timeout,
        };
        let shared = Arc::new(shared);
        close_idle_connections(Arc::downgrade(&shared), pool.idle_timeout);
        Ok(Pool { shared })
    }

    /// A connection for this request: an idle one, or a new one while
    /// fewer than `max_connections` are open. Waits at most the acquire
    /// timeout (including the time to connect).
    pub async fn lease(&self) -> Result<Lease<DB>, sqlx::Error> {
        tokio::time::timeout(self.shared.acquire_timeout, self.lease_now())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// A connection with a transaction opened by `statement` (`BEGIN`, or
    /// SQLite's `BEGIN IMMEDIATE`). When the connection turns out to be
    /// broken, nothing has run yet: the idle connections are discarded (see
    /// [`Pool::discard_idle`]) and the transaction opens on a new one.
    pub async fn lease_in_transaction(&self, statement: &'static str) -> Result<Lease<DB>, sqlx::Error> {
        let mut lease = self.lease().await?;
        match lease.begin(statement).await {
            Ok(()) => Ok(lease),
            Err(error) if connection_lost(&error) => {
                drop(lease);
                self.discard_idle();
                let mut lease = self.lease().await?;
                lease.begin(statement).await?;
                Ok(lease)
            }
            Err(error) => Err(error),
        }
    }

    /// Closes every idle connection. Called when a connection was found
    /// broken: its idle siblings most likely broke with it (a database
    /// restart, a dropped network path), and requests should not find that
    /// out one by one. The permits are not held by idle connections, so new
    /// ones open on demand.
    pub fn discard_idle(&self) {
        drop(self.shared.take_idle());
    }

    async fn lease_now(&self) -> Result<Lease<DB>, sqlx::Error> {
        let permit = self.shared.permits.clone().acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let conn = loop {
            let idle = self.shared.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some((mut conn, since)) if since.elapsed() >= CHECK_IDLE_AFTER => {
                    if conn.ping().await.is_ok() {
                        break conn;
                    }
                    // Broken while idle (say, the database restarted): dropped.
                }
                Some((conn, _)) => break conn,
                None => break self.shared.options.connect().await?,
            }
        };
        Ok(Lease {
            conn: Some(conn),
            permit: Some(permit),
            shared: self.shared.clone(),
            settled: true,
            in_transaction: false,
        })
    }

    /// Refuses new leases and closes the idle connections (leased ones
    /// close when they come back).
    pub async fn close(&self) {
        self.shared.permits.close();
        for (conn, _) in self.shared.take_idle() {
            let _ = conn.close().await;
        }
    }
}

/// Closes the connections that sat idle for `timeout` or longer, checking
/// every half `timeout`, until the pool is gone.
fn close_idle_connections<DB>(shared: Weak<Shared<DB>>, timeout: Duration)
where
    DB: Database,
    DB::Connection: RawStatements,
{
    tokio::spawn(async move {
        let mut every = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(pool) = shared.upgrade() else { return };
            let expired = pool.take_idle_since(timeout);
            drop(pool);
            for (conn, _) in expired {
                let _ = conn.close().await;
            }
        }
    });
}

/// A leased connection. It goes back to the pool when dropped, if its state
/// is known (see the module comment).
pub struct Lease<DB: Database>
where
    DB::Connection: RawStatements,
{
    conn: Option<DB::Connection>,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared<DB>>,
    /// False while a statement is in flight.
    settled: bool,
    in_transaction: bool,
}

impl<DB: Database> Lease<DB>
where
    DB::Connection: RawStatements,
{
    /// The connection, for one statement; call [`Lease::settle`] with the
    /// statement's result after it.
    pub fn start(&mut self) -> &mut DB::Connection {
        self.settled = false;
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }

    /// Records how the last statement ended: the connection is reusable if
    /// it ran to an answer (an error the database sent counts as one, unless
    /// it says the connection is going away).
    pub fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.settled = match result {
            Ok(_) => true,
            Err(error) => matches!(error, sqlx::Error::Database(_)) && !connection_lost(error),
        };
    }

    /// Opens a transaction with `statement` (`BEGIN`, or SQLite's `BEGIN
    /// IMMEDIATE`).
    async fn begin(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        self.execute_raw(statement).await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the open transaction, if any.
    pub async fn commit(&mut self) -> Result<(), sqlx::Error> {
        if self.in_transaction {
            self.execute_raw("COMMIT").await?;
            self.in_transaction = false;
        }
        Ok(())
    }

    async fn execute_raw(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        let result = self.start().execute_raw(sql).await;
        self.settle(&result);
        result
    }
}

impl<DB: Database> Drop for Lease<DB>
where
    DB::Connection: RawStatements,
{
    fn drop(&mut self) {
        let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) else { return };
        if !self.settled {
            return; // closed: its state is unknown
        }
        let shared = self.shared.clone();
        if !self.in_transaction {
            shared.put_back(conn);
            return;
        }
        // Rolled back before anyone else may draw it; the permit stays
        // taken until then. Outside a runtime it is simply closed, which
        // rolls back too.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut conn = conn;
                if conn.execute_raw("ROLLBACK").await.is_ok() {
                    shared.put_back(conn);
                }
                drop(permit);
            });
        }
    }
}

impl<DB: Database> Shared<DB> {
    /// Every idle connection, taken out of the pool.
    fn take_idle(&self) -> Vec<(DB::Connection, Instant)> {
        self.idle.lock().map(|mut idle| std::mem::take(&mut *idle)).unwrap_or_default()
    }

    /// The idle connections that came back `timeout` or longer ago, taken
    /// out of the pool; the others stay in their order.
    fn take_idle_since(&self, timeout: Duration) -> Vec<(DB::Connection, Instant)> {
        let Ok(mut idle) = self.idle.lock() else { return Vec::new() };
        let (expired, kept) = std::mem::take(&mut *idle).into_iter().partition(|(_, since)| since.elapsed() >= timeout);
        *idle = kept;
        expired
    }

    fn put_back(&self, conn: DB::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if !self.permits.is_closed() {
                idle.push((conn, Instant::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Postgres, Sqlite};

    // Temporary tables live and die with their connection, so they tell
    // whether a lease got the same connection back or a new one.

    async fn sqlite(max: u32) -> Pool<Sqlite> {
        let options: SqliteConnectOptions = "sqlite::memory:".parse().unwrap();
        Pool::connect(options, &test_options(max)).await.unwrap()
    }

    async fn postgres(max: u32) -> Pool<Postgres> {
        let url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let options: PgConnectOptions = url.parse().unwrap();
        Pool::connect(options, &test_options(max)).await.unwrap()
    }

    /// Long enough that no test's connection times out, short enough that
    /// `closes_connections_idle_too_long` waits little.
    const IDLE_TIMEOUT: Duration = Duration::from_millis(400);

    fn test_options(max: u32) -> PoolOptions {
        PoolOptions {
            max_connections: max,
            acquire_timeout: Duration::from_millis(300),
            idle_timeout: IDLE_TIMEOUT,
            ..PoolOptions::default()
        }
    }

    fn idle_count<DB: Database>(pool: &Pool<DB>) -> usize {
        pool.shared.idle.lock().unwrap().len()
    }

    async fn closes_connections_idle_too_long<DB: Database>(pool: Pool<DB>)
    where
        DB::Connection: RawStatements,
    {
        let (mut a, mut b) = (pool.lease().await.unwrap(), pool.lease().await.unwrap());
        a.execute_raw("SELECT 1").await.unwrap();
        b.execute_raw("SELECT 1").await.unwrap();
        drop((a, b));
        assert_eq!(idle_count(&pool), 2, "both came back");
        let mut kept = pool.lease().await.unwrap();
        tokio::time::sleep(IDLE_TIMEOUT * 2 + Duration::from_millis(100)).await;
        assert_eq!(idle_count(&pool), 0, "the one left idle was closed");
        kept.execute_raw("SELECT 1").await.expect("a leased connection is not touched");
        drop(kept);
        assert_eq!(idle_count(&pool), 1);
        let mut again = pool.lease().await.unwrap();
        again.execute_raw("SELECT 1").await.expect("leases go on after idle connections closed");
    }

    async fn reuses_a_settled_connection<DB: Database>(pool: Pool<DB>)
    where
        DB::Connection: RawStatements,
    {
        let mut first = pool.lease().await.unwrap();
        first.execute_raw("CREATE TEMPORARY TABLE marker (id INTEGER)").await.unwrap();
        drop(first);
        let mut second = pool.lease().await.unwrap();
        second.execute_raw("SELECT * FROM marker").await.expect("the same connection comes back");
    }

    async fn closes_a_connection_left_mid_statement<DB: Database>(pool: Pool<DB>, slow: &'static str)
    where
        DB::Connection: RawStatements,
    {
        let mut first = pool.lease().await.unwrap();
        first.execute_raw("CREATE TEMPORARY TABLE marker (id INTEGER)").await.unwrap();
        // A request cancelled while its statement runs (a timeout, a client
        // hanging up): the statement's future is dropped unfinished.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), first.execute_raw(slow)).await;
        assert!(cancelled.is_err(), "the slow statement must still be running when cancelled");
        drop(first);
        let mut second = pool.lease().await.unwrap();
        assert!(second.execute_raw("SELECT * FROM marker").await.is_err(), "a new connection, not the unsettled one");
    }

    async fn rolls_back_an_abandoned_transaction<DB: Database>(pool: Pool<DB>)
    where
        DB::Connection: RawStatements,
    {
        let mut setup = pool.lease().await.unwrap();
        setup.execute_raw("CREATE TEMPORARY TABLE once (id INTEGER PRIMARY KEY)").await.unwrap();
        setup.begin("BEGIN").await.unwrap();
        setup.execute_raw("INSERT INTO once VALUES (1)").await.unwrap();
        drop(setup); // an error inside a write flow: no commit
        let mut next = pool.lease().await.unwrap();
        next.execute_raw("SELECT * FROM once").await.expect("the rolled-back connection is reused");
        next.execute_raw("INSERT INTO once VALUES (1)").await.expect("the abandoned insert was rolled back");
        next.begin("BEGIN").await.unwrap();
        next.commit().await.expect("a new transaction opens and commits: none was left open");
    }

    async fn times_out_and_closes<DB: Database>(pool: Pool<DB>)
    where
        DB::Connection: RawStatements,
    {
        let held = pool.lease().await.unwrap();
        assert!(matches!(pool.lease().await, Err(sqlx::Error::PoolTimedOut)), "max 1 connection, and it is leased");
        drop(held);
        assert!(pool.lease().await.is_ok(), "free again once returned");
        pool.close().await;
        assert!(matches!(pool.lease().await, Err(sqlx::Error::PoolClosed)));
    }

    /// A statement that runs for seconds on either backend.
    const SQLITE_SLOW: &str =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT count(*) FROM n";
    const POSTGRES_SLOW: &str = "SELECT pg_sleep(5)";

    #[tokio::test]
    async fn sqlite_pool_reuses_settled_connections_only() {
        reuses_a_settled_connection(sqlite(1).await).await;
        closes_a_connection_left_mid_statement(sqlite(1).await, SQLITE_SLOW).await;
        rolls_back_an_abandoned_transaction(sqlite(1).await).await;
        times_out_and_closes(sqlite(1).await).await;
        closes_connections_idle_too_long(sqlite(2).await).await;
    }

    #[tokio::test]
    async fn postgres_pool_reuses_settled_connections_only() {
        reuses_a_settled_connection(postgres(1).await).await;
        closes_a_connection_left_mid_statement(postgres(1).await, POSTGRES_SLOW).await;
        rolls_back_an_abandoned_transaction(postgres(1).await).await;
        times_out_and_closes(postgres(1).await).await;
        closes_connections_idle_too_long(postgres(2).await).await;
    }
}
