//! Field-level validation primitives shared by every request type: the
//! `FieldError` list that becomes the `errors` array of §3, and the format
//! checks (email, E.164 phone, ISO country, dates).

use serde::Serialize;
use utoipa::ToSchema;

/// One field-level problem, as listed in the error body's `errors` array.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.to_owned(), message: message.into() }
    }
}

/// Collects field errors so a request gets every problem in one answer.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// Checks a value an index holds: at most [`MAX_INDEXED_BYTES`] bytes
    /// as given and lower-cased (the form search indexes; lower-casing can
    /// grow a text by half).
    pub fn indexed(&mut self, field: &str, value: &str) {
        if value.len() > MAX_INDEXED_BYTES || value.to_lowercase().len() > MAX_INDEXED_BYTES {
            self.add(field, "too_long", format!("must be at most {MAX_INDEXED_BYTES} bytes (UTF-8)"));
        }
    }

    /// Checks a free-text field: bounded length, no control characters.
    pub fn text(&mut self, field: &str, value: &str, max_chars: usize) {
        let chars = value.chars().count();
        if chars > max_chars {
            self.add(field, "too_long", format!("must be at most {max_chars} characters"));
        }
        if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.add(field, "invalid_characters", "must not contain control characters");
        }
    }
}

/// Caller-defined JSON (`metadata`, `attributes`) may hold anything but NUL
/// characters, which PostgreSQL cannot store in `jsonb`.
pub fn check_json(errors: &mut Errors, field: &str, object: &serde_json::Map<String, serde_json::Value>) {
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if object.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        errors.add(field, "invalid_characters", "must not contain NUL characters");
    }
}

/// Longest free-text value we accept in any customer string field.
pub const MAX_TEXT: usize = 1000;

/// Bytes at most of each value an index holds: names, token types and
/// values, attribute keys and values. PostgreSQL refuses an index entry over
/// 2,704 bytes (a name of 700 four-byte characters answered 500); two such
/// values and the account id stay well under it. A limit in bytes, checked
/// here, refuses the same input on both backends.
pub const MAX_INDEXED_BYTES: usize = 1000;

/// Attribute values indexed per customer at most (each list member is
/// one): the rows are written by one statement, and 16,384 of them passed
/// PostgreSQL's limit of bound parameters (8,192 SQLite's).
pub const MAX_ATTRIBUTE_ENTRIES: usize = 1000;

/// The `(key, value as text)` entries the attribute index holds for
/// `attributes`: one per scalar value or list member; `None` marks a key
/// whose value is no scalar or list of scalars (it still "has the key").
pub fn attribute_entries(attributes: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, Option<String>)> {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    let mut entries = Vec::new();
    for (key, value) in attributes {
        let values: Vec<String> = match value {
            Value::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if values.is_empty() {
            entries.push((key.clone(), None));
        }
        entries.extend(values.into_iter().map(|v| (key.clone(), Some(v))));
    }
    entries
}

/// Checks what the attribute index would hold: bounded keys and values,
/// and a bounded number of entries.
pub fn check_attribute_entries(errors: &mut Errors, attributes: &serde_json::Map<String, serde_json::Value>) {
    let entries = attribute_entries(attributes);
    if entries.len() > MAX_ATTRIBUTE_ENTRIES {
        errors.add(
            "attributes",
            "too_many_values",
            format!("at most {MAX_ATTRIBUTE_ENTRIES} values, counting each list member"),
        );
    }
    let mut flagged = std::collections::BTreeSet::new();
    for (key, value) in &entries {
        for text in std::iter::once(key.as_str()).chain(value.as_deref()) {
            if (text.len() > MAX_INDEXED_BYTES || text.to_lowercase().len() > MAX_INDEXED_BYTES)
                && flagged.insert(key.clone())
            {
                errors.add(
                    format!("attributes.{key}"),
                    "too_long",
                    format!("keys and values must be at most {MAX_INDEXED_BYTES} bytes (UTF-8)"),
                );
            }
        }
    }
}

/// A pragmatic address check: one `@`, a non-empty local part of at most 64
/// bytes, a dotted domain of letters, digits and hyphens, no whitespace.
pub fn is_valid_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// E.164 as the contract states it: `^\+?[1-9]\d{1,14}$`.
pub fn is_valid_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    let bytes = digits.as_bytes();
    (2..=15).contains(&bytes.len()) && (b'1'..=b'9').contains(&bytes[0]) && bytes.iter().all(u8::is_ascii_digit)
}

