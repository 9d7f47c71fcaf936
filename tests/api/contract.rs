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

/// Every field of the customer body (§4.1) with the JSON kind it takes.
const CUSTOMER_FIELDS: &[(&str, Kind)] = &[
    ("customer_id", Kind::String),
    ("type", Kind::String),
    ("first_name", Kind::String),
    ("last_name", Kind::String),
    ("email", Kind::String),
    ("phone_number", Kind::String),
    ("attributes", Kind::Object),
    ("metadata", Kind::Object),
    ("status", Kind::String),
    ("favorite_store", Kind::String),
    ("gender", Kind::String),
    ("date_of_birth", Kind::String),
    ("enrolled_by", Kind::Object),
    ("enrolled_by.type", Kind::String),
    ("enrolled_by.value", Kind::String),
    ("marketing_consent", Kind::Object),
    ("marketing_consent.sms", Kind::Object),
    ("marketing_consent.sms.consent", Kind::Bool),
    ("marketing_consent.sms.updated_at", Kind::String),
    ("marketing_consent.email", Kind::Object),
    ("marketing_consent.email.consent", Kind::Bool),
    ("addresses", Kind::Array),
    ("addresses[0]", Kind::Object),
    ("addresses[0].address_line", Kind::String),
    ("addresses[0].address_line_2", Kind::String),
    ("addresses[0].postal_code", Kind::String),
    ("addresses[0].postal_place", Kind::String),
    ("addresses[0].country", Kind::String),
    ("addresses[0].latitude", Kind::Number),
    ("addresses[0].longitude", Kind::Number),
    ("addresses[0].type", Kind::String),
    ("addresses[0].custom_type", Kind::String),
    ("addresses[0].comment", Kind::String),
    ("term", Kind::Object),
    ("term.id", Kind::String),
    ("term.accepted_at", Kind::String),
    ("company", Kind::Object),
    ("company.organization_number", Kind::String),
    ("company.bussiness_name", Kind::String),
    ("company.department", Kind::String),
    ("company.industry", Kind::String),
    ("company.website", Kind::String),
    ("company.number_of_employees", Kind::String),
    ("contact_for", Kind::Array),
    ("contact_for[0]", Kind::Object),
    ("contact_for[0].customer_id", Kind::String),
    ("password", Kind::String),
    ("pin", Kind::String),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    String,
    Number,
    Bool,
    Object,
    Array,
}

impl Kind {
    /// A value of every other JSON kind (`null` is not wrong: it clears).
    fn wrong_values(self) -> Vec<Value> {
        [
            (Kind::String, json!("42")),
            (Kind::Number, json!(42)),
            (Kind::Bool, json!(true)),
            (Kind::Object, json!({})),
            (Kind::Array, json!([])),
        ]
        .into_iter()
        .filter(|(kind, _)| *kind != self)
        .map(|(_, value)| value)
        .collect()
    }
}

/// A valid body around `path`, so that only the value at `path` is wrong.
fn body_around(path: &str) -> Value {
    let address = json!({"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO"});
    // A plain customer (whatever type an earlier update gave it), then the
    // field's surroundings.
    let mut body = json!({"type": "customer", "company": null, "contact_for": null});
    let around = match path.split(['.', '[']).next().unwrap() {
        "addresses" => json!({"addresses": [address]}),
        "company" => json!({"type": "company", "company": {"bussiness_name": "Acme"}}),
        "contact_for" => json!({"type": "contact", "contact_for": [{"customer_id": "target"}]}),
        "marketing_consent" => json!({"marketing_consent": {"sms": {"consent": true}, "email": {"consent": true}}}),
        "enrolled_by" => json!({"enrolled_by": {"value": "store-1"}}),
        "term" => json!({"term": {}}),
        _ => json!({}),
    };
    body.as_object_mut().unwrap().extend(around.as_object().unwrap().clone());
    body
}

/// Sets the value at a path such as `addresses[0].latitude`.
fn set_path(body: &mut Value, path: &str, value: Value) {
    let mut at = body;
    let steps: Vec<&str> = path.split('.').collect();
    for (i, step) in steps.iter().enumerate() {
        let (key, index) = match step.split_once('[') {
            Some((key, rest)) => (key, Some(rest.trim_end_matches(']').parse::<usize>().unwrap())),
            None => (*step, None),
        };
        let last = i == steps.len() - 1;
        if last && index.is_none() {
            at[key] = value;
            return;
        }
        at = &mut at[key];
        if let Some(index) = index {
            if last {
                at[index] = value;
                return;
            }
            at = &mut at[index];
        }
    }
}

