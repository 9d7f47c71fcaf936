//! Per-account settings (§8): their document, its validation, and the rules
//! they impose on customers — attribute types, private attributes and the
//! auto tokens derived from email and phone number.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::customer::{CustomerData, JsonObject};
use super::hex;
use super::time::{parse_date_time, parse_full_date};
use super::validate::{self, Errors, FieldError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub users: UserSettings,
    pub auto_tokens: AutoTokens,
    pub tokens: TokenSettings,
    pub attributes: Vec<AttributeDefinition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UserSettings {
    pub head: HeadSettings,
    pub phone_number_validation: PhoneNumberValidation,
    pub customer_id_format: CustomerIdFormat,
    /// Upstream's multi-factor login settings: stored and returned as
    /// given, not enforced (login is out of scope, SPEC §8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaSettings>,
    /// Upstream's verification settings: stored and returned as given, not
    /// enforced (verification flows are out of scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifications: Option<VerificationSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<MfaChallenge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_recovery: Option<MfaChallenge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaChallenge {
    pub challenge_type: ChallengeType,
    pub oob_channel: OobChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeType {
    Oob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OobChannel {
    Sms,
    Email,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationSettings {
    /// Require verification to change a phone number (`sms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<PhoneVerification>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhoneVerification {
    Sms,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HeadSettings {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneNumberValidation {
    pub allow_duplicates: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CustomerIdFormat {
    #[default]
    Uuid,
    Sequence,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AutoTokens {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<AutoToken>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_number: Vec<AutoToken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoToken {
    #[serde(rename = "type")]
    pub kind: AutoTokenType,
    /// The HMAC key (`HMAC-SHA256` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AutoTokenType {
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl AutoTokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoTokenType::Sha256 => "SHA256",
            AutoTokenType::HmacSha256 => "HMAC-SHA256",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub event_expiry: Vec<EventExpiry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventExpiry {
    pub status: String,
    /// Seconds an event with this status counts.
    pub time_to_live: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttributeType,
    #[serde(default)]
    pub multiple_values: bool,
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    String,
    Integer,
    Real,
    Boolean,
    Phonenumber,
    Email,
    Date,
    #[serde(rename = "date-time")]
    DateTime,
}

/// An auto token the settings ask for: `(type, value, source field)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTokenValue {
    pub kind: &'static str,
    pub value: String,
    pub source: &'static str,
}

impl Settings {
    /// Checks the settings document itself.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        for (source, list) in [("email", &self.auto_tokens.email), ("phone_number", &self.auto_tokens.phone_number)] {
            for (i, token) in list.iter().enumerate() {
                let field = format!("auto_tokens.{source}[{i}].secret");
                match (token.kind, &token.secret) {
                    (AutoTokenType::HmacSha256, None) => errors.add(field, "required", "HMAC-SHA256 needs a secret"),
                    (AutoTokenType::HmacSha256, Some(s)) if s.len() < 16 => {
                        errors.add(field, "too_short", "must be at least 16 characters")
                    }
                    (AutoTokenType::Sha256, Some(_)) => {
                        errors.add(field, "not_allowed", "only HMAC-SHA256 takes a secret")
                    }
                    _ => {}
                }
                if list[..i].iter().any(|t| t.kind == token.kind) {
                    errors.add(format!("auto_tokens.{source}[{i}].type"), "duplicate", "each type once per field");
                }
            }
        }
        for (i, expiry) in self.tokens.event_expiry.iter().enumerate() {
            let field = format!("tokens.event_expiry[{i}]");
            if expiry.status.trim().is_empty() {
                errors.add(format!("{field}.status"), "required", "must not be empty");
            }
            errors.text(&format!("{field}.status"), &expiry.status, 255);
            if expiry.time_to_live == 0 || expiry.time_to_live > 100 * 365 * 86_400 {
                errors.add(format!("{field}.time_to_live"), "out_of_range", "must be 1 second to 100 years");
            }
            if self.tokens.event_expiry[..i].iter().any(|e| e.status == expiry.status) {
                errors.add(format!("{field}.status"), "duplicate", "each status once");
            }
        }
        for (i, definition) in self.attributes.iter().enumerate() {
            let field = format!("attributes[{i}].name");
            if definition.name.is_empty() {
                errors.add(&field, "required", "must not be empty");
            }
            errors.text(&field, &definition.name, 255);
            if self.attributes[..i].iter().any(|d| d.name == definition.name) {
                errors.add(&field, "duplicate", "each attribute once");
            }
        }
        errors.into_result()
    }

    fn definition(&self, name: &str) -> Option<&AttributeDefinition> {
        self.attributes.iter().find(|d| d.name == name)
    }

    /// Validates a customer's attributes against the defined types.
    /// Attributes without a definition are free-form.
    pub fn check_attributes(&self, attributes: Option<&JsonObject>, errors: &mut Errors) {
        for (name, value) in attributes.into_iter().flatten() {
            let Some(definition) = self.definition(name) else {
                continue;
            };
            let field = format!("attributes.{name}");
            if definition.multiple_values {
                match value {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            check_attribute_value(errors, &format!("{field}[{i}]"), definition.kind, item);
                        }
                    }
                    _ => errors.add(field, "invalid_type", "must be a list (multiple_values)"),
                }
            } else {
                check_attribute_value(errors, &field, definition.kind, value);
            }
        }
    }

    pub fn private_attributes(&self) -> impl Iterator<Item = &str> {
        self.attributes.iter().filter(|d| d.private).map(|d| d.name.as_str())
    }

    /// Removes private attributes (for `user:customers` callers).
    pub fn hide_private(&self, data: &mut CustomerData) {
        if let Some(attributes) = data.attributes.as_mut() {
            for name in self.private_attributes() {
                attributes.remove(name);
            }
        }
    }

    /// The auto tokens a customer's current email and phone number call for.
    pub fn auto_tokens_for(&self, data: &CustomerData) -> Vec<AutoTokenValue> {
        let mut tokens = Vec::new();
        let sources = [
            ("email", data.email.as_deref().map(normalise_email), &self.auto_tokens.email),
            ("phone_number", data.phone_number.as_deref().map(normalise_phone), &self.auto_tokens.phone_number),
        ];
        for (source, value, wanted) in sources {
            let Some(value) = value else { continue };
            for token in wanted {
                let digest = match (token.kind, &token.secret) {
                    (AutoTokenType::Sha256, _) => hex(&Sha256::digest(value.as_bytes())),
                    (AutoTokenType::HmacSha256, Some(secret)) => {
                        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                            continue;
                        };
                        mac.update(value.as_bytes());
                        hex(&mac.finalize().into_bytes())
                    }
                    (AutoTokenType::HmacSha256, None) => continue,
                };
                tokens.push(AutoTokenValue { kind: token.kind.as_str(), value: digest, source });
            }
        }
        tokens
    }

    /// The settings as shown to a caller who may not see secrets.
    pub fn without_secrets(mut self) -> Self {
        for token in self.auto_tokens.email.iter_mut().chain(self.auto_tokens.phone_number.iter_mut()) {
            token.secret = None;
        }
        self
    }

    /// Seconds an event with `status` counts, if the settings say.
    pub fn event_ttl(&self, status: &str) -> Option<u64> {
        self.tokens.event_expiry.iter().find(|e| e.status == status).map(|e| e.time_to_live)
    }
}

/// Emails are hashed lower-cased and trimmed.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Phone numbers are hashed in E.164 with the leading `+`.
pub fn normalise_phone(phone: &str) -> String {
    let digits = phone.trim().trim_start_matches('+');
    format!("+{digits}")
}

fn check_attribute_value(errors: &mut Errors, field: &str, kind: AttributeType, value: &Value) {
    let ok = match kind {
        AttributeType::String => value.is_string(),
        AttributeType::Integer => value.is_i64() || value.is_u64(),
        AttributeType::Real => value.is_number(),
        AttributeType::Boolean => value.is_boolean(),
        AttributeType::Email => value.as_str().is_some_and(validate::is_valid_email),
        AttributeType::Phonenumber => value.as_str().is_some_and(validate::is_valid_phone),
        AttributeType::Date => value.as_str().and_then(parse_full_date).is_some(),
        AttributeType::DateTime => value.as_str().and_then(parse_date_time).is_some(),
    };
    if !ok {
        let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        errors.add(field, "invalid_attribute", format!("must be of type {kind}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(doc: Value) -> Settings {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn empty_document_means_defaults() {
        let s = settings(json!({}));
        assert!(!s.users.head.enabled);
        assert!(!s.users.phone_number_validation.allow_duplicates);
        assert_eq!(s.users.customer_id_format, CustomerIdFormat::Uuid);
        assert!(serde_json::from_value::<Settings>(json!({"users": {"heads": {}}})).is_err());
    }

    #[test]
    fn settings_document_rules() {
        let bad = settings(json!({
            "auto_tokens": {"email": [{"type": "HMAC-SHA256"}, {"type": "SHA256", "secret": "x"}]},
            "tokens": {"event_expiry": [{"status": "A", "time_to_live": 0}, {"status": "A", "time_to_live": 5}]},
            "attributes": [{"name": "a", "type": "string"}, {"name": "a", "type": "integer"}]
        }));
        let fields: Vec<String> = bad.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "auto_tokens.email[0].secret",
                "auto_tokens.email[1].secret",
                "tokens.event_expiry[0].time_to_live",
                "tokens.event_expiry[1].status",
                "attributes[1].name"
            ]
        );
    }

    #[test]
    fn limits_of_the_settings_document_are_exact() {
        let with = |secret: &str, ttl: u64| {
            settings(json!({
                "auto_tokens": {"email": [{"type": "HMAC-SHA256", "secret": secret}]},
                "tokens": {"event_expiry": [{"status": "OPT_OUT", "time_to_live": ttl}]}
            }))
        };
        let hundred_years = 100 * 365 * 86_400;
        assert!(with(&"s".repeat(16), hundred_years).validate().is_ok(), "16 characters, 100 years");
        let fields = |s: Settings| -> Vec<String> { s.validate().unwrap_err().into_iter().map(|e| e.field).collect() };
        assert_eq!(fields(with(&"s".repeat(15), 1)), ["auto_tokens.email[0].secret"]);
        assert_eq!(fields(with(&"s".repeat(16), hundred_years + 1)), ["tokens.event_expiry[0].time_to_live"]);
        let s = with(&"s".repeat(16), 60);
        assert_eq!(s.event_ttl("OPT_OUT"), Some(60));
        assert_eq!(s.event_ttl("OPT_IN"), None);
    }

    #[test]
    fn integers_are_whole_numbers_of_either_sign() {
        let s = settings(json!({"attributes": [{"name": "n", "type": "integer"}]}));
        for (value, ok) in [(json!(-1), true), (json!(u64::MAX), true), (json!(0.5), false)] {
            let mut errors = Errors::default();
            s.check_attributes(json!({"n": value}).as_object(), &mut errors);
            assert_eq!(errors.is_empty(), ok, "{value}");
        }
    }

    #[test]
    fn attributes_are_checked_by_type() {
        let s = settings(json!({"attributes": [
            {"name": "n", "type": "integer"}, {"name": "r", "type": "real"}, {"name": "b", "type": "boolean"},
            {"name": "e", "type": "email"}, {"name": "p", "type": "phonenumber"}, {"name": "d", "type": "date"},
            {"name": "t", "type": "date-time"}, {"name": "s", "type": "string"},
            {"name": "m", "type": "integer", "multiple_values": true}
        ]}));
        let good = json!({"n": 1, "r": 1.5, "b": true, "e": "a@x.io", "p": "+4799999999", "d": "2020-02-29",
            "t": "2020-01-01T00:00:00Z", "s": "x", "m": [1, 2], "free": {"any": "thing"}});
        let mut errors = Errors::default();
        s.check_attributes(good.as_object(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");

        let bad = json!({"n": 1.5, "r": "1", "b": "true", "e": "nope", "p": "12ab", "d": "2021-02-29",
            "t": "yesterday", "s": 1, "m": [1, "2"]});
        let mut errors = Errors::default();
        s.check_attributes(bad.as_object(), &mut errors);
        let fields: Vec<String> = errors.into_result().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields.len(), 9, "{fields:?}");
        assert!(fields.contains(&"attributes.m[1]".to_string()));
    }

    #[test]
    fn auto_tokens_hash_normalised_values() {
        let s = settings(json!({"auto_tokens": {
            "email": [{"type": "SHA256"}],
            "phone_number": [{"type": "HMAC-SHA256", "secret": "0123456789abcdef"}]
        }}));
        let data: CustomerData =
            serde_json::from_value(json!({"email": " Ada@X.io", "phone_number": "4799999999"})).unwrap();
        let tokens = s.auto_tokens_for(&data);
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].kind, "SHA256");
        assert_eq!(tokens[0].value, hex(&Sha256::digest(b"ada@x.io")));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"+4799999999");
        assert_eq!(tokens[1].value, hex(&mac.finalize().into_bytes()));
        assert_eq!(tokens[1].source, "phone_number");
    }

    #[test]
    fn private_attributes_are_hidden_and_secrets_redacted() {
        let s = settings(json!({
            "attributes": [{"name": "score", "type": "integer", "private": true}],
            "auto_tokens": {"email": [{"type": "HMAC-SHA256", "secret": "0123456789abcdef"}]}
        }));
        let mut data: CustomerData =
            serde_json::from_value(json!({"attributes": {"score": 5, "tier": "gold"}})).unwrap();
        s.hide_private(&mut data);
        assert_eq!(Value::Object(data.attributes.unwrap()), json!({"tier": "gold"}));
        assert_eq!(s.without_secrets().auto_tokens.email[0].secret, None);
    }
}
