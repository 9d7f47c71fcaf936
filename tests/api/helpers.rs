//! `TestApp`: the real application on a loopback port, on a fresh SQLite file
//! or a fresh PostgreSQL schema, with a reqwest client and ready tokens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use customers::auth::Keys;
use customers::domain::hooks::RetryPolicy;
use customers::domain::ids::{AccountId, Scope};
use customers::http::{AppState, HttpLimits};
use customers::store::{self, PoolOptions, Store};
use customers::webhooks::{Worker, WorkerConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ACCOUNT: &str = "T00000001";
pub const OTHER_ACCOUNT: &str = "T00000002";
pub const ISSUER: &str = "http://customers.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates each test body once per backend, as `mod <name> { fn
/// sqlite(); fn postgres(); }`. A body takes either the app, started on a
/// fresh database of the backend (`async fn t(app: &TestApp)`), or the
/// backend itself, to start what it needs (`async fn t(backend: Backend)`).
#[macro_export]
macro_rules! both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($app:ident: &TestApp) $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($app: &$crate::helpers::TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                    body(&app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await;
                    body(&app).await;
                }
            }
        )*
    };
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($backend: $crate::helpers::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// The PostgreSQL server tests use: `TEST_DATABASE_URL`, else the local one.
pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database for one test: a temp SQLite file, or a PostgreSQL schema that
/// is dropped when the test ends (also when it panics).
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("customers.db").display());
                TestDatabase { backend, url, schema: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let base = postgres_base_url();
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&base).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL tests need a server at {base} (set TEST_DATABASE_URL): {e}")
                });
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create schema");
                admin.close().await;
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                TestDatabase { backend, url, schema: Some(schema), _dir: None }
            }
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        self.open_with(&PoolOptions::default()).await
    }

    pub async fn open_with(&self, pool: &PoolOptions) -> Arc<dyn Store> {
        let store = store::open(&self.url, pool).await.expect("open store");
        store.migrate().await.expect("migrate");
        store
    }

    /// Runs one SQL statement with `$1`-style placeholders bound to `args`
    /// and returns the first column of each row as text.
    pub async fn query_text(&self, sql: &str, args: &[&str]) -> Vec<Option<String>> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let mut q = sqlx::query_scalar::<_, Option<String>>(sql);
                for a in args {
                    q = q.bind(*a);
                }
                let rows = q.fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let mut q = sqlx::query_scalar::<_, Option<String>>(sql);
                for a in args {
                    q = q.bind(*a);
                }
                let rows = q.fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }
}

