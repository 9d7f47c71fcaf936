//! Webhooks (§11): what a subscription is and which input is valid, which
//! addresses a delivery may go to, how a delivery is signed, and when a
//! failed delivery is tried again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::events::EventName;
use super::patch::Patch;
use super::validate::{Errors, FieldError};

/// Longest accepted target URL.
pub const MAX_URL: usize = 2048;
/// A secret's length range: long enough to resist guessing, short enough
/// to be a header-sized value.
pub const SECRET_LENGTH: std::ops::RangeInclusive<usize> = 16..=256;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1000;

/// The events a subscription wants: all of them, or these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventName>),
}

impl EventFilter {
    /// As stored: `*`, or the names between commas (`,customer_add,…,`), so
    /// that the database finds a name as `,name,` in it.
    pub fn stored(&self) -> String {
        match self {
            EventFilter::All => "*".to_owned(),
            EventFilter::Only(names) => {
                let names: Vec<_> = names.iter().map(|n| n.as_str()).collect();
                format!(",{},", names.join(","))
            }
        }
    }

    /// The filter a stored value names (unknown names are left out: a name
    /// this version no longer has matches nothing).
    pub fn from_stored(stored: &str) -> Self {
        if stored == "*" {
            return EventFilter::All;
        }
        EventFilter::Only(stored.split(',').filter_map(EventName::parse).collect())
    }

    /// As the API shows it.
    pub fn names(&self) -> Vec<String> {
        match self {
            EventFilter::All => vec!["*".to_owned()],
            EventFilter::Only(names) => names.iter().map(|n| n.as_str().to_owned()).collect(),
        }
    }
}

/// `config` of a subscription in a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookConfigInput {
    /// `https` or `http`; the host must resolve to public addresses only
    /// (unless the operator allows private ones).
    #[schema(max_length = 2048, example = "https://example.com/hooks/customers")]
    pub url: String,
    /// Signs every delivery (`event-signature`, `webhook-signature`). Never
    /// returned. A `whsec_`-prefixed secret is base64 after the prefix (the
    /// Standard Webhooks form) and signs `webhook-signature` with its bytes.
    /// On a change, an absent secret keeps the stored one and `null`
    /// removes it.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 16, max_length = 256, write_only)]
    pub secret: Patch<String>,
    /// Only `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `POST /hooks/subscriptions` and `PUT /hooks/subscriptions/{hid}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    pub config: HookConfigInput,
    /// Event names, or `"*"` for every event.
    #[schema(example = json!(["customer_add", "customer_update"]))]
    pub events: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
    /// Server-set: ignored in requests, so a read subscription can be sent back.
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub id: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub created_at: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub created_by: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub updated_at: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub disabled_reason: Option<serde::de::IgnoredAny>,
}

/// A valid subscription, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSpec {
    pub url: url::Url,
    pub secret: Patch<String>,
    pub events: EventFilter,
    pub active: bool,
    pub description: Option<String>,
}

impl SubscriptionInput {
    /// Checks the input's shape (whether the target's addresses are
    /// allowed is decided on resolving it, see [`is_public`]).
    pub fn validate(self) -> Result<SubscriptionSpec, Vec<FieldError>> {
        let mut errors = Errors::default();
        let url = target_url(&self.config.url, &mut errors);
        if let Some(secret) = self.config.secret.as_value() {
            if !SECRET_LENGTH.contains(&secret.len()) || secret.chars().any(char::is_control) {
                errors.add(
                    "config.secret",
                    "invalid_length",
                    "must be 16 to 256 characters, without control characters",
                );
            } else if secret.starts_with("whsec_") && standard_key(secret).is_none() {
                errors.add("config.secret", "invalid_value", "a whsec_ secret must be base64 after the prefix");
            }
        }
        if self.config.content_type.as_deref().is_some_and(|c| c != "application/json") {
            errors.add("config.content_type", "invalid_value", "must be application/json");
        }
        let events = event_filter(&self.events, &mut errors);
        if let Some(description) = &self.description {
            errors.text("description", description, MAX_DESCRIPTION);
        }
        errors.into_result()?;
        Ok(SubscriptionSpec {
            url: url.expect("a valid URL when there are no errors"),
            secret: self.config.secret,
            events,
            active: self.active.unwrap_or(true),
            description: self.description,
        })
    }
}

