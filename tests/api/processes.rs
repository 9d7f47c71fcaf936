//! Real operating-system processes: three
//! `customers serve` processes on one PostgreSQL database keep its rules,
//! servers started together on an empty database make one first client, and
//! SIGTERM under load finishes what is in flight, refuses new connections
//! and exits 0.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::helpers::{binary, cli_admin_token, run_json, Backend, Receiver, ServeProcess, TestDatabase, ACCOUNT};

/// A fresh database, migrated by `customers migrate` (as a fleet's release
/// step does) so that servers can start with `--no-migrate`.
async fn migrated(backend: Backend) -> TestDatabase {
    let db = TestDatabase::create(backend).await;
    let migrated = binary().args(["migrate", "--database", &db.url]).output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    db
}

/// A GET's JSON answer.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Sends `count` requests built by `request(i, base_of_server_i % n)` at
/// once, spread over the servers, and returns (status, body) in order.
async fn spread<F>(servers: &[ServeProcess], count: usize, request: F) -> Vec<(StatusCode, Value)>
where
    F: Fn(usize, &ServeProcess) -> reqwest::RequestBuilder,
{
    let sends = (0..count).map(|i| {
        let builder = request(i, &servers[i % servers.len()]);
        async move {
            let response = builder.send().await.expect("request");
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    futures::future::join_all(sends).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_on_one_postgres_keep_uniqueness_sequences_and_merges() {
    let db = migrated(Backend::Postgres).await;
    let token = cli_admin_token(&db.url, ACCOUNT);
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServeProcess::start(&db.url, &["--no-migrate"]).await);
    }
    let client = reqwest::Client::new();
    let post =
        |server: &ServeProcess, body: Value| client.post(server.users_url(ACCOUNT)).bearer_auth(&token).json(&body);

    // One email, 30 creates: exactly one wins.
    let replies =
        spread(&servers, 30, |i, s| post(s, json!({"customer_id": format!("e{i}"), "email": "same@example.com"})))
            .await;
    assert_eq!(replies.iter().filter(|(status, _)| *status == StatusCode::OK).count(), 1, "{replies:?}");
    for (status, body) in replies.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert_eq!((*status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("duplicate_email")));
    }

    // One Idempotency-Key, 9 retries: one customer, one id.
    let replies =
        spread(&servers, 9, |_, s| post(s, json!({"email": "once@example.com"})).header("idempotency-key", "k")).await;
    assert!(
        replies.iter().all(|(status, body)| *status == StatusCode::OK && body["id"] == replies[0].1["id"]),
        "{replies:?}"
    );

    // Sequence ids: 30 creates get 1..=30, numbered in creation order.
    let settings = format!("{}/v1/accounts/{ACCOUNT}/customers/settings", servers[0].base);
    let put = client.put(settings).bearer_auth(&token).json(&json!({"users": {"customer_id_format": "sequence"}}));
    assert_eq!(put.send().await.unwrap().status(), StatusCode::OK);
    let replies = spread(&servers, 30, |_, s| post(s, json!({}))).await;
    let mut created: Vec<(chrono::DateTime<chrono::Utc>, i64)> = replies
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            (
                body["created_at"].as_str().unwrap().parse().unwrap(),
                body["customer_id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    created.sort();
    let numbers: Vec<i64> = created.iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, (1..=30).collect::<Vec<i64>>(), "distinct, gap-free and in creation order");

    // Metadata merges: 30 updates of one customer, each a different key.
    assert_eq!(post(&servers[0], json!({"customer_id": "m"})).send().await.unwrap().status(), StatusCode::OK);
    let replies = spread(&servers, 30, |i, s| {
        client
            .put(format!("{}/m", s.users_url(ACCOUNT)))
            .bearer_auth(&token)
            .json(&json!({"metadata": {format!("k{i}"): i}}))
    })
    .await;
    assert!(replies.iter().all(|(status, _)| *status == StatusCode::OK), "{replies:?}");
    let merged = get_json(&client, &format!("{}/m", servers[2].users_url(ACCOUNT)), &token).await;
    assert_eq!(merged["metadata"].as_object().unwrap().len(), 30, "no update lost: {}", merged["metadata"]);

    for server in &servers {
        server.terminate();
    }
    for server in servers {
        assert!(server.wait().await.success());
    }
}

both_backends! {
    /// Servers started at once on a database without API clients create one
    /// first client between them, not one each: the check and the insert are
    /// one transaction that the database serialises.
    async fn servers_started_together_on_an_empty_database_bootstrap_one_client(backend: Backend) {
        let db = migrated(backend).await;
        let starts = (0..4).map(|_| ServeProcess::start_with_stdout(&db.url, &["--no-migrate"], Stdio::piped()));
        let servers = futures::future::join_all(starts).await;
        let mut printed_credentials = 0;
        for mut server in servers {
            server.terminate();
            let mut stdout = server.child.stdout.take().unwrap();
            let output = tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
            })
            .await
            .unwrap()
            .unwrap();
            printed_credentials += output.matches("client_secret:").count();
            assert!(server.wait().await.success(), "{backend:?}");
        }
        let clients = db.query_text("SELECT client_id FROM api_clients", &[]).await;
        assert_eq!(clients.len(), 1, "{backend:?}: {clients:?}");
        assert_eq!(printed_credentials, 1, "{backend:?}: one process prints the one client");
    }
}

