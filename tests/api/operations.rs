//! §9 and the CLI: health, metrics, OpenAPI, request ids, several processes
//! sharing one database, and the `customers` binary itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use customers::domain::ids::AccountId;
use customers::store::OnRejected;

use crate::both_backends;
use crate::helpers::{binary, run_json, Backend, TestApp, TestDatabase, ACCOUNT};

both_backends! {
    async fn health_metrics_and_openapi_answer(app: &TestApp) {
        let live = app.send(Method::GET, &app.url("/health/live"), None, None).await;
        assert_eq!(live.status, StatusCode::OK);
        let ready = app.send(Method::GET, &app.url("/health/ready"), None, None).await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.body["database"], match app.db.backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" });

        app.list("").await;
        let metrics = app.send(Method::GET, &app.url("/metrics"), None, None).await;
        let text = metrics.body.as_str().unwrap();
        assert!(text.contains("http_requests_total"), "{text}");
        assert!(text.contains("route=\"/v1/accounts/{aid}/customers/users\""));
        // Durations are histograms, which add up across processes.
        assert!(text.contains("# TYPE http_request_duration_seconds histogram"), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{") && text.contains("le=\"0.005\""), "{text}");
        if app.db.backend == Backend::Postgres {
            // GETs by customer_id go out in batches (`point_reads`), counted.
            app.get(&app.user_url("nobody")).await;
            let metrics = app.send(Method::GET, &app.url("/metrics"), None, None).await;
            let text = metrics.body.as_str().unwrap();
            assert!(text.contains("db_point_read_statements_total") && text.contains("db_point_reads_total"), "{text}");
        }

        let doc = app.send(Method::GET, &app.url("/v1/openapi.json"), None, None).await;
        assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc.body["paths"].as_object().unwrap();
        for path in ["/v1/accounts/{aid}/customers/users", "/v1/accounts/{aid}/customers/users/{customer_id}",
                     "/v1/accounts/{aid}/customers/users/{customer_id}/change_customer_id", "/v1/accounts/{aid}/auth/token",
                     "/v1/accounts/{aid}/customers/tags", "/v1/accounts/{aid}/customers/tags/{tag_id}",
                     "/v1/accounts/{aid}/customers/users/{customer_id}/tags",
                     "/v1/accounts/{aid}/customers/users/{customer_id}/tokens",
                     "/v1/accounts/{aid}/customers/users/{customer_id}/tokens/{token_id}",
                     "/v1/accounts/{aid}/customers/tokens/events", "/v1/accounts/{aid}/customers/settings",
                     "/v1/accounts/{aid}/customers/terms", "/v1/accounts/{aid}/customers/terms/{tid}"] {
            assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
        }
        // The errors every account operation can answer are documented on each.
        for (path, item) in paths.iter().filter(|(path, _)| path.starts_with("/v1/accounts/")) {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["400", "401", "403", "429", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} does not document {status}");
                }
                let has_body = operation.get("requestBody").is_some();
                assert_eq!(responses.contains_key("415"), has_body, "{method} {path}: 415 exactly when it takes a body");
            }
        }
    }

    async fn request_ids_are_echoed_or_made(app: &TestApp) {
        let given = app.client.get(app.url("/health/live")).header("x-request-id", "abc-123").send().await.unwrap();
        assert_eq!(given.headers()["x-request-id"], "abc-123");
        let made = app.client.get(app.url("/health/live")).send().await.unwrap();
        assert!(uuid::Uuid::parse_str(made.headers()["x-request-id"].to_str().unwrap()).is_ok());
    }

    async fn processes_sharing_a_database_share_the_signing_key(app: &TestApp) {
        let store = app.db.open().await;
        let second = customers::auth::Keys::load_or_create(&*store, crate::helpers::ISSUER, Duration::from_secs(60)).await.unwrap();
        assert_eq!(second.jwks(), app.keys.jwks());
    }

    async fn cli_creates_clients_and_issues_customer_tokens(app: &TestApp) {
        let url = app.db.url.clone();
        let client = run_json(&["clients", "create", "--database", &url, "--account", ACCOUNT,
            "--scopes", "read:customers write:customers", "--client-id", "pos-1"]);
        assert_eq!(client["client_id"], "pos-1");
        assert_eq!(client["account_id"], ACCOUNT);
        assert_eq!(client["scopes"], "read:customers write:customers");
        let secret = client["client_secret"].as_str().unwrap();
        let response = app.client.post(app.url(&format!("/v1/accounts/{ACCOUNT}/auth/token")))
            .basic_auth("pos-1", Some(secret))
            .json(&json!({"grant_type": "client_credentials", "audience": format!("x/v1/accounts/{ACCOUNT}")}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let me = app.create(json!({"customer_id": "self"})).await;
        let token = run_json(&["tokens", "issue", "--database", &url, "--issuer", crate::helpers::ISSUER,
            "--account", ACCOUNT, "--scopes", "user:customers", "--subject", me["id"].as_str().unwrap()]);
        let access = token["access_token"].as_str().unwrap();
        let own = app.send(Method::GET, &app.user_url("self"), Some(access), None).await;
        assert_eq!(own.status, StatusCode::OK);

        let bad = binary().args(["clients", "create", "--database", "mysql://x", "--account", ACCOUNT, "--scopes", "read:customers"]).output().unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("sqlite://"), "the error names the accepted forms");
    }
}

