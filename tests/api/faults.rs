//! A database that goes away. PostgreSQL is reached through a
//! TCP link the test can cut and restore (to the server this is exactly a
//! database that stopped: open connections die, new ones are refused), and
//! an SQLite file is opened read-only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use customers::domain::ids::{AccountId, Scope};
use customers::store::{self, PoolOptions};
use customers::HttpLimits;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{start_server, Backend, TestApp, TestDatabase, ACCOUNT};

/// A TCP forwarder from a loopback port to `target` that can be cut.
struct Link {
    address: SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Link {
    async fn start(target: &str) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link { address: listener.local_addr().unwrap(), target: target.to_owned(), tasks: Arc::default() };
        link.accept_on(listener);
        link
    }

    fn accept_on(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = TcpStream::connect(&target).await else { continue };
                let pipe = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes every open connection and the listening port.
    async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again.
    async fn restore(&self) {
        let listener = TcpListener::bind(self.address).await.expect("the link's port is free again");
        self.accept_on(listener);
    }

    /// The database "restarts": every open connection dies, new ones work.
    async fn restart(&self) {
        self.cut().await;
        self.restore().await;
    }

    /// `url` with its `host:port` replaced by the link's.
    fn rewrite(&self, url: &str) -> String {
        url.replacen(&self.target, &self.address.to_string(), 1)
    }
}

/// The `host:port` of a `postgres://[user@]host:port/…` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap().to_owned()
}

