//! §6–§7: customer tokens, auto tokens and token events.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT};

fn tokens_url(app: &TestApp, customer_id: &str) -> String {
    format!("{}/tokens", app.user_url(customer_id))
}

fn events_url(app: &TestApp) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tokens/events"))
}

fn sha256(value: &str) -> String {
    Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

both_backends! {
    async fn tokens_are_added_listed_filtered_and_deleted(app: &TestApp) {
        app.create(json!({"customer_id": "c1"})).await;
        app.create(json!({"customer_id": "c2"})).await;
        let added = app.post(&tokens_url(app, "c1"), &json!({"token_id": "t1", "type": "card", "value": "4111", "metadata": {"brand": "visa"}})).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
        assert_eq!(added.body["token_id"], "t1");
        assert!(uuid::Uuid::parse_str(added.body["id"].as_str().unwrap()).is_ok(), "{}", added.body);
        for i in 0..3 {
            let reply = app.post(&tokens_url(app, "c1"), &json!({"type": "loyalty", "value": format!("L{i}")})).await;
            assert_eq!(reply.status, StatusCode::CREATED);
        }
        let taken = app.post(&tokens_url(app, "c2"), &json!({"type": "card", "value": "4111"})).await;
        assert_eq!(taken.code(), "duplicate_token");
        let same_id = app.post(&tokens_url(app, "c2"), &json!({"token_id": "t1", "type": "card", "value": "5555"})).await;
        assert_eq!(same_id.code(), "duplicate_token_id");
        assert_eq!(app.post(&tokens_url(app, "nobody"), &json!({"type": "x", "value": "y"})).await.status, StatusCode::NOT_FOUND);

        let page = app.get(&format!("{}?type=loyalty&limit=2&total=true", tokens_url(app, "c1"))).await;
        assert_eq!(page.header("total-count"), Some("3"));
        assert_eq!(page.body.as_array().unwrap().len(), 2);
        let next = page.header("link").unwrap().trim_start_matches('<').split('>').next().unwrap().to_owned();
        let rest = app.get(&app.url(&next)).await;
        assert_eq!(rest.body.as_array().unwrap().len(), 1);
        assert!(rest.header("link").is_none());

        assert_eq!(TestApp::ids(&app.list("token_type=card&token_value=4111").await), ["c1"]);
        assert!(TestApp::ids(&app.list("token_type=card&token_value=5555").await).is_empty());

        let deleted = app.delete(&format!("{}/t1", tokens_url(app, "c1"))).await;
        assert_eq!(deleted.status, StatusCode::OK);
        assert!(deleted.body["deleted_at"].is_string());
        assert_eq!(app.delete(&format!("{}/t1", tokens_url(app, "c1"))).await.code(), "token_not_found");
        assert_eq!(app.delete(&format!("{}/t1", tokens_url(app, "nobody"))).await.code(), "customer_not_found");
        assert!(TestApp::ids(&app.list("token_value=4111").await).is_empty());
        let all = app.get(&format!("{}?include_deleted=true&type=card", tokens_url(app, "c1"))).await;
        assert_eq!(all.body.as_array().unwrap().len(), 1);
        // The value is free again.
        assert_eq!(app.post(&tokens_url(app, "c2"), &json!({"type": "card", "value": "4111"})).await.status, StatusCode::CREATED);
    }

    async fn concurrent_claims_of_one_token_leave_one_owner(app: &TestApp) {
        for i in 0..20 {
            app.create(json!({"customer_id": format!("c{i}")})).await;
        }
        let claims = (0..20).map(|i| async move {
            app.post(&tokens_url(app, &format!("c{i}")), &json!({"type": "card", "value": "shared"})).await
        });
        let replies = futures::future::join_all(claims).await;
        let won = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
        let lost = replies.iter().filter(|r| r.code() == "duplicate_token").count();
        assert_eq!((won, lost), (1, 19));
        assert_eq!(TestApp::ids(&app.list("token_value=shared").await).len(), 1);
    }

    async fn auto_tokens_follow_email_and_phone(app: &TestApp) {
        let settings = json!({"auto_tokens": {"email": [{"type": "SHA256"}], "phone_number": [{"type": "SHA256"}]}});
        app.put(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings")), &settings).await;
        app.create(json!({"customer_id": "a", "email": "Ada@X.io", "phone_number": "+4799999999"})).await;
        let tokens = || async move {
            let mut values: Vec<(String, String)> = app.get(&tokens_url(app, "a")).await.body.as_array().unwrap().iter()
                .map(|t| (t["source"].as_str().unwrap_or("").to_owned(), t["value"].as_str().unwrap().to_owned()))
                .collect();
            values.sort();
            values
        };
        assert_eq!(tokens().await, [
            ("email".to_owned(), sha256("ada@x.io")),
            ("phone_number".to_owned(), sha256("+4799999999")),
        ]);
        assert_eq!(TestApp::ids(&app.list(&format!("token_type=SHA256&token_value={}", sha256("ada@x.io"))).await), ["a"]);

        app.put(&app.user_url("a"), &json!({"email": "lovelace@x.io", "phone_number": null})).await;
        assert_eq!(tokens().await, [("email".to_owned(), sha256("lovelace@x.io"))]);

        app.delete(&app.user_url("a")).await;
        let left = app.db.query_text("SELECT CAST(count(*) AS TEXT) FROM customer_tokens WHERE deleted_at IS NULL", &[]).await;
        assert_eq!(left[0].as_deref(), Some("0"), "auto tokens go with the erased data");
    }

    async fn deleting_a_customer_with_delete_tokens_frees_its_tokens(app: &TestApp) {
        app.create(json!({"customer_id": "a"})).await;
        app.create(json!({"customer_id": "b"})).await;
        app.post(&tokens_url(app, "a"), &json!({"type": "card", "value": "1"})).await;
        app.delete(&format!("{}?delete_tokens=true", app.user_url("a"))).await;
        assert_eq!(app.post(&tokens_url(app, "b"), &json!({"type": "card", "value": "1"})).await.status, StatusCode::CREATED);
        let bad = app.delete(&format!("{}?delete_tokens=maybe", app.user_url("b"))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }

    async fn token_events_resolve_status_by_owner_then_newest_unexpired(app: &TestApp) {
        let post = |body: Value| async move { app.post(&events_url(app), &body).await };
        let token = json!({"type": "card", "value": "9999"});
        let unknown = post(json!({"token": token})).await;
        assert_eq!(unknown.status, StatusCode::OK, "{}", unknown.body);
        assert_eq!(unknown.body["status"], "UNKNOWN");
        assert_eq!(unknown.body["id"], "card:9999");

        app.put(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings")),
            &json!({"tokens": {"event_expiry": [{"status": "BLOCKED", "time_to_live": 3600}]}})).await;
        let blocked = post(json!({"token": token, "event": {"event": "fraud", "status": "BLOCKED"}})).await;
        assert_eq!(blocked.body["status"], "BLOCKED");
        let event = &blocked.body["events"][0];
        let created: chrono::DateTime<chrono::Utc> = event["created_at"].as_str().unwrap().parse().unwrap();
        let expires: chrono::DateTime<chrono::Utc> = event["expires_at"].as_str().unwrap().parse().unwrap();
        assert_eq!((expires - created).num_seconds(), 3600, "expiry from settings");

        let stale = post(json!({"token": token, "event": {"event": "old", "status": "OK", "expires_at": "2000-01-01T00:00:00Z"}})).await;
        assert_eq!(stale.body["status"], "BLOCKED", "an expired event does not count");
        assert_eq!(stale.body["events"].as_array().unwrap().len(), 3 - 1);

        app.create(json!({"customer_id": "owner", "status": "GOLD"})).await;
        app.post(&tokens_url(app, "owner"), &json!({"token_id": "tok", "type": "card", "value": "9999"})).await;
        let owned = post(json!({"token": token})).await;
        assert_eq!(owned.body["status"], "GOLD");
        assert_eq!(owned.body["customer"]["customer_id"], "owner");
        assert_eq!(owned.body["token"]["token_id"], "tok");
        assert_eq!(owned.body["id"], "tok");

        let since = created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B");
        let listed = app.get(&format!("{}?since_datetime={since}", events_url(app))).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body.as_array().unwrap().len(), 1, "one item per token: {}", listed.body);
        assert_eq!(listed.body[0]["events"].as_array().unwrap().len(), 2);
        assert_eq!(listed.body[0]["status"], "GOLD");

        let cleared = app.send(Method::DELETE, &events_url(app), Some(&app.admin()),
            Some(&json!({"token": {"type": "other", "value": "1"}, "event": {"event": "reset"}}))).await;
        assert_eq!(cleared.status, StatusCode::NO_CONTENT);
        app.send(Method::DELETE, &events_url(app), Some(&app.admin()), Some(&json!({"token": token}))).await;
        let after = post(json!({"token": {"type": "other", "value": "1"}})).await;
        assert_eq!(after.body["status"], "DELETED");
        let gone = app.get(&format!("{}?deleted_since={since}", events_url(app))).await;
        assert_eq!(gone.body.as_array().unwrap().len(), 1, "{}", gone.body);
        assert_eq!(gone.body[0]["events"].as_array().unwrap().len(), 2, "{}", gone.body);
        assert_eq!(app.get(&format!("{}?since_datetime=x", events_url(app))).await.status, StatusCode::BAD_REQUEST);
    }
}

both_backends! {
    async fn adding_a_token_with_delete_token_events_clears_its_history(app: &TestApp) {
        let token = json!({"type": "card", "value": "7777"});
        app.post(&events_url(app), &json!({"token": token, "event": {"event": "seen", "status": "SEEN"}})).await;
        app.create(json!({"customer_id": "c"})).await;
        let added = app.post(&format!("{}?delete_token_events=true", tokens_url(app, "c")), &token).await;
        assert_eq!(added.status, StatusCode::CREATED);
        let detail = app.post(&events_url(app), &json!({"token": token})).await;
        assert_eq!(detail.body["events"], json!([]));
        assert_eq!(detail.body["status"], "UNKNOWN", "an owner without status and no events");
    }

    async fn hmac_auto_tokens_use_the_configured_secret(app: &TestApp) {
        use hmac::{Hmac, Mac};
        let settings = json!({"auto_tokens": {"phone_number": [{"type": "HMAC-SHA256", "secret": "0123456789abcdef"}]}});
        app.put(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings")), &settings).await;
        app.create(json!({"customer_id": "h", "phone_number": "4798765432"})).await;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"+4798765432");
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let listed = app.get(&tokens_url(app, "h")).await;
        assert_eq!(listed.body[0]["type"], "HMAC-SHA256");
        assert_eq!(listed.body[0]["value"], expected);
    }
}