both_backends! {
    /// The README's first command: `customers serve` on an empty database prints
    /// a working client and curl, and stops cleanly on SIGTERM.
    async fn serve_bootstraps_a_client_and_stops_on_sigterm(backend: Backend) {
        let db = TestDatabase::create(backend).await;
        let mut child = binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &db.url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let lines: Vec<String> = tokio::task::spawn_blocking(move || {
            stdout.lines().map_while(Result::ok).take_while(|l| !l.trim_end().ends_with("/auth/token")).collect()
        })
        .await
        .unwrap();
        let field = |name: &str| {
            lines
                .iter()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("{name} not printed: {lines:?}"))
        };
        let (id, secret) = (field("client_id:"), field("client_secret:"));
        let base = lines
            .iter()
            .find_map(|l| l.split("\"audience\":\"").nth(1))
            .unwrap()
            .split("/v1/")
            .next()
            .unwrap()
            .to_owned();

        let client = reqwest::Client::new();
        let token: Value = client
            .post(format!("{base}/v1/accounts/{ACCOUNT}/auth/token"))
            .basic_auth(&id, Some(&secret))
            .json(&json!({"grant_type": "client_credentials", "audience": format!("{base}/v1/accounts/{ACCOUNT}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = client
            .get(format!("{base}/v1/accounts/{ACCOUNT}/customers/users"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), StatusCode::OK, "{backend:?}");

        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{backend:?}: exit {status}");
    }
}

both_backends! {
    async fn import_validates_lines_skips_what_exists_and_export_round_trips(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        let lines = [
            r#"{"customer_id": "i1", "first_name": "Ida", "email": "ida@x.io", "attributes": {"tier": "gold"}}"#,
            r#"{"email": "not-an-email"}"#,
            "",
            r#"{"first_name": "No Id", "phone_number": "+4790000001"}"#,
            r#"{"customer_id": "i3", "email": "IDA@x.io"}"#,
            r#"{"customer_id": "i4", "frist_name": "typo"}"#,
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let import = |strict: bool| {
            let mut cmd = binary();
            cmd.args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--file", file.to_str().unwrap()]);
            if strict {
                cmd.arg("--strict");
            }
            cmd.output().unwrap()
        };

        let strict = import(true);
        assert!(!strict.status.success());
        assert_eq!(app.row_count().await, 0, "--strict writes nothing when a line is invalid");

        let first = import(false);
        let (stdout, stderr) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
        assert!(!first.status.success(), "bad lines make the exit status non-zero");
        assert!(stdout.contains("imported 2 customers"), "{stdout}");
        assert!(stderr.contains("line 2: email"), "{stderr}");
        assert!(stderr.contains("line 5: email or phone_number belongs to another customer"), "{stderr}");
        assert!(stderr.contains("line 6: frist_name"), "{stderr}");
        assert_eq!(app.get(&app.user_url("i1")).await.body["attributes"]["tier"], "gold");
        assert_eq!(TestApp::ids(&app.list("attributes_keys=tier&attributes_values=gold").await), ["i1"]);

        let again = import(false);
        assert!(String::from_utf8_lossy(&again.stdout).contains("imported 0 customers"));
        assert!(String::from_utf8_lossy(&again.stdout).contains("2 already present"));
        assert_eq!(app.row_count().await, 2, "a re-run creates no duplicates");

        app.delete(&app.user_url("i1")).await;
        let export = binary().args(["export", "--database", &app.db.url, "--account", ACCOUNT, "--include-deleted"]).output().unwrap();
        assert!(export.status.success());
        let exported: Vec<Value> = String::from_utf8_lossy(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(exported.len(), 2);
        assert!(exported.iter().any(|c| c["customer_id"] == "i1" && c["deleted_at"].is_string()));

        // What export writes, import reads: into another account.
        let out = dir.path().join("out.ndjson");
        std::fs::write(&out, &export.stdout).unwrap();
        let other = binary().args(["import", "--database", &app.db.url, "--account", "T00000009", "--file", out.to_str().unwrap()]).output().unwrap();
        assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stderr));
        assert!(String::from_utf8_lossy(&other.stdout).contains("imported 1 customers"), "the deleted record is not revived");
    }
}

both_backends! {
    async fn a_strict_import_stores_nothing_of_a_batch_that_collides_with_stored_data(app: &TestApp) {
        app.create(json!({"customer_id": "kept", "email": "taken@x.io"})).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        let lines = [
            r#"{"customer_id": "s1", "email": "new@x.io"}"#,
            r#"{"customer_id": "s2", "email": "TAKEN@x.io"}"#,
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = binary()
            .args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--file", file.to_str().unwrap()])
            .arg("--strict")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("line 2: email or phone_number belongs to another customer"), "{stderr}");
        assert_eq!(app.row_count().await, 1, "the colliding batch's valid line is not stored either");
        assert_eq!(app.get(&app.user_url("s1")).await.status, StatusCode::NOT_FOUND);
    }
}

// Where a batch is its own transaction (PostgreSQL; `--strict`), large
// batches are faster; where SQLite's transactions span batches, a batch's
// size only sets what the importer holds, so it is small
// (`BatchImport::default_batch_size`).
both_backends! {
    async fn import_batches_are_small_only_where_transactions_span_them(app: &TestApp) {
        let store = app.db.open().await;
        let account = AccountId::parse(ACCOUNT).unwrap();
        let spanning = store.batch_import(&account, "test", OnRejected::KeepTheRest).default_batch_size();
        let strict = store.batch_import(&account, "test", OnRejected::RollBack).default_batch_size();
        match app.db.backend {
            Backend::Sqlite => assert!(spanning < strict, "{spanning} against {strict}"),
            Backend::Postgres => assert_eq!(spanning, strict, "every PostgreSQL batch is a transaction"),
        }
    }
}

// With `--batch-size 2` every two lines are a batch. On PostgreSQL two
// consecutive batches are written at once by two transactions
// (`store::import`) unless a unique value or a contact links them; either
// way the outcome is that of one batch after the other.
both_backends! {
    async fn batches_written_at_once_keep_the_file_order_and_its_links(app: &TestApp) {
        let lines = [
            // Batches 1 and 2: nothing links them.
            json!({"customer_id": "9", "email": "p1@x.io"}),
            json!({"customer_id": "p2", "phone_number": "+4791000002"}),
            json!({"customer_id": "7", "email": "p3@x.io"}),
            json!({"customer_id": "p4", "phone_number": "+4791000004"}),
            // Batches 3 and 4: the later names a customer of the earlier.
            json!({"customer_id": "p5"}),
            json!({"customer_id": "p6"}),
            json!({"customer_id": "p7", "type": "contact", "contact_for": [{"customer_id": "p5"}]}),
            json!({"customer_id": "p8"}),
            // Batches 5 and 6: one email in both; the later one is refused.
            json!({"customer_id": "p9", "email": "same@x.io"}),
            json!({"customer_id": "p10"}),
            json!({"customer_id": "p11", "email": "SAME@x.io"}),
            json!({"customer_id": "p12"}),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        write_ndjson(&file, &lines);
        let import = || {
            import_two_lines_a_batch(app, &file).output().unwrap()
        };

        let out = import();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("imported 11 customers"), "{stdout}");
        assert!(stderr.contains("line 11: email or phone_number belongs to another customer"), "{stderr}");
        let pairs = stderr.matches("two batches written at once").count();
        assert_eq!(pairs, if app.db.backend == Backend::Postgres { 1 } else { 0 }, "{stderr}");

        let stored: Vec<String> = lines
            .iter()
            .map(|line| line["customer_id"].as_str().unwrap().to_owned())
            .filter(|id| id != "p11")
            .collect();
        let newest_first: Vec<String> = stored.iter().rev().cloned().collect();
        assert_eq!(TestApp::ids(&app.list("limit=100&type=any").await), newest_first);
        let feed = app.list("since_datetime=2000-01-01T00:00:00Z&limit=100&type=any").await;
        assert_eq!(TestApp::ids(&feed), stored, "the change feed sees the file's order");
        assert_eq!(app.get(&app.user_url("p7")).await.body["contact_for"][0]["customer_id"], "p5");

        // The highest number, from the earlier batch of the pair, is noted.
        let settings = app.url(&format!("/v1/accounts/{ACCOUNT}/customers/settings"));
        let put = app.put(&settings, &json!({"users": {"customer_id_format": "sequence"}})).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(app.create(json!({})).await["customer_id"], "10");

        let again = import();
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert!(stdout.contains("imported 0 customers") && stdout.contains("11 already present"), "{stdout}");

        // A pair whose earlier batch has no row left to write, and whose
        // later one holds a contact of a customer stored before.
        let dangling = json!({"type": "contact", "contact_for": [{"customer_id": "ghost"}]});
        let contact = json!({"customer_id": "q2", "type": "contact", "contact_for": [{"customer_id": "p2"}]});
        let lines = [dangling.clone(), dangling, json!({"customer_id": "q1"}), contact];
        write_ndjson(&file, &lines);
        let out = import();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("imported 2 customers"), "{stdout} {stderr}");
        assert!(stderr.contains("line 2: contact_for[0].customer_id"), "{stderr}");
        assert_eq!(app.get(&app.user_url("q2")).await.body["contact_for"][0]["customer_id"], "p2");
        let pairs = stderr.matches("two batches written at once").count();
        assert_eq!(pairs, if app.db.backend == Backend::Postgres { 1 } else { 0 }, "{stderr}");
    }
}

// A pair's earlier batch commits only once the wall clock has passed its
// timestamps (`store::import::import_pair`). With the account clock far
// ahead of the wall clock it would wait that long: the batches go one
// after the other instead.
both_backends! {
    async fn batches_go_one_after_the_other_when_the_account_clock_runs_ahead(app: &TestApp) {
        app.create(json!({"customer_id": "first"})).await;
        let ahead = (chrono::Utc::now().timestamp_micros() + 600_000_000).to_string();
        let set = "UPDATE account_clocks SET last_us = CAST($1 AS BIGINT) WHERE account_id = $2 \
                   RETURNING CAST(last_us AS TEXT)";
        assert_eq!(app.db.query_text(set, &[&ahead, ACCOUNT]).await.len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        let lines: Vec<Value> = ["a1", "a2", "a3", "a4"].iter().map(|id| json!({"customer_id": id})).collect();
        write_ndjson(&file, &lines);
        let started = std::time::Instant::now();
        let out = import_two_lines_a_batch(app, &file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(60), "the import waited for the clock");
        assert_eq!(stderr.matches("two batches written at once").count(), 0, "{stderr}");
        assert_eq!(TestApp::ids(&app.list("limit=10").await), ["a4", "a3", "a2", "a1", "first"]);
        let oldest_import = app.get(&app.user_url("a1")).await.body["created_at"].as_str().unwrap().to_owned();
        let oldest_import = chrono::DateTime::parse_from_rfc3339(&oldest_import).unwrap().timestamp_micros();
        assert!(oldest_import > ahead.parse::<i64>().unwrap(), "imported customers are newer than the clock");
    }
}

both_backends! {
    async fn a_strict_import_stops_at_the_first_refused_batch_of_a_pair(app: &TestApp) {
        app.create(json!({"customer_id": "kept", "email": "taken@x.io"})).await;
        let dir = tempfile::tempdir().unwrap();
        let strict_import = |name: &str, lines: [Value; 4]| {
            let file = dir.path().join(name);
            write_ndjson(&file, &lines);
            import_two_lines_a_batch(app, &file).arg("--strict").output().unwrap()
        };

        let later_refused = strict_import("later.ndjson", [
            json!({"customer_id": "s1"}),
            json!({"customer_id": "s2"}),
            json!({"customer_id": "s3", "email": "TAKEN@x.io"}),
            json!({"customer_id": "s4"}),
        ]);
        assert!(!later_refused.status.success());
        assert!(String::from_utf8_lossy(&later_refused.stderr).contains("line 3: email"));
        assert_eq!(app.row_count().await, 3, "the earlier batch is stored, the refused one not");
        assert_eq!(app.get(&app.user_url("s4")).await.status, StatusCode::NOT_FOUND);

        let earlier_refused = strict_import("earlier.ndjson", [
            json!({"customer_id": "t1", "email": "taken@X.io"}),
            json!({"customer_id": "t2"}),
            json!({"customer_id": "t3"}),
            json!({"customer_id": "t4"}),
        ]);
        assert!(!earlier_refused.status.success());
        assert!(String::from_utf8_lossy(&earlier_refused.stderr).contains("line 1: email"));
        assert_eq!(app.row_count().await, 3, "nothing after the refused batch is stored either");
    }
}

// On SQLite an import's transaction spans batches (`store::import`); the
// importer commits before it waits for input, so what it wrote is stored
// and the write lock free while the input pauses. (Two batches: on
// PostgreSQL a window is a pair.)
both_backends! {
    async fn an_import_waiting_for_input_has_stored_what_it_wrote(app: &TestApp) {
        use std::io::Write;
        let mut child = binary()
            .args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--batch-size", "2", "--file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        for id in ["p1", "p2", "p3", "p4"] {
            writeln!(input, "{}", json!({"customer_id": id})).unwrap();
        }
        input.flush().unwrap();
        let mut waited = Duration::ZERO;
        while app.get(&app.user_url("p4")).await.status != StatusCode::OK {
            assert!(waited < Duration::from_secs(20), "what the import wrote is stored while it waits");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        // A writer of a serving process does not wait for the import.
        app.create(json!({"customer_id": "api"})).await;

        writeln!(input, "{}", json!({"customer_id": "p5"})).unwrap();
        drop(input);
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("imported 5 customers"));
        assert_eq!(app.row_count().await, 6);
    }
}

// A file that cannot be read to its end (here: a line that is not UTF-8)
// fails the import, keeps the lines before it and lists those refused.
both_backends! {
    async fn an_import_that_cannot_read_on_keeps_the_lines_before(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        let mut bytes = Vec::new();
        for i in 1..=5 {
            bytes.extend(format!("{}\n", json!({"customer_id": format!("r{i}")})).as_bytes());
        }
        bytes.extend(b"{\"email\": \"not-an-email\"}\n");
        bytes.extend(b"{\"customer_id\": \"\xff\"}\n");
        std::fs::write(&file, bytes).unwrap();
        let out = binary()
            .args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--batch-size", "2"])
            .args(["--file", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("reading line 7: 5 customers imported before it") && stderr.contains("UTF-8"), "{stderr}");
        assert!(stderr.contains("line 6: email"), "the lines refused before the error are listed: {stderr}");
        assert_eq!(app.row_count().await, 5, "the lines before the error are stored");
    }
}

// A first import takes PostgreSQL's COPY path, whose text format gives
// tabs, newlines and backslashes a meaning: every value must arrive as it
// was sent, attributes included.
both_backends! {
    async fn import_keeps_every_character_of_its_values(app: &TestApp) {
        let awkward = "tab\there\nnew line \\N back\\slash \r \"quoted\" Bjørn Åse 💡";
        // Names take no control characters, but backslashes and quotes.
        let name = "\\N back\\slash \"quoted\" Bjørn";
        let lines: Vec<String> = (0..3)
            .map(|i| {
                json!({
                    "customer_id": format!("w{i}\\{i}"),
                    "first_name": format!("{name} {i}"),
                    "email": format!("w{i}@x.io"),
                    "metadata": {"note": awkward, "path": "C:\\new\\table"},
                    "attributes": {"tier": awkward},
                })
                .to_string()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.ndjson");
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = binary()
            .args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--file", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("imported 3 customers"));
        for i in 0..3 {
            let got = app.get(&app.user_url(&format!("w{i}%5C{i}"))).await;
            assert_eq!(got.status, StatusCode::OK, "w{i}");
            assert_eq!(got.body["first_name"], format!("{name} {i}"));
            assert_eq!(got.body["metadata"]["note"], awkward);
            assert_eq!(got.body["metadata"]["path"], "C:\\new\\table");
        }
        let found = app.list(&format!("attributes_keys=tier&attributes_values={}", urlencode(awkward))).await;
        assert_eq!(TestApp::ids(&found).len(), 3, "attribute rows hold the same text");
        let searched = app.list(&format!("search={}", urlencode("\\n back\\"))).await;
        assert_eq!(TestApp::ids(&searched).len(), 3, "the name's index column holds the backslashes");
    }
}

fn write_ndjson(file: &std::path::Path, lines: &[Value]) {
    std::fs::write(file, lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
}

/// `customers import` of `file` into the test account, two lines a batch,
/// logging each pair of batches written at once (at debug level).
fn import_two_lines_a_batch(app: &TestApp, file: &std::path::Path) -> Command {
    let mut command = binary();
    command
        .args(["import", "--database", &app.db.url, "--account", ACCOUNT, "--batch-size", "2"])
        .args(["--file", file.to_str().unwrap()])
        .env("CUSTOMERS_LOG", "warn,customers::store::import=debug");
    command
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Personal data never reaches the logs at the default level: the server
/// logs routes and statuses, not URIs, bodies or tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_logs_hold_no_personal_data() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let token = run_json(&[
        "tokens",
        "issue",
        "--database",
        &db.url,
        "--account",
        ACCOUNT,
        "--scopes",
        "admin:customers",
        "--subject",
        "log-test",
    ])["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_customers"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database", &db.url, "--log-format", "json"])
        .env_remove("CUSTOMERS_LOG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/v1/accounts/{ACCOUNT}/customers/users");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("http://127.0.0.1:{port}/health/live")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (email, phone) = ("grace.secret@navy.example", "+4791234567");
    let send = |request: reqwest::RequestBuilder| async { request.bearer_auth(&token).send().await.unwrap().status() };
    assert_eq!(
        send(client.post(&base).json(&json!({"customer_id": "g", "email": email, "phone_number": phone}))).await,
        StatusCode::OK
    );
    assert_eq!(
        send(client.post(&base).json(&json!({"customer_id": "h", "email": email}))).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(send(client.put(format!("{base}/g")).json(&json!({"first_name": "Grace"}))).await, StatusCode::OK);
    assert_eq!(
        send(client.get(format!("{base}?email=grace.secret%40navy.example&phone_number=%2B4791234567"))).await,
        StatusCode::OK
    );
    assert_eq!(send(client.get(format!("{base}?search=grace.secret"))).await, StatusCode::OK);
    assert_eq!(send(client.get(format!("{base}/g"))).await, StatusCode::OK);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(logged.contains("finished processing request"), "requests are logged: {logged}");
    for secret in [email, "grace.secret", "4791234567", "Grace", token.as_str()] {
        assert!(!logged.contains(secret), "{secret} appears in the logs:\n{logged}");
    }
}

/// `tokens issue` refuses lifetimes outside one second to a year and
/// subjects that are empty, multi-line or longer than 255 bytes, before
/// it opens the database.
#[test]
fn tokens_issue_validates_ttl_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let issue = |extra: &[&str]| {
        let mut args = vec!["tokens", "issue", "--database", &url, "--account", ACCOUNT, "--scopes", "read:customers"];
        args.extend_from_slice(extra);
        binary().args(&args).output().expect("run customers")
    };
    let long_subject = "x".repeat(100_000);
    for bad in [
        vec!["--subject", "c", "--ttl", "18446744073709551615"],
        vec!["--subject", "c", "--ttl", "0"],
        vec!["--subject", "c", "--ttl", "31536001"],
        vec!["--subject", ""],
        vec!["--subject", "line\nbreak"],
        vec!["--subject", &long_subject],
    ] {
        let output = issue(&bad);
        assert_eq!(output.status.code(), Some(2), "{:?}", &bad[..2]);
        assert!(!String::from_utf8_lossy(&output.stderr).is_empty());
    }
    assert!(!dir.path().join("c.db").exists(), "nothing was opened");
    let output = issue(&["--subject", "c", "--ttl", "31536000"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
