//! Our extractors: they answer malformed input in the contract's error shape
//! instead of axum's plain-text rejections. `Auth` verifies the bearer token
//! against the account in the path.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, RawQuery, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::{Principal, TokenError};
use crate::domain::body::{self, BodyError, Shape};
use crate::domain::ids::{AccountId, Scope};
use crate::domain::validate::Errors;
use crate::store::IdempotencyKey;

use super::error::ApiError;
use super::AppState;

/// The account of the path (`/v1/accounts/{aid}/…`), validated.
pub struct Account(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid_path", "the path is invalid"))?;
        let raw = params.iter().find(|(name, _)| *name == "aid").map(|(_, value)| value).unwrap_or_default();
        AccountId::parse(raw)
            .map(Account)
            .ok_or_else(|| ApiError::bad_request("invalid_account_id", "the account id must match ^[PT]\\d{8}$"))
    }
}

/// A verified caller of an account's endpoints.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Account(account) = Account::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        match state.keys.verify(token, &account) {
            Ok(mut principal) => {
                let caller = || format!("client:{}:{}", principal.account, principal.subject);
                state.throttle.request(caller).map_err(ApiError::rate_limited)?;
                let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok());
                principal.request_id = request_id.map(str::to_owned);
                Ok(Auth(principal))
            }
            Err(TokenError::Invalid) => Err(ApiError::unauthorized()),
            Err(TokenError::OtherAccount) => Err(ApiError::forbidden("the token was issued for another account")),
        }
    }
}

/// 403 unless the token carries one of `scopes`.
pub fn require(principal: &Principal, scopes: &[Scope]) -> Result<(), ApiError> {
    if principal.has_any(scopes) {
        Ok(())
    } else {
        let names: Vec<_> = scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::forbidden(format!("requires one of the scopes: {}", names.join(", "))))
    }
}

/// The decoded query string as ordered pairs (repeatable keys kept).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state).await.unwrap_or(RawQuery(None));
        let pairs = raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Ok(QueryPairs(pairs))
    }
}

impl QueryPairs {
    /// Parses the parameters of an endpoint that takes only boolean flags;
    /// anything else is a 400.
    pub fn flags(&self, allowed: &[&str]) -> Result<Vec<bool>, ApiError> {
        let mut errors = Errors::default();
        let mut values = vec![false; allowed.len()];
        for (name, value) in &self.0 {
            match allowed.iter().position(|a| a == name) {
                Some(i) => crate::domain::listing::parse_bool(&mut errors, name, value, &mut values[i]),
                None => errors.add(name, "unknown_parameter", "is not a parameter of this endpoint"),
            }
        }
        errors.into_result().map(|()| values).map_err(ApiError::invalid)
    }
}

/// A JSON object body: `application/json` only (415 otherwise), within the
/// body limit (413), well-formed (400 `invalid_json`) and of the right shape
/// (400 naming the field).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        parse_json_shaped(&bytes, Shape::Object).map(ApiJson)
    }
}

/// A JSON object body as [`ApiJson`] reads it, plus the request's
/// `Idempotency-Key` (if any) with a digest of the body, so that a retry can
/// be told from a different request under the same key.
pub struct IdempotentJson<T> {
    pub body: T,
    pub idempotency: Option<IdempotencyKey>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for IdempotentJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let key = match req.headers().get("idempotency-key") {
            None => None,
            Some(value) => Some(idempotency_key(value.as_bytes())?),
        };
        let bytes = json_body(req, state).await?;
        let body = parse_json_shaped(&bytes, Shape::Object)?;
        let idempotency = key.map(|key| IdempotencyKey { key, fingerprint: body_fingerprint(&bytes) });
        Ok(IdempotentJson { body, idempotency })
    }
}

/// An `Idempotency-Key` value: 1 to 255 visible ASCII characters.
fn idempotency_key(value: &[u8]) -> Result<String, ApiError> {
    let valid = (1..=255).contains(&value.len()) && value.iter().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(value) {
        Ok(key) if valid => Ok(key.to_owned()),
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// SHA-256 of the body's canonical JSON (keys sorted, no whitespace): the
/// same document sent again matches however it is formatted.
fn body_fingerprint(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::from_slice::<serde_json::Value>(bytes)
        .and_then(|value| serde_json::to_vec(&value))
        .unwrap_or_else(|_| bytes.to_vec());
    crate::domain::hex(&Sha256::digest(canonical))
}

/// A JSON array body, with the same checks as [`ApiJson`].
pub struct ApiJsonList<T>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJsonList<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        parse_json_shaped(&bytes, Shape::Array).map(ApiJsonList)
    }
}

async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_request("invalid_body", "the request body could not be read")
        }
    })
}

pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Deserialises a JSON object body (see `domain::body`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_shaped(bytes, Shape::Object)
}

fn parse_json_shaped<T: DeserializeOwned>(bytes: &[u8], shape: Shape) -> Result<T, ApiError> {
    body::parse(bytes, shape).map_err(|error| match error {
        BodyError::NotJson => ApiError::bad_request("invalid_json", "the request body is not valid JSON"),
        BodyError::Invalid(errors) => ApiError::invalid(errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::CustomerInput;

    #[test]
    fn body_errors_answer_in_the_contract_shape() {
        assert_eq!(parse_json::<CustomerInput>(b"{").unwrap_err().code, "invalid_json");
        let error = parse_json::<CustomerInput>(br#"{"frist_name":"a"}"#).unwrap_err();
        assert_eq!((error.code, error.errors[0].field.as_str()), ("validation_error", "frist_name"));
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        assert_eq!(idempotency_key(b"order-42:retry").unwrap(), "order-42:retry");
        let too_long = vec![b'k'; 256];
        for bad in [&b""[..], b"has space", b"tab\t", "n\u{e5}".as_bytes(), &too_long] {
            assert_eq!(idempotency_key(bad).unwrap_err().code, "invalid_idempotency_key", "{bad:?}");
        }
    }

    #[test]
    fn a_body_fingerprint_ignores_formatting_but_not_content() {
        let compact = body_fingerprint(br#"{"a":1,"b":{"c":[1,2]}}"#);
        assert_eq!(compact, body_fingerprint(b"{ \"b\": {\"c\": [1, 2]},\n \"a\": 1 }"));
        assert_ne!(compact, body_fingerprint(br#"{"a":1,"b":{"c":[2,1]}}"#));
        assert_ne!(compact, body_fingerprint(br#"{"a":2,"b":{"c":[1,2]}}"#));
        assert_eq!(compact.len(), 64);
    }
}