/// A service on a fresh PostgreSQL database that it reaches through a link
/// the test can cut, with a pool of 4 connections.
async fn behind_a_link(acquire_timeout: Duration) -> (Link, Arc<TestApp>) {
    let mut db = TestDatabase::create(Backend::Postgres).await;
    let link = Link::start(&authority(&db.url)).await;
    db.url = link.rewrite(&db.url);
    let pool = PoolOptions { max_connections: 4, acquire_timeout, ..PoolOptions::default() };
    let app = Arc::new(TestApp::spawn_on(db, HttpLimits::default(), &pool).await);
    (link, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_fast_and_heals_without_losing_acknowledged_writes() {
    let (link, app) = behind_a_link(Duration::from_secs(1)).await;

    // A writer that keeps creating customers through the outage.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let reply = app.post(&app.users_url(), &json!({"customer_id": format!("w-{i}")})).await;
                outcomes.push((format!("w-{i}"), reply.status, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    link.cut().await;
    let started = Instant::now();
    let read = app.get(&app.user_url("w-0")).await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE, "{}", read.body);
    assert_eq!(read.code(), "database_unavailable");
    assert!(read.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(4), "failed fast: {:?}", started.elapsed());
    let ready = app.send(Method::GET, &app.url("/health/ready"), None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let live = app.send(Method::GET, &app.url("/health/live"), None, None).await;
    assert_eq!(live.status, StatusCode::OK, "the process itself is fine");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    link.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app.send(Method::GET, &app.url("/health/ready"), None, None).await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again 15 s after the database came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = writer.await.unwrap();

    let failed = outcomes.iter().filter(|(_, status, _)| *status != StatusCode::OK).count();
    assert!(failed > 0, "the outage was seen: {outcomes:?}");
    for (id, status, took) in &outcomes {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{id}: {status}, only 200 or 503"
        );
        assert!(*took < Duration::from_secs(4), "{id} hung for {took:?}");
    }
    let last = outcomes.iter().rposition(|(_, status, _)| *status != StatusCode::OK).unwrap();
    assert!(outcomes.len() > last + 1, "writes succeed again after the outage: {outcomes:?}");
    for (id, status, _) in &outcomes {
        if *status == StatusCode::OK {
            assert_eq!(app.get(&app.user_url(id)).await.status, StatusCode::OK, "acknowledged {id} was lost");
        }
    }
}

/// PostgreSQL only: an SQLite file has no connection that can break while
/// idle. Without the pool's idle check, each request that drew one of the
/// dead connections answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_broken_while_idle_are_replaced_before_a_request_draws_them() {
    let (link, app) = four_idle_connections_behind_a_link().await;
    link.restart().await;
    tokio::time::sleep(store::CHECK_IDLE_AFTER + Duration::from_millis(200)).await;

    assert_eq!(four_reads(&app).await, [StatusCode::OK; 4], "no request drew a dead connection");
    let create = app.post(&app.users_url(), &json!({"customer_id": "after"})).await;
    assert_eq!(create.status, StatusCode::OK, "{}", create.body);
}

/// A service behind a link (see [`behind_a_link`]) with the customer `kept`
/// and four idle connections.
async fn four_idle_connections_behind_a_link() -> (Link, Arc<TestApp>) {
    let (link, app) = behind_a_link(Duration::from_secs(2)).await;
    app.create(json!({"customer_id": "kept"})).await;
    assert_eq!(four_reads(&app).await, [StatusCode::OK; 4]);
    (link, app)
}

/// Four GETs of the customer `kept` at once (which leaves four idle
/// connections behind); their statuses.
async fn four_reads(app: &TestApp) -> Vec<StatusCode> {
    let url = app.user_url("kept");
    let replies = futures::future::join_all((0..4).map(|_| app.get(&url))).await;
    replies.into_iter().map(|reply| reply.status).collect()
}

/// PostgreSQL only, as above. Here the requests come at once after the
/// restart, before the idle check would ping (as under load): a read that
/// finds its connection broken runs again on a new one, and a write whose
/// `BEGIN` finds it broken opens its transaction on a new one. Without the
/// read's second run one of the four reads answered 503; without the
/// `BEGIN`'s, the create did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_draw_a_connection_broken_under_load_are_answered_on_a_new_one() {
    let (link, app) = four_idle_connections_behind_a_link().await;
    link.restart().await;
    assert_eq!(four_reads(&app).await, [StatusCode::OK; 4], "each read was answered");
    let list = app.get(&format!("{}?limit=10", app.users_url())).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);

    link.restart().await;
    let create = app.post(&app.users_url(), &json!({"customer_id": "after"})).await;
    assert_eq!(create.status, StatusCode::OK, "{}", create.body);
    assert_eq!(app.get(&app.user_url("after")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_serves_reads_and_refuses_writes_with_503() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create(json!({"customer_id": "kept", "first_name": "Ada"})).await;
    let read_only = store::open(&format!("{}?mode=ro", app.db.url), &PoolOptions::default()).await.unwrap();
    let (address, keys, server) = start_server(read_only, HttpLimits::default()).await;
    let account = AccountId::parse(ACCOUNT).unwrap();
    let token = keys.issue(&account, "t", &[Scope::Admin], Duration::from_secs(60)).unwrap();
    let users = format!("http://{address}/v1/accounts/{ACCOUNT}/customers/users");

    let read = app.send(Method::GET, &format!("{users}/kept"), Some(&token), None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let create = app.send(Method::POST, &users, Some(&token), Some(&json!({"customer_id": "new"}))).await;
    assert_eq!(create.status, StatusCode::SERVICE_UNAVAILABLE, "{}", create.body);
    assert_eq!(create.code(), "database_unavailable");
    let update = app.send(Method::PUT, &format!("{users}/kept"), Some(&token), Some(&json!({"first_name": "B"}))).await;
    assert_eq!(update.status, StatusCode::SERVICE_UNAVAILABLE, "{}", update.body);
    server.abort();
    assert_eq!(app.get(&app.user_url("kept")).await.body["first_name"], "Ada");
    assert_eq!(app.row_count().await, 1);
}

/// A search waits for a long-read slot (`--db-long-reads`) before it takes a
/// connection; with none free within the acquire timeout it answers 503
/// instead of piling one more query onto the database. The one slot is held
/// by a search the test stalls behind a table lock; without slots the second
/// search would wait on the lock too and answer 200 once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_search_waits_for_a_long_read_slot() {
    use sqlx::Connection;
    let db = TestDatabase::create(Backend::Postgres).await;
    let pool = PoolOptions { long_reads: 1, acquire_timeout: Duration::from_millis(700), ..PoolOptions::default() };
    let app = Arc::new(TestApp::spawn_on(db, HttpLimits::default(), &pool).await);
    app.create(json!({"customer_id": "ada", "first_name": "Ada"})).await;

    let mut locker = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let stalled = tokio::spawn({
        let app = app.clone();
        async move { app.list("search=ada").await }
    });
    // The first search holds the slot once its query waits on the lock.
    let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'customers'::regclass";
    let started = Instant::now();
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&mut locker).await.unwrap() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the first search never reached the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stalled.is_finished());

    let refused = app.get(&format!("{}?search=ada", app.users_url())).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    assert_eq!(refused.code(), "database_unavailable");

    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let first = stalled.await.unwrap();
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(TestApp::ids(&first), ["ada"]);
    let again = app.list("search=ada").await;
    assert_eq!(again.status, StatusCode::OK, "the slot came back");
}
