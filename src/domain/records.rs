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

entity_input! {
    pub struct TermsInput {
        pub terms: String,
    }
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

entity_input! {
    pub struct TagInput {
        pub tag: String,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<JsonObject>,
    }
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

/// A token attached to a customer (upstream's `CustomerToken`): the entity
/// `id` the server assigns, and the `token_id` the caller chose (or one
/// generated for it), by which the token is addressed. `source` names the
/// customer field an auto token was derived from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub token_id: String,
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

entity_input! {
    pub struct TokenInput {
        /// The caller's id for the token; generated when absent.
        #[serde(default)]
        #[schema(min_length = 1, max_length = 255)]
        pub token_id: Option<String>,
        /// At most 1,000 characters and 1,000 bytes (UTF-8).
        #[serde(rename = "type")]
        #[schema(min_length = 1, max_length = 1000)]
        pub kind: String,
        /// At most 1,000 characters and 1,000 bytes (UTF-8).
        #[schema(min_length = 1, max_length = 1000)]
        pub value: String,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<JsonObject>,
    }
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
        errors.indexed(&field, v);
    }
}

entity_input! {
    /// An event to record against a token.
    pub struct EventInput {
        #[schema(min_length = 1, max_length = 255)]
        pub event: String,
        #[serde(default)]
        #[schema(max_length = 255)]
        pub status: Option<String>,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<JsonObject>,
        #[serde(default, deserialize_with = "crate::domain::time::optional_date_time")]
        #[schema(value_type = Option<String>, format = DateTime)]
        pub expires_at: Option<DateTime<Utc>>,
    }
}

/// The body of `POST /customers/tokens/events`.
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
            check_event_text(&mut errors, &event.event, event.status.as_deref(), event.metadata.as_ref());
        }
        errors.into_result()
    }
}

entity_input! {
    /// The reason recorded when a token's events are cleared (its status
    /// becomes `DELETED`); every field is optional, as upstream.
    pub struct ClearEventInput {
        #[serde(default)]
        #[schema(max_length = 255)]
        pub event: Option<String>,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<JsonObject>,
    }
}

/// The body of `DELETE /customers/tokens/events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTokenEvents {
    pub token: TokenRef,
    #[serde(default)]
    pub event: Option<ClearEventInput>,
}

impl ClearTokenEvents {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_token_ref(&mut errors, "token.", &self.token.kind, &self.token.value);
        if let Some(event) = &self.event {
            check_event_text(&mut errors, event.event.as_deref().unwrap_or(""), None, event.metadata.as_ref());
        }
        errors.into_result()
    }

    /// The `DELETED` event this request records, if it gives one.
    pub fn deleted_event(&self) -> Option<EventInput> {
        self.event.as_ref().map(|given| EventInput {
            event: given.event.clone().unwrap_or_default(),
            status: Some(DELETED.to_owned()),
            metadata: given.metadata.clone(),
            ..EventInput::default()
        })
    }
}

/// The status a cleared token's recorded reason carries.
pub const DELETED: &str = "DELETED";

