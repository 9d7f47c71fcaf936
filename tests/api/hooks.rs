//! §11: webhook subscriptions and deliveries, to real receivers on loopback.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use customers::domain::ids::Scope;
use customers::store::PoolOptions;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{test_worker, Backend, Received, Receiver, Reply, TestApp, TestDatabase, ACCOUNT};

const SECRET: &str = "a-receivers-secret-0123";

fn hooks_url(app: &TestApp, rest: &str) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/hooks/subscriptions{rest}"))
}

fn hooks_token(app: &TestApp) -> String {
    app.token(&[Scope::HooksAdmin])
}

async fn hooks(app: &TestApp, method: Method, rest: &str, body: Option<&Value>) -> Reply {
    app.send(method, &hooks_url(app, rest), Some(&hooks_token(app)), body).await
}

/// Subscribes `url` to `events` with the test secret; returns the id.
async fn subscribe(app: &TestApp, url: &str, events: Value) -> String {
    let reply =
        hooks(app, Method::POST, "", Some(&json!({"config": {"url": url, "secret": SECRET}, "events": events}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Checks both signatures of a delivery, independently of the service's code.
fn assert_signed(request: &Received) {
    let mut sha1 = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    sha1.update(&request.body);
    let hex: String = sha1.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(request.header("event-signature"), hex, "event-signature");
    let (id, timestamp) = (request.header("webhook-id"), request.header("webhook-timestamp"));
    assert_eq!(id, request.json()["id"].as_str().unwrap(), "webhook-id is the event id");
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().expect("a unix timestamp");
    assert!((0..60).contains(&age), "a fresh timestamp: {timestamp}");
    let mut sha256 = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    sha256.update(format!("{id}.{timestamp}.").as_bytes());
    sha256.update(&request.body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(sha256.finalize().into_bytes()));
    assert_eq!(request.header("webhook-signature"), expected, "webhook-signature");
    assert_eq!(request.header("content-type"), "application/json");
}

async fn feed(app: &TestApp) -> Vec<Value> {
    let url = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/events?limit=100"));
    app.get(&url).await.body.as_array().unwrap().clone()
}

fn ids(requests: &[Received]) -> Vec<String> {
    requests.iter().map(|r| r.json()["id"].as_str().unwrap().to_owned()).collect()
}

const WAIT: Duration = Duration::from_secs(15);

both_backends! {
    async fn a_receiver_gets_exactly_the_events_of_the_changes_made_signed(app: &TestApp) {
        let all = Receiver::ok().await;
        let adds = Receiver::ok().await;
        subscribe(app, &all.url(), json!(["*"])).await;
        subscribe(app, &adds.url(), json!(["customer_add"])).await;
        app.create(json!({"customer_id": "c1", "email": "one@example.com"})).await;
        assert_eq!(app.post(&app.users_url(), &json!({"customer_id": "c2", "email": "one@example.com"})).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.put(&app.user_url("c1"), &json!({"first_name": "Ada"})).await.status, StatusCode::OK);
        app.create(json!({"customer_id": "c3"})).await;
        assert_eq!(app.delete(&app.user_url("c1")).await.status, StatusCode::OK);

        let events = feed(app).await;
        assert_eq!(events.len(), 4);
        let got = all.wait_for(WAIT, |r| r.len() >= 4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got_all = all.requests();
        assert_eq!(got_all.len(), 4, "exactly one delivery per event: {:?}", ids(&got_all));
        let mut delivered = ids(&got);
        let mut expected: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
        delivered.sort();
        expected.sort();
        assert_eq!(delivered, expected, "the events of the changes made, none of the one that failed");
        for request in &got_all {
            assert_signed(request);
            let body = request.json();
            let event = events.iter().find(|e| e["id"] == body["id"]).unwrap();
            if body["customer_id"] == "c3" {
                assert_eq!(&body, event, "the body is the event as the API shows it");
            } else {
                // c1's events were erased with c1, perhaps after they were sent.
                for field in ["seq", "event", "customer_id", "created_at", "created_by"] {
                    assert_eq!(body[field], event[field], "{field}");
                }
            }
        }
        // What a receiver's developer runs on a delivery: `customers hooks verify`.
        let delivery = &got_all[0];
        let mut text = String::new();
        for name in ["webhook-id", "webhook-timestamp", "event-signature", "webhook-signature"] {
            text.push_str(&format!("{name}: {}\r\n", delivery.header(name)));
        }
        text.push_str("\r\n");
        let message = [text.as_bytes(), &delivery.body].concat();
        for (secret, verified) in [(SECRET, true), ("not-the-secret-at-all", false)] {
            let mut verify = crate::helpers::binary()
                .args(["hooks", "verify", "--secret", secret])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            verify.stdin.take().unwrap().write_all(&message).unwrap();
            let output = verify.wait_with_output().unwrap();
            assert_eq!(output.status.success(), verified, "{}", String::from_utf8_lossy(&output.stdout));
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(report["verified"], verified);
        }
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("webhook_deliveries_total{outcome=\"delivered\"}"), "{metrics}");
        assert!(metrics.contains("webhook_delivery_lag_seconds"));
        assert!(metrics.contains("webhook_queue_depth"), "the worker reports its queue");

        let got_adds = adds.wait_for(WAIT, |r| r.len() >= 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(adds.requests().len(), 2);
        assert!(got_adds.iter().all(|r| r.json()["event"] == "customer_add"));
    }

    async fn a_failing_receiver_gets_every_event_in_order_per_customer(app: &TestApp) {
        // 500 for the first five calls, then 200.
        let receiver = Receiver::start(Arc::new(|n| (if n < 5 { 500 } else { 200 }, Duration::ZERO))).await;
        let hook = subscribe(app, &receiver.url(), json!(["*"])).await;
        for c in ["a", "b", "c"] {
            app.create(json!({"customer_id": c})).await;
        }
        for i in 0..3 {
            for c in ["a", "b", "c"] {
                assert_eq!(app.put(&app.user_url(c), &json!({"metadata": {"i": i}})).await.status, StatusCode::OK);
            }
        }
        let events = feed(app).await;
        assert_eq!(events.len(), 12);
        let requests = receiver.wait_for(WAIT, |r| r.iter().filter(|r| r.status == 200).count() >= 12).await;
        let delivered: Vec<Value> = requests.iter().filter(|r| r.status == 200).map(Received::json).collect();
        let mut delivered_ids: Vec<&str> = delivered.iter().map(|e| e["id"].as_str().unwrap()).collect();
        delivered_ids.sort();
        delivered_ids.dedup();
        assert_eq!(delivered_ids.len(), 12, "every event arrives");
        for customer in ["a", "b", "c"] {
            let seqs: Vec<i64> = delivered.iter().filter(|e| e["customer_id"] == customer).map(|e| e["seq"].as_i64().unwrap()).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{customer}'s events in order: {seqs:?}");
            assert_eq!(seqs.len(), 4);
        }
        // Each attempt is recorded with its status code (once it has ended:
        // the receiver may have answered before the last was recorded).
        let deadline = std::time::Instant::now() + WAIT;
        let deliveries = loop {
            let reply = hooks(app, Method::GET, &format!("/{hook}/deliveries?limit=100"), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let deliveries = reply.body.as_array().unwrap().clone();
            if deliveries.iter().all(|d| d["status"] == "delivered") || std::time::Instant::now() > deadline {
                break deliveries;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(deliveries.len(), 12);
        let codes: Vec<i64> = deliveries.iter().flat_map(|d| d["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap())).collect();
        assert_eq!(codes.iter().filter(|c| **c == 500).count(), 5, "{codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 12, "{codes:?}");
        assert!(deliveries.iter().all(|d| d["status"] == "delivered"));
        let retried = deliveries.iter().find(|d| d["attempts"].as_array().unwrap().len() > 1).expect("a retried delivery");
        let attempts = retried["attempts"].as_array().unwrap();
        assert_eq!(attempts[0]["status_code"], 500);
        assert!(attempts[0]["duration_ms"].is_u64() && attempts[0]["attempted_at"].is_string());
    }

    async fn gone_turns_a_subscription_off_and_a_redirect_is_a_failure(app: &TestApp) {
        let gone = Receiver::start(Arc::new(|_| (410, Duration::ZERO))).await;
        let moved = Receiver::start(Arc::new(|_| (302, Duration::ZERO))).await;
        let gone_hook = subscribe(app, &gone.url(), json!(["*"])).await;
        let moved_hook = subscribe(app, &moved.url(), json!(["*"])).await;
        app.create(json!({"customer_id": "c1"})).await;
        gone.wait_for(WAIT, |r| !r.is_empty()).await;
        let deadline = std::time::Instant::now() + WAIT;
        let off = loop {
            let reply = hooks(app, Method::GET, &format!("/{gone_hook}"), None).await;
            if reply.body["active"] == false || std::time::Instant::now() > deadline {
                break reply.body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(off["active"], false, "{off}");
        assert!(off["disabled_reason"].as_str().unwrap().contains("410"));
        app.create(json!({"customer_id": "c2"})).await;
        // Redirects are not followed (the Location points elsewhere) and count as failures.
        let requests = moved.wait_for(WAIT, |r| r.len() >= 3).await;
        assert!(requests.iter().all(|r| r.status == 302));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gone.requests().len(), 1, "a subscription turned off gets nothing more");
        let deadline = std::time::Instant::now() + WAIT;
        let first = loop {
            let deliveries = hooks(app, Method::GET, &format!("/{moved_hook}/deliveries"), None).await.body;
            let retried = deliveries.as_array().unwrap().iter().find(|d| d["attempts"].as_array().unwrap().len() >= 2).cloned();
            match retried {
                Some(delivery) => break delivery,
                None => assert!(std::time::Instant::now() < deadline, "no delivery recorded as retried: {deliveries}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(first["attempts"][0]["status_code"], 302);
        let gone_deliveries = hooks(app, Method::GET, &format!("/{gone_hook}/deliveries"), None).await.body;
        assert_eq!(gone_deliveries[0]["status"], "failed");

        // Made active again, it resumes and loses its reason.
        let body = json!({"config": {"url": gone.url()}, "events": ["*"], "active": true});
        let resumed = hooks(app, Method::PUT, &format!("/{gone_hook}"), Some(&body)).await;
        assert_eq!(resumed.body["active"], true);
        assert!(resumed.body.get("disabled_reason").is_none());
        assert_eq!(resumed.body["config"]["signed"], true, "an absent secret keeps the stored one");
    }

    async fn subscriptions_are_managed_and_their_secrets_never_shown(app: &TestApp) {
        let receiver = Receiver::ok().await;
        let id = subscribe(app, &receiver.url(), json!(["customer_add", "customer_update"])).await;
        let got = hooks(app, Method::GET, &format!("/{id}"), None).await;
        assert_eq!(got.body["events"], json!(["customer_add", "customer_update"]));
        assert_eq!(got.body["config"], json!({"url": receiver.url(), "content_type": "application/json", "signed": true}));
        assert_eq!(got.body["active"], true);
        assert_eq!(got.body["created_by"], "test-client");
        let listed = hooks(app, Method::GET, "", None).await;
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        let unsigned = json!({"config": {"url": receiver.url(), "secret": null}, "events": ["*"], "description": "all"});
        let changed = hooks(app, Method::PUT, &format!("/{id}"), Some(&unsigned)).await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        assert_eq!((changed.body["config"]["signed"].clone(), changed.body["events"].clone()), (json!(false), json!(["*"])));
        for reply in [&got, &listed, &changed] {
            assert!(!reply.body.to_string().contains(SECRET), "{}", reply.body);
        }

        // Ping: a `ping` event reaches the target; then redeliver it.
        let ping = hooks(app, Method::POST, &format!("/{id}/ping"), None).await;
        assert_eq!(ping.status, StatusCode::ACCEPTED, "{}", ping.body);
        let requests = receiver.wait_for(WAIT, |r| !r.is_empty()).await;
        assert_eq!(requests[0].json()["event"], "ping");
        assert_eq!(requests[0].json()["id"], ping.body["id"]);
        assert_eq!(requests[0].header("event-signature"), "", "unsigned now");
        let redeliver = hooks(app, Method::POST, &format!("/{id}/deliveries/{}/redeliver", ping.body["id"].as_str().unwrap()), None).await;
        assert_eq!(redeliver.status, StatusCode::ACCEPTED, "{}", redeliver.body);
        let again = receiver.wait_for(WAIT, |r| r.len() >= 2).await;
        assert_eq!(again[1].json()["id"], again[0].json()["id"], "the same event, again");

        // Bad input: 400, nothing stored.
        for body in [
            json!({"config": {"url": "ftp://example.com"}, "events": ["*"]}),
            json!({"config": {"url": receiver.url()}, "events": ["nope"]}),
            json!({"config": {"url": receiver.url(), "secret": "short"}, "events": ["*"]}),
            json!({"config": {"url": receiver.url()}, "events": "customer_add"}),
            json!({"config": {"url": receiver.url()}}),
        ] {
            let reply = hooks(app, Method::POST, "", Some(&body)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        }
        assert_eq!(hooks(app, Method::GET, "", None).await.body.as_array().unwrap().len(), 1);
        for (method, rest) in [
            (Method::GET, "/not-a-uuid".to_owned()),
            (Method::GET, format!("/{}", uuid::Uuid::new_v4())),
            (Method::POST, format!("/{}/ping", uuid::Uuid::new_v4())),
            (Method::GET, format!("/{}/deliveries", uuid::Uuid::new_v4())),
        ] {
            assert_eq!(hooks(app, method, &rest, None).await.code(), "subscription_not_found", "{rest}");
        }
        let missing = hooks(app, Method::POST, &format!("/{id}/deliveries/{}/redeliver", uuid::Uuid::new_v4()), None).await;
        assert_eq!(missing.code(), "delivery_not_found");

        // Scopes: hooks need hooks scopes; readers only read.
        let customers_admin = app.send(Method::GET, &hooks_url(app, ""), Some(&app.admin()), None).await;
        assert_eq!(customers_admin.status, StatusCode::FORBIDDEN);
        let reader = app.token(&[Scope::HooksRead]);
        assert_eq!(app.send(Method::GET, &hooks_url(app, ""), Some(&reader), None).await.status, StatusCode::OK);
        let create = json!({"config": {"url": receiver.url()}, "events": ["*"]});
        assert_eq!(app.send(Method::POST, &hooks_url(app, ""), Some(&reader), Some(&create)).await.status, StatusCode::FORBIDDEN);
        let writer = app.token(&[Scope::HooksWrite]);
        assert_eq!(app.send(Method::POST, &hooks_url(app, ""), Some(&writer), Some(&create)).await.status, StatusCode::CREATED);

        let deleted = hooks(app, Method::DELETE, &format!("/{id}"), None).await;
        assert_eq!(deleted.status, StatusCode::OK);
        assert_eq!(hooks(app, Method::GET, &format!("/{id}"), None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(hooks(app, Method::GET, &format!("/{id}/deliveries"), None).await.status, StatusCode::NOT_FOUND);
    }

    async fn a_slow_receiver_is_retried_and_never_holds_up_another(app: &TestApp) {
        // Slower than the test worker's one-second timeout.
        let slow = Receiver::start(Arc::new(|_| (200, Duration::from_millis(1500)))).await;
        let fast = Receiver::ok().await;
        let slow_hook = subscribe(app, &slow.url(), json!(["*"])).await;
        subscribe(app, &fast.url(), json!(["*"])).await;
        for i in 0..20 {
            app.create(json!({"customer_id": format!("c{i}")})).await;
        }
        let started = std::time::Instant::now();
        fast.wait_for(Duration::from_secs(3), |r| r.len() >= 20).await;
        assert!(started.elapsed() < Duration::from_secs(3), "the fast receiver got all 20 while the slow one timed out");
        slow.wait_for(WAIT, |r| r.len() >= 12).await;
        // Attempts are recorded when they end (past the timeout).
        let deadline = std::time::Instant::now() + WAIT;
        let deliveries = loop {
            let deliveries = hooks(app, Method::GET, &format!("/{slow_hook}/deliveries?limit=100"), None).await.body;
            let tried = deliveries.as_array().unwrap().iter().any(|d| !d["attempts"].as_array().unwrap().is_empty());
            if tried || std::time::Instant::now() > deadline {
                break deliveries;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let timed_out = deliveries.as_array().unwrap().iter()
            .flat_map(|d| d["attempts"].as_array().unwrap().clone())
            .filter(|a| a["error"] == "timed out")
            .count();
        assert!(timed_out >= 1, "attempts past the timeout are recorded as such: {deliveries}");
        assert!(deliveries.as_array().unwrap().iter().any(|d| d["status"] == "pending" && d["next_attempt_at"].is_string()), "and tried again");
    }
}

/// Targets that are not public addresses, refused without the operator's
/// leave — decided on the resolved address, before any connection.
mod private_targets {
    use super::*;

    /// A name other than `localhost` that this machine resolves to loopback.
    fn loopback_name() -> String {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        hosts
            .lines()
            .filter(|line| line.starts_with("127.") || line.starts_with("::1"))
            .flat_map(|line| line.split_whitespace().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .find(|name| name != "localhost" && !name.starts_with('#'))
            .unwrap_or_else(|| "localhost.".to_owned())
    }

    async fn refused(backend: Backend) {
        let worker = customers::webhooks::WorkerConfig { allow_private: false, ..test_worker() };
        let app = TestApp::spawn_with_worker(
            TestDatabase::create(backend).await,
            Default::default(),
            &PoolOptions::default(),
            worker,
        )
        .await;
        let receiver = Receiver::ok().await;
        let port = receiver.address.port();
        for url in [
            format!("http://127.0.0.1:{port}/hooks"),
            format!("http://[::1]:{port}/hooks"),
            format!("http://localhost:{port}/hooks"),
            format!("http://{}:{port}/hooks", loopback_name()),
            format!("http://[::ffff:127.0.0.1]:{port}/hooks"),
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "http://10.0.0.1/hooks".to_owned(),
        ] {
            let reply = hooks(&app, Method::POST, "", Some(&json!({"config": {"url": url}, "events": ["*"]}))).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
            assert_eq!(reply.body["error"]["errors"][0]["code"], "target_not_allowed", "{url}");
        }
        assert!(hooks(&app, Method::GET, "", None).await.body.as_array().unwrap().is_empty());
        app.create(json!({"customer_id": "c1"})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(receiver.requests().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        refused(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        refused(Backend::Postgres).await;
    }
}
