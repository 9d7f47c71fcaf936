//! §4.3: the customer list — filters, order, keyset paging, Link, total,
//! the since_datetime change feed and contact expansion.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Reply, TestApp, OTHER_ACCOUNT};
use customers::domain::ids::Scope;

/// The query part of a `Link: <…>; rel="next"` header.
fn next_query(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    let target = link.trim_start_matches('<').split('>').next().unwrap();
    Some(target.split_once('?').unwrap().1.to_owned())
}

async fn seed_people(app: &TestApp) {
    for (id, first, last, email, phone) in [
        ("p1", "Anna", "Berg", "anna.berg@example.com", "+4791111111"),
        ("p2", "Andreas", "Dahl", "andreas@Example.com", "+4792222222"),
        ("p3", "Bjørn", "Anders", "bjorn@sample.org", "+4691111111"),
        ("p4", "Carl", "Nilsen", "carl@sample.org", "+4793333333"),
    ] {
        app.create(
            json!({"customer_id": id, "first_name": first, "last_name": last, "email": email, "phone_number": phone}),
        )
        .await;
    }
}

both_backends! {
    async fn default_order_is_newest_first_without_contacts_or_deleted(app: &TestApp) {
        app.create(json!({"customer_id": "a"})).await;
        app.create(json!({"customer_id": "b"})).await;
        app.create(json!({"customer_id": "k", "type": "contact", "contact_for": [{"customer_id": "a"}]})).await;
        app.create(json!({"customer_id": "c"})).await;
        app.create(json!({"customer_id": "gone"})).await;
        app.delete(&app.user_url("gone")).await;
        assert_eq!(TestApp::ids(&app.list("").await), ["c", "b", "a"]);
        assert_eq!(TestApp::ids(&app.list("type=any").await), ["c", "k", "b", "a"]);
        assert_eq!(TestApp::ids(&app.list("type=contact").await), ["k", "a"], "contacts bring the customer they are for");
        let with_deleted = app.list("include_deleted=true").await;
        assert_eq!(TestApp::ids(&with_deleted), ["gone", "c", "b", "a"]);
        assert!(with_deleted.body[0].get("first_name").is_none() && with_deleted.body[0]["deleted_at"].is_string());
    }

    async fn email_prefix_is_case_insensitive(app: &TestApp) {
        seed_people(app).await;
        assert_eq!(TestApp::ids(&app.list("email=ANDREAS%40example").await), ["p2"]);
        let mut ids = TestApp::ids(&app.list("email=an").await);
        ids.sort();
        assert_eq!(ids, ["p1", "p2"]);
        assert!(TestApp::ids(&app.list("email=example.com").await).is_empty(), "prefix, not substring");
    }

    async fn phone_prefix_needs_an_encoded_plus(app: &TestApp) {
        seed_people(app).await;
        let mut ids = TestApp::ids(&app.list("phone_number=%2B4791").await);
        ids.sort();
        assert_eq!(ids, ["p1"]);
        assert_eq!(TestApp::ids(&app.list("phone_number=%2B46").await), ["p3"]);
    }

    async fn search_matches_names_full_name_phone_customer_id_and_email(app: &TestApp) {
        seed_people(app).await;
        let search = |q: &'static str| async move {
            let mut ids = TestApp::ids(&app.list(&format!("search={q}")).await);
            ids.sort();
            ids
        };
        assert_eq!(search("and").await, ["p2", "p3"], "first name Andreas, last name Anders");
        assert_eq!(search("ANNA%20B").await, ["p1"], "full name");
        assert_eq!(search("%2B4793").await, ["p4"], "phone");
        assert_eq!(search("P3").await, ["p3"], "customer_id");
        assert_eq!(search("carl%40").await, ["p4"], "email");
        assert_eq!(search("bjø").await, ["p3"], "non-ASCII");
        assert!(search("zzz").await.is_empty());
    }

    async fn filters_combine_and_total_counts_all_matches(app: &TestApp) {
        seed_people(app).await;
        app.create(json!({"customer_id": "co", "type": "company", "company": {"bussiness_name": "Anders AS"}, "email": "an@corp.io"})).await;
        let reply = app.list("search=an&type=customer&limit=1&total=true").await;
        assert_eq!(reply.header("total-count"), Some("3"));
        assert_eq!(reply.body.as_array().unwrap().len(), 1);
        assert_eq!(TestApp::ids(&app.list("email=an&type=company").await), ["co"]);
        let none = app.list("search=zzz&total=true").await;
        assert_eq!(none.header("total-count"), Some("0"));
        assert!(app.list("").await.header("total-count").is_none());
    }

    async fn attribute_filters_match_keys_values_and_list_members(app: &TestApp) {
        app.create(json!({"customer_id": "gold", "attributes": {"tier": "gold", "stores": ["oslo", "bergen"], "age": 40}})).await;
        app.create(json!({"customer_id": "silver", "attributes": {"tier": "silver"}})).await;
        app.create(json!({"customer_id": "none"})).await;
        let mut tiered = TestApp::ids(&app.list("attributes_keys=tier").await);
        tiered.sort();
        assert_eq!(tiered, ["gold", "silver"]);
        assert_eq!(TestApp::ids(&app.list("attributes_keys=tier&attributes_values=gold").await), ["gold"]);
        assert_eq!(TestApp::ids(&app.list("attributes_keys=stores&attributes_values=bergen").await), ["gold"]);
        assert_eq!(TestApp::ids(&app.list("attributes_keys=age&attributes_values=40").await), ["gold"]);
        assert!(TestApp::ids(&app.list("attributes_keys=tier&attributes_keys=stores&attributes_values=silver").await).is_empty());
    }

    async fn updates_replace_attribute_rows_and_refused_updates_keep_them(app: &TestApp) {
        let tier = |value: &'static str| async move {
            TestApp::ids(&app.list(&format!("attributes_keys=tier&attributes_values={value}")).await)
        };
        app.create(json!({"customer_id": "taken", "email": "taken@x.io"})).await;
        app.create(json!({"customer_id": "member", "attributes": {"tier": "gold"}})).await;

        let changed = app.put(&app.user_url("member"), &json!({"attributes": {"tier": "silver"}})).await;
        assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
        assert!(tier("gold").await.is_empty(), "the old attribute row is gone");
        assert_eq!(tier("silver").await, ["member"]);

        let refused =
            app.put(&app.user_url("member"), &json!({"attributes": {"tier": "bronze"}, "email": "TAKEN@x.io"})).await;
        assert_eq!(refused.code(), "duplicate_email");
        assert!(tier("bronze").await.is_empty(), "a refused update writes no attribute row");
        assert_eq!(tier("silver").await, ["member"]);
    }

    async fn paging_returns_every_customer_once_while_others_are_created(app: &TestApp) {
        let mut expected = HashSet::new();
        for i in 0..23 {
            app.create(json!({"customer_id": format!("seed-{i:02}")})).await;
            expected.insert(format!("seed-{i:02}"));
        }
        let mut seen = Vec::new();
        let mut query = "limit=5".to_owned();
        let mut pages = 0;
        loop {
            let reply = app.list(&query).await;
            seen.extend(TestApp::ids(&reply));
            // Writers keep adding customers between pages.
            app.create(json!({"customer_id": format!("late-{pages}")})).await;
            pages += 1;
            match next_query(&reply) {
                Some(next) => query = next,
                None => break,
            }
            assert!(pages < 20, "paging does not end");
        }
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a customer was returned twice: {seen:?}");
        assert!(expected.is_subset(&unique), "missed: {:?}", expected.difference(&unique).collect::<Vec<_>>());
        assert_eq!(pages, 5);
    }

    async fn link_keeps_the_filters_and_is_absent_on_the_last_page(app: &TestApp) {
        for i in 0..3 {
            app.create(json!({"customer_id": format!("x{i}"), "email": format!("x{i}@x.io")})).await;
        }
        let first = app.list("email=x&limit=2").await;
        let next = next_query(&first).expect("a next link");
        assert!(next.contains("email=x") && next.contains("limit=2") && next.contains("starting_after="), "{next}");
        let second = app.list(&next).await;
        assert_eq!(TestApp::ids(&second), ["x0"]);
        assert!(second.header("link").is_none());
        let exact = app.list("limit=3").await;
        assert!(exact.header("link").is_none(), "no next page when the matches end exactly");
    }

    async fn since_datetime_feeds_changes_oldest_first_without_stalling(app: &TestApp) {
        let start = app.create(json!({"customer_id": "first"})).await["created_at"].as_str().unwrap().to_owned();
        for i in 0..5 {
            app.create(json!({"customer_id": format!("c{i}")})).await;
        }
        app.put(&app.user_url("first"), &json!({"first_name": "changed"})).await;
        app.delete(&app.user_url("c0")).await;

        let mut seen = Vec::new();
        let mut query = format!("since_datetime={}&limit=2&include_deleted=true", start.replace('+', "%2B"));
        for _ in 0..10 {
            let reply = app.list(&query).await;
            seen.extend(TestApp::ids(&reply));
            match next_query(&reply) {
                Some(next) => query = next,
                None => break,
            }
        }
        assert_eq!(seen, ["c1", "c2", "c3", "c4", "first", "c0"]);
    }

    async fn invalid_list_parameters_are_400(app: &TestApp) {
        for query in [
            "limit=0", "limit=101", "type=person", "since_datetime=yesterday", "total=maybe",
            "colour=red", "starting_after=not-a-uuid",
            "since_datetime=2026-01-01T00:00:00Z&starting_after=00000000-0000-0000-0000-000000000000",
        ] {
            let reply = app.get(&format!("{}?{query}", app.users_url())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.code(), "validation_error", "{query}");
        }
        let unknown_cursor = app.get(&format!("{}?starting_after={}", app.users_url(), uuid::Uuid::new_v4())).await;
        assert_eq!(unknown_cursor.status, StatusCode::BAD_REQUEST);
        assert_eq!(unknown_cursor.body["error"]["errors"][0]["field"], "starting_after");
    }

    async fn a_cursor_must_name_a_customer_of_the_account(app: &TestApp) {
        seed_people(app).await;
        let oldest = app.get(&app.user_url("p1")).await.body["id"].as_str().unwrap().to_owned();
        let other_users = app.url(&format!("/v1/accounts/{OTHER_ACCOUNT}/customers/users"));
        let other_admin = app.token_for(OTHER_ACCOUNT, "other", &[Scope::Admin]);
        let body = json!({"customer_id": "theirs"});
        let other = app.send(reqwest::Method::POST, &other_users, Some(&other_admin), Some(&body)).await;
        let theirs = other.body["id"].as_str().unwrap().to_owned();
        for query in [
            format!("starting_after={}", uuid::Uuid::new_v4()),
            format!("starting_after={theirs}"),
            format!("search=an&starting_after={theirs}"),
            format!("email=c&total=true&starting_after={}", uuid::Uuid::new_v4()),
        ] {
            let reply = app.get(&format!("{}?{query}", app.users_url())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.body["error"]["errors"][0]["code"], "invalid_cursor", "{query}");
        }
        // The oldest customer is a good cursor with nothing after it.
        let end = app.list(&format!("starting_after={oldest}&total=true")).await;
        assert_eq!(end.body, json!([]));
        assert_eq!(end.header("total-count"), Some("4"));
        assert!(end.header("link").is_none());
    }
}