/// ISO 3166-1 alpha-2 codes (officially assigned).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub fn is_valid_country(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code)
}

/// A customer id (§4.1): 1..255 characters, no surrounding whitespace.
pub fn check_customer_id(errors: &mut Errors, field: &str, value: &str) {
    let chars = value.chars().count();
    if chars == 0 || chars > 255 {
        errors.add(field, "invalid_length", "must be 1 to 255 characters");
    } else if value.trim() != value {
        errors.add(field, "invalid_whitespace", "must not start or end with whitespace");
    } else if value.chars().any(char::is_control) {
        errors.add(field, "invalid_characters", "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: Errors) -> Vec<(String, String)> {
        errors.into_result().err().unwrap_or_default().into_iter().map(|e| (e.field, e.code)).collect()
    }

    #[test]
    fn indexed_values_are_bounded_in_bytes_as_given_and_lower_cased() {
        let check = |value: &str| {
            let mut errors = Errors::default();
            errors.indexed("name", value);
            fields(errors)
        };
        assert!(check(&"x".repeat(MAX_INDEXED_BYTES)).is_empty());
        assert_eq!(check(&"x".repeat(MAX_INDEXED_BYTES + 1)), [("name".to_owned(), "too_long".to_owned())]);
        // 500 × 2 bytes, but lower-cased 500 × 3 bytes: what the index holds.
        let grows = "\u{23A}".repeat(MAX_INDEXED_BYTES / 2);
        assert_eq!(grows.len(), MAX_INDEXED_BYTES);
        assert_eq!(check(&grows), [("name".to_owned(), "too_long".to_owned())]);
    }

    #[test]
    fn free_text_may_hold_newlines_and_tabs_but_no_other_control_character() {
        let check = |value: &str| {
            let mut errors = Errors::default();
            errors.text("note", value, 10);
            fields(errors)
        };
        assert!(check("a\nb\tc").is_empty());
        assert_eq!(check("a\u{7}b"), [("note".to_owned(), "invalid_characters".to_owned())]);
        assert_eq!(check(&"x".repeat(11)), [("note".to_owned(), "too_long".to_owned())]);
    }

    #[test]
    fn the_attribute_index_entries_are_bounded() {
        let check = |attributes: serde_json::Value| {
            let mut errors = Errors::default();
            check_attribute_entries(&mut errors, attributes.as_object().unwrap());
            fields(errors)
        };
        let at_limit = serde_json::json!({"list": (0..MAX_ATTRIBUTE_ENTRIES).collect::<Vec<_>>()});
        assert!(check(at_limit).is_empty());
        let over = serde_json::json!({"list": (0..MAX_ATTRIBUTE_ENTRIES).collect::<Vec<_>>(), "one": 1});
        assert_eq!(check(over), [("attributes".to_owned(), "too_many_values".to_owned())]);
        let long = "v".repeat(MAX_INDEXED_BYTES);
        assert!(check(serde_json::json!({ "k": long })).is_empty());
        let too_long = serde_json::json!({"k": "v".repeat(MAX_INDEXED_BYTES + 1)});
        assert_eq!(check(too_long), [("attributes.k".to_owned(), "too_long".to_owned())]);
        let long_key = serde_json::json!({ "k".repeat(MAX_INDEXED_BYTES + 1): 1 });
        assert_eq!(check(long_key).len(), 1, "a key too long");
        let grows = serde_json::json!({"k": "\u{23A}".repeat(MAX_INDEXED_BYTES / 2)});
        assert_eq!(check(grows), [("attributes.k".to_owned(), "too_long".to_owned())], "lower-cased");
        let members = serde_json::json!({"k": ["v".repeat(MAX_INDEXED_BYTES + 1), "w".repeat(MAX_INDEXED_BYTES + 1)]});
        assert_eq!(check(members).len(), 1, "one error a key");
    }

    #[test]
    fn emails() {
        for good in ["a@x.io", "first.last+tag@sub.example.com", "ÆØÅ@eksempel.no"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in ["", "a", "a@", "@x.io", "a@x", "a b@x.io", "a@x..io", ".a@x.io", "a@-x.io", "a@@x.io"] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn email_domains_take_hyphens_inside_labels_only() {
        assert!(is_valid_email("ann@my-shop.no"));
        assert!(is_valid_email("ann@a-b-c.my-shop.no"));
        for bad in ["a@x_y.io", "a@-x.io", "a@x-.io", "a@x.-io", "a@x.io-"] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn email_local_parts_have_no_stray_dots() {
        for bad in ["a.@x.io", ".a@x.io", "a..b@x.io"] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        assert!(is_valid_email("a.b@x.io"));
    }

    #[test]
    fn emails_are_at_most_254_bytes_with_a_local_part_of_at_most_64() {
        let address = |local: usize, total: usize| {
            let domain_len = total - local - 1;
            // Labels of at most 63 bytes: "x…x.x…x.io".
            let mut domain = String::new();
            while domain.len() + 3 < domain_len {
                let room = domain_len - 3 - domain.len();
                let label = room.clamp(1, 63);
                domain.push_str(&"d".repeat(label));
                domain.push('.');
            }
            domain.push_str(&"i".repeat(domain_len - domain.len()));
            format!("{}@{domain}", "l".repeat(local))
        };
        let longest = address(64, 254);
        assert_eq!(longest.len(), 254);
        assert!(is_valid_email(&longest), "{longest}");
        assert!(!is_valid_email(&address(64, 255)));
        assert!(is_valid_email(&address(64, 100)));
        assert!(!is_valid_email(&address(65, 100)));
        assert!(!is_valid_email(&address(65, 254)));
    }

    #[test]
    fn a_nul_anywhere_in_caller_json_is_refused() {
        let check = |value: serde_json::Value| {
            let mut errors = Errors::default();
            check_json(&mut errors, "metadata", value.as_object().unwrap());
            errors.is_empty()
        };
        assert!(check(serde_json::json!({"a": {"b": ["c", {"d": "e"}]}})));
        for bad in [
            serde_json::json!({"a\u{0}": 1}),
            serde_json::json!({"a": "b\u{0}"}),
            serde_json::json!({"a": {"b\u{0}": 1}}),
            serde_json::json!({"a": {"b": "c\u{0}"}}),
            serde_json::json!({"a": [{"b": ["\u{0}"]}]}),
            serde_json::json!({"a": [{"b\u{0}": true}]}),
        ] {
            assert!(!check(bad.clone()), "{bad}");
        }
    }

    #[test]
    fn phones_follow_e164() {
        for good in ["+4799999999", "4799999999", "+12", "+123456789012345"] {
            assert!(is_valid_phone(good), "{good}");
        }
        for bad in ["", "+", "+0123", "+1", "+1234567890123456", "+47 999", "abc"] {
            assert!(!is_valid_phone(bad), "{bad}");
        }
    }

    #[test]
    fn countries_are_assigned_alpha2_codes() {
        assert!(is_valid_country("NO"));
        assert!(is_valid_country("SE"));
        assert!(!is_valid_country("no"));
        assert!(!is_valid_country("XX"));
        assert!(!is_valid_country("NOR"));
    }

    #[test]
    fn customer_ids() {
        let check = |v: &str| {
            let mut e = Errors::default();
            check_customer_id(&mut e, "customer_id", v);
            e.is_empty()
        };
        assert!(check("abc-1"));
        assert!(check(&"x".repeat(255)));
        assert!(!check(""));
        assert!(!check(&"x".repeat(256)));
        assert!(!check(" abc"));
        assert!(!check("abc\t"));
    }
}
