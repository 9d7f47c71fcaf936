//! Issue 5 §8 and §10: the limits that protect the service from slow,
//! greedy and guessing clients — header read timeout, request timeout, rate
//! limits with `Retry-After`, and the lock-out of repeated failed token
//! requests. Each test runs on both backends.

use std::time::{Duration, Instant};

use customers::domain::ids::{AccountId, Scope};
use customers::http::throttle::RateLimit;
use customers::HttpLimits;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp, ACCOUNT};

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_header_read_timeout() {
    let limits = HttpLimits { header_read_timeout: Duration::from_millis(500), ..HttpLimits::default() };
    for backend in BACKENDS {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_time_limit_get_a_json_503() {
    // Checking a secret (Argon2) takes far longer than 2 ms.
    let limits = HttpLimits { request_timeout: Duration::from_millis(2), ..HttpLimits::default() };
    for backend in BACKENDS {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_per_client() {
    let limits = HttpLimits { rate_limit: Some(RateLimit { per_second: 1, burst: 3 }), ..HttpLimits::default() };
    for backend in BACKENDS {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_token_requests_lock_the_client_id_out() {
    for backend in BACKENDS {
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
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, _) = attempt(secret).await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: the lock-out ends");
    }
}
