//! Our extractors: they answer malformed input in the contract's error shape
//! instead of axum's plain-text rejections. `Auth` verifies the bearer token
//! against the account in the path.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, RawQuery, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::{Principal, TokenError};
use crate::domain::ids::{AccountId, Scope};
use crate::domain::strict::Strict;
use crate::domain::validate::{Errors, FieldError};
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
            Ok(principal) => {
                let caller = || format!("client:{}:{}", principal.account, principal.subject);
                state.throttle.request(caller).map_err(ApiError::rate_limited)?;
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
        parse_json_shaped(&bytes, b'{').map(ApiJson)
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
        let body = parse_json_shaped(&bytes, b'{')?;
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
        parse_json_shaped(&bytes, b'[').map(ApiJsonList)
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

/// Deserialises a JSON object body, turning serde's first complaint into a
/// field error. (serde would also accept an array for a struct, by position;
/// the contract's bodies are objects.)
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_shaped(bytes, b'{')
}

/// Deserialises a body that must open with `opening` (`{` or `[`).
fn parse_json_shaped<T: DeserializeOwned>(bytes: &[u8], opening: u8) -> Result<T, ApiError> {
    let invalid_json = || ApiError::bad_request("invalid_json", "the request body is not valid JSON");
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(invalid_json()),
        Some(b) if *b == opening => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => return Err(invalid_json()),
        Some(_) => {
            let shape = if opening == b'[' { "a JSON array" } else { "a JSON object" };
            return Err(ApiError::invalid(vec![FieldError::new("body", "invalid_type", format!("must be {shape}"))]));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // Strict: a struct only from an object (§3: no coercion of JSON types).
    let value = serde_path_to_error::deserialize(Strict(&mut deserializer)).map_err(|error| {
        let inner = error.inner();
        let well_formed = || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if inner.is_eof() || (inner.is_syntax() && !well_formed()) {
            return invalid_json();
        }
        let path = error.path().to_string();
        if inner.is_syntax() {
            // serde_json reports a non-string where an enum's name belongs
            // as a syntax error ("expected value"), though the JSON is fine.
            let field = if path == "." { "body".to_owned() } else { path };
            return ApiError::invalid(vec![FieldError::new(field, "invalid_type", "has the wrong JSON type")]);
        }
        ApiError::invalid(vec![field_error(&path, inner)])
    })?;
    deserializer.end().map_err(|_| invalid_json())?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let text = error.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let parent = if path == "." { "" } else { path };
    // serde_path_to_error's path already ends at an unknown field, but stops
    // at the parent of a missing one.
    let (field, code) = if message.starts_with("unknown field") {
        (parent.to_owned(), "unknown_field")
    } else if let Some(name) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        (join_path(parent, name), "required")
    } else if message.starts_with("invalid type") {
        (parent.to_owned(), "invalid_type")
    } else {
        (parent.to_owned(), "invalid_value")
    };
    FieldError::new(if field.is_empty() { "body".to_owned() } else { field }, code, message)
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::CustomerInput;

    fn error_of(body: &str) -> ApiError {
        parse_json::<CustomerInput>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for body in ["{", "", "{\"first_name\":}", "{} trailing"] {
            assert_eq!(error_of(body).code, "invalid_json", "{body}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (r#"{"frist_name":"a"}"#, "frist_name", "unknown_field"),
            (r#"{"first_name":1}"#, "first_name", "invalid_type"),
            (r#"{"type":"person"}"#, "type", "invalid_value"),
            (r#"{"addresses":[{"address_line":"a","country":"NO"}]}"#, "addresses[0].postal_place", "required"),
            (r#"{"date_of_birth":"2020-02-30"}"#, "date_of_birth", "invalid_value"),
            (r#"{"date_of_birth":"1990-1-1"}"#, "date_of_birth", "invalid_value"),
            (r#"{"marketing_consent":[]}"#, "marketing_consent", "invalid_type"),
            (r#"{"type":42}"#, "type", "invalid_type"),
            (
                r#"{"addresses":[{"address_line":"a","postal_place":"b","country":"NO","type":[]}]}"#,
                "addresses[0].type",
                "invalid_type",
            ),
            (r#"{"addresses":[["Gate 1", null, null, "Oslo", "NO"]]}"#, "addresses[0]", "invalid_type"),
            ("[]", "body", "invalid_type"),
        ];
        for (body, field, code) in cases {
            let error = error_of(body);
            assert_eq!(error.code, "validation_error", "{body}");
            assert_eq!((error.errors[0].field.as_str(), error.errors[0].code.as_str()), (field, code), "{body}");
        }
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
