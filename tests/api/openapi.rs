//! The OpenAPI document (`/v1/openapi.json`) describes what the service
//! answers and takes: every answer below is checked against the schema its
//! operation documents, with a JSON Schema validator, as a client generated
//! from the document would rely on.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT};

/// The document, with the checks a generator makes before it reads it.
async fn document(app: &TestApp) -> Value {
    let doc = app.send(Method::GET, &app.url("/v1/openapi.json"), None, None).await.body;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{reference}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "dangling {reference}");
    }
    doc
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// The schema `doc` states for `schema`, resolvable on its own.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("not a valid schema: {e}\n{schema}"))
}

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

/// What is wrong with `answer` by what `doc` says `method path` answers with `status`.
fn answer_errors(doc: &Value, path: &str, method: &str, status: StatusCode, answer: &Value) -> Vec<String> {
    let documented = &operation(doc, path, method)["responses"][status.as_str()];
    let schema = &documented["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} documents no body for {status}");
    validator(doc, schema).iter_errors(answer).map(|e| format!("{e} at {}", e.instance_path)).collect()
}

fn check_answer(doc: &Value, path: &str, method: &str, status: StatusCode, answer: &Value) {
    let errors = answer_errors(doc, path, method, status, answer);
    assert!(errors.is_empty(), "{method} {path} {status}: {errors:?}\n{answer}");
}

