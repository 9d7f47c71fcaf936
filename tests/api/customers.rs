//! §4.1–§4.2: create, get, update, delete, change_customer_id.

use customers::domain::ids::Scope;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, OTHER_ACCOUNT};

both_backends! {
    async fn create_returns_the_stored_customer_with_server_fields(app: &TestApp) {
        let created = app.create(json!({
            "customer_id": "c1", "first_name": "Ada", "last_name": "Lovelace",
            "email": "ada@example.com", "phone_number": "+4799999999",
            "date_of_birth": "1815-12-10", "metadata": {"source": "test"},
            "addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO", "type": "home"}],
            "marketing_consent": {"email": {"consent": true}},
            "enrolled_by": {"type": "store", "value": "oslo-1"}
        })).await;
        assert_eq!(created["customer_id"], "c1");
        assert_eq!(created["type"], "customer");
        assert_eq!(created["created_by"], "test-client");
        assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());
        assert_eq!(created["created_at"], created["updated_at"]);
        assert!(created["marketing_consent"]["email"]["updated_at"].is_string());
        assert!(created.get("deleted_at").is_none());
        assert!(created.get("gender").is_none(), "fields without a value are left out");

        let fetched = app.get(&app.user_url("c1")).await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.body, created);
    }

    async fn reads_answer_every_value_as_it_was_written(app: &TestApp) {
        // GET and list pages copy the stored document into the answer,
        // unlike create, which serialises the parsed value: both must say
        // the same.
        let created = app.create(json!({
            "customer_id": "raw-1", "first_name": "Zoë \"Q\" \\ ", "last_name": "tab\there\nnext",
            "email": "zoe@example.com", "gender": "ø",
            "metadata": {"float": 0.1, "big": 12345678901234i64, "tiny": -1.5e-7, "unicode": "ß→✓ \u{1F600}",
                "nested": {"list": [1, "two", null, false, {"deep": []}]}, "empty": {}},
            "attributes": {"z": "last", "a": true},
            "addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO",
                "latitude": 59.9139, "longitude": -10.75}],
        })).await;
        let url = app.user_url("raw-1");
        let fetched = app.get(&url).await;
        assert_eq!(fetched.body, created);
        assert_eq!(fetched.header("content-type"), Some("application/json"));
        let listed = app.list("search=raw-").await;
        assert_eq!(listed.body, json!([created]));
        assert_eq!(listed.header("content-type"), Some("application/json"));

        let text = app.client.get(&url).bearer_auth(app.admin()).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("\": ") && !text.contains(", \""), "no whitespace between members: {text}");
        // The document is kept as written, in the contract's field order: a
        // read answers the very bytes create answered.
        let body = json!({"customer_id": "raw-2", "last_name": "Ørn", "first_name": "Åse", "email": "a@x.io",
            "metadata": {"b": 1, "a": [true], "tiny": -1.5e-7}, "phone_number": "+4791234567"});
        let posted = app.client.post(app.users_url()).bearer_auth(app.admin()).json(&body).send().await.unwrap();
        let answered = posted.text().await.unwrap();
        let read = app.client.get(app.user_url("raw-2")).bearer_auth(app.admin()).send().await.unwrap();
        assert_eq!(read.text().await.unwrap(), answered);

        if app.db.backend == Backend::Postgres {
            // A document stored while the column was jsonb (before migration
            // 0006) is jsonb's rendering: it reads compact, and as before.
            let converted = app.db.query_text(
                "UPDATE customers SET doc = CAST(CAST(doc AS JSONB) AS TEXT) WHERE customer_id = $1 RETURNING doc",
                &["raw-1"],
            ).await;
            assert!(converted[0].as_deref().is_some_and(|doc| doc.contains("\": ")), "{converted:?}");
            let text = app.client.get(&url).bearer_auth(app.admin()).send().await.unwrap().text().await.unwrap();
            assert!(!text.contains("\": ") && !text.contains(", \""), "no whitespace between members: {text}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), created);
            assert_eq!(app.list("search=raw-1").await.body, json!([created]));
        }
    }

    async fn create_without_customer_id_generates_one(app: &TestApp) {
        let created = app.create(json!({"first_name": "Anon"})).await;
        let generated = created["customer_id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
        assert_eq!(app.get(&app.user_url(generated)).await.status, StatusCode::OK);
    }

    async fn duplicate_customer_id_is_rejected_even_after_delete(app: &TestApp) {
        app.create(json!({"customer_id": "dup"})).await;
        let again = app.post(&app.users_url(), &json!({"customer_id": "dup"})).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.code(), "duplicate_customer_id");
        assert_eq!(again.body["error"]["errors"][0]["field"], "customer_id");

        assert_eq!(app.delete(&app.user_url("dup")).await.status, StatusCode::OK);
        let after_delete = app.post(&app.users_url(), &json!({"customer_id": "dup"})).await;
        assert_eq!(after_delete.code(), "duplicate_customer_id");
    }

    async fn duplicate_email_differing_only_in_case_is_rejected(app: &TestApp) {
        app.create(json!({"customer_id": "a", "email": "a@x.io"})).await;
        let dup = app.post(&app.users_url(), &json!({"customer_id": "b", "email": "A@X.IO"})).await;
        assert_eq!(dup.status, StatusCode::BAD_REQUEST);
        assert_eq!(dup.code(), "duplicate_email");
        assert_eq!(app.row_count().await, 1, "a failed create writes nothing");
        // Uniqueness is per type: a contact may share the address.
        app.create(json!({"customer_id": "c", "email": "A@x.io", "type": "contact", "contact_for": [{"customer_id": "a"}]})).await;
    }

    async fn duplicate_phone_number_is_rejected_until_the_owner_is_deleted(app: &TestApp) {
        app.create(json!({"customer_id": "a", "phone_number": "+4711111111"})).await;
        let dup = app.post(&app.users_url(), &json!({"customer_id": "b", "phone_number": "+4711111111"})).await;
        assert_eq!(dup.code(), "duplicate_phone_number");
        app.delete(&app.user_url("a")).await;
        app.create(json!({"customer_id": "b", "phone_number": "+4711111111", "email": "b@x.io"})).await;
    }

    async fn concurrent_creates_with_one_email_have_exactly_one_winner(app: &TestApp) {
        let attempts = (0..20).map(|i| {
            let body = json!({"customer_id": format!("race-{i}"), "email": "race@x.io"});
            async move { app.post(&app.users_url(), &body).await }
        });
        let replies = futures::future::join_all(attempts).await;
        let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        let dup = replies.iter().filter(|r| r.code() == "duplicate_email").count();
        assert_eq!((ok, dup), (1, 19), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        assert_eq!(app.row_count().await, 1);
    }

    async fn unknown_and_deleted_customers_are_404(app: &TestApp) {
        assert_eq!(app.get(&app.user_url("nobody")).await.code(), "customer_not_found");
        app.create(json!({"customer_id": "gone"})).await;
        app.delete(&app.user_url("gone")).await;
        let reply = app.get(&app.user_url("gone")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete(&app.user_url("gone")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.put(&app.user_url("gone"), &json!({"first_name": "x"})).await.status, StatusCode::NOT_FOUND);
    }

    async fn concurrent_gets_each_answer_their_own_customer(app: &TestApp) {
        // On PostgreSQL concurrent GETs share statements (`point_reads`):
        // each must still get its own customer, of its own account.
        for i in 0..12 {
            app.create(json!({"customer_id": format!("g-{i}"), "first_name": format!("Name {i}")})).await;
        }
        app.delete(&app.user_url("g-11")).await;
        let other_admin = app.token_for(OTHER_ACCOUNT, "other", &[Scope::Admin]);
        let other_users = app.url(&format!("/v1/accounts/{OTHER_ACCOUNT}/customers/users"));
        let body = json!({"customer_id": "g-0", "first_name": "Elsewhere"});
        assert_eq!(app.send(Method::POST, &other_users, Some(&other_admin), Some(&body)).await.status, StatusCode::OK);
        app.send(Method::POST, &other_users, Some(&other_admin), Some(&json!({"customer_id": "only-there"}))).await;

        let gets = (0..120).map(|n| {
            let (other_users, other_admin) = (other_users.clone(), other_admin.clone());
            async move {
                let id = format!("g-{}", n % 14); // g-11 is deleted, g-12 and g-13 never existed
                let reply = match n % 5 {
                    0 => app.send(Method::GET, &format!("{other_users}/{id}"), Some(&other_admin), None).await,
                    1 => app.get(&app.user_url("only-there")).await,
                    _ => app.get(&app.user_url(&id)).await,
                };
                (n, id, reply)
            }
        });
        for (n, id, reply) in futures::future::join_all(gets).await {
            match n % 5 {
                0 if id == "g-0" => assert_eq!(reply.body["first_name"], "Elsewhere", "{n}: {}", reply.body),
                0 | 1 => assert_eq!(reply.status, StatusCode::NOT_FOUND, "{n} {id}: {}", reply.body),
                _ if n % 14 >= 11 => assert_eq!(reply.status, StatusCode::NOT_FOUND, "{n} {id}: {}", reply.body),
                _ => {
                    assert_eq!(reply.status, StatusCode::OK, "{n} {id}: {}", reply.body);
                    assert_eq!(reply.body["customer_id"], id.as_str());
                    assert_eq!(reply.body["first_name"], format!("Name {}", n % 14));
                }
            }
        }
    }

    async fn update_keeps_absent_fields_clears_nulls_and_merges_metadata(app: &TestApp) {
        let created = app.create(json!({
            "customer_id": "u1", "first_name": "Ada", "last_name": "Lovelace", "gender": "f",
            "metadata": {"a": 1, "b": 2}
        })).await;
        let updated = app.put(&app.user_url("u1"), &json!({
            "first_name": "Augusta", "gender": null, "metadata": {"a": null, "c": 3}
        })).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        let body = &updated.body;
        assert_eq!(body["first_name"], "Augusta");
        assert_eq!(body["last_name"], "Lovelace");
        assert!(body.get("gender").is_none());
        assert_eq!(body["metadata"], json!({"b": 2, "c": 3}));
        assert_eq!(body["created_at"], created["created_at"]);
        assert!(body["updated_at"].as_str() > created["updated_at"].as_str());
        assert_eq!(app.get(&app.user_url("u1")).await.body, *body);

        let cleared = app.put(&app.user_url("u1"), &json!({"metadata": null})).await;
        assert!(cleared.body.get("metadata").is_none());
    }

    async fn update_cannot_change_customer_id_and_failed_updates_change_nothing(app: &TestApp) {
        app.create(json!({"customer_id": "u1", "email": "one@x.io"})).await;
        app.create(json!({"customer_id": "u2", "email": "two@x.io", "first_name": "Two"})).await;
        let before = app.get(&app.user_url("u2")).await.body;

        let renamed = app.put(&app.user_url("u2"), &json!({"customer_id": "u3"})).await;
        assert_eq!(renamed.status, StatusCode::BAD_REQUEST);
        assert_eq!(renamed.body["error"]["errors"][0]["field"], "customer_id");

        let dup = app.put(&app.user_url("u2"), &json!({"first_name": "Changed", "email": "ONE@x.io"})).await;
        assert_eq!(dup.code(), "duplicate_email");
        let invalid = app.put(&app.user_url("u2"), &json!({"first_name": "Changed", "phone_number": "12ab"})).await;
        assert_eq!(invalid.code(), "validation_error");
        assert_eq!(app.get(&app.user_url("u2")).await.body, before);
    }

    async fn delete_erases_personal_data_from_the_row(app: &TestApp) {
        app.create(json!({
            "customer_id": "erase-me", "first_name": "Grace", "last_name": "Hopper",
            "email": "grace@navy.mil", "phone_number": "+15550001111",
            "attributes": {"tier": "gold"}, "metadata": {"note": "secret-note"},
            "addresses": [{"address_line": "Arlington Blvd", "postal_place": "Arlington", "country": "US"}]
        })).await;
        let deleted = app.delete(&app.user_url("erase-me")).await;
        assert_eq!(deleted.status, StatusCode::OK);
        let mut keys: Vec<&str> = deleted.body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "created_by", "customer_id", "deleted_at", "deleted_by", "id", "type", "updated_at"]);
        assert_eq!(deleted.body["type"], "customer");

        let row = app.db.query_text(
            "SELECT coalesce(email, '') || coalesce(email_lower, '') || coalesce(phone_number, '') || \
             coalesce(phone_unique, '') || coalesce(last_name_lower, '') || \
             coalesce(full_name_lower, '') || CAST(doc AS TEXT) FROM customers WHERE customer_id = $1",
            &["erase-me"],
        ).await;
        let row = row[0].clone().unwrap().to_lowercase();
        for personal in ["grace", "hopper", "navy", "5550001111", "gold", "secret-note", "arlington"] {
            assert!(!row.contains(personal), "{personal} survived erasure: {row}");
        }
        let attributes = app.db.query_text("SELECT CAST(count(*) AS TEXT) FROM customer_attributes", &[]).await;
        assert_eq!(attributes[0].as_deref(), Some("0"));
    }

    async fn change_customer_id_moves_the_record_and_records_the_change(app: &TestApp) {
        let created = app.create(json!({"customer_id": "old", "first_name": "Ada"})).await;
        app.create(json!({"customer_id": "taken"})).await;
        let url = format!("{}/change_customer_id", app.user_url("old"));

        let taken = app.post(&url, &json!({"customer_id": "taken"})).await;
        assert_eq!(taken.code(), "duplicate_customer_id");
        let writer = app.token(&[customers::domain::ids::Scope::Write]);
        let forbidden = app.send(reqwest::Method::POST, &url, Some(&writer), Some(&json!({"customer_id": "new"}))).await;
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

        let moved = app.post(&url, &json!({"customer_id": "new"})).await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        assert_eq!(moved.body["id"], created["id"]);
        assert_eq!(moved.body["customer_id"], "new");
        let metadata = moved.body["metadata"].as_object().unwrap();
        let (key, record) = metadata.iter().next().unwrap();
        assert!(key.starts_with("dintero_change_customer_id_"), "{key}");
        assert_eq!(record["old"], "old");
        assert_eq!(record["new"], "new");
        assert_eq!(record["created_by"], "test-client");
        assert_eq!(app.get(&app.user_url("old")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&app.user_url("new")).await.body["first_name"], "Ada");
    }

    async fn invalid_fields_are_all_reported_and_nothing_is_written(app: &TestApp) {
        let reply = app.post(&app.users_url(), &json!({
            "customer_id": " padded", "email": "not-an-email", "phone_number": "0047",
            "addresses": [{"address_line": "x", "postal_place": "y", "country": "ZZ"}]
        })).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let fields: Vec<&str> = reply.body["error"]["errors"].as_array().unwrap().iter()
            .map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["customer_id", "email", "phone_number", "addresses[0].country"]);

        let unknown = app.post(&app.users_url(), &json!({"frist_name": "typo"})).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert_eq!(unknown.body["error"]["errors"][0]["code"], "unknown_field");
        let bad_date = app.post(&app.users_url(), &json!({"date_of_birth": "2021-02-29"})).await;
        assert_eq!(bad_date.body["error"]["errors"][0]["field"], "date_of_birth");
        assert_eq!(app.row_count().await, 0);
    }

    async fn type_rules_for_company_and_contact_are_enforced(app: &TestApp) {
        let no_company = app.post(&app.users_url(), &json!({"type": "company"})).await;
        assert_eq!(no_company.body["error"]["errors"][0]["field"], "company");
        app.create(json!({"customer_id": "acme", "type": "company", "company": {"bussiness_name": "ACME"}})).await;

        let dangling = app.post(&app.users_url(), &json!({"type": "contact", "contact_for": [{"customer_id": "ghost"}]})).await;
        assert_eq!(dangling.status, StatusCode::BAD_REQUEST);
        assert_eq!(dangling.body["error"]["errors"][0]["field"], "contact_for[0].customer_id");
        app.create(json!({"customer_id": "wile", "type": "contact", "contact_for": [{"customer_id": "acme"}]})).await;

        let no_terms = app.post(&app.users_url(), &json!({"term": {"id": uuid::Uuid::new_v4(), "accepted_at": "2026-01-01T00:00:00Z"}})).await;
        assert_eq!(no_terms.body["error"]["errors"][0]["field"], "term.id");
    }
}