both_backends! {
    async fn rare_prefixes_older_than_the_newest_rows_are_still_found_and_paged(app: &TestApp) {
        use customers::domain::customer::CustomerInput;
        use customers::store::{ImportRow, OnRejected};
        let account = customers::domain::ids::AccountId::parse(crate::helpers::ACCOUNT).unwrap();
        // A deleted match (its customer_id still matches), three old
        // matches (one of them in three columns), then more non-matching
        // customers than the window plan looks at.
        app.create(json!({"customer_id": "zed-gone"})).await;
        app.delete(&app.user_url("zed-gone")).await;
        let total = customers::store::listing::WINDOW as u64 + 100;
        let rows: Vec<ImportRow> = (0..total)
            .map(|i| {
                let customer = match i {
                    1 => json!({"first_name": "Zed1", "last_name": "Zedson", "email": "zed1@example.org"}),
                    0 | 2 => json!({"first_name": format!("Zed{i}")}),
                    _ => json!({"first_name": format!("Common{i}")}),
                };
                let mut customer = customer;
                customer["attributes"] = json!({"n": i});
                let input: CustomerInput = serde_json::from_value(customer).unwrap();
                let (_, data) = input.into_new(chrono::Utc::now()).unwrap();
                ImportRow::new(i + 1, format!("r{i:05}"), data)
            })
            .collect();
        app.store.import_customers(&account, vec![rows], "test", OnRejected::KeepTheRest).await.unwrap();

        let first = app.list("search=zed&limit=2&total=true").await;
        assert_eq!(TestApp::ids(&first), ["r00002", "r00001"]);
        assert_eq!(first.header("total-count"), Some("3"));
        let next = app.list(&next_query(&first).expect("a next page")).await;
        assert_eq!(TestApp::ids(&next), ["r00000"]);
        assert!(next.header("link").is_none());
        // One at a time: a customer matching in several columns comes once.
        let mut query = "search=zed&limit=1".to_owned();
        let mut paged = Vec::new();
        loop {
            let page = app.list(&query).await;
            paged.extend(TestApp::ids(&page));
            let Some(next) = next_query(&page) else { break };
            query = next;
        }
        assert_eq!(paged, ["r00002", "r00001", "r00000"]);
        let with_deleted = app.list("search=zed&include_deleted=true").await;
        assert_eq!(TestApp::ids(&with_deleted), ["r00002", "r00001", "r00000", "zed-gone"]);
        assert_eq!(TestApp::ids(&app.list("email=zed").await), ["r00001"]);
        // With another condition the few candidates are sorted after
        // reading their rows.
        assert_eq!(TestApp::ids(&app.list("search=zed&attributes_keys=n").await), ["r00002", "r00001", "r00000"]);
        // A dense prefix is answered from the newest rows.
        assert_eq!(TestApp::ids(&app.list("search=common&limit=2").await), [format!("r{:05}", total - 1), format!("r{:05}", total - 2)]);
    }
}