both_backends! {
    async fn a_value_of_the_wrong_json_type_is_refused_everywhere(app: &TestApp) {
        app.create(json!({"customer_id": "target"})).await;
        let victim = app.create(json!({"customer_id": "victim", "first_name": "Ada"})).await;
        let mut refused = 0;
        for (path, kind) in CUSTOMER_FIELDS {
            // The valid body is accepted: only the wrong value is refused.
            let valid = body_around(path);
            assert_eq!(app.put(&app.user_url("victim"), &valid).await.status, StatusCode::OK, "{path}: {valid}");
            let before = app.get(&app.user_url("victim")).await.body;
            for wrong in kind.wrong_values() {
                let mut body = body_around(path);
                set_path(&mut body, path, wrong.clone());
                let updated = app.put(&app.user_url("victim"), &body).await;
                assert_eq!(updated.status, StatusCode::BAD_REQUEST, "PUT {body}: {}", updated.body);
                assert_eq!(updated.body["error"]["errors"][0]["field"], *path, "PUT {body}: {}", updated.body);
                assert_eq!(app.get(&app.user_url("victim")).await.body, before, "PUT {body} changed the customer");
                set_path(&mut body, "customer_id", json!("new"));
                if *path == "customer_id" {
                    set_path(&mut body, path, wrong);
                }
                let created = app.post(&app.users_url(), &body).await;
                assert_eq!(created.status, StatusCode::BAD_REQUEST, "POST {body}: {}", created.body);
                refused += 1;
            }
        }
        assert_eq!(refused, CUSTOMER_FIELDS.len() * 4);
        assert_eq!(app.get(&app.user_url("new")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.row_count().await, 2);
        assert_eq!(victim["customer_id"], "victim");
    }

    async fn dates_are_rfc_3339_full_dates_and_date_times(app: &TestApp) {
        for bad in ["1990-1-1", "1990-01-1", "19900101", "1990-01-01T00:00:00Z", "1990-02-30"] {
            let reply = app.post(&app.users_url(), &json!({"customer_id": "d", "date_of_birth": bad})).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
            assert_eq!(reply.body["error"]["errors"][0]["field"], "date_of_birth", "{bad}");
        }
        let terms = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/terms")), &json!({"terms": "T"})).await;
        let lenient_time = json!({"customer_id": "d", "term": {"id": terms.body["id"], "accepted_at": "2026-01-02 03:04:05Z"}});
        assert_eq!(app.post(&app.users_url(), &lenient_time).await.body["error"]["errors"][0]["field"], "term.accepted_at");
        let expiry = json!({"token": {"type": "t", "value": "v"}, "event": {"event": "e", "expires_at": "2026-01-02T03:04:05"}});
        assert_eq!(app.post(&events_url(app), &expiry).await.status, StatusCode::BAD_REQUEST);
        app.put(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings")),
            &json!({"attributes": [{"name": "joined", "type": "date"}, {"name": "seen", "type": "date-time"}]})).await;
        for attributes in [json!({"joined": "2020-1-1"}), json!({"seen": "2020-01-01T00:00:00"})] {
            let reply = app.post(&app.users_url(), &json!({"customer_id": "d", "attributes": attributes})).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{attributes}: {}", reply.body);
        }
        for query in ["since_datetime=2026-01-01", "since_datetime=2026-01-01T00:00:00"] {
            assert_eq!(app.get(&format!("{}?{query}", app.users_url())).await.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(app.get(&format!("{}?{query}", events_url(app))).await.status, StatusCode::BAD_REQUEST, "{query}");
        }
        assert_eq!(app.row_count().await, 0);
        let good = app.post(&app.users_url(), &json!({"customer_id": "d", "date_of_birth": "1990-01-01"})).await;
        assert_eq!(good.body["date_of_birth"], "1990-01-01");
    }

    async fn repeatable_parameters_accept_comma_separated_values(app: &TestApp) {
        app.create(json!({"customer_id": "both", "attributes": {"a": "1", "b": "2"}})).await;
        app.create(json!({"customer_id": "only-a", "attributes": {"a": "1"}})).await;
        let repeated = TestApp::ids(&app.list("attributes_keys=a&attributes_keys=b").await);
        assert_eq!(repeated, ["both"]);
        assert_eq!(TestApp::ids(&app.list("attributes_keys=a,b").await), repeated);
        assert_eq!(TestApp::ids(&app.list("attributes_keys=a,b&attributes_values=1,2").await), ["both"]);
        assert!(TestApp::ids(&app.list("attributes_keys=a,b&attributes_values=1,3").await).is_empty());
    }

    async fn settings_take_upstreams_mfa_and_verifications_as_given(app: &TestApp) {
        let url = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings"));
        let users = json!({
            "mfa": {"enabled": true, "login": {"challenge_type": "oob", "oob_channel": "sms"},
                "login_recovery": {"challenge_type": "oob", "oob_channel": "email"}},
            "verifications": {"phone_number": "sms"}
        });
        let put = app.put(&url, &json!({"users": users})).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        let got = app.get(&url).await;
        assert_eq!(got.body["users"]["mfa"], users["mfa"]);
        assert_eq!(got.body["users"]["verifications"], users["verifications"]);
        let wrong = app.put(&url, &json!({"users": {"mfa": {"login": {"challenge_type": "otp", "oob_channel": "sms"}}}})).await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    }
}

both_backends! {
    async fn user_customers_acts_on_its_own_record_as_upstream_allows(app: &TestApp) {
        let me = app.create(json!({"customer_id": "me"})).await;
        app.create(json!({"customer_id": "other"})).await;
        let tag = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tags")), &json!({"tag": "VIP"})).await;
        app.post(&tokens_url(app, "other"), &json!({"token_id": "theirs", "type": "card", "value": "2"})).await;
        let user = app.token_for(ACCOUNT, me["id"].as_str().unwrap(), &[customers::domain::ids::Scope::User]);
        let send = |method: Method, url: String, body: Option<Value>| {
            let user = user.clone();
            async move { app.send(method, &url, Some(&user), body.as_ref()).await }
        };
        let tags = |id: &str| format!("{}/tags", app.user_url(id));

        // Another customer's record: refused, and nothing changes.
        for (method, url, body) in [
            (Method::GET, tags("other"), None),
            (Method::PUT, tags("other"), Some(json!([tag.body["id"]]))),
            (Method::GET, tokens_url(app, "other"), None),
            (Method::POST, tokens_url(app, "other"), Some(json!({"type": "card", "value": "3"}))),
            (Method::DELETE, format!("{}/theirs", tokens_url(app, "other")), None),
            (Method::DELETE, app.user_url("other"), None),
            (Method::GET, tags("nobody"), None),
        ] {
            let reply = send(method.clone(), url.clone(), body).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {url}: {}", reply.body);
        }
        assert_eq!(app.get(&tokens_url(app, "other")).await.body.as_array().unwrap().len(), 1);
        assert_eq!(app.get(&tags("other")).await.body, json!([]));
        assert_eq!(app.get(&app.user_url("other")).await.status, StatusCode::OK);

        // Its own record: tags, tokens, then the record itself.
        let set = send(Method::PUT, tags("me"), Some(json!([tag.body["id"]]))).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
        assert_eq!(send(Method::GET, tags("me"), None).await.body[0]["tag"], "VIP");
        let added = send(Method::POST, tokens_url(app, "me"), Some(json!({"token_id": "mine", "type": "card", "value": "1"}))).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
        assert_eq!(send(Method::GET, tokens_url(app, "me"), None).await.body[0]["token_id"], "mine");
        assert_eq!(send(Method::DELETE, format!("{}/mine", tokens_url(app, "me")), None).await.status, StatusCode::OK);
        let deleted = send(Method::DELETE, app.user_url("me"), None).await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
        assert!(deleted.body["deleted_at"].is_string());
    }

    async fn details_and_admin_accounts_scopes_are_known(app: &TestApp) {
        use customers::domain::ids::Scope;
        let me = app.create(json!({"customer_id": "me", "first_name": "Ann"})).await;
        app.create(json!({"customer_id": "other"})).await;
        let details = app.token_for(ACCOUNT, me["id"].as_str().unwrap(), &[Scope::UserDetails]);
        let own = app.send(Method::GET, &app.user_url("me"), Some(&details), None).await;
        assert_eq!((own.status, own.body["first_name"].as_str()), (StatusCode::OK, Some("Ann")), "{}", own.body);
        assert_eq!(app.send(Method::GET, &app.user_url("other"), Some(&details), None).await.status, StatusCode::FORBIDDEN);
        let put = app.send(Method::PUT, &app.user_url("me"), Some(&details), Some(&json!({"first_name": "X"}))).await;
        assert_eq!(put.status, StatusCode::FORBIDDEN, "details is read-only");

        let accounts = app.token(&[Scope::AdminAccounts]);
        let change = |token: String| async move {
            app.send(Method::POST, &format!("{}/change_customer_id", app.user_url("other")), Some(&token),
                Some(&json!({"customer_id": "renamed"}))).await
        };
        assert_eq!(change(app.token(&[Scope::Read, Scope::Write])).await.status, StatusCode::FORBIDDEN);
        let changed = change(accounts).await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        assert_eq!(changed.body["customer_id"], "renamed");
        assert_eq!(app.send(Method::GET, &app.users_url(), Some(&app.token(&[Scope::AdminAccounts])), None).await.status,
            StatusCode::FORBIDDEN, "admin:accounts reads nothing else");
    }
}
