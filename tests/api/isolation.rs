//! Tenant isolation, endpoint by endpoint. Account A holds a
//! customer with a tag, a token, a token event and terms; account B's admin
//! token then calls every endpoint, once on A's path and once on its own
//! path naming A's records. Always 403 on A's path, never A's data in any
//! answer, and A's records are unchanged afterwards.

use customers::domain::ids::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT, OTHER_ACCOUNT};

/// What identifies account A's data in a response body (B never sends these).
const SECRETS: [&str; 7] = [
    "victim@example.com",
    "+4712345678",
    "vip-secret",
    "a-token-secret",
    "a-event-secret",
    "A's terms",
    "a-hook-secret",
];

/// One call: method, path below `/v1/accounts/{aid}`, body.
type Call = (Method, String, Option<Value>);

fn calls(tag_id: &str, token_id: &str, terms_id: &str, hook_id: &str, delivery_id: &str) -> Vec<Call> {
    let hook = format!("/hooks/subscriptions/{hook_id}");
    let subscription = json!({"config": {"url": "http://127.0.0.1:9/b-hook"}, "events": ["*"]});
    let token = json!({"type": "card", "value": "4111-secret"});
    let user = "/customers/users/victim";
    vec![
        (Method::GET, "/customers/users".into(), None),
        (Method::GET, "/customers/users?search=victim".into(), None),
        (Method::GET, "/customers/users?email=victim%40example.com".into(), None),
        (Method::GET, "/customers/users?token_type=card&token_value=4111-secret".into(), None),
        (Method::HEAD, "/customers/users?email=victim%40example.com".into(), None),
        (Method::POST, "/customers/users".into(), Some(json!({"customer_id": "victim", "email": "b@example.com"}))),
        (Method::GET, user.into(), None),
        (Method::PUT, user.into(), Some(json!({"first_name": "Mallory", "metadata": {"owned": true}}))),
        (Method::POST, format!("{user}/change_customer_id"), Some(json!({"customer_id": "stolen"}))),
        (Method::GET, format!("{user}/tags"), None),
        (Method::PUT, format!("{user}/tags"), Some(json!([tag_id]))),
        (Method::GET, "/customers/tags".into(), None),
        (Method::POST, "/customers/tags".into(), Some(json!({"tag": "b-tag"}))),
        (Method::DELETE, format!("/customers/tags/{tag_id}"), None),
        (Method::GET, format!("{user}/tokens"), None),
        (Method::POST, format!("{user}/tokens"), Some(json!({"type": "card", "value": "5555"}))),
        (Method::DELETE, format!("{user}/tokens/{token_id}"), None),
        (Method::GET, "/customers/tokens/events".into(), None),
        (Method::POST, "/customers/tokens/events".into(), Some(json!({"token": token}))),
        (
            Method::POST,
            "/customers/tokens/events".into(),
            Some(json!({"token": token, "event": {"event": "x", "status": "BLOCKED"}})),
        ),
        (Method::DELETE, "/customers/tokens/events".into(), Some(json!({"token": token}))),
        (Method::GET, "/customers/settings".into(), None),
        (Method::PUT, "/customers/settings".into(), Some(json!({"users": {"customer_id_format": "sequence"}}))),
        (Method::GET, "/customers/terms".into(), None),
        (Method::POST, "/customers/terms".into(), Some(json!({"terms": "B's terms"}))),
        (Method::GET, format!("/customers/terms/{terms_id}"), None),
        (Method::DELETE, format!("/customers/terms/{terms_id}"), None),
        (Method::GET, "/customers/events".into(), None),
        (Method::GET, "/customers/events?customer_id=victim".into(), None),
        (Method::GET, format!("{user}/events"), None),
        (Method::GET, "/hooks/subscriptions".into(), None),
        (Method::POST, "/hooks/subscriptions".into(), Some(subscription.clone())),
        (Method::GET, hook.clone(), None),
        (Method::PUT, hook.clone(), Some(subscription)),
        (Method::POST, format!("{hook}/ping"), None),
        (Method::GET, format!("{hook}/deliveries"), None),
        (Method::POST, format!("{hook}/deliveries/{delivery_id}/redeliver"), None),
        (Method::DELETE, hook, None),
        (Method::DELETE, user.into(), None),
        (Method::DELETE, format!("{user}?delete_tokens=true"), None),
    ]
}