impl TestDatabase {
    /// Every value of every text-like column of every table of the test's
    /// database (JSON columns as text), for scans after an erasure.
    pub async fn all_text(&self) -> Vec<String> {
        let columns_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND upper(p.type) IN ('TEXT', 'JSON', '')"
            }
            Backend::Postgres => {
                "SELECT table_name || '.' || column_name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND data_type IN ('text', 'jsonb', 'json', 'character varying')"
            }
        };
        let mut values = Vec::new();
        for column in self.query_text(columns_sql, &[]).await.into_iter().flatten() {
            let (table, name) = column.split_once('.').unwrap();
            let sql = format!("SELECT CAST(\"{name}\" AS TEXT) FROM \"{table}\"");
            values.extend(self.query_text(&sql, &[]).await.into_iter().flatten());
        }
        values
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&postgres_base_url()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub db: TestDatabase,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Sibling {
    pub address: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sibling {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sibling {
    /// `url` (made for the first server) pointed at this one.
    pub fn rebase(&self, app: &TestApp, url: &str) -> String {
        url.replace(&app.address.to_string(), &self.address.to_string())
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of a contract error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }
}

/// The application on a loopback port of its own, over `store`; it stops
/// when the handle is aborted.
pub async fn start_server(
    store: Arc<dyn Store>,
    limits: HttpLimits,
) -> (SocketAddr, Arc<Keys>, tokio::task::JoinHandle<()>) {
    start_server_with(store, limits, test_worker()).await
}

/// The webhook worker of test servers: it delivers to the loopback
/// receivers of the tests, tries again after 50 ms, then every 100 ms, and
/// waits a second for an answer.
pub fn test_worker() -> WorkerConfig {
    WorkerConfig {
        timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
            ..Default::default()
        },
        allow_private: true,
        ..Default::default()
    }
}

/// As [`start_server`], with this webhook worker (whose `allow_private`
/// also decides which subscription targets the server accepts).
pub async fn start_server_with(
    store: Arc<dyn Store>,
    limits: HttpLimits,
    worker: WorkerConfig,
) -> (SocketAddr, Arc<Keys>, tokio::task::JoinHandle<()>) {
    let keys = Arc::new(Keys::load_or_create(&*store, ISSUER, Duration::from_secs(600)).await.expect("keys"));
    start_server_with_keys(store, keys, limits, worker).await
}

/// As [`start_server_with`], with the signing keys given.
pub async fn start_server_with_keys(
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    limits: HttpLimits,
    worker: WorkerConfig,
) -> (SocketAddr, Arc<Keys>, tokio::task::JoinHandle<()>) {
    let mut state = AppState::new(store.clone(), keys.clone(), &limits);
    state.private_targets = worker.allow_private;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = customers::app(state, &limits);
    let server = tokio::spawn(async move {
        // Stops with the server task (dropped when it is aborted).
        let _deliveries = Worker::spawn(store, worker).expect("webhook worker");
        let _ = customers::serve(listener, app, &limits, std::future::pending()).await;
    });
    (address, keys, server)
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, HttpLimits::default()).await
    }

    pub async fn spawn_with(backend: Backend, limits: HttpLimits) -> Self {
        Self::spawn_on(TestDatabase::create(backend).await, limits, &PoolOptions::default()).await
    }

    pub async fn spawn_on(db: TestDatabase, limits: HttpLimits, pool: &PoolOptions) -> Self {
        Self::spawn_with_worker(db, limits, pool, test_worker()).await
    }

    pub async fn spawn_with_worker(
        db: TestDatabase,
        limits: HttpLimits,
        pool: &PoolOptions,
        worker: WorkerConfig,
    ) -> Self {
        let store = db.open_with(pool).await;
        let (address, keys, server) = start_server_with(store.clone(), limits, worker).await;
        TestApp { address, client: reqwest::Client::new(), store, keys, db, server }
    }

    /// As [`TestApp::spawn_on`], with signing keys loaded elsewhere: for a
    /// pool under test that need not serve even that read (a statement
    /// limit of a millisecond).
    pub async fn spawn_with_keys(db: TestDatabase, limits: HttpLimits, pool: &PoolOptions, keys: Keys) -> Self {
        let store = db.open_with(pool).await;
        let (address, keys, server) =
            start_server_with_keys(store.clone(), Arc::new(keys), limits, test_worker()).await;
        TestApp { address, client: reqwest::Client::new(), store, keys, db, server }
    }

    /// Another server on the same database, with its own connection pool,
    /// as a second process would be. Stops when the handle drops.
    pub async fn sibling(&self) -> Sibling {
        let (address, _, server) = start_server(self.db.open().await, HttpLimits::default()).await;
        Sibling { address, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn users_url(&self) -> String {
        self.url(&format!("/v1/accounts/{ACCOUNT}/customers/users"))
    }

    pub fn user_url(&self, customer_id: &str) -> String {
        format!("{}/{customer_id}", self.users_url())
    }

    /// A token for the test account with these scopes.
    pub fn token(&self, scopes: &[Scope]) -> String {
        self.token_for(ACCOUNT, "test-client", scopes)
    }

    pub fn admin(&self) -> String {
        self.token(&[Scope::Admin])
    }

    pub fn token_for(&self, account: &str, subject: &str, scopes: &[Scope]) -> String {
        let account = AccountId::parse(account).unwrap();
        self.keys.issue(&account, subject, scopes, Duration::from_secs(600)).unwrap()
    }

    pub async fn send(&self, method: Method, url: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, Some(&self.admin()), None).await
    }

    pub async fn post(&self, url: &str, body: &Value) -> Reply {
        self.send(Method::POST, url, Some(&self.admin()), Some(body)).await
    }

    pub async fn put(&self, url: &str, body: &Value) -> Reply {
        self.send(Method::PUT, url, Some(&self.admin()), Some(body)).await
    }

    pub async fn delete(&self, url: &str) -> Reply {
        self.send(Method::DELETE, url, Some(&self.admin()), None).await
    }

    /// Creates a customer as admin and returns it; panics unless 200.
    pub async fn create(&self, body: Value) -> Value {
        let reply = self.post(&self.users_url(), &body).await;
        assert_eq!(reply.status, StatusCode::OK, "create failed: {}", reply.body);
        reply.body
    }

    /// Lists with a raw query string as admin; panics unless 200.
    pub async fn list(&self, query: &str) -> Reply {
        let reply = self.get(&format!("{}?{query}", self.users_url())).await;
        assert_eq!(reply.status, StatusCode::OK, "list failed: {}", reply.body);
        reply
    }

    /// The `customer_id`s of a list response, in order.
    pub fn ids(reply: &Reply) -> Vec<String> {
        reply.body.as_array().expect("array").iter().map(|c| c["customer_id"].as_str().unwrap().to_owned()).collect()
    }

    /// How many customer rows the account has in the database.
    pub async fn row_count(&self) -> usize {
        let rows =
            self.db.query_text("SELECT CAST(count(*) AS TEXT) FROM customers WHERE account_id = $1", &[ACCOUNT]).await;
        rows[0].as_deref().unwrap().parse().unwrap()
    }
}