/// Checks a request body against what `doc` says `method path` takes.
fn check_request(doc: &Value, path: &str, method: &str, body: &Value) {
    let schema = &operation(doc, path, method)["requestBody"]["content"]["application/json"]["schema"];
    let errors: Vec<String> =
        validator(doc, schema).iter_errors(body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{method} {path} request: {errors:?}\n{body}");
}

const USERS: &str = "/v1/accounts/{aid}/customers/users";
const USER: &str = "/v1/accounts/{aid}/customers/users/{customer_id}";

both_backends! {
    async fn answers_match_the_documented_schemas(app: &TestApp) {
        let doc = document(app).await;
        let full = json!({
            "customer_id": "c1", "type": "contact", "first_name": "Ada", "last_name": "Lovelace",
            "email": "ada@example.com", "phone_number": "+4799999999", "status": "GOLD", "gender": "f",
            "favorite_store": "Oslo", "date_of_birth": "1815-12-10", "metadata": {"k": [1, {"x": null}]},
            "attributes": {"tier": "gold"}, "enrolled_by": {"type": "store", "value": "oslo-1"},
            "marketing_consent": {"email": {"consent": true}, "sms": {}},
            "addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO", "type": "home",
                "latitude": 59.9, "longitude": 10.7}],
            "contact_for": [{"customer_id": "boss"}], "password": "secret pass", "pin": "123456"
        });
        app.create(json!({"customer_id": "boss", "type": "company",
            "company": {"bussiness_name": "Acme", "number_of_employees": "12"}})).await;
        check_request(&doc, USERS, "post", &full);
        let created = app.post(&app.users_url(), &full).await;
        check_answer(&doc, USERS, "post", created.status, &created.body);
        let read = app.get(&app.user_url("c1")).await;
        check_answer(&doc, USER, "get", read.status, &read.body);
        // The check can fail: the document requires what upstream requires.
        let mut untyped = read.body.clone();
        untyped.as_object_mut().unwrap().remove("type");
        assert!(!answer_errors(&doc, USER, "get", read.status, &untyped).is_empty(), "type is required");
        let boss = app.get(&app.user_url("boss")).await.body;
        let mut counted = boss.clone();
        counted["company"]["number_of_employees"] = json!(12);
        assert!(!answer_errors(&doc, USER, "get", StatusCode::OK, &counted).is_empty());
        // What a client read, it may send back.
        check_request(&doc, USER, "put", &read.body);
        let put = app.put(&app.user_url("c1"), &read.body).await;
        check_answer(&doc, USER, "put", put.status, &put.body);
        let listed = app.list("type=any").await;
        check_answer(&doc, USERS, "get", listed.status, &listed.body);

        let missing = app.get(&app.user_url("nobody")).await;
        check_answer(&doc, USER, "get", missing.status, &missing.body);
        let invalid = app.post(&app.users_url(), &json!({"email": "nope"})).await;
        check_answer(&doc, USERS, "post", invalid.status, &invalid.body);

        let tokens = "/v1/accounts/{aid}/customers/users/{customer_id}/tokens";
        let token = app.post(&format!("{}/tokens", app.user_url("c1")), &json!({"token_id": "t", "type": "card", "value": "1"})).await;
        check_answer(&doc, tokens, "post", token.status, &token.body);
        let listed = app.get(&format!("{}/tokens", app.user_url("c1"))).await;
        check_answer(&doc, tokens, "get", listed.status, &listed.body);
        let events = "/v1/accounts/{aid}/customers/tokens/events";
        let events_url = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tokens/events"));
        let detail = app.post(&events_url, &json!({"token": {"type": "card", "value": "1"},
            "event": {"event": "seen", "status": "OK", "metadata": {"a": 1}}})).await;
        check_answer(&doc, events, "post", detail.status, &detail.body);
        let feed = app.get(&events_url).await;
        check_answer(&doc, events, "get", feed.status, &feed.body);

        let tags = "/v1/accounts/{aid}/customers/tags";
        let tag = app.post(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tags")), &json!({"tag": "VIP"})).await;
        check_answer(&doc, tags, "post", tag.status, &tag.body);
        let settings = "/v1/accounts/{aid}/customers/settings";
        let body = json!({"users": {"head": {"enabled": true}, "mfa": {"enabled": false}}, "attributes": [{"name": "tier", "type": "string"}]});
        check_request(&doc, settings, "put", &body);
        let put = app.put(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings")), &body).await;
        check_answer(&doc, settings, "put", put.status, &put.body);

        let feed = "/v1/accounts/{aid}/customers/events";
        let answer = app.get(&app.url(&format!("/v1/accounts/{ACCOUNT}/customers/events"))).await;
        assert!(answer.body.as_array().is_some_and(|events| events.len() > 3), "{}", answer.body);
        check_answer(&doc, feed, "get", answer.status, &answer.body);
        let history = "/v1/accounts/{aid}/customers/users/{customer_id}/events";
        let answer = app.get(&format!("{}/events", app.user_url("c1"))).await;
        check_answer(&doc, history, "get", answer.status, &answer.body);

        let hooks_token = app.token(&[customers::domain::ids::Scope::HooksAdmin]);
        let receiver = crate::helpers::Receiver::ok().await;
        let subscriptions = "/v1/accounts/{aid}/hooks/subscriptions";
        let hooks_url = app.url(&format!("/v1/accounts/{ACCOUNT}/hooks/subscriptions"));
        let body = json!({"config": {"url": receiver.url(), "secret": "0123456789abcdef"}, "events": ["*"], "description": "all"});
        check_request(&doc, subscriptions, "post", &body);
        let created = app.send(reqwest::Method::POST, &hooks_url, Some(&hooks_token), Some(&body)).await;
        check_answer(&doc, subscriptions, "post", created.status, &created.body);
        let listed = app.send(reqwest::Method::GET, &hooks_url, Some(&hooks_token), None).await;
        check_answer(&doc, subscriptions, "get", listed.status, &listed.body);
        let hook = format!("{hooks_url}/{}", created.body["id"].as_str().unwrap());
        let ping = app.send(reqwest::Method::POST, &format!("{hook}/ping"), Some(&hooks_token), None).await;
        check_answer(&doc, "/v1/accounts/{aid}/hooks/subscriptions/{hid}/ping", "post", ping.status, &ping.body);
        receiver.wait_for(std::time::Duration::from_secs(10), |r| !r.is_empty()).await;
        let deliveries = app.send(reqwest::Method::GET, &format!("{hook}/deliveries"), Some(&hooks_token), None).await;
        check_answer(&doc, "/v1/accounts/{aid}/hooks/subscriptions/{hid}/deliveries", "get", deliveries.status, &deliveries.body);

        let deleted = app.delete(&app.user_url("c1")).await;
        check_answer(&doc, USER, "delete", deleted.status, &deleted.body);
        let erased = app.list("include_deleted=true&type=any").await;
        check_answer(&doc, USERS, "get", erased.status, &erased.body);
    }

    async fn parameters_state_the_ranges_the_service_enforces(app: &TestApp) {
        let doc = document(app).await;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for param in op["parameters"].as_array().into_iter().flatten() {
                    if param["name"] == "limit" {
                        let schema = &param["schema"];
                        assert_eq!((schema["minimum"].as_f64(), schema["maximum"].as_f64()), (Some(1.0), Some(100.0)), "{method} {path}");
                    }
                }
            }
        }
        let list = operation(&doc, USERS, "get");
        let type_param = list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "type").unwrap();
        let named = type_param["schema"].to_string();
        let reference = named.split("#/components/schemas/").nth(1).map(|r| r.split('"').next().unwrap().to_owned());
        let schema = reference.map_or(type_param["schema"].clone(), |name| doc["components"]["schemas"][name].clone());
        let values: Vec<&str> = schema["enum"].as_array().expect("type is an enum").iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(values, ["customer", "company", "contact", "employee", "other", "any"]);
        for (path, method) in [(USER, "put"), (USER, "delete")] {
            let op = operation(&doc, path, method);
            assert!(op["responses"]["412"].is_object(), "{method} {path}");
            let header = op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "If-Match" && p["in"] == "header");
            assert!(header, "{method} {path} answers 412 without documenting If-Match");
        }
        assert_eq!(app.get(&format!("{}?limit=0", app.users_url())).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.get(&format!("{}?limit=1", app.users_url())).await.status, StatusCode::OK);
    }
}
