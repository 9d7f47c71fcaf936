//! §2: the token endpoint, bearer verification, scopes, account isolation
//! and `user:customers` self-service.

use base64::Engine;
use customers::domain::ids::{AccountId, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT, ISSUER, OTHER_ACCOUNT};

async fn client(app: &TestApp, account: &str, scopes: &[Scope]) -> (String, String) {
    let account = AccountId::parse(account).unwrap();
    let (record, secret) = customers::auth::create_client(&*app.store, &account, scopes, None, None).await.unwrap();
    (record.client_id, secret)
}

async fn request_token(app: &TestApp, account: &str, id: &str, secret: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/accounts/{account}/auth/token")))
        .basic_auth(id, Some(secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

fn audience(account: &str) -> String {
    format!("https://api.example.com/v1/accounts/{account}")
}

both_backends! {
    async fn client_credentials_give_a_token_that_works(app: &TestApp) {
        let (id, secret) = client(app, ACCOUNT, &[Scope::Read]).await;
        let body = json!({"grant_type": "client_credentials", "audience": audience(ACCOUNT)});
        let (status, token) = request_token(app, ACCOUNT, &id, &secret, body).await;
        assert_eq!(status, StatusCode::OK, "{token}");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 600);
        let access = token["access_token"].as_str().unwrap();
        let listed = app.send(Method::GET, &app.users_url(), Some(access), None).await;
        assert_eq!(listed.status, StatusCode::OK);

        // The claims the contract names are present.
        let payload = access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        for claim in ["iss", "aud", "sub", "scope", "iat", "exp", "jti"] {
            assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
        }
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["iss"], ISSUER);
    }

    async fn form_encoded_token_requests_are_accepted(app: &TestApp) {
        let (id, secret) = client(app, ACCOUNT, &[Scope::Read]).await;
        let response = app.client
            .post(app.url(&format!("/v1/accounts/{ACCOUNT}/auth/token")))
            .basic_auth(&id, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&audience={}", audience(ACCOUNT)))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn wrong_credentials_get_401_without_saying_which_part(app: &TestApp) {
        let (id, secret) = client(app, ACCOUNT, &[Scope::Read]).await;
        let body = json!({"grant_type": "client_credentials", "audience": audience(ACCOUNT)});
        let (s1, wrong_secret) = request_token(app, ACCOUNT, &id, "nope", body.clone()).await;
        let (s2, unknown_client) = request_token(app, ACCOUNT, "nobody", &secret, body.clone()).await;
        assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
        assert_eq!(wrong_secret, unknown_client);
        // A client of another account cannot get a token on this one.
        let (other_id, other_secret) = client(app, OTHER_ACCOUNT, &[Scope::Admin]).await;
        let (s3, _) = request_token(app, ACCOUNT, &other_id, &other_secret, body).await;
        assert_eq!(s3, StatusCode::UNAUTHORIZED);
    }

    async fn token_requests_need_the_grant_and_the_own_audience(app: &TestApp) {
        let (id, secret) = client(app, ACCOUNT, &[Scope::Read]).await;
        let (status, body) = request_token(app, ACCOUNT, &id, &secret,
            json!({"grant_type": "password", "audience": audience(ACCOUNT)})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "unsupported_grant_type");
        let (status, _) = request_token(app, ACCOUNT, &id, &secret,
            json!({"grant_type": "client_credentials", "audience": audience(OTHER_ACCOUNT)})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    async fn missing_or_invalid_bearer_tokens_get_401(app: &TestApp) {
        for token in [None, Some("garbage"), Some("a.b.c")] {
            let reply = app.send(Method::GET, &app.users_url(), token, None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(reply.code(), "unauthorized");
        }
        // Change the first signature character (the last one may only carry
        // padding bits, which decode to the same signature).
        let token = app.admin();
        let at = token.rfind('.').unwrap() + 1;
        let flipped = if token[at..].starts_with('A') { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        let reply = app.send(Method::GET, &app.users_url(), Some(&forged), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }

    async fn a_token_for_one_account_gets_403_on_another(app: &TestApp) {
        app.create(json!({"customer_id": "mine", "email": "mine@x.io"})).await;
        let other = app.token_for(OTHER_ACCOUNT, "intruder", &[Scope::Admin]);
        let reply = app.send(Method::GET, &app.user_url("mine"), Some(&other), None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert!(!reply.body.to_string().contains("mine@x.io"));
        let listed = app.send(Method::GET, &app.users_url(), Some(&other), None).await;
        assert_eq!(listed.status, StatusCode::FORBIDDEN);
        // And its own account sees none of ours.
        let own = app.send(Method::GET, &app.url(&format!("/v1/accounts/{OTHER_ACCOUNT}/customers/users")), Some(&other), None).await;
        assert_eq!(own.body, json!([]));
    }

    async fn scopes_limit_what_a_token_may_do(app: &TestApp) {
        app.create(json!({"customer_id": "c1"})).await;
        let read = app.token(&[Scope::Read]);
        let create_only = app.token(&[Scope::CreateUsers]);
        let public = app.token(&[Scope::Public]);
        let body = json!({"first_name": "x"});
        let cases: Vec<(&str, Method, String, Option<&Value>, StatusCode)> = vec![
            (&read, Method::POST, app.users_url(), Some(&body), StatusCode::FORBIDDEN),
            (&read, Method::PUT, app.user_url("c1"), Some(&body), StatusCode::FORBIDDEN),
            (&read, Method::DELETE, app.user_url("c1"), None, StatusCode::FORBIDDEN),
            (&read, Method::GET, app.user_url("c1"), None, StatusCode::OK),
            (&create_only, Method::GET, app.user_url("c1"), None, StatusCode::FORBIDDEN),
            (&create_only, Method::GET, app.users_url(), None, StatusCode::FORBIDDEN),
            (&create_only, Method::POST, app.users_url(), Some(&body), StatusCode::OK),
            (&public, Method::GET, app.users_url(), None, StatusCode::FORBIDDEN),
        ];
        for (token, method, url, body, expected) in cases {
            let reply = app.send(method.clone(), &url, Some(token), body).await;
            assert_eq!(reply.status, expected, "{method} {url}: {}", reply.body);
        }
    }

    async fn employee_and_other_types_need_admin_or_write(app: &TestApp) {
        let create_only = app.token(&[Scope::CreateUsers]);
        for kind in ["employee", "other"] {
            let body = json!({"type": kind});
            let reply = app.send(Method::POST, &app.users_url(), Some(&create_only), Some(&body)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{kind}");
        }
        let writer = app.token(&[Scope::Write]);
        let reply = app.send(Method::POST, &app.users_url(), Some(&writer), Some(&json!({"type": "employee"}))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(app.row_count().await, 1);
    }

    async fn user_tokens_reach_only_their_own_record(app: &TestApp) {
        let me = app.create(json!({"customer_id": "me", "first_name": "Me"})).await;
        app.create(json!({"customer_id": "you", "first_name": "You"})).await;
        let token = app.token_for(ACCOUNT, me["id"].as_str().unwrap(), &[Scope::User]);

        let own = app.send(Method::GET, &app.user_url("me"), Some(&token), None).await;
        assert_eq!(own.status, StatusCode::OK);
        let theirs = app.send(Method::GET, &app.user_url("you"), Some(&token), None).await;
        assert_eq!(theirs.status, StatusCode::FORBIDDEN);
        let missing = app.send(Method::GET, &app.user_url("nobody"), Some(&token), None).await;
        assert_eq!(missing.status, StatusCode::FORBIDDEN);

        let update = json!({"first_name": "Still me"});
        let own_put = app.send(Method::PUT, &app.user_url("me"), Some(&token), Some(&update)).await;
        assert_eq!(own_put.status, StatusCode::OK);
        assert_eq!(own_put.body["first_name"], "Still me");
        let their_put = app.send(Method::PUT, &app.user_url("you"), Some(&token), Some(&update)).await;
        assert_eq!(their_put.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get(&app.user_url("you")).await.body["first_name"], "You");
        let promote = app.send(Method::PUT, &app.user_url("me"), Some(&token), Some(&json!({"type": "employee"}))).await;
        assert_eq!(promote.status, StatusCode::FORBIDDEN);
        let list = app.send(Method::GET, &app.users_url(), Some(&token), None).await;
        assert_eq!(list.status, StatusCode::FORBIDDEN);
    }

    async fn self_service_callers_cannot_probe_other_customers_through_contact_for(app: &TestApp) {
        let me = app.create(json!({"customer_id": "me", "type": "contact"})).await;
        app.create(json!({"customer_id": "you"})).await;
        let user = app.token_for(ACCOUNT, me["id"].as_str().unwrap(), &[Scope::User]);
        let signup = app.token(&[Scope::CreateUsers]);
        let mut answers = Vec::new();
        for named in ["you", "nobody"] {
            let link = json!({"type": "contact", "contact_for": [{"customer_id": named}]});
            let put = app.send(Method::PUT, &app.user_url("me"), Some(&user), Some(&link)).await;
            let post = app.send(Method::POST, &app.users_url(), Some(&signup), Some(&link)).await;
            for reply in [put, post] {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "naming {named}: {}", reply.body);
                answers.push(reply.body.clone());
            }
        }
        assert_eq!(answers[0..2], answers[2..4], "the same answers whether the named customer exists or not");
        assert_eq!(answers[0]["error"]["errors"][0]["field"], "contact_for");
        assert_eq!(app.row_count().await, 2, "nothing was written");
        let writer = app.token(&[Scope::Write]);
        let link = json!({"type": "contact", "contact_for": [{"customer_id": "you"}]});
        let reply = app.send(Method::PUT, &app.user_url("me"), Some(&writer), Some(&link)).await;
        assert_eq!(reply.status, StatusCode::OK, "a writer may link: {}", reply.body);
    }

    async fn jwks_publishes_the_key_that_signs_tokens(app: &TestApp) {
        let reply = app.send(Method::GET, &app.url("/.well-known/jwks.json"), None, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let key = &reply.body["keys"][0];
        assert_eq!((key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()), (Some("OKP"), Some("Ed25519"), Some("EdDSA")));
        let header = jsonwebtoken_header(&app.admin());
        assert_eq!(header["kid"], key["kid"]);
        assert_eq!(header["alg"], "EdDSA");
    }
}

fn jsonwebtoken_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}