/// The `customers` binary, quiet unless something goes wrong.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_customers"));
    command.env("CUSTOMERS_LOG", "warn").env_remove("CUSTOMERS_DATABASE_URL");
    command
}

/// Runs a `customers` subcommand that prints one JSON object.
pub fn run_json(args: &[&str]) -> Value {
    let output = binary().args(args).output().expect("run customers");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// An admin token for `account` from `customers tokens issue` (default issuer).
pub fn cli_admin_token(database_url: &str, account: &str) -> String {
    let args = ["tokens", "issue", "--database", database_url, "--account", account];
    let issued = run_json(&[&args[..], &["--scopes", "admin:customers", "--subject", "cli-admin"]].concat());
    issued["access_token"].as_str().expect("access_token").to_owned()
}

/// A `customers serve` process on a free loopback port.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `serve` on `database_url` and waits until it answers.
    pub async fn start(database_url: &str, extra: &[&str]) -> Self {
        Self::start_with_stdout(database_url, extra, std::process::Stdio::null()).await
    }

    /// As [`ServeProcess::start`], with the process's standard output sent
    /// to `stdout` (a pipe, to read what it printed).
    pub async fn start_with_stdout(database_url: &str, extra: &[&str], stdout: std::process::Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let child = binary()
            .args(["serve", "--listen", &listen, "--database", database_url])
            .args(extra)
            .stdout(stdout)
            .spawn()
            .expect("start customers serve");
        let process = ServeProcess { child, base: format!("http://{listen}") };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{}/health/live", process.base)).send().await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("customers serve did not answer on {listen} within 5 s");
    }

    pub fn users_url(&self, account: &str) -> String {
        format!("{}/v1/accounts/{account}/customers/users", self.base)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Waits (at most 30 s) for the process to exit and returns its status.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "customers serve did not exit within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver on a loopback port: it records every request and
/// answers what `answer` says for the n-th call (0-based): a status code,
/// after an optional pause.
pub struct Receiver {
    pub address: SocketAddr,
    pub received: Arc<std::sync::Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// What a receiver does with its n-th call.
pub type Answer = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

impl Receiver {
    /// A receiver that answers 200 at once.
    pub async fn ok() -> Self {
        Self::start(Arc::new(|_| (200, Duration::ZERO))).await
    }

    pub async fn start(answer: Answer) -> Self {
        use axum::body::Bytes;
        use axum::http::HeaderMap;
        let received: Arc<std::sync::Mutex<Vec<Received>>> = Arc::default();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let log = received.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (log, calls, answer) = (log.clone(), calls.clone(), answer.clone());
            async move {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (status, pause) = answer(n);
                let mut copied = reqwest::header::HeaderMap::new();
                for (name, value) in &headers {
                    copied.insert(
                        reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                        reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                    );
                }
                // Recorded on arrival: a sender that gives up during the
                // pause drops the connection, and this future with it.
                log.lock().unwrap().push(Received { headers: copied, body: body.to_vec(), status });
                tokio::time::sleep(pause).await;
                let code = axum::http::StatusCode::from_u16(status).unwrap();
                let location = [(axum::http::header::LOCATION, "http://127.0.0.1:9/elsewhere")];
                (code, location, "")
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { address, received, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `done` holds for the requests so far.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver waited {within:?} in vain; it got {} requests",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