fn target_url(raw: &str, errors: &mut Errors) -> Option<url::Url> {
    const FIELD: &str = "config.url";
    if raw.len() > MAX_URL {
        errors.add(FIELD, "too_long", format!("must be at most {MAX_URL} bytes"));
        return None;
    }
    match url::Url::parse(raw) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            errors.add(FIELD, "invalid_scheme", "must be an http or https URL");
            None
        }
        Ok(url) if url.host().is_none() => {
            errors.add(FIELD, "invalid_url", "must name a host");
            None
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            errors.add(FIELD, "invalid_url", "must not carry credentials; sign with a secret instead");
            None
        }
        Ok(url) if url.fragment().is_some() => {
            errors.add(FIELD, "invalid_url", "must not have a fragment");
            None
        }
        Ok(url) => Some(url),
        Err(_) => {
            errors.add(FIELD, "invalid_url", "must be an absolute http or https URL");
            None
        }
    }
}

fn event_filter(names: &[String], errors: &mut Errors) -> EventFilter {
    if names.is_empty() {
        errors.add("events", "required", "name at least one event, or \"*\" for all");
    }
    let mut wanted = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name == "*" {
            return EventFilter::All;
        }
        match EventName::parse(name) {
            Some(event) if !wanted.contains(&event) => wanted.push(event),
            Some(_) => {}
            None => {
                let known: Vec<_> = EventName::ALL.iter().map(|e| e.as_str()).collect();
                errors.add(
                    format!("events[{i}]"),
                    "invalid_value",
                    format!("must be \"*\" or one of {}", known.join(", ")),
                );
            }
        }
    }
    EventFilter::Only(wanted)
}

/// A subscription's target, as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HookConfig {
    pub url: String,
    pub content_type: String,
    /// Whether deliveries are signed.
    pub signed: bool,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub config: HookConfig,
    pub events: Vec<String>,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub updated_at: DateTime<Utc>,
    /// Why the service turned the subscription off (its target answered
    /// `410 Gone`); cleared when it is made active again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet delivered; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up after the retry window, or its subscription answered 410.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// One try of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Attempt {
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status code; none when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event on its way to one subscription, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    /// The delivery's id: the id of the event it carries (unique per subscription).
    pub id: Uuid,
    pub event_id: Uuid,
    pub event: String,
    pub status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<Attempt>,
}

/// Whether a delivery may connect to `ip`: only globally reachable unicast
/// addresses. Loopback, private (RFC 1918, unique local), link-local (the
/// cloud metadata address 169.254.169.254 among them), shared (CGNAT),
/// documentation, benchmarking, multicast, broadcast, unspecified and
/// reserved ranges are refused, also when written as IPv4-mapped or
/// IPv4-compatible IPv6, NAT64 or 6to4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))    // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0)          // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))      // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00   // unique local
        || (first & 0xffc0) == 0xfe80   // link-local
        || (first & 0xffc0) == 0xfec0   // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0100 && ip.segments()[1..4] == [0, 0, 0]) // discard-only
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The key a `whsec_` secret holds (base64 after the prefix).
fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// The headers that sign one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `event-signature`: hex HMAC-SHA1 of the body with the secret (Dintero's).
    pub event_signature: String,
    /// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
    /// `id.timestamp.body` (Standard Webhooks).
    pub webhook_signature: String,
}

