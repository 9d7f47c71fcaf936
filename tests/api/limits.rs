//! The limits that protect the service from slow, silent, greedy and
//! guessing clients: first-byte, header read and idle timeouts, the
//! connection cap, the request timeout, rate limits with `Retry-After`, the
//! per-address limit on token requests and the lock-out of repeated failed
//! ones. Each test runs on both backends.

use std::time::{Duration, Instant};

use customers::auth::Keys;
use customers::domain::ids::{AccountId, Scope};
use customers::http::throttle::RateLimit;
use customers::HttpLimits;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use customers::store::{ImportRow, OnRejected, PoolOptions};

use crate::both_backends;
use crate::helpers::{TestApp, TestDatabase, ACCOUNT, ISSUER};

both_backends! {
    async fn slow_headers_are_cut_off_at_the_header_read_timeout(backend: Backend) {
        let limits = HttpLimits { header_read_timeout: Duration::from_millis(500), ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let mut slow = tokio::net::TcpStream::connect(app.address).await.unwrap();
        slow.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let started = Instant::now();
        // Meanwhile other clients are served.
        let live = app.send(Method::GET, &app.url("/health/live"), None, None).await;
        assert_eq!(live.status, StatusCode::OK);
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "{backend:?}: the slow connection is still open after 5 s");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400), "{backend:?}: closed before the timeout ({waited:?})");
        let answer = String::from_utf8_lossy(&buffer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{backend:?}: {answer}");
    }
}

both_backends! {
    async fn requests_over_the_time_limit_get_a_json_503(backend: Backend) {
        // Checking a secret (Argon2) takes far longer than 2 ms.
        let limits = HttpLimits { request_timeout: Duration::from_millis(2), ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let token_url = app.url(&format!("/v1/accounts/{ACCOUNT}/auth/token"));
        let response = app.client.post(token_url).basic_auth("someone", Some("guess")).json(&json!({})).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{backend:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "service_unavailable");
        let live = app.send(Method::GET, &app.url("/health/live"), None, None).await;
        assert_eq!(live.status, StatusCode::OK, "quick requests still pass");
    }
}

both_backends! {
    async fn rate_limits_answer_429_with_retry_after_per_client(backend: Backend) {
        let limits = HttpLimits { rate_limit: Some(RateLimit { per_second: 1, burst: 3 }), ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let greedy = app.token_for(ACCOUNT, "greedy", &[Scope::Admin]);
        for _ in 0..3 {
            let reply = app.send(Method::GET, &app.users_url(), Some(&greedy), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{backend:?}");
        }
        let refused = app.send(Method::GET, &app.users_url(), Some(&greedy), None).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{backend:?}");
        assert_eq!(refused.code(), "rate_limited");
        let wait: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&wait), "{backend:?}: Retry-After {wait}");
        let refused_write = app.send(Method::POST, &app.users_url(), Some(&greedy), Some(&json!({}))).await;
        assert_eq!(refused_write.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(app.row_count().await, 0, "a refused request changes nothing");

        let polite = app.token_for(ACCOUNT, "polite", &[Scope::Admin]);
        let other = app.send(Method::GET, &app.users_url(), Some(&polite), None).await;
        assert_eq!(other.status, StatusCode::OK, "{backend:?}: each client has its own budget");

        // Calls without credentials share their address's budget.
        let settings = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings"));
        let anonymous: Vec<_> = futures::future::join_all((0..4).map(|_| app.send(Method::GET, &settings, None, None)))
            .await
            .into_iter()
            .map(|reply| reply.status)
            .collect();
        assert_eq!(anonymous.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 1, "{anonymous:?}");
        let health = app.send(Method::GET, &app.url("/health/ready"), None, None).await;
        assert_eq!(health.status, StatusCode::OK, "probes are not limited");
    }
}

both_backends! {
    async fn repeated_failed_token_requests_lock_the_client_id_out(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let account = AccountId::parse(ACCOUNT).unwrap();
        let (client, secret) =
            customers::auth::create_client(&*app.store, &account, &[Scope::Admin], None, None).await.unwrap();
        let token_url = app.url(&format!("/v1/accounts/{ACCOUNT}/auth/token"));
        let body = json!({"grant_type": "client_credentials", "audience": format!("https://x/v1/accounts/{ACCOUNT}")});
        let attempt = |secret: String| {
            let request = app.client.post(&token_url).basic_auth(&client.client_id, Some(secret)).json(&body);
            async move {
                let response = request.send().await.unwrap();
                (response.status(), response.headers().get("retry-after").cloned())
            }
        };
        for i in 0..6 {
            let (status, _) = attempt(format!("guess-{i}")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}: guess {i}");
        }
        let (status, retry_after) = attempt(secret.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{backend:?}: locked out, even with the right secret");
        assert_eq!(retry_after.unwrap(), "1");
        // The lock-out is of this client id from this address: its owner,
        // calling from elsewhere, still gets a token.
        let elsewhere = from_address("127.0.0.2");
        let response = elsewhere.post(&token_url).basic_auth(&client.client_id, Some(&secret)).json(&body).send();
        assert_eq!(response.await.unwrap().status(), StatusCode::OK, "{backend:?}: another address is not locked out");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, _) = attempt(secret).await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: the lock-out ends");
    }
}

/// A client whose connections come from `ip` (another loopback address).
fn from_address(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

both_backends! {
    async fn token_requests_are_limited_per_address_whatever_client_id_they_name(backend: Backend) {
        let limits = HttpLimits { token_rate_limit: RateLimit { per_second: 1, burst: 3 }, ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let token_url = app.url(&format!("/v1/accounts/{ACCOUNT}/auth/token"));
        let body = json!({"grant_type": "client_credentials", "audience": format!("https://x/v1/accounts/{ACCOUNT}")});
        let attempt = |client: &reqwest::Client, i: usize| {
            let request = client.post(&token_url).basic_auth(format!("client_{i}"), Some("x")).json(&body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, retry_after, body)
            }
        };
        for i in 0..3 {
            let (status, _, body) = attempt(&app.client, i).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}: try {i}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("invalid client credentials"), "{backend:?}: {message}");
        }
        for i in 3..5 {
            let (status, retry_after, body) = attempt(&app.client, i).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{backend:?}: a new client id is no new budget");
            assert_eq!(body["error"]["code"], "rate_limited");
            assert!(retry_after.is_some(), "{backend:?}: Retry-After");
        }
        let (status, _, _) = attempt(&from_address("127.0.0.2"), 5).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}: another address has its own budget");
    }
}

