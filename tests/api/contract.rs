//! Fidelity to the upstream Customers API: each test is one rule of
//! SPEC §2–§8 that a client generated from upstream's types relies on.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT};

fn tokens_url(app: &TestApp, customer_id: &str) -> String {
    format!("{}/tokens", app.user_url(customer_id))
}

fn events_url(app: &TestApp) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tokens/events"))
}

both_backends! {
    async fn token_events_list_one_item_per_token_with_its_resolved_status(app: &TestApp) {
        let record = |token: Value, event: Value| async move {
            let reply = app.post(&events_url(app), &json!({"token": token, "event": event})).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        };
        let card = json!({"type": "card", "value": "1"});
        let phone = json!({"type": "phone", "value": "2"});
        record(card.clone(), json!({"event": "signed up", "status": "OPT_IN"})).await;
        record(phone.clone(), json!({"event": "asked", "status": "PENDING"})).await;
        record(card.clone(), json!({"event": "left", "status": "OPT_OUT"})).await;

        let listed = app.get(&events_url(app)).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        let items = listed.body.as_array().unwrap();
        assert_eq!(items.len(), 2, "{}", listed.body);
        // Ordered by each token's newest event: phone's came before card's last.
        assert_eq!((items[0]["id"].as_str(), items[0]["status"].as_str()), (Some("phone:2"), Some("PENDING")));
        assert_eq!((items[1]["id"].as_str(), items[1]["status"].as_str()), (Some("card:1"), Some("OPT_OUT")));
        let events: Vec<&str> = items[1]["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["signed up", "left"]);

        // One token a page; the Link header leads to the next token.
        let first = app.get(&format!("{}?limit=1", events_url(app))).await;
        assert_eq!(first.body.as_array().unwrap().len(), 1);
        assert_eq!(first.body[0]["id"], "phone:2");
        let next = first.header("link").unwrap().trim_start_matches('<').split('>').next().unwrap().to_owned();
        let second = app.get(&app.url(&next)).await;
        assert_eq!(second.body.as_array().unwrap().len(), 1, "{}", second.body);
        assert_eq!(second.body[0]["id"], "card:1");
        assert!(second.header("link").is_none());
    }

    async fn tokens_carry_token_id_beside_their_entity_id(app: &TestApp) {
        app.create(json!({"customer_id": "c"})).await;
        let given = app.post(&tokens_url(app, "c"), &json!({"token_id": "tok-1", "type": "card", "value": "4111"})).await;
        assert_eq!(given.status, StatusCode::CREATED, "{}", given.body);
        assert_eq!(given.body["token_id"], "tok-1");
        let entity_id = given.body["id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&entity_id).is_ok(), "{}", given.body);
        let generated = app.post(&tokens_url(app, "c"), &json!({"type": "card", "value": "5555"})).await;
        assert!(generated.body["token_id"].as_str().is_some_and(|id| !id.is_empty()), "{}", generated.body);
        assert_ne!(generated.body["id"], generated.body["token_id"]);

        let listed = app.get(&tokens_url(app, "c")).await;
        assert!(listed.body.as_array().unwrap().iter().all(|t| t["token_id"].is_string() && t["id"].is_string()));
        let detail = app.post(&events_url(app), &json!({"token": {"type": "card", "value": "4111"}})).await;
        assert_eq!(detail.body["token"]["token_id"], "tok-1");
        assert_eq!(detail.body["token"]["id"], entity_id.as_str());
        let deleted = app.delete(&format!("{}/tok-1", tokens_url(app, "c"))).await;
        assert_eq!((deleted.body["token_id"].as_str(), deleted.body["id"].as_str()), (Some("tok-1"), Some(entity_id.as_str())));
    }

    async fn number_of_employees_is_a_string(app: &TestApp) {
        let company = json!({"customer_id": "acme", "type": "company",
            "company": {"bussiness_name": "Acme", "number_of_employees": "42"}});
        let created = app.post(&app.users_url(), &company).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        assert_eq!(created.body["company"]["number_of_employees"], "42");
        assert_eq!(app.get(&app.user_url("acme")).await.body["company"]["number_of_employees"], "42");
        let number = app.put(&app.user_url("acme"), &json!({"company": {"bussiness_name": "Acme", "number_of_employees": 42}})).await;
        assert_eq!(number.status, StatusCode::BAD_REQUEST, "{}", number.body);
        assert_eq!(number.body["error"]["errors"][0]["field"], "company.number_of_employees");
    }

    async fn deleted_customers_keep_their_type(app: &TestApp) {
        app.create(json!({"customer_id": "co", "type": "company", "company": {"bussiness_name": "Acme"}})).await;
        let deleted = app.delete(&app.user_url("co")).await;
        assert_eq!(deleted.body["type"], "company", "{}", deleted.body);
        assert!(deleted.body.get("company").is_none());
        let listed = app.list("include_deleted=true&type=any").await;
        assert_eq!(listed.body[0]["type"], "company", "{}", listed.body);
        assert!(listed.body[0].get("company").is_none());
    }

    async fn password_and_pin_are_kept_as_hashes_and_never_returned(app: &TestApp) {
        let created = app.post(&app.users_url(), &json!({"customer_id": "p", "email": "p@x.io",
            "password": "correct horse battery", "pin": "123456"})).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        for answer in [&created.body, &app.get(&app.user_url("p")).await.body, &app.list("").await.body[0]] {
            assert!(answer.get("password").is_none() && answer.get("pin").is_none(), "{answer}");
            assert!(!answer.to_string().contains("correct horse"), "{answer}");
        }
        let stored = app.db.query_text("SELECT password_hash FROM customers WHERE customer_id = $1", &["p"]).await;
        let hash = stored[0].clone().expect("a password hash");
        assert!(hash.starts_with("$argon2"), "{hash}");
        assert!(!app.db.all_text().await.iter().any(|v| v.contains("correct horse") || v.contains("123456")));

        let bad_pin = app.put(&app.user_url("p"), &json!({"pin": "12ab"})).await;
        assert_eq!(bad_pin.body["error"]["errors"][0]["field"], "pin", "{}", bad_pin.body);
        let cleared = app.put(&app.user_url("p"), &json!({"password": null})).await;
        assert_eq!(cleared.status, StatusCode::OK);
        let stored = app.db.query_text("SELECT password_hash FROM customers WHERE customer_id = $1", &["p"]).await;
        assert_eq!(stored[0], None);
        app.delete(&app.user_url("p")).await;
        let pin = app.db.query_text("SELECT pin_hash FROM customers WHERE customer_id = $1", &["p"]).await;
        assert_eq!(pin[0], None, "erasure removes the hashes too");
    }

    async fn server_set_fields_read_back_are_ignored(app: &TestApp) {
        let entity = json!({"id": "00000000-0000-0000-0000-000000000001", "created_at": "2020-01-01T00:00:00Z",
            "created_by": "someone", "updated_at": "2020-01-01T00:00:00Z", "deleted_at": null, "deleted_by": null});
        let with_entity = |body: Value| {
            let mut body = body;
            body.as_object_mut().unwrap().extend(entity.as_object().unwrap().clone());
            body
        };
        let tag = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tags")), &with_entity(json!({"tag": "VIP"}))).await;
        assert_eq!(tag.status, StatusCode::OK, "{}", tag.body);
        assert_ne!(tag.body["id"], entity["id"]);
        let terms = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/terms")), &with_entity(json!({"terms": "Be nice."}))).await;
        assert_eq!(terms.status, StatusCode::OK, "{}", terms.body);
        assert_eq!(terms.body["created_by"], "test-client");
        app.create(json!({"customer_id": "c"})).await;
        let token = app.post(&tokens_url(app, "c"), &json!({"type": "card", "value": "1"})).await;
        let again = app.post(&tokens_url(app, "c"), &json!({"type": "card", "value": "2",
            "id": token.body["id"], "created_at": token.body["created_at"], "created_by": "x"})).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
        let event = app.post(&events_url(app), &json!({"token": {"type": "card", "value": "3"},
            "event": {"event": "seen", "created_at": "2020-01-01T00:00:00Z"}})).await;
        assert_eq!(event.status, StatusCode::OK, "{}", event.body);
        assert_ne!(event.body["events"][0]["created_at"], "2020-01-01T00:00:00.000000Z");
        let typo = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tags")), &json!({"tag": "x", "tga": 1})).await;
        assert_eq!(typo.code(), "validation_error", "other unknown fields are still refused");
    }

    async fn optional_upstream_fields_are_optional(app: &TestApp) {
        let terms = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/terms")), &json!({"terms": "T"})).await;
        let term_id = terms.body["id"].as_str().unwrap().to_owned();
        let created = app.post(&app.users_url(), &json!({"customer_id": "o",
            "term": {"id": term_id}, "marketing_consent": {"sms": {}}})).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        assert_eq!(created.body["term"], json!({"id": term_id}));
        let dated = app.put(&app.user_url("o"), &json!({"term": {"accepted_at": "2026-01-02T03:04:05Z"}})).await;
        assert_eq!(dated.status, StatusCode::OK, "{}", dated.body);

        let cleared = app.send(Method::DELETE, &events_url(app), Some(&app.admin()),
            Some(&json!({"token": {"type": "card", "value": "9"}, "event": {"metadata": {"by": "support"}}}))).await;
        assert_eq!(cleared.status, StatusCode::NO_CONTENT, "{}", cleared.body);
        let detail = app.post(&events_url(app), &json!({"token": {"type": "card", "value": "9"}})).await;
        assert_eq!(detail.body["status"], "DELETED");
        assert_eq!(detail.body["events"][0]["metadata"], json!({"by": "support"}));

        let changed = app.post(&format!("{}/change_customer_id", app.user_url("o")), &json!({})).await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        let new_id = changed.body["customer_id"].as_str().unwrap();
        assert!(new_id != "o" && uuid::Uuid::parse_str(new_id).is_ok(), "{}", changed.body);
    }

    async fn a_token_event_without_status_does_not_reset_the_status(app: &TestApp) {
        let token = json!({"type": "card", "value": "1"});
        app.post(&events_url(app), &json!({"token": token, "event": {"event": "first", "status": "OPT_OUT"}})).await;
        let note = app.post(&events_url(app), &json!({"token": token, "event": {"event": "note only"}})).await;
        assert_eq!(note.body["status"], "OPT_OUT", "{}", note.body);
        assert_eq!(note.body["events"].as_array().unwrap().len(), 2);
        assert_eq!(app.get(&events_url(app)).await.body[0]["status"], "OPT_OUT");
    }

    async fn erasure_scrubs_the_replayable_response_of_an_idempotent_create(app: &TestApp) {
        let person = json!({"customer_id": "idem", "first_name": "Hedy", "last_name": "Lamarr",
            "email": "hedy@frequency.example", "phone_number": "+4791234567",
            "addresses": [{"address_line": "Spreadspectrum 7", "postal_place": "Vienna", "country": "AT"}],
            "metadata": {"note": "torpedo-guidance"}, "attributes": {"codename": "hopper-17"}});
        let create = || app.client.post(app.users_url()).bearer_auth(app.admin())
            .header("idempotency-key", "create-42").json(&person).send();
        assert_eq!(create().await.unwrap().status(), StatusCode::OK);
        assert_eq!(app.delete(&app.user_url("idem")).await.status, StatusCode::OK);
        let written = ["Hedy", "Lamarr", "hedy@frequency", "4791234567", "Spreadspectrum", "Vienna", "torpedo-guidance", "hopper-17"];
        let text = app.db.all_text().await;
        for value in written {
            let found: Vec<&String> = text.iter().filter(|t| t.to_lowercase().contains(&value.to_lowercase())).collect();
            assert!(found.is_empty(), "{value} survived erasure in {found:?}");
        }
        let replay = create().await.unwrap();
        assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
        let body: Value = replay.json().await.unwrap();
        assert!(body["deleted_at"].is_string() && body.get("first_name").is_none(), "{body}");
    }
}