both_backends! {
    async fn dense_prefixes_behind_the_window_are_found_by_walking_newest_first(app: &TestApp) {
        use customers::domain::customer::CustomerInput;
        use customers::store::listing::{MAX_SORTED_CANDIDATES, WINDOW};
        use customers::store::{ImportRow, OnRejected};
        let account = customers::domain::ids::AccountId::parse(crate::helpers::ACCOUNT).unwrap();
        let dense = MAX_SORTED_CANDIDATES as u64 + 50;
        let total = dense + WINDOW as u64 + 50;
        let rows: Vec<ImportRow> = (0..total)
            .map(|i| {
                let name = if i < dense { "Dense" } else { "Other" };
                let customer = json!({"last_name": name, "attributes": {"tier": "x"}});
                let input: CustomerInput = serde_json::from_value(customer).unwrap();
                let (_, data) = input.into_new(chrono::Utc::now()).unwrap();
                ImportRow::new(i + 1, format!("d{i:05}"), data)
            })
            .collect();
        let batches = rows.chunks(5000).map(<[ImportRow]>::to_vec).collect();
        app.store.import_customers(&account, batches, "test", OnRejected::KeepTheRest).await.unwrap();
        // A lone prefix orders its candidates inside its indexes; with
        // another condition, this many candidates are walked newest first.
        for query in ["search=dense&limit=2", "search=dense&limit=2&attributes_keys=tier"] {
            let page = app.list(query).await;
            assert_eq!(TestApp::ids(&page), [format!("d{:05}", dense - 1), format!("d{:05}", dense - 2)], "{query}");
            let next = app.list(&next_query(&page).unwrap()).await;
            assert_eq!(TestApp::ids(&next), [format!("d{:05}", dense - 3), format!("d{:05}", dense - 4)], "{query}");
        }
    }
}