/// Reads until the server closes the connection (or `within` passes):
/// whether it closed, and what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut received)).await.is_ok();
    (closed, received)
}

both_backends! {
    async fn silent_and_idle_connections_are_closed(backend: Backend) {
        let limits = HttpLimits {
            first_byte_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(800),
            ..HttpLimits::default()
        };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let started = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(app.address).await.unwrap();
        let (closed, _) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(closed, "{backend:?}: a connection that never sent a byte is still open after 5 s");
        assert!(started.elapsed() >= Duration::from_millis(250), "{backend:?}: closed before the timeout");

        // HTTP/1.1 keep-alive: answered, then closed once idle.
        let mut keep_alive = tokio::net::TcpStream::connect(app.address).await.unwrap();
        keep_alive.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let (closed, received) = read_until_closed(&mut keep_alive, Duration::from_secs(5)).await;
        assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"), "{backend:?}: answered first");
        assert!(closed, "{backend:?}: an idle keep-alive connection is still open after 5 s");

        // HTTP/2 (prior knowledge): the preface and settings, then nothing.
        let mut http2 = tokio::net::TcpStream::connect(app.address).await.unwrap();
        http2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        let (closed, received) = read_until_closed(&mut http2, Duration::from_secs(5)).await;
        assert!(!received.is_empty(), "{backend:?}: the server spoke HTTP/2 first");
        assert!(closed, "{backend:?}: an idle HTTP/2 connection is still open after 5 s");
    }
}

