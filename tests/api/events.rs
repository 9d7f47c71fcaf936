//! §10: the account event log and customer history.

use customers::domain::ids::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Reply, TestApp, ACCOUNT};

fn events_url(app: &TestApp, query: &str) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/events?{query}"))
}

fn history_url(app: &TestApp, customer_id: &str, query: &str) -> String {
    format!("{}/events?{query}", app.user_url(customer_id))
}

fn items(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_array().expect("an array of events").clone()
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event"].as_str().unwrap()).collect()
}

/// The next page's URL from a `Link` header.
fn next_link(app: &TestApp, reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    let path = link.strip_prefix('<')?.split('>').next()?;
    Some(app.url(path))
}

/// Every event of the account, following the `Link` headers.
async fn whole_feed(app: &TestApp, query: &str) -> Vec<Value> {
    let mut url = events_url(app, query);
    let mut all = Vec::new();
    loop {
        let reply = app.get(&url).await;
        all.extend(items(&reply));
        match next_link(app, &reply) {
            Some(next) => url = next,
            None => return all,
        }
    }
}

both_backends! {
    async fn a_customers_history_reads_back_create_three_updates_and_delete(app: &TestApp) {
        app.create(json!({"customer_id": "c1", "first_name": "Ada", "email": "ada@example.com", "metadata": {"tier": "gold"}})).await;
        let update = app
            .client
            .put(app.user_url("c1"))
            .bearer_auth(app.admin())
            .header("x-request-id", "req-first-update")
            .json(&json!({"first_name": "Augusta"}))
            .send()
            .await
            .unwrap();
        assert_eq!(update.status(), StatusCode::OK);
        assert_eq!(app.put(&app.user_url("c1"), &json!({"metadata": {"tier": "silver"}})).await.status, StatusCode::OK);
        let address = json!([{"address_line": "Storgata 1", "postal_code": "0155", "postal_place": "Oslo", "country": "NO"}]);
        assert_eq!(app.put(&app.user_url("c1"), &json!({"addresses": address})).await.status, StatusCode::OK);
        let before_erasure = items(&app.get(&history_url(app, "c1", "")).await);
        assert_eq!(names(&before_erasure), ["customer_update", "customer_update", "customer_update", "customer_add"]);
        assert_eq!(before_erasure[3]["data"]["first_name"], "Ada", "a create's data is the new record");
        assert_eq!(before_erasure[3]["data"]["email"], "ada@example.com");
        assert!(before_erasure[3].get("changes").is_none());
        assert_eq!(before_erasure[2]["changes"], json!({"first_name": {"from": "Ada", "to": "Augusta"}}));
        assert_eq!(before_erasure[2]["data"]["first_name"], "Augusta");
        assert_eq!(before_erasure[1]["changes"], json!({"metadata.tier": {"from": "gold", "to": "silver"}}));
        assert_eq!(before_erasure[0]["changes"], json!({"addresses": {"from": null, "to": address}}));

        let deleted = app.delete(&app.user_url("c1")).await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);

        let history = items(&app.get(&history_url(app, "c1", "")).await);
        assert_eq!(names(&history), ["customer_delete", "customer_update", "customer_update", "customer_update", "customer_add"]);
        let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
        let id = history[4]["data"]["id"].clone();
        for event in &history {
            assert_eq!(event["account_id"], ACCOUNT);
            assert_eq!(event["customer_id"], "c1");
            assert_eq!(event["created_by"], "test-client");
            assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{event}");
            assert!(event["created_at"].as_str().is_some());
        }
        assert_eq!(history[3]["request_id"], "req-first-update", "the caller's request id is kept");
        assert_eq!(history[0]["data"], json!({"id": id, "customer_id": "c1"}), "a delete carries ids only");
        // Erasure reached the history: who, when and which fields stay, the values do not.
        for (erased, kept) in history[1..].iter().zip(&before_erasure) {
            assert_eq!((&erased["id"], &erased["seq"], &erased["created_at"]), (&kept["id"], &kept["seq"], &kept["created_at"]));
            let fields = |e: &Value| e.get("changes").map(|c| c.as_object().unwrap().keys().cloned().collect::<Vec<_>>());
            assert_eq!(fields(erased), fields(kept));
        }
        assert_eq!(history[4]["data"]["first_name"], "[erased]");
        assert_eq!(history[4]["data"]["customer_id"], "c1");
        assert_eq!(history[3]["changes"], json!({"first_name": {"from": "[erased]", "to": "[erased]"}}));
        for value in ["Ada", "Augusta", "ada@example.com", "Storgata", "gold", "silver"] {
            assert!(!Value::Array(history.clone()).to_string().contains(value), "{value} survived erasure");
        }

        // Keyset pages of two, newest first, still after the delete.
        let first = app.get(&history_url(app, "c1", "limit=2")).await;
        assert_eq!(names(&items(&first)), ["customer_delete", "customer_update"]);
        let second = app.get(&next_link(app, &first).expect("a next page")).await;
        assert_eq!(items(&second), history[2..4].to_vec());
        let third = app.get(&next_link(app, &second).expect("a last page")).await;
        assert_eq!(items(&third), history[4..].to_vec());
        assert!(next_link(app, &third).is_none());

        assert_eq!(app.get(&history_url(app, "nobody", "")).await.code(), "customer_not_found");
    }

    async fn every_change_appends_one_event_in_commit_order(app: &TestApp) {
        let base = app.url(&format!("/v1/accounts/{ACCOUNT}/customers"));
        app.create(json!({"customer_id": "c1", "email": "one@example.com"})).await;
        let tag = app.post(&format!("{base}/tags"), &json!({"tag": "vip"})).await.body["id"].clone();
        assert_eq!(app.put(&format!("{base}/users/c1/tags"), &json!([tag])).await.status, StatusCode::OK);
        let token = app.post(&format!("{base}/users/c1/tokens"), &json!({"type": "card", "value": "4111"})).await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        let token_id = token.body["token_id"].as_str().unwrap().to_owned();
        let event = json!({"token": {"type": "card", "value": "4111"}, "event": {"event": "seen", "status": "SEEN"}});
        assert_eq!(app.post(&format!("{base}/tokens/events"), &event).await.status, StatusCode::OK);
        assert_eq!(app.delete(&format!("{base}/users/c1/tokens/{token_id}")).await.status, StatusCode::OK);
        let settings = json!({"auto_tokens": {"email": [{"type": "HMAC-SHA256", "secret": "0123456789abcdef-secret"}]}});
        assert_eq!(app.put(&format!("{base}/settings"), &settings).await.status, StatusCode::OK);
        let changed = app.post(&format!("{base}/users/c1/change_customer_id"), &json!({"customer_id": "c2"})).await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);

        let feed = whole_feed(app, "limit=3").await;
        assert_eq!(
            names(&feed),
            [
                "customer_add", "customer_tags_update", "customer_token_add", "token_event_add",
                "customer_token_delete", "customers_settings_update", "customer_id_change",
            ]
        );
        let seqs: Vec<i64> = feed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>(), "oldest first, one seq per change");
        assert_eq!(feed[1]["data"]["tags"][0]["tag"], "vip");
        assert_eq!(feed[1]["changes"]["tags"]["from"], json!([]));
        assert_eq!(feed[2]["data"]["value"], "4111");
        assert_eq!(feed[3]["customer_id"], "c1", "a token event is about the token's holder");
        assert_eq!(feed[3]["data"]["status"], "SEEN");
        assert!(feed[4]["data"]["deleted_at"].is_string());
        assert!(feed[5].get("customer_id").is_none());
        assert!(!feed[5].to_string().contains("0123456789abcdef-secret"), "secrets stay out of events: {}", feed[5]);
        assert_eq!(feed[6]["changes"]["customer_id"], json!({"from": "c1", "to": "c2"}));
        assert_eq!(feed[6]["customer_id"], "c2");

        // The history follows the customer across its change of customer_id.
        let history = items(&app.get(&history_url(app, "c2", "")).await);
        assert_eq!(history.len(), 6, "every event about the customer: {:?}", names(&history));
        assert_eq!(app.get(&history_url(app, "c1", "")).await.status, StatusCode::NOT_FOUND);

        // Filters.
        assert_eq!(names(&items(&app.get(&events_url(app, "event=customer_token_add")).await)), ["customer_token_add"]);
        let since = items(&app.get(&events_url(app, "since_seq=5")).await);
        assert_eq!(since.iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>(), [6, 7]);
        assert_eq!(items(&app.get(&events_url(app, "customer_id=c2")).await).len(), 6);
        assert!(items(&app.get(&events_url(app, "customer_id=nobody")).await).is_empty());
        for (query, code) in [
            ("since_seq=-1", "invalid_integer"),
            ("event=nope", "invalid_value"),
            ("starting_after=nope", "invalid_cursor"),
            ("colour=red", "unknown_parameter"),
        ] {
            let reply = app.get(&events_url(app, query)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.body["error"]["errors"][0]["code"], code, "{query}: {}", reply.body);
        }
        let unknown = app.get(&events_url(app, &format!("starting_after={}", uuid::Uuid::now_v7()))).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    }

    async fn a_change_that_rolls_back_appends_no_event(app: &TestApp) {
        app.create(json!({"customer_id": "c1", "email": "taken@example.com"})).await;
        app.create(json!({"customer_id": "c2"})).await;
        let before = whole_feed(app, "").await;
        let duplicate = app.post(&app.users_url(), &json!({"customer_id": "c3", "email": "taken@example.com"})).await;
        assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
        let duplicate = app.put(&app.user_url("c2"), &json!({"email": "TAKEN@example.com"})).await;
        assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
        let stale = app
            .client
            .put(app.user_url("c2"))
            .bearer_auth(app.admin())
            .header("if-match", "\"1\"")
            .json(&json!({"first_name": "Late"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
        let stale_delete = app
            .client
            .delete(app.user_url("c2"))
            .bearer_auth(app.admin())
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale_delete.status(), StatusCode::PRECONDITION_FAILED);
        let unknown_tag = app.put(&format!("{}/tags", app.user_url("c2")), &json!([uuid::Uuid::new_v4()])).await;
        assert_eq!(unknown_tag.status, StatusCode::BAD_REQUEST);
        assert_eq!(whole_feed(app, "").await, before, "no event for a change that rolled back");
        // The next change takes the next seq: nothing was used up.
        assert_eq!(app.put(&app.user_url("c2"), &json!({"first_name": "Now"})).await.status, StatusCode::OK);
        let feed = whole_feed(app, "").await;
        assert_eq!(feed.last().unwrap()["seq"], before.len() as i64 + 1);
    }

    async fn an_import_appends_one_event_per_customer_it_stores(app: &TestApp) {
        use customers::store::{ImportRow, OnRejected};
        app.create(json!({"customer_id": "before"})).await;
        let account = customers::domain::ids::AccountId::parse(ACCOUNT).unwrap();
        let row = |line: u64, id: &str| {
            ImportRow::new(line, id.to_owned(), serde_json::from_value(json!({"first_name": format!("Imported {id}")})).unwrap())
        };
        // Two batches (PostgreSQL writes them at once); "before" exists already.
        let batches = vec![vec![row(1, "i1"), row(2, "before")], vec![row(3, "i2"), row(4, "i3")]];
        let outcomes = app.store.import_customers(&account, batches, "importer", OnRejected::KeepTheRest).await.unwrap();
        assert_eq!(outcomes.iter().map(|o| o.inserted).sum::<u64>(), 3);
        app.create(json!({"customer_id": "after"})).await;
        let feed = whole_feed(app, "").await;
        let ids: Vec<&str> = feed.iter().map(|e| e["customer_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["before", "i1", "i2", "i3", "after"]);
        assert!(feed.iter().all(|e| e["event"] == "customer_add"));
        let seqs: Vec<i64> = feed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in commit order: {seqs:?}");
        assert_eq!(feed[2]["created_by"], "importer");
        assert_eq!(feed[2]["data"]["first_name"], "Imported i2");
        assert_eq!(feed[2]["data"], app.get(&app.user_url("i2")).await.body, "the data is the customer as stored");
    }

    async fn pruning_keeps_what_a_delivery_still_waits_for(app: &TestApp) {
        // A subscription whose receiver refuses: its deliveries stay pending.
        let refusing = crate::helpers::Receiver::start(std::sync::Arc::new(|_| (503, std::time::Duration::ZERO))).await;
        app.create(json!({"customer_id": "old"})).await;
        let hooks = app.url(&format!("/v1/accounts/{ACCOUNT}/hooks/subscriptions"));
        let body = json!({"config": {"url": refusing.url()}, "events": ["customer_update"]});
        let token = app.token(&[Scope::HooksAdmin]);
        assert_eq!(app.send(Method::POST, &hooks, Some(&token), Some(&body)).await.status, StatusCode::CREATED);
        assert_eq!(app.put(&app.user_url("old"), &json!({"first_name": "Waiting"})).await.status, StatusCode::OK);
        assert_eq!(whole_feed(app, "").await.len(), 2);
        // Everything is older than a cut-off a minute ahead; the update's
        // delivery still waits.
        let pruned = app.store.prune_events(chrono::Utc::now() + chrono::TimeDelta::minutes(1)).await.unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(names(&whole_feed(app, "").await), ["customer_update"]);
        let later = app.store.prune_events(chrono::Utc::now() - chrono::TimeDelta::days(1)).await.unwrap();
        assert_eq!(later, 0, "nothing younger than the cut-off goes");
    }

    async fn the_event_log_is_for_readers_of_the_account(app: &TestApp) {
        app.create(json!({"customer_id": "c1"})).await;
        let customer_id = app.get(&app.user_url("c1")).await.body["id"].as_str().unwrap().to_owned();
        for (scopes, status) in [
            (vec![Scope::Read], StatusCode::OK),
            (vec![Scope::Write], StatusCode::FORBIDDEN),
            (vec![Scope::CreateUsers], StatusCode::FORBIDDEN),
        ] {
            let token = app.token(&scopes);
            for url in [events_url(app, ""), history_url(app, "c1", "")] {
                let reply = app.send(Method::GET, &url, Some(&token), None).await;
                assert_eq!(reply.status, status, "{scopes:?} {url}");
            }
        }
        let own = app.token_for(ACCOUNT, &customer_id, &[Scope::User]);
        let reply = app.send(Method::GET, &history_url(app, "c1", ""), Some(&own), None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "a customer's own token reads no history");
        assert_eq!(app.send(Method::GET, &events_url(app, ""), None, None).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn a_since_seq_poller_sees_every_event_of_concurrent_writers_once_in_order(app: &TestApp) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sibling = app.sibling().await;
        let done = AtomicBool::new(false);
        let writers = (0..4).map(|w| {
            let sibling = &sibling;
            async move {
                for i in 0..30 {
                    let id = format!("w{w}-{}", i % 10);
                    let url = if w % 2 == 0 { app.users_url() } else { sibling.rebase(app, &app.users_url()) };
                    let reply = match i / 10 {
                        0 => app.post(&url, &json!({"customer_id": id})).await,
                        1 => app.put(&format!("{url}/{id}"), &json!({"metadata": {"i": i}})).await,
                        _ => app.delete(&format!("{url}/{id}")).await,
                    };
                    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                }
            }
        });
        let poller = async {
            let mut last = 0_i64;
            let mut quiet_polls = 0;
            let mut polls = 0;
            while quiet_polls < 3 {
                polls += 1;
                assert!(polls < 5000, "the feed does not drain");
                let finished = done.load(Ordering::SeqCst);
                let page = items(&app.get(&events_url(app, &format!("since_seq={last}&limit=7"))).await);
                for event in &page {
                    let seq = event["seq"].as_i64().unwrap();
                    assert_eq!(seq, last + 1, "a reader never skips past an event that commits later");
                    last = seq;
                }
                if page.is_empty() && finished {
                    quiet_polls += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            last
        };
        let ((), last) = tokio::join!(
            async {
                futures::future::join_all(writers).await;
                done.store(true, Ordering::SeqCst);
            },
            poller
        );
        assert_eq!(last, 120, "every acknowledged write's event was seen, once");
    }
}
