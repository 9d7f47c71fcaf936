//! §3: every failure answers the JSON error shape, with the right status,
//! and changes nothing.

use customers::http::HttpLimits;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

async fn raw(
    app: &TestApp,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> crate::helpers::Reply {
    let mut request = app.client.request(method, url).bearer_auth(app.admin());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON error body");
    crate::helpers::Reply { status, headers, body }
}

both_backends! {
    async fn malformed_requests_get_json_errors_and_change_nothing(app: &TestApp) {
        let users = app.users_url();
        let cases = [
            (Method::POST, users.clone(), Some("application/json"), "{\"first_name\": ", StatusCode::BAD_REQUEST, "invalid_json"),
            (Method::POST, users.clone(), Some("application/json"), "[1,2]", StatusCode::BAD_REQUEST, "validation_error"),
            (Method::POST, users.clone(), Some("text/plain"), "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (Method::POST, users.clone(), None, "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (Method::PATCH, users.clone(), None, "", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (Method::GET, app.url("/v1/nowhere"), None, "", StatusCode::NOT_FOUND, "not_found"),
            (Method::GET, app.url("/v1/accounts/X123/customers/users"), None, "", StatusCode::BAD_REQUEST, "invalid_account_id"),
            (Method::GET, format!("{users}?limit=abc"), None, "", StatusCode::BAD_REQUEST, "validation_error"),
            (Method::POST, format!("{users}?dry_run=true"), Some("application/json"), "{}", StatusCode::BAD_REQUEST, "validation_error"),
        ];
        for (method, url, content_type, body, status, code) in cases {
            let reply = raw(app, method.clone(), &url, content_type, body).await;
            assert_eq!((reply.status, reply.code()), (status, code), "{method} {url} {body}");
            assert!(reply.body["error"]["message"].is_string());
        }
        assert_eq!(app.row_count().await, 0);
    }

    async fn head_is_405_until_enabled_in_settings(app: &TestApp) {
        let reply = app.client.head(format!("{}?email=a%40x.io", app.users_url())).bearer_auth(app.admin()).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    async fn customer_ids_in_paths_are_taken_literally(app: &TestApp) {
        app.create(json!({"customer_id": "with space/and slash"})).await;
        let reply = app.get(&app.user_url("with%20space%2Fand%20slash")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["customer_id"], "with space/and slash");
    }
}

both_backends! {
    async fn oversized_bodies_get_413(backend: Backend) {
        let limits = HttpLimits { body_limit: 1024, ..HttpLimits::default() };
        let app = TestApp::spawn_with(backend, limits.clone()).await;
        let big = json!({"first_name": "x".repeat(2000)});
        let reply = app.post(&app.users_url(), &big).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{backend:?}");
        assert_eq!(reply.code(), "payload_too_large");
        assert_eq!(app.row_count().await, 0);
    }
}

both_backends! {
    async fn nul_characters_anywhere_are_a_400_not_a_500(app: &TestApp) {
        let bodies = [
            json!({"first_name": "a\u{0}b"}),
            json!({"metadata": {"k": "a\u{0}b"}}),
            json!({"metadata": {"a\u{0}b": 1}}),
            json!({"attributes": {"k": ["x", "a\u{0}b"]}}),
            json!({"type": "company", "company": {"bussiness_name": "a\u{0}b"}}),
            json!({"enrolled_by": {"type": "a\u{0}b", "value": "v"}}),
        ];
        for body in bodies {
            let reply = app.post(&app.users_url(), &body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        }
        for query in ["search=a%00b", "email=a%00", "phone_number=%00", "attributes_keys=%00"] {
            let reply = app.get(&format!("{}?{query}", app.users_url())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {}", reply.body);
        }
        let reply = app.get(&app.user_url("a%00b")).await;
        assert!(reply.status.is_client_error(), "{}", reply.status);
        assert_eq!(app.row_count().await, 0);
    }
}