both_backends! {
    async fn at_the_connection_cap_the_longest_idle_are_shed_and_health_still_answers(backend: Backend) {
        let limits = HttpLimits { max_connections: 16, ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let mut silent = Vec::new();
        for _ in 0..40 {
            silent.push(tokio::net::TcpStream::connect(app.address).await.unwrap());
            // One at a time, so that "the longest idle" is well defined.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fresh = reqwest::Client::new();
        let live = tokio::time::timeout(Duration::from_secs(5), fresh.get(app.url("/health/live")).send()).await;
        assert_eq!(live.expect("answered within 5 s").unwrap().status(), StatusCode::OK, "{backend:?}");
        let (oldest, newest) = silent.split_at_mut(10);
        for stream in oldest {
            let (closed, _) = read_until_closed(stream, Duration::from_secs(2)).await;
            assert!(closed, "{backend:?}: the oldest silent connections make room");
        }
        let (closed, _) = read_until_closed(newest.last_mut().unwrap(), Duration::from_millis(200)).await;
        assert!(!closed, "{backend:?}: the newest connection is kept");
    }
}

both_backends! {
    async fn attribute_filters_above_their_cap_are_refused_before_the_database_sees_them(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let keys = |n: usize| (0..n).map(|i| format!("attributes_keys=k{i}")).collect::<Vec<_>>().join("&");
        let ten = app.get(&format!("{}?{}", app.users_url(), keys(10))).await;
        assert_eq!(ten.status, StatusCode::OK, "{backend:?}: ten keys are within the cap");
        for n in [11, 100, 999] {
            let reply = app.get(&format!("{}?{}", app.users_url(), keys(n))).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{backend:?}: {n} keys");
            assert_eq!(reply.body["error"]["errors"][0]["field"], "attributes_keys", "{backend:?}");
            assert_eq!(reply.body["error"]["errors"][0]["code"], "too_many_values", "{backend:?}");
        }
    }
}

both_backends! {
    async fn a_read_past_the_statement_time_limit_is_stopped_by_the_database_and_answers_503(backend: Backend) {
        let account = AccountId::parse(ACCOUNT).unwrap();
        let db = TestDatabase::create(backend).await;
        let seeding = db.open().await;
        let rows = (0..20_000u64)
            .map(|i| {
                let data =
                    serde_json::from_value(json!({"first_name": format!("Anna{i}"), "email": format!("a{i}@x.io")}));
                ImportRow::new(i + 1, format!("c{i}"), data.unwrap())
            })
            .collect();
        let mut import = seeding.batch_import(&account, "test", OnRejected::KeepTheRest);
        import.write(vec![rows]).await.unwrap();
        import.commit().await.unwrap();
        drop(import);
        let keys = Keys::load_or_create(&*seeding, ISSUER, Duration::from_secs(600)).await.unwrap();
        seeding.close().await;
        let pool = PoolOptions { statement_timeout: Some(Duration::from_millis(1)), ..PoolOptions::default() };
        let app = TestApp::spawn_with_keys(db, HttpLimits::default(), &pool, keys).await;
        let reply = app.get(&format!("{}?search=ann&total=true", app.users_url())).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{backend:?}: {}", reply.body);
        assert_eq!(reply.code(), "query_timeout", "{backend:?}");
    }
}

both_backends! {
    /// Values an index holds are bounded in bytes, so PostgreSQL never sees an
    /// index entry over its 2,704-byte limit (these answered 500 there), and
    /// both backends refuse the same input with a 400 naming the field.
    async fn values_an_index_holds_are_bounded_in_bytes_on_both_backends(backend: Backend) {
        let astral = |n: usize| "𝔄".repeat(n);
        let app = TestApp::spawn(backend).await;
        let refused = [
            (json!({"first_name": astral(700)}), "first_name"),
            (json!({"last_name": "字".repeat(880)}), "last_name"),
            (json!({"attributes": {"note": "x".repeat(2_800)}}), "attributes.note"),
            (json!({"attributes": {"many": (0..16_384).collect::<Vec<_>>()}}), "attributes"),
        ];
        for (body, field) in refused {
            let reply = app.post(&app.users_url(), &body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{backend:?} {field}: {}", reply.body);
            assert_eq!(reply.body["error"]["errors"][0]["field"], field, "{backend:?}");
            let message = reply.body["error"]["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("1000"), "{backend:?} {field}: the limit is named: {message}");
        }
        assert_eq!(app.row_count().await, 0, "{backend:?}: nothing was written");
        // At the limits, both backends store them.
        let at_limit = json!({"customer_id": "big", "first_name": astral(250), "last_name": "x".repeat(1000),
            "attributes": {"note": "y".repeat(1000), "many": (0..999).collect::<Vec<_>>()}});
        let created = app.post(&app.users_url(), &at_limit).await;
        assert_eq!(created.status, StatusCode::OK, "{backend:?}: {}", created.body);

        let tokens_url = format!("{}/tokens", app.user_url("big"));
        let token = app.post(&tokens_url, &json!({"type": "card", "value": astral(1000)})).await;
        assert_eq!(token.status, StatusCode::BAD_REQUEST, "{backend:?}: {}", token.body);
        assert_eq!(token.body["error"]["errors"][0]["field"], "value");
        let events_url = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tokens/events"));
        let event = app
            .post(&events_url, &json!({"token": {"type": astral(500), "value": "v"}, "event": {"event": "e"}}))
            .await;
        assert_eq!(event.status, StatusCode::BAD_REQUEST, "{backend:?}: {}", event.body);
        assert_eq!(event.body["error"]["errors"][0]["field"], "token.type");
        let fits = app.post(&tokens_url, &json!({"type": astral(250), "value": astral(250)})).await;
        assert_eq!(fits.status, StatusCode::CREATED, "{backend:?}: {}", fits.body);
    }
}

both_backends! {
    /// A connection that never sent a byte holds nothing to finish: the
    /// server stops without waiting out its first-byte timeout.
    async fn shutdown_does_not_wait_for_silent_connections(backend: Backend) {
        let db = TestDatabase::create(backend).await;
        let store = db.open().await;
        let keys = std::sync::Arc::new(
            customers::auth::Keys::load_or_create(&*store, crate::helpers::ISSUER, Duration::from_secs(60)).await.unwrap(),
        );
        let limits = HttpLimits { first_byte_timeout: Duration::from_secs(20), ..HttpLimits::default() };
        let app = customers::app(customers::AppState::new(store, keys, &limits), &limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            customers::serve(listener, app, &limits, async { stopped.await.unwrap_or(()) }).await
        });
        let _silent = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        stop.send(()).unwrap();
        let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(finished.is_ok(), "{backend:?}: the server still waits for a silent connection after 5 s");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