fn check_event_text(errors: &mut Errors, event: &str, status: Option<&str>, metadata: Option<&JsonObject>) {
    errors.text("event.event", event, 255);
    if let Some(status) = status {
        errors.text("event.status", status, 255);
    }
    if let Some(metadata) = metadata {
        validate::check_json(errors, "event.metadata", metadata);
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

/// One item of `GET /customers/tokens/events`: a token with its events and
/// the status they resolve to (upstream's shape, plus the token itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenEvents {
    /// As [`TokenDetail::id`].
    pub id: String,
    pub token: TokenRef,
    pub status: String,
    pub events: Vec<TokenEvent>,
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

/// The id that names a token in the token-event answers: its `token_id`
/// when a customer holds it, else `type:value`.
pub fn token_key(owned: Option<&Token>, token: &TokenRef) -> String {
    owned.map_or_else(|| format!("{}:{}", token.kind, token.value), |t| t.token_id.clone())
}

/// §7: the owner's `status` if a customer owns the token, else the newest
/// unexpired event that has a status, else `UNKNOWN`. An event without a
/// status is a note: it never resets a recorded status such as `OPT_OUT`.
pub fn token_status(owner: Option<&Customer>, events: &[TokenEvent], now: DateTime<Utc>) -> String {
    if let Some(owner) = owner {
        if let Some(status) = owner.data.status.clone() {
            return status;
        }
    }
    events
        .iter()
        .filter(|e| e.status.is_some() && e.deleted_at.is_none() && e.expires_at.is_none_or(|t| t > now))
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
    fn a_note_without_status_keeps_the_recorded_status() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        let note = TokenEvent { status: None, ..event("", 40, None) };
        assert_eq!(token_status(None, &[event("OPT_OUT", 10, None), note.clone()], now), "OPT_OUT");
        assert_eq!(token_status(None, &[note], now), "UNKNOWN");
    }

    #[test]
    fn inputs_are_validated() {
        let token =
            TokenInput { token_id: Some(" x".into()), kind: "".into(), value: "v".into(), ..TokenInput::default() };
        let fields: Vec<String> = token.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["token_id", "type"]);
        assert!(TagInput { tag: " ".into(), ..TagInput::default() }.validate().is_err());
        assert!(TermsInput { terms: "Be nice.".into(), ..TermsInput::default() }.validate().is_ok());
        assert!(TermsInput { terms: " ".into(), ..TermsInput::default() }.validate().is_err());
    }

    fn token_ref(kind: &str, value: &str) -> TokenRef {
        TokenRef { kind: kind.into(), value: value.into() }
    }

    #[test]
    fn token_event_requests_are_validated() {
        let event = |name: &str| Some(EventInput { event: name.into(), ..EventInput::default() });
        let fields = |request: &TokenEventRequest| -> Vec<String> {
            request.validate().err().unwrap_or_default().into_iter().map(|e| e.field).collect()
        };
        assert!(fields(&TokenEventRequest { token: token_ref("card", "1"), event: event("paid") }).is_empty());
        assert_eq!(fields(&TokenEventRequest { token: token_ref("", "1"), event: event("paid") }), ["token.type"]);
        assert_eq!(fields(&TokenEventRequest { token: token_ref("card", "1"), event: event(" ") }), ["event.event"]);
        let clear = |token: TokenRef| ClearTokenEvents { token, event: None };
        assert!(clear(token_ref("card", "1")).validate().is_ok());
        assert!(clear(token_ref("card", "")).validate().is_err());
    }

    #[test]
    fn event_texts_are_bounded() {
        let long = "e".repeat(256);
        let request = |event: &str, status: Option<&str>| TokenEventRequest {
            token: token_ref("card", "1"),
            event: Some(EventInput { event: event.into(), status: status.map(str::to_owned), ..EventInput::default() }),
        };
        assert!(request(&"e".repeat(255), Some("OK")).validate().is_ok());
        assert!(request(&long, None).validate().is_err());
        assert!(request("e", Some(&long)).validate().is_err());
        assert!(request("line\u{7}", None).validate().is_err(), "control characters");
    }

    #[test]
    fn a_token_is_named_by_its_token_id_or_type_and_value() {
        let reference = token_ref("card", "4111");
        assert_eq!(token_key(None, &reference), "card:4111");
        let owned = Token {
            id: Uuid::nil(),
            token_id: "t-1".into(),
            kind: "card".into(),
            value: "4111".into(),
            metadata: None,
            source: None,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            created_by: "x".into(),
            deleted_at: None,
            deleted_by: None,
        };
        assert_eq!(token_key(Some(&owned), &reference), "t-1");
    }

    #[test]
    fn an_event_expiring_now_no_longer_counts() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        assert_eq!(token_status(None, &[event("OPT_OUT", 10, Some(100))], now), "UNKNOWN");
        assert_eq!(token_status(None, &[event("OPT_OUT", 10, Some(101))], now), "OPT_OUT");
    }

    #[test]
    fn clearing_with_a_reason_records_it_as_deleted() {
        let mut metadata = JsonObject::new();
        metadata.insert("by".into(), "support".into());
        let given =
            ClearEventInput { event: Some("closed".into()), metadata: Some(metadata.clone()), ..Default::default() };
        let request = ClearTokenEvents { token: token_ref("card", "1"), event: Some(given) };
        let recorded = request.deleted_event().expect("a reason is recorded");
        assert_eq!(recorded.event, "closed");
        assert_eq!(recorded.status.as_deref(), Some(DELETED));
        assert_eq!(recorded.metadata, Some(metadata));
        assert!(ClearTokenEvents { token: token_ref("card", "1"), event: None }.deleted_event().is_none());
    }
}