impl Signatures {
    pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Self {
        let mut sha1 = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        sha1.update(body);
        let key = standard_key(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
        let mut sha256 = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
        sha256.update(format!("{id}.{timestamp}.").as_bytes());
        sha256.update(body);
        let standard = base64::engine::general_purpose::STANDARD.encode(sha256.finalize().into_bytes());
        Signatures {
            event_signature: super::hex(&sha1.finalize().into_bytes()),
            webhook_signature: format!("v1,{standard}"),
        }
    }
}

/// What a receiver checks: which of the two signatures verify. A
/// `webhook-signature` header may list several space-separated signatures;
/// one matching `v1` one is enough.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    event_signature: &str,
    webhook_signature: &str,
) -> (bool, bool) {
    let expected = Signatures::sign(secret, id, timestamp, body);
    let sha1 =
        constant_time_eq(expected.event_signature.as_bytes(), event_signature.trim().to_ascii_lowercase().as_bytes());
    let sha256 = webhook_signature
        .split_whitespace()
        .any(|candidate| constant_time_eq(expected.webhook_signature.as_bytes(), candidate.as_bytes()));
    (sha1, sha256)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// When failed deliveries are tried again: after each delay in turn (the
/// last repeats), each stretched or shrunk by up to a fifth at random so
/// that receivers coming back are not hit by every retry at once, until
/// `give_up_after` has passed since the first try.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Self {
            delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(30),
                minutes(60),
                minutes(120),
            ],
            give_up_after: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// When to try again after `attempts` failed tries of a delivery first
    /// tried at `first_try`; `None`: give up. `jitter` in `[-1, 1]` picks
    /// where in the ±20 % band the delay falls.
    pub fn next_attempt(
        &self,
        attempts: u32,
        first_try: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let index = (attempts.max(1) as usize - 1).min(self.delays.len().checked_sub(1)?);
        let delay = self.delays[index].mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0));
        let next = now + chrono::TimeDelta::from_std(delay).ok()?;
        let deadline = first_try + chrono::TimeDelta::from_std(self.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }

    /// Parses `5s,30s,2m,…` (units `ms`, `s`, `m`, `h`, `d`).
    pub fn parse_delays(raw: &str) -> Result<Vec<Duration>, String> {
        let delays: Vec<Duration> = raw.split(',').map(|d| parse_duration(d.trim())).collect::<Result<_, _>>()?;
        if delays.is_empty() {
            return Err("at least one delay is required".into());
        }
        Ok(delays)
    }
}