both_backends! {
    async fn two_servers_on_one_database_keep_emails_unique(app: &TestApp) {
        let sibling = app.sibling().await;
        let attempts = (0..20).map(|i| {
            let url = if i % 2 == 0 { app.users_url() } else { sibling.rebase(app, &app.users_url()) };
            let body = json!({"customer_id": format!("race-{i}"), "email": "shared@x.io", "phone_number": format!("+47900000{i:02}")});
            async move { app.send(reqwest::Method::POST, &url, Some(&app.admin()), Some(&body)).await }
        });
        let replies = futures::future::join_all(attempts).await;
        let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        let dup = replies.iter().filter(|r| r.code() == "duplicate_email").count();
        assert_eq!((ok, dup), (1, 19));
        // A token minted by one server is accepted by the other.
        let winner = replies.iter().find(|r| r.status == StatusCode::OK).unwrap();
        let other = sibling.rebase(app, &app.user_url(winner.body["customer_id"].as_str().unwrap()));
        assert_eq!(app.send(reqwest::Method::GET, &other, Some(&app.admin()), None).await.status, StatusCode::OK);
    }
}

both_backends! {
    async fn if_match_guards_updates_and_deletes(app: &TestApp) {
        let created = app.client.post(app.users_url()).bearer_auth(app.admin())
            .json(&json!({"customer_id": "v", "first_name": "One"})).send().await.unwrap();
        let etag = created.headers()["etag"].to_str().unwrap().to_owned();
        let got = app.client.get(app.user_url("v")).bearer_auth(app.admin()).send().await.unwrap();
        assert_eq!(got.headers()["etag"].to_str().unwrap(), etag);

        let put = |tag: String, name: &'static str| async move {
            app.client.put(app.user_url("v")).bearer_auth(app.admin()).header("if-match", tag)
                .json(&json!({"first_name": name})).send().await.unwrap()
        };
        let first = put(etag.clone(), "Two").await;
        assert_eq!(first.status(), StatusCode::OK);
        let new_etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(new_etag, etag);

        let stale = put(etag.clone(), "Lost update").await;
        assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
        let body: serde_json::Value = stale.json().await.unwrap();
        assert_eq!(body["error"]["code"], "precondition_failed");
        assert_eq!(app.get(&app.user_url("v")).await.body["first_name"], "Two", "a refused update changes nothing");
        let stale_list = put(format!("\"1\", {etag}"), "Lost again").await;
        assert_eq!(stale_list.status(), StatusCode::PRECONDITION_FAILED, "no tag of the list matches");

        // Any tag of a list may match (RFC 9110 §13.1.1), in one header
        // line or several; `*` matches any current version.
        let listed = put(format!("{etag}, {new_etag}"), "Three").await;
        assert_eq!(listed.status(), StatusCode::OK, "a list holding the current tag matches");
        let new_etag = listed.headers()["etag"].to_str().unwrap().to_owned();
        let two_lines = app.client.put(app.user_url("v")).bearer_auth(app.admin())
            .header("if-match", etag.clone()).header("if-match", new_etag.clone())
            .json(&json!({"first_name": "Four"})).send().await.unwrap();
        assert_eq!(two_lines.status(), StatusCode::OK, "several If-Match lines form one list");
        let new_etag = two_lines.headers()["etag"].to_str().unwrap().to_owned();
        let any = put("*".to_owned(), "Five").await;
        assert_eq!(any.status(), StatusCode::OK, "* matches the current version");
        let new_etag = any.headers().get("etag").map_or(new_etag, |v| v.to_str().unwrap().to_owned());
        assert_eq!(app.get(&app.user_url("v")).await.body["first_name"], "Five");

        let stale_delete = app.client.delete(app.user_url("v")).bearer_auth(app.admin()).header("if-match", etag).send().await.unwrap();
        assert_eq!(stale_delete.status(), StatusCode::PRECONDITION_FAILED);
        let delete = app.client.delete(app.user_url("v")).bearer_auth(app.admin()).header("if-match", new_etag).send().await.unwrap();
        assert_eq!(delete.status(), StatusCode::OK);
    }

    async fn concurrent_metadata_updates_all_survive(app: &TestApp) {
        app.create(json!({"customer_id": "m", "metadata": {}})).await;
        let updates = (0..20).map(|i| async move {
            app.put(&app.user_url("m"), &json!({"metadata": {format!("k{i}"): i}})).await
        });
        for reply in futures::future::join_all(updates).await {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        }
        let metadata = app.get(&app.user_url("m")).await.body["metadata"].clone();
        assert_eq!(metadata.as_object().unwrap().len(), 20, "no update lost: {metadata}");
    }

    async fn idempotency_keys_replay_creates_and_refuse_other_bodies(app: &TestApp) {
        let post = |key: &str, body: String, token: String, url: String| {
            let request = app.client.post(url).bearer_auth(token).header("content-type", "application/json");
            let request = request.header("idempotency-key", key).body(body);
            async move {
                let response = request.send().await.unwrap();
                let replayed = response.headers().contains_key("idempotent-replayed");
                (response.status(), replayed, response.json::<serde_json::Value>().await.unwrap())
            }
        };
        let admin = app.admin();
        let ada = r#"{"email": "ada@example.com", "first_name": "Ada"}"#.to_owned();
        let (status, replayed, first) = post("k-1", ada.clone(), admin.clone(), app.users_url()).await;
        assert_eq!((status, replayed), (StatusCode::OK, false), "{first}");
        // The same document, formatted differently, is the same request.
        let reformatted = r#"{"first_name":"Ada","email":"ada@example.com"}"#.to_owned();
        let (status, replayed, again) = post("k-1", reformatted, admin.clone(), app.users_url()).await;
        assert_eq!((status, replayed), (StatusCode::OK, true));
        assert_eq!(again, first, "the original response, same id");
        let other_body = r#"{"email": "grace@example.com"}"#.to_owned();
        let (status, _, refused) = post("k-1", other_body.clone(), admin.clone(), app.users_url()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(refused["error"]["code"], "idempotency_key_reused");
        assert_eq!(app.row_count().await, 1);

        // Keys are per account.
        let other_admin = app.token_for(OTHER_ACCOUNT, "other", &[Scope::Admin]);
        let other_users = app.url(&format!("/v1/accounts/{OTHER_ACCOUNT}/customers/users"));
        let (status, replayed, elsewhere) = post("k-1", ada.clone(), other_admin, other_users).await;
        assert_eq!((status, replayed), (StatusCode::OK, false), "{elsewhere}");
        assert_ne!(elsewhere["id"], first["id"]);

        // Concurrent retries of one key make one customer and all see it.
        let grace = r#"{"email": "grace@example.com"}"#.to_owned();
        let retries = (0..10).map(|_| post("k-2", grace.clone(), admin.clone(), app.users_url()));
        let replies = futures::future::join_all(retries).await;
        assert!(replies.iter().all(|(status, _, _)| *status == StatusCode::OK), "{replies:?}");
        assert!(replies.iter().all(|(_, _, body)| body["id"] == replies[0].2["id"]), "{replies:?}");
        assert_eq!(replies.iter().filter(|(_, replayed, _)| !replayed).count(), 1);
        assert_eq!(app.row_count().await, 2);

        // A failed create does not use up its key.
        let (status, _, duplicate) = post("k-3", ada.clone(), admin.clone(), app.users_url()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{duplicate}");
        let linus = r#"{"email": "linus@example.com"}"#.to_owned();
        let (status, replayed, _) = post("k-3", linus, admin.clone(), app.users_url()).await;
        assert_eq!((status, replayed), (StatusCode::OK, false));

        // After 24 hours a key is forgotten and may name a new request.
        let age = match app.db.backend {
            Backend::Sqlite => "UPDATE idempotency_keys SET created_at = created_at - 86400000001 RETURNING key",
            Backend::Postgres => "UPDATE idempotency_keys SET created_at = created_at - interval '24 hours 1 second' RETURNING key",
        };
        assert_eq!(app.db.query_text(age, &[]).await.len(), 4);
        let (status, replayed, _) = post("k-1", other_body.replace("grace", "ida"), admin.clone(), app.users_url()).await;
        assert_eq!((status, replayed), (StatusCode::OK, false));

        let (status, _, bad) = post("", ada, admin, app.users_url()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(bad["error"]["code"], "invalid_idempotency_key");
    }
}
