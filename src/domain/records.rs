//! The account's other records: terms (§8), tags (§5), customer tokens
//! (§6) and token events (§7) — their shapes and input validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::customer::{Customer, JsonObject};
use super::validate::{self, Errors, FieldError, MAX_TEXT};

/// Longest terms text we store (a full terms document fits).
pub const MAX_TERMS: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Terms {
    pub id: Uuid,
    pub terms: String,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermsInput {
    pub terms: String,
}

impl TermsInput {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.terms.trim().is_empty() {
            errors.add("terms", "required", "must not be empty");
        }
        errors.text("terms", &self.terms, MAX_TERMS);
        errors.into_result()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tag {
    pub id: Uuid,
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagInput {
    pub tag: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
}

impl TagInput {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.tag.trim().is_empty() {
            errors.add("tag", "required", "must not be empty");
        }
        errors.text("tag", &self.tag, 255);
        if let Some(metadata) = &self.metadata {
            validate::check_json(&mut errors, "metadata", metadata);
        }
        errors.into_result()
    }
}

/// A token attached to a customer. `source` names the customer field an
/// auto token was derived from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Token {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// The token's id; generated when absent.
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
}

impl TokenInput {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if let Some(id) = &self.token_id {
            validate::check_customer_id(&mut errors, "token_id", id);
        }
        check_token_ref(&mut errors, "", &self.kind, &self.value);
        if let Some(metadata) = &self.metadata {
            validate::check_json(&mut errors, "metadata", metadata);
        }
        errors.into_result()
    }
}

/// A token's identity: type and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

fn check_token_ref(errors: &mut Errors, prefix: &str, kind: &str, value: &str) {
    for (name, v) in [("type", kind), ("value", value)] {
        let field = format!("{prefix}{name}");
        if v.is_empty() {
            errors.add(&field, "required", "must not be empty");
        }
        errors.text(&field, v, MAX_TEXT);
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub event: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    #[serde(default)]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The body of `POST` and `DELETE /customers/tokens/events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenEventRequest {
    pub token: TokenRef,
    #[serde(default)]
    pub event: Option<EventInput>,
}

impl TokenEventRequest {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_token_ref(&mut errors, "token.", &self.token.kind, &self.token.value);
        if let Some(event) = &self.event {
            if event.event.trim().is_empty() {
                errors.add("event.event", "required", "must not be empty");
            }
            errors.text("event.event", &event.event, 255);
            if let Some(status) = &event.status {
                errors.text("event.status", status, 255);
            }
            if let Some(metadata) = &event.metadata {
                validate::check_json(&mut errors, "event.metadata", metadata);
            }
        }
        errors.into_result()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TokenEvent {
    pub id: Uuid,
    pub token: TokenRef,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

/// The answer of `POST /customers/tokens/events`: what is known of a token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenDetail {
    /// The token's id when a customer owns it, else its `type:value`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
    pub status: String,
    pub events: Vec<TokenEvent>,
}

/// §7: the owner's `status` if a customer owns the token, else the newest
/// unexpired event's status, else `UNKNOWN`.
pub fn token_status(owner: Option<&Customer>, events: &[TokenEvent], now: DateTime<Utc>) -> String {
    if let Some(owner) = owner {
        if let Some(status) = owner.data.as_ref().and_then(|d| d.status.clone()) {
            return status;
        }
    }
    events
        .iter()
        .filter(|e| e.deleted_at.is_none() && e.expires_at.is_none_or(|t| t > now))
        .max_by_key(|e| (e.created_at, e.id))
        .and_then(|e| e.status.clone())
        .unwrap_or_else(|| "UNKNOWN".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, created: i64, expires: Option<i64>) -> TokenEvent {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        TokenEvent {
            id: Uuid::new_v4(),
            token: TokenRef { kind: "card".into(), value: "1".into() },
            event: "e".into(),
            status: Some(status.into()),
            metadata: None,
            expires_at: expires.map(at),
            created_at: at(created),
            created_by: "x".into(),
            deleted_at: None,
            deleted_by: None,
        }
    }

    #[test]
    fn status_is_the_newest_unexpired_event_or_unknown() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        assert_eq!(token_status(None, &[], now), "UNKNOWN");
        let events = [event("OLD", 10, None), event("NEW", 20, None), event("EXPIRED", 30, Some(50))];
        assert_eq!(token_status(None, &events, now), "NEW");
        let only_expired = [event("EXPIRED", 30, Some(50))];
        assert_eq!(token_status(None, &only_expired, now), "UNKNOWN");
    }

    #[test]
    fn inputs_are_validated() {
        let token = TokenInput { token_id: Some(" x".into()), kind: "".into(), value: "v".into(), metadata: None };
        let fields: Vec<String> = token.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["token_id", "type"]);
        assert!(TagInput { tag: " ".into(), metadata: None }.validate().is_err());
        assert!(TermsInput { terms: "Be nice.".into() }.validate().is_ok());
    }
}