both_backends! {
    async fn a_since_datetime_poller_sees_every_write_of_concurrent_writers(app: &TestApp) {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicBool, Ordering};
        let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let done = AtomicBool::new(false);
        let writers = (0..4).map(|w| async move {
            let mut acknowledged = Vec::new();
            for i in 0..40 {
                let id = format!("w{w}-{}", i % 10);
                let reply = match i / 10 {
                    0 => app.post(&app.users_url(), &json!({"customer_id": id})).await,
                    1 | 2 => app.put(&app.user_url(&id), &json!({"metadata": {"i": i}})).await,
                    _ => app.delete(&app.user_url(&id)).await,
                };
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                acknowledged.push((id, reply.body["updated_at"].as_str().unwrap().to_owned()));
            }
            acknowledged
        });
        let poller = async {
            let mut seen: HashMap<String, String> = HashMap::new();
            let mut query = format!("since_datetime={}&limit=7&include_deleted=true&type=any", start.replace('+', "%2B"));
            let mut quiet_polls = 0;
            let mut polls = 0;
            while quiet_polls < 3 {
                polls += 1;
                assert!(polls < 5000, "the feed does not drain (stuck on equal timestamps?)");
                let finished = done.load(Ordering::SeqCst);
                let reply = app.list(&query).await;
                let rows = reply.body.as_array().unwrap().clone();
                for c in &rows {
                    seen.insert(c["customer_id"].as_str().unwrap().to_owned(), c["updated_at"].as_str().unwrap().to_owned());
                }
                if let Some(next) = next_query(&reply) {
                    query = next;
                } else if let Some(last) = rows.last() {
                    let at: chrono::DateTime<chrono::Utc> = last["updated_at"].as_str().unwrap().parse().unwrap();
                    let after = (at + chrono::Duration::microseconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    query = format!("since_datetime={}&limit=7&include_deleted=true&type=any", after.replace('+', "%2B"));
                }
                if rows.is_empty() && finished {
                    quiet_polls += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            seen
        };
        let (acknowledged, seen) = tokio::join!(
            async {
                let all = futures::future::join_all(writers).await;
                done.store(true, Ordering::SeqCst);
                all.into_iter().flatten().collect::<Vec<_>>()
            },
            poller
        );
        assert_eq!(acknowledged.len(), 160);
        for (id, at) in &acknowledged {
            let observed = seen.get(id).unwrap_or_else(|| panic!("{id} never seen"));
            assert!(observed >= at, "{id}: the poller saw {observed} but a write at {at} was acknowledged");
        }
    }
}