/// A duration such as `250ms`, `5s`, `2m`, `1h` or `3d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("`{raw}` is not a duration such as 500ms, 5s, 2m, 1h or 3d"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{raw}` has no unit: ms, s, m, h or d")),
    };
    number.checked_mul(millis).map(Duration::from_millis).ok_or_else(|| format!("`{raw}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> SubscriptionInput {
        serde_json::from_value(value).unwrap()
    }

    fn fields(value: serde_json::Value) -> Vec<String> {
        input(value).validate().unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_subscription_takes_known_events_or_all() {
        let spec = input(json!({"config": {"url": "https://example.com/h", "secret": "0123456789abcdef"},
            "events": ["customer_add", "customer_update", "customer_add"]}))
        .validate()
        .unwrap();
        assert_eq!(spec.events, EventFilter::Only(vec![EventName::CustomerAdd, EventName::CustomerUpdate]));
        assert_eq!(spec.events.stored(), ",customer_add,customer_update,");
        assert_eq!(EventFilter::from_stored(&spec.events.stored()), spec.events);
        assert!(spec.active);
        let all =
            input(json!({"config": {"url": "http://example.com"}, "events": ["customer_add", "*"], "active": false}))
                .validate()
                .unwrap();
        assert_eq!((all.events.stored(), all.active), ("*".to_owned(), false));
        assert_eq!(EventFilter::from_stored("*").names(), ["*"]);
    }

    #[test]
    fn a_subscription_refuses_bad_targets_secrets_and_events() {
        let with = |url: &str| json!({"config": {"url": url}, "events": ["*"]});
        for url in [
            "ftp://example.com/x",
            "example.com/x",
            "https://",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            &format!("https://example.com/{}", "x".repeat(2048)),
        ] {
            assert_eq!(fields(with(url)), ["config.url"], "{url}");
        }
        assert_eq!(
            fields(json!({"config": {"url": "https://e.com", "secret": "short"}, "events": ["*"]})),
            ["config.secret"]
        );
        assert_eq!(
            fields(json!({"config": {"url": "https://e.com", "secret": "whsec_!!!!!!!!!!!!!!!!"}, "events": ["*"]})),
            ["config.secret"]
        );
        assert_eq!(
            fields(json!({"config": {"url": "https://e.com", "content_type": "text/xml"}, "events": ["*"]})),
            ["config.content_type"]
        );
        assert_eq!(fields(json!({"config": {"url": "https://e.com"}, "events": []})), ["events"]);
        assert_eq!(
            fields(json!({"config": {"url": "https://e.com"}, "events": ["customer_add", "ping"]})),
            ["events[1]"]
        );
        assert!(serde_json::from_value::<SubscriptionInput>(
            json!({"config": {"url": "https://e.com"}, "events": ["*"], "colour": 1})
        )
        .is_err());
    }

    #[test]
    fn only_public_addresses_are_targets() {
        let refused = [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
        ];
        for raw in refused {
            assert!(!is_public(raw.parse().unwrap()), "{raw} must be refused");
        }
        for raw in [
            "93.184.216.34",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(raw.parse().unwrap()), "{raw} is public");
        }
    }

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let body = br#"{"id":"e1","event":"customer_add"}"#;
        let signed = Signatures::sign("0123456789abcdef", "e1", 1_700_000_000, body);
        assert_eq!(signed.event_signature.len(), 40);
        assert!(signed.webhook_signature.starts_with("v1,"));
        let ok = |sig: &Signatures, body: &[u8], ts| {
            verify("0123456789abcdef", "e1", ts, body, &sig.event_signature, &sig.webhook_signature)
        };
        assert_eq!(ok(&signed, body, 1_700_000_000), (true, true));
        assert_eq!(ok(&signed, b"{}", 1_700_000_000), (false, false));
        assert_eq!(ok(&signed, body, 1_700_000_001), (true, false), "the timestamp is signed by the v1 signature only");
        let listed = format!("v1,bm90IGl0 {}", signed.webhook_signature);
        assert_eq!(
            verify("0123456789abcdef", "e1", 1_700_000_000, body, &signed.event_signature.to_uppercase(), &listed),
            (true, true)
        );
        // A whsec_ secret signs the Standard Webhooks header with its decoded bytes.
        let standard = Signatures::sign("whsec_MDEyMzQ1Njc4OWFiY2RlZg==", "e1", 1, body);
        let raw = Signatures::sign("0123456789abcdef", "e1", 1, body);
        assert_eq!(standard.webhook_signature, raw.webhook_signature);
        assert_ne!(standard.event_signature, raw.event_signature);
    }

    #[test]
    fn retries_back_off_with_jitter_and_give_up_after_the_window() {
        let policy = RetryPolicy::default();
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let after = |attempts, now: DateTime<Utc>, jitter| {
            policy.next_attempt(attempts, start, now, jitter).map(|t| (t - now).num_seconds())
        };
        assert_eq!(after(1, start, 0.0), Some(5));
        assert_eq!(after(2, start, 0.0), Some(30));
        assert_eq!(after(3, start, 1.0), Some(144), "2 min + 20 %");
        assert_eq!(after(4, start, -1.0), Some(480), "10 min - 20 %");
        assert_eq!(after(7, start, 0.0), Some(7200));
        assert_eq!(after(40, start, 0.0), Some(7200), "the last delay repeats");
        let late = start + chrono::TimeDelta::hours(71);
        assert_eq!(after(30, late, 0.0), None, "past three days: given up");
        assert_eq!(after(30, start + chrono::TimeDelta::hours(70), 0.0), Some(7200));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        for bad in ["", "5", "s", "5x", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RetryPolicy::parse_delays("5s, 30s,2m").unwrap(),
            [Duration::from_secs(5), Duration::from_secs(30), Duration::from_secs(120)]
        );
    }
}