both_backends! {
    /// The same rule at the store, where the attempts can be made to overlap:
    /// sixteen at once through two stores (two processes' pools), one insert.
    async fn concurrent_first_client_inserts_store_one(backend: Backend) {
        let db = TestDatabase::create(backend).await;
        let stores = [db.open().await, db.open().await];
        let account = customers::domain::ids::AccountId::parse(ACCOUNT).unwrap();
        // One Argon2 hash for all: the attempts differ by client id only.
        let (record, _) = customers::auth::new_client(&account, &[], None, None).unwrap();
        let attempts = (0..16).map(|i| {
            let store = stores[i % 2].clone();
            let record = customers::store::ClientRecord { client_id: format!("client-{i}"), ..record.clone() };
            async move { store.insert_first_client(record).await.unwrap() }
        });
        let inserted = futures::future::join_all(attempts).await;
        assert_eq!(inserted.iter().filter(|&&done| done).count(), 1, "{backend:?}: {inserted:?}");
        assert_eq!(db.query_text("SELECT client_id FROM api_clients", &[]).await.len(), 1, "{backend:?}");
    }
}

both_backends! {
    async fn sigterm_under_load_finishes_requests_in_flight_and_exits_0(backend: Backend) {
        let db = TestDatabase::create(backend).await;
        let token = cli_admin_token(&db.url, ACCOUNT);
        let server = ServeProcess::start(&db.url, &[]).await;
        let users = server.users_url(ACCOUNT);

        // A request in flight: its headers and half its body are sent.
        let body = json!({"customer_id": "in-flight", "first_name": "Ada"}).to_string();
        let (head, tail) = body.split_at(body.len() / 2);
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut in_flight = tokio::net::TcpStream::connect(&address).await.unwrap();
        let path = users.split_once(&address).unwrap().1;
        let headers = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        in_flight.write_all(headers.as_bytes()).await.unwrap();
        in_flight.write_all(head.as_bytes()).await.unwrap();

        // Load: four clients creating customers until the server is gone.
        let load = (0..4).map(|worker| {
            let (users, token) = (users.clone(), token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let id = format!("w{worker}-{i}");
                    let sent = client.post(&users).bearer_auth(&token).json(&json!({"customer_id": id})).send().await;
                    match sent {
                        Ok(response) if response.status() == StatusCode::OK => acknowledged.push(id),
                        Ok(response) => panic!("{id}: {} during shutdown", response.status()),
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        });
        let load: Vec<_> = load.collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        server.terminate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "{backend:?}: new connections are refused");
        in_flight.write_all(tail.as_bytes()).await.unwrap();
        let mut answer = String::new();
        in_flight.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{backend:?}: the request in flight completed: {answer}");
        let status = server.wait().await;
        assert!(status.success(), "{backend:?}: exit {status}");

        let mut acknowledged = vec!["in-flight".to_owned()];
        for worker in load {
            acknowledged.extend(worker.await.unwrap());
        }
        assert!(acknowledged.len() > 4, "{backend:?}: the load ran");
        let store = db.open().await;
        let account = customers::domain::ids::AccountId::parse(ACCOUNT).unwrap();
        for id in &acknowledged {
            assert!(
                store.get_customer(&account, id).await.unwrap().is_some(),
                "{backend:?}: acknowledged {id} is stored"
            );
        }
        store.close().await;
    }
}

/// A token for `account` with customer and webhook scopes, from the CLI.
fn cli_hooks_token(database_url: &str) -> String {
    let args = ["tokens", "issue", "--database", database_url, "--account", ACCOUNT, "--subject", "cli-admin"];
    let issued = run_json(&[&args[..], &["--scopes", "admin:customers admin:hooks"]].concat());
    issued["access_token"].as_str().expect("access_token").to_owned()
}

/// Flags of serve processes delivering to the tests' loopback receivers.
const DELIVERING: [&str; 6] =
    ["--webhooks-allow-private", "--webhooks-timeout", "1s", "--webhooks-retry-delays", "100ms", "--no-migrate"];

async fn subscribe(server: &ServeProcess, token: &str, receiver: &Receiver) {
    let url = format!("{}/v1/accounts/{ACCOUNT}/hooks/subscriptions", server.base);
    let body = json!({"config": {"url": receiver.url(), "secret": "0123456789abcdef"}, "events": ["*"]});
    let reply = reqwest::Client::new().post(url).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_deliver_every_event_once_in_order_per_customer() {
    let db = migrated(Backend::Postgres).await;
    let token = cli_hooks_token(&db.url);
    let receiver = Receiver::ok().await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServeProcess::start(&db.url, &DELIVERING).await);
    }
    subscribe(&servers[0], &token, &receiver).await;
    let client = reqwest::Client::new();
    // 20 customers, each created and updated twice, through all three servers.
    for round in 0..3 {
        let replies = spread(&servers, 20, |i, s| {
            let body = json!({"customer_id": format!("c{i}"), "metadata": {"round": round}});
            if round == 0 {
                client.post(s.users_url(ACCOUNT)).bearer_auth(&token).json(&body)
            } else {
                client.put(format!("{}/c{i}", s.users_url(ACCOUNT))).bearer_auth(&token).json(&body)
            }
        })
        .await;
        assert!(replies.iter().all(|(status, _)| *status == StatusCode::OK), "{replies:?}");
    }
    receiver.wait_for(Duration::from_secs(30), |r| r.len() >= 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.requests().into_iter().map(|r| r.json()).collect::<Vec<_>>();
    let mut ids: Vec<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), received.len()), (60, 60), "every event, each once");
    for i in 0..20 {
        let seqs: Vec<i64> = received
            .iter()
            .filter(|e| e["customer_id"] == format!("c{i}"))
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.len() == 3 && seqs.windows(2).all(|w| w[0] < w[1]), "c{i} in order: {seqs:?}");
    }
}