/// Everything account A holds, as its own admin sees it.
async fn snapshot(app: &TestApp, terms_id: &str) -> Vec<Value> {
    let base = app.url(&format!("/v1/accounts/{ACCOUNT}"));
    let mut state = Vec::new();
    for path in [
        "/customers/users/victim",
        "/customers/users/victim/tags",
        "/customers/users/victim/tokens",
        "/customers/tags",
        "/customers/settings",
        "/customers/terms",
        "/customers/events",
        "/customers/users/victim/events",
        "/hooks/subscriptions",
    ] {
        let reader = app.token(&[Scope::Admin, Scope::HooksAdmin]);
        state.push(app.send(Method::GET, &format!("{base}{path}"), Some(&reader), None).await.body);
    }
    state.push(app.get(&format!("{base}/customers/terms/{terms_id}")).await.body);
    let events = app
        .post(&format!("{base}/customers/tokens/events"), &json!({"token": {"type": "card", "value": "4111-secret"}}))
        .await;
    state.push(events.body);
    state
}

both_backends! {
    async fn account_b_reaches_nothing_of_account_a_on_any_endpoint(app: &TestApp) {
        let base_a = app.url(&format!("/v1/accounts/{ACCOUNT}"));
        app.create(json!({"customer_id": "victim", "email": "victim@example.com", "phone_number": "+4712345678"})).await;
        let tag = app.post(&format!("{base_a}/customers/tags"), &json!({"tag": "vip-secret"})).await.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.put(&format!("{base_a}/customers/users/victim/tags"), &json!([tag])).await.status, StatusCode::OK);
        let token = app.post(&format!("{base_a}/customers/users/victim/tokens"), &json!({"type": "card", "value": "4111-secret", "metadata": {"note": "a-token-secret"}})).await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        let token_id = token.body["token_id"].as_str().or(token.body["id"].as_str()).unwrap().to_owned();
        let event = json!({"token": {"type": "card", "value": "4111-secret"}, "event": {"event": "a-event-secret", "status": "SEEN"}});
        assert_eq!(app.post(&format!("{base_a}/customers/tokens/events"), &event).await.status, StatusCode::OK);
        let terms = app.post(&format!("{base_a}/customers/terms"), &json!({"terms": "A's terms"})).await.body["id"].as_str().unwrap().to_owned();
        let hooks_admin = app.token(&[Scope::HooksAdmin]);
        let subscription = json!({"config": {"url": "http://127.0.0.1:9/a-hook-secret"}, "events": ["*"]});
        let hook = app.send(Method::POST, &format!("{base_a}/hooks/subscriptions"), Some(&hooks_admin), Some(&subscription)).await;
        assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
        let hook = hook.body["id"].as_str().unwrap().to_owned();
        let ping = app.send(Method::POST, &format!("{base_a}/hooks/subscriptions/{hook}/ping"), Some(&hooks_admin), None).await;
        let delivery = ping.body["id"].as_str().unwrap().to_owned();
        let before = snapshot(app, &terms).await;

        let intruder = app.token_for(OTHER_ACCOUNT, "intruder", &[Scope::Admin, Scope::HooksAdmin]);
        let base_b = app.url(&format!("/v1/accounts/{OTHER_ACCOUNT}"));
        for (method, path, body) in calls(&tag, &token_id, &terms, &hook, &delivery) {
            let on_a = app.send(method.clone(), &format!("{base_a}{path}"), Some(&intruder), body.as_ref()).await;
            // Even the public reads (settings, terms): a token names its account.
            assert_eq!(on_a.status, StatusCode::FORBIDDEN, "{method} {path} on A's path: {}", on_a.body);
            let on_b = app.send(method.clone(), &format!("{base_b}{path}"), Some(&intruder), body.as_ref()).await;
            for (reply, which) in [(&on_a, "A's path"), (&on_b, "B's path")] {
                let text = reply.body.to_string();
                for secret in SECRETS {
                    assert!(!text.contains(secret), "{method} {path} on {which} shows A's {secret}: {text}");
                }
            }
        }
        assert_eq!(snapshot(app, &terms).await, before, "account A is unchanged");
    }
}
