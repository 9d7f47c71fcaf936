//! §8: settings (and what they change about customers) and terms.

use customers::domain::ids::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT};

fn settings_url(app: &TestApp) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings"))
}

fn terms_url(app: &TestApp) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/terms"))
}

async fn put_settings(app: &TestApp, settings: Value) {
    let reply = app.put(&settings_url(app), &settings).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

both_backends! {
    async fn settings_start_at_defaults_and_are_replaced_whole(app: &TestApp) {
        let defaults = app.get(&settings_url(app)).await;
        assert_eq!(defaults.status, StatusCode::OK);
        assert_eq!(defaults.body["users"]["head"]["enabled"], false);
        assert_eq!(defaults.body["users"]["customer_id_format"], "uuid");

        let invalid = app.put(&settings_url(app), &json!({"auto_tokens": {"email": [{"type": "HMAC-SHA256"}]}})).await;
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert_eq!(invalid.body["error"]["errors"][0]["field"], "auto_tokens.email[0].secret");
        let typo = app.put(&settings_url(app), &json!({"users": {"haed": {}}})).await;
        assert_eq!(typo.status, StatusCode::BAD_REQUEST);

        put_settings(app, json!({"users": {"head": {"enabled": true}},
            "auto_tokens": {"email": [{"type": "HMAC-SHA256", "secret": "0123456789abcdef"}]}})).await;
        let admin_view = app.get(&settings_url(app)).await.body;
        assert_eq!(admin_view["users"]["head"]["enabled"], true);
        assert_eq!(admin_view["auto_tokens"]["email"][0]["secret"], "0123456789abcdef");

        let public = app.token(&[Scope::Public]);
        let public_view = app.send(Method::GET, &settings_url(app), Some(&public), None).await;
        assert_eq!(public_view.status, StatusCode::OK);
        assert!(public_view.body["auto_tokens"]["email"][0].get("secret").is_none(), "{}", public_view.body);
        let reader = app.token(&[Scope::Read]);
        let reader_view = app.send(Method::GET, &settings_url(app), Some(&reader), None).await;
        assert!(reader_view.body["auto_tokens"]["email"][0].get("secret").is_none(), "{}", reader_view.body);
        let denied = app.send(Method::PUT, &settings_url(app), Some(&reader), Some(&json!({}))).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        // A writer replaces the settings whole, so it reads them whole.
        let writer = app.token(&[Scope::Write]);
        let writer_view = app.send(Method::GET, &settings_url(app), Some(&writer), None).await;
        assert_eq!(writer_view.status, StatusCode::OK, "{}", writer_view.body);
        assert_eq!(writer_view.body["auto_tokens"]["email"][0]["secret"], "0123456789abcdef");
    }

    async fn head_answers_by_settings_and_matches(app: &TestApp) {
        app.create(json!({"customer_id": "h1", "email": "Head@X.io", "phone_number": "+4712345678"})).await;
        let head = |query: &'static str, token: String| async move {
            app.client.head(format!("{}?{query}", app.users_url())).bearer_auth(token).send().await.unwrap().status()
        };
        assert_eq!(head("email=head%40x.io", app.admin()).await, StatusCode::METHOD_NOT_ALLOWED);
        put_settings(app, json!({"users": {"head": {"enabled": true}}})).await;
        let public = app.token(&[Scope::Public]);
        assert_eq!(head("email=HEAD%40x.io", public.clone()).await, StatusCode::OK);
        assert_eq!(head("phone_number=%2B4712345678", public.clone()).await, StatusCode::OK);
        assert_eq!(head("email=head%40x.io&phone_number=%2B4700000000", public.clone()).await, StatusCode::NOT_FOUND);
        assert_eq!(head("email=other%40x.io", public.clone()).await, StatusCode::NOT_FOUND);
        assert_eq!(head("", public.clone()).await, StatusCode::BAD_REQUEST);
        app.delete(&app.user_url("h1")).await;
        assert_eq!(head("email=head%40x.io", public).await, StatusCode::NOT_FOUND);
    }

    async fn sequence_ids_are_distinct_and_increasing_under_concurrency(app: &TestApp) {
        put_settings(app, json!({"users": {"customer_id_format": "sequence"}})).await;
        app.create(json!({"customer_id": "100"})).await;
        let creates = (0..20).map(|_| async { app.post(&app.users_url(), &json!({})).await });
        let replies = futures::future::join_all(creates).await;
        let mut numbers: Vec<i64> = replies
            .iter()
            .map(|r| {
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                r.body["customer_id"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        numbers.sort();
        assert_eq!(numbers, (101..=120).collect::<Vec<i64>>());
        // Creation order and number order agree.
        let mut by_time: Vec<(String, i64)> = replies.iter()
            .map(|r| (r.body["created_at"].as_str().unwrap().to_owned(), r.body["customer_id"].as_str().unwrap().parse().unwrap()))
            .collect();
        by_time.sort();
        assert!(by_time.windows(2).all(|w| w[0].1 < w[1].1), "{by_time:?}");
    }

    async fn phone_duplicates_follow_the_setting(app: &TestApp) {
        put_settings(app, json!({"users": {"phone_number_validation": {"allow_duplicates": true}}})).await;
        app.create(json!({"customer_id": "a", "phone_number": "+4755555555"})).await;
        app.create(json!({"customer_id": "b", "phone_number": "+4755555555"})).await;
        let strict = json!({"users": {"phone_number_validation": {"allow_duplicates": false}}});
        let refused = app.put(&settings_url(app), &strict).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.body["error"]["errors"][0]["code"], "duplicates_exist");
        assert_eq!(app.get(&settings_url(app)).await.body["users"]["phone_number_validation"]["allow_duplicates"], true,
            "a refused settings change changes nothing");
        app.delete(&app.user_url("b")).await;
        put_settings(app, strict).await;
        let dup = app.post(&app.users_url(), &json!({"customer_id": "c", "phone_number": "+4755555555"})).await;
        assert_eq!(dup.code(), "duplicate_phone_number");
    }

    async fn attributes_follow_their_types_and_private_ones_stay_private(app: &TestApp) {
        put_settings(app, json!({"attributes": [
            {"name": "visits", "type": "integer"},
            {"name": "stores", "type": "string", "multiple_values": true},
            {"name": "score", "type": "real", "private": true}
        ]})).await;
        let bad = app.post(&app.users_url(), &json!({"attributes": {"visits": "many", "stores": "oslo"}})).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let mut fields: Vec<&str> = bad.body["error"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        fields.sort();
        assert_eq!(fields, ["attributes.stores", "attributes.visits"]);

        let me = app.create(json!({"customer_id": "me", "attributes": {"visits": 3, "stores": ["oslo"], "score": 0.7, "free": "x"}})).await;
        let token = app.token_for(ACCOUNT, me["id"].as_str().unwrap(), &[Scope::User]);
        let seen = app.send(Method::GET, &app.user_url("me"), Some(&token), None).await;
        assert_eq!(seen.body["attributes"], json!({"visits": 3, "stores": ["oslo"], "free": "x"}));

        let sneaky = app.send(Method::PUT, &app.user_url("me"), Some(&token), Some(&json!({"attributes": {"score": 1.0}}))).await;
        assert_eq!(sneaky.status, StatusCode::BAD_REQUEST);
        let replaced = app.send(Method::PUT, &app.user_url("me"), Some(&token), Some(&json!({"attributes": {"visits": 4}}))).await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
        assert_eq!(replaced.body["attributes"], json!({"visits": 4}));
        assert_eq!(app.get(&app.user_url("me")).await.body["attributes"], json!({"visits": 4, "score": 0.7}),
            "the private attribute survives a replace by the customer");
    }

    async fn terms_are_created_listed_paged_and_deleted(app: &TestApp) {
        let mut ids = Vec::new();
        for i in 0..3 {
            let reply = app.post(&terms_url(app), &json!({"terms": format!("Terms v{i}")})).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            ids.push(reply.body["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(app.post(&terms_url(app), &json!({"terms": ""})).await.status, StatusCode::BAD_REQUEST);
        let public = app.token(&[Scope::Public]);
        let first = app.send(Method::GET, &format!("{}?limit=2&total=true", terms_url(app)), Some(&public), None).await;
        assert_eq!(first.header("total-count"), Some("3"));
        let texts: Vec<&str> = first.body.as_array().unwrap().iter().map(|t| t["terms"].as_str().unwrap()).collect();
        assert_eq!(texts, ["Terms v2", "Terms v1"]);
        assert!(first.header("link").unwrap().contains(&format!("starting_after={}", ids[1])));
        let one = app.get(&format!("{}/{}", terms_url(app), ids[0])).await;
        assert_eq!(one.body["terms"], "Terms v0");

        // A customer's term must name live terms.
        let accepted = json!({"term": {"id": ids[0], "accepted_at": "2026-01-01T00:00:00Z"}});
        assert_eq!(app.post(&app.users_url(), &accepted).await.status, StatusCode::OK);
        let deleted = app.delete(&format!("{}/{}", terms_url(app), ids[0])).await;
        assert!(deleted.body["deleted_at"].is_string());
        assert_eq!(app.get(&format!("{}/{}", terms_url(app), ids[0])).await.code(), "terms_not_found");
        assert_eq!(app.post(&app.users_url(), &accepted).await.status, StatusCode::BAD_REQUEST);
        let all = app.get(&format!("{}?include_deleted=true", terms_url(app))).await;
        assert_eq!(all.body.as_array().unwrap().len(), 3);
        let live = app.get(&terms_url(app)).await;
        assert_eq!(live.body.as_array().unwrap().len(), 2);
    }
}

both_backends! {
    async fn sequence_ids_stay_distinct_across_two_servers(app: &TestApp) {
        put_settings(app, json!({"users": {"customer_id_format": "sequence"}})).await;
        let sibling = app.sibling().await;
        let creates = (0..20).map(|i| {
            let url = if i % 2 == 0 { app.users_url() } else { sibling.rebase(app, &app.users_url()) };
            async move { app.send(Method::POST, &url, Some(&app.admin()), Some(&json!({}))).await }
        });
        let mut numbers: Vec<i64> = futures::future::join_all(creates).await.iter()
            .map(|r| r.body["customer_id"].as_str().unwrap().parse().unwrap())
            .collect();
        numbers.sort();
        assert_eq!(numbers, (1..=20).collect::<Vec<i64>>());
    }
}