both_backends! {
    async fn a_server_killed_with_deliveries_in_flight_loses_none(backend: Backend) {
        let db = migrated(backend).await;
        let token = cli_hooks_token(&db.url);
        // Each answer takes 300 ms: deliveries are in flight when the server dies.
        let receiver = Receiver::start(std::sync::Arc::new(|_| (200, Duration::from_millis(300)))).await;
        let mut first = ServeProcess::start(&db.url, &DELIVERING).await;
        subscribe(&first, &token, &receiver).await;
        let client = reqwest::Client::new();
        for i in 0..20 {
            let reply = client.post(first.users_url(ACCOUNT)).bearer_auth(&token).json(&json!({"customer_id": format!("c{i}")})).send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
        }
        receiver.wait_for(Duration::from_secs(10), |r| !r.is_empty()).await;
        first.child.kill().unwrap();
        first.child.wait().unwrap();
        let _second = ServeProcess::start(&db.url, &DELIVERING).await;
        let all = receiver
            .wait_for(Duration::from_secs(30), |r| {
                let mut ids: Vec<String> = r.iter().map(|r| r.json()["customer_id"].as_str().unwrap().to_owned()).collect();
                ids.sort();
                ids.dedup();
                ids.len() == 20
            })
            .await;
        assert!(all.len() >= 20, "at least once");
    }
}

both_backends! {
    async fn sigterm_finishes_the_deliveries_in_flight_before_exiting(backend: Backend) {
        let db = migrated(backend).await;
        let token = cli_hooks_token(&db.url);
        // The receiver takes a second to answer; the timeout allows three.
        let receiver = Receiver::start(std::sync::Arc::new(|_| (200, Duration::from_secs(1)))).await;
        let flags = ["--webhooks-allow-private", "--webhooks-timeout", "3s", "--no-migrate"];
        let server = ServeProcess::start(&db.url, &flags).await;
        subscribe(&server, &token, &receiver).await;
        let client = reqwest::Client::new();
        let reply = client.post(server.users_url(ACCOUNT)).bearer_auth(&token).json(&json!({"customer_id": "c1"})).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        receiver.wait_for(Duration::from_secs(10), |r| !r.is_empty()).await;
        server.terminate();
        assert!(server.wait().await.success(), "exit 0 after the delivery in flight");
        // The attempt was recorded before the exit: a new server lists it delivered.
        let again = ServeProcess::start(&db.url, &flags).await;
        let url = format!("{}/v1/accounts/{ACCOUNT}/hooks/subscriptions", again.base);
        let hooks = get_json(&client, &url, &token).await;
        let deliveries = get_json(&client, &format!("{url}/{}/deliveries", hooks[0]["id"].as_str().unwrap()), &token).await;
        assert_eq!(deliveries[0]["status"], "delivered", "{deliveries}");
        assert_eq!(deliveries[0]["attempts"][0]["status_code"], 200);
        assert_eq!(receiver.requests().len(), 1, "sent once");
    }
}
