//! `POST /v1/accounts/{aid}/auth/token` (client credentials, §2) and the
//! public key set at `/.well-known/jwks.json`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{verify_secret, UNKNOWN_CLIENT_HASH};
use crate::domain::ids::Scope;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{is_json, parse_json, Account};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/accounts/{aid}/auth/token", post(issue_token)).route("/.well-known/jwks.json", get(jwks))
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    /// `<base>/v1/accounts/{aid}`: must name the client's own account.
    pub audience: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// Exchange client credentials (HTTP Basic) for an access token.
#[utoipa::path(post, path = "/v1/accounts/{aid}/auth/token", tag = "auth",
    params(("aid" = String, Path)),
    request_body(content = TokenRequest, content_type = "application/json"),
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "invalid client credentials", body = ErrorBody),
        (status = 429, description = "too many token requests from this address, or too many failed attempts for this client id from it", body = ErrorBody),
        (status = 503, description = "every secret-checking slot is busy; retry after the Retry-After seconds", body = ErrorBody)),
    security(("basic" = [])))]
pub async fn issue_token(
    State(state): State<AppState>,
    Account(account): Account,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<TokenResponse>> {
    let (client_id, secret) = basic_credentials(&headers).ok_or_else(invalid_credentials)?;
    let request = parse_token_request(&headers, &body)?;
    let throttle = &state.throttle;
    // Per address first: a caller who changes the client id on every try
    // must not get a fresh budget (or a fresh Argon2 computation) each time.
    let address = peer.map_or_else(|| "unknown".to_owned(), |Extension(ConnectInfo(peer))| peer.ip().to_string());
    throttle.token_requests.check(&address, Instant::now()).map_err(ApiError::rate_limited)?;
    throttle.request(|| format!("login:{client_id}")).map_err(ApiError::rate_limited)?;
    // Failures lock out the client id from this address only: anyone who
    // knows a client id (readers see it as `created_by`) could otherwise
    // lock its owner out.
    let attempt = format!("{client_id} {address}");
    throttle.logins.check(&attempt, Instant::now()).map_err(ApiError::rate_limited)?;

    let client = state.store.find_client(&client_id).await?;
    // Check against a hash of the same cost when the client is unknown, so
    // the answer takes as long either way and does not tell which part was
    // wrong.
    let hash = client.as_ref().map_or_else(|| UNKNOWN_CLIENT_HASH.to_owned(), |c| c.secret_hash.clone());
    let secret_ok = state.hashing.run(move || verify_secret(&secret, &hash)).await?;
    let client = match client {
        Some(c) if secret_ok && c.account_id == account.as_str() => c,
        _ => {
            throttle.logins.failed(&attempt, Instant::now());
            return Err(invalid_credentials());
        }
    };
    throttle.logins.succeeded(&attempt);

    if request.grant_type.as_deref() != Some("client_credentials") {
        return Err(ApiError::bad_request("unsupported_grant_type", "grant_type must be client_credentials"));
    }
    let audience = request.audience.unwrap_or_default();
    if !audience.ends_with(&format!("/v1/accounts/{account}")) {
        return Err(ApiError::forbidden("the audience must be <base>/v1/accounts/<this client's account>"));
    }

    let scopes: Vec<Scope> = client.scopes.split_whitespace().filter_map(Scope::parse).collect();
    let ttl = state.keys.token_ttl;
    let access_token = state.keys.issue(&account, &client.client_id, &scopes, ttl).map_err(|_| ApiError::internal())?;
    Ok(Json(TokenResponse { access_token, token_type: "Bearer", expires_in: ttl.as_secs() }))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The body may be JSON or a form (as OAuth clients send it).
fn parse_token_request(headers: &HeaderMap, body: &[u8]) -> ApiResult<TokenRequest> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let mut request = TokenRequest { grant_type: None, audience: None };
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "grant_type" => request.grant_type = Some(value.into_owned()),
                "audience" => request.audience = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(request)
    } else if is_json(headers) {
        parse_json(body)
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the token request as application/json or application/x-www-form-urlencoded",
        ))
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid client credentials: send the client id and secret as HTTP Basic",
    )
}

/// The public keys that verify this deployment's tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set")))]
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.keys.jwks())
}
