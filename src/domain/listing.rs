//! The customer list query of §4.3: parameters parsed and checked into a
//! `ListParams`, which the store turns into SQL. Also the prefix→range rule
//! that keeps prefix matches on an index.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::customer::CustomerType;
use super::time::parse_date_time;
use super::validate::{Errors, FieldError};

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;
/// Values of `attributes_keys` (and of `attributes_values`) at most: each
/// key is a join the database plans, and planning time grows much faster
/// than the count (100 keys kept a PostgreSQL backend busy past 30 s).
pub const MAX_ATTRIBUTE_FILTERS: usize = 10;

/// Which customer types a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFilter {
    /// No `type` given: everything but `contact`.
    AllButContacts,
    Any,
    Only(CustomerType),
}

/// A case-insensitive prefix, stored lower-cased, with its exclusive upper
/// bound so that SQL can use `col >= lo AND col < hi` on an ordinary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub low: String,
    pub high: Option<String>,
}

impl Prefix {
    pub fn new(raw: &str) -> Self {
        let low = raw.to_lowercase();
        let high = successor(&low);
        Self { low, high }
    }

    /// Exact-case prefix (phone numbers and other case-free values).
    pub fn exact(raw: &str) -> Self {
        Self { low: raw.to_owned(), high: successor(raw) }
    }
}

/// The smallest string greater than every string starting with `prefix`
/// (byte-wise/UTF-8 order, which both stores use for these columns):
/// increment the last character that can be incremented, drop what follows.
/// `None` when no such string exists (every character is U+10FFFF).
pub fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeFilter {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerFilter {
    pub email: Option<Prefix>,
    pub phone_number: Option<Prefix>,
    pub types: TypeFilter,
    pub search: Option<Prefix>,
    pub attributes: Vec<AttributeFilter>,
    pub include_deleted: bool,
    pub since: Option<DateTime<Utc>>,
    pub tag_id: Option<Uuid>,
    pub token_type: Option<String>,
    pub token_value: Option<String>,
}

impl Default for CustomerFilter {
    fn default() -> Self {
        Self {
            email: None,
            phone_number: None,
            types: TypeFilter::AllButContacts,
            search: None,
            attributes: Vec::new(),
            include_deleted: false,
            since: None,
            tag_id: None,
            token_type: None,
            token_value: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListParams {
    pub filter: CustomerFilter,
    pub limit: u32,
    pub starting_after: Option<Uuid>,
    pub total: bool,
}

impl ListParams {
    /// Whether answering may take more than an index walk of one page: a
    /// count, or any filter (a search merges several index ranges, a type
    /// or attribute filter may pass over many rows that do not match).
    pub fn may_take_long(&self) -> bool {
        self.total || self.filter != CustomerFilter::default()
    }

    /// Parses the decoded query pairs of `GET /customers/users`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Errors::default();
        let mut filter = CustomerFilter::default();
        let mut limit = DEFAULT_LIMIT;
        let mut starting_after = None;
        let mut total = false;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut seen: Vec<&str> = Vec::new();

        for (name, value) in pairs {
            if name.contains('\0') || value.contains('\0') {
                errors.add(name, "invalid_characters", "must not contain NUL characters");
                continue;
            }
            let repeatable = matches!(name.as_str(), "attributes_keys" | "attributes_values");
            if !repeatable && seen.contains(&name.as_str()) {
                errors.add(name, "duplicate_parameter", "may be given only once");
                continue;
            }
            seen.push(name);
            match name.as_str() {
                "email" => filter.email = non_empty(value).map(Prefix::new),
                "phone_number" => filter.phone_number = non_empty(value).map(Prefix::exact),
                "search" => filter.search = non_empty(value).map(Prefix::new),
                "type" => match value.as_str() {
                    "any" => filter.types = TypeFilter::Any,
                    other => match CustomerType::parse(other) {
                        Some(t) => filter.types = TypeFilter::Only(t),
                        None => errors.add(
                            "type",
                            "invalid_value",
                            "must be one of customer, company, contact, employee, other, any",
                        ),
                    },
                },
                "tag_id" => match Uuid::parse_str(value) {
                    Ok(id) => filter.tag_id = Some(id),
                    Err(_) => errors.add(name, "invalid_value", "must be the id of a tag"),
                },
                "token_type" => filter.token_type = non_empty(value).map(str::to_owned),
                "token_value" => filter.token_value = non_empty(value).map(str::to_owned),
                "attributes_keys" => keys.extend(split_repeatable(value)),
                "attributes_values" => values.extend(split_repeatable(value)),
                "include_deleted" => parse_bool(&mut errors, name, value, &mut filter.include_deleted),
                "total" => parse_bool(&mut errors, name, value, &mut total),
                "since_datetime" => match parse_date_time(value) {
                    Some(t) => filter.since = Some(t),
                    None => errors.add(name, "invalid_datetime", "must be an RFC 3339 date-time"),
                },
                "limit" => match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                    _ => errors.add(name, "out_of_range", format!("must be an integer from 1 to {MAX_LIMIT}")),
                },
                "starting_after" => match Uuid::parse_str(value) {
                    Ok(id) => starting_after = Some(id),
                    Err(_) => errors.add(name, "invalid_cursor", "must be the id of a customer"),
                },
                _ => errors.add(name, "unknown_parameter", "is not a parameter of this endpoint"),
            }
        }

        if values.len() > keys.len() {
            errors.add(
                "attributes_values",
                "unpaired",
                "each value needs an attributes_keys entry at the same position",
            );
        }
        for (name, count) in [("attributes_keys", keys.len()), ("attributes_values", values.len())] {
            if count > MAX_ATTRIBUTE_FILTERS {
                errors.add(name, "too_many_values", format!("at most {MAX_ATTRIBUTE_FILTERS} values"));
            }
        }
        if keys.iter().any(|k| k.is_empty()) {
            errors.add("attributes_keys", "invalid_value", "must not be empty");
        }
        let mut values = values.into_iter();
        filter.attributes = keys.into_iter().map(|key| AttributeFilter { key, value: values.next() }).collect();
        if filter.since.is_some() && starting_after.is_some() {
            errors.add("starting_after", "conflict", "cannot be combined with since_datetime");
        }

        errors.into_result().map(|()| ListParams { filter, limit, starting_after, total })
    }
}

/// The values of one occurrence of a repeatable parameter: upstream's
/// clients send `attributes_keys=a,b` as well as `attributes_keys=a&attributes_keys=b`
/// (an OpenAPI array parameter in the default `form` style), so a value is
/// split at its commas. A key or value that holds a comma cannot be given.
fn split_repeatable(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split(',').map(str::to_owned)
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

pub fn parse_bool(errors: &mut Errors, name: &str, value: &str, target: &mut bool) {
    match value {
        "true" => *target = true,
        "false" => *target = false,
        _ => errors.add(name, "invalid_boolean", "must be true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ListParams, Vec<FieldError>> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        ListParams::parse(&pairs)
    }

    fn error_fields(query: &str) -> Vec<String> {
        parse(query).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn only_a_plain_page_is_quick() {
        let params = |query: &str| parse(query).unwrap();
        assert!(!params("").may_take_long());
        assert!(!params("limit=50&starting_after=00000000-0000-0000-0000-000000000001").may_take_long());
        for query in ["total=true", "search=ann", "email=a", "type=company", "include_deleted=true"] {
            assert!(params(query).may_take_long(), "{query}");
        }
    }

    #[test]
    fn successor_increments_the_last_character() {
        assert_eq!(successor("abc").as_deref(), Some("abd"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        // every string with the prefix sorts below the bound
        let high = successor("ann").unwrap();
        for s in ["ann", "anna", "ann\u{10FFFF}zzz", "annzzzz"] {
            assert!(s >= "ann" && s < high.as_str(), "{s}");
        }
        assert!("ano" >= high.as_str());
    }

    #[test]
    fn defaults() {
        let p = parse("").unwrap();
        assert_eq!(p.limit, 10);
        assert_eq!(p.filter.types, TypeFilter::AllButContacts);
        assert!(!p.total && !p.filter.include_deleted);
    }

    #[test]
    fn prefixes_are_case_folded_except_phone() {
        let p = parse("email=Ada%40X&search=LOVE&phone_number=%2B47").unwrap();
        assert_eq!(p.filter.email.unwrap().low, "ada@x");
        assert_eq!(p.filter.search.unwrap().low, "love");
        assert_eq!(p.filter.phone_number.unwrap().low, "+47");
    }

    #[test]
    fn limit_must_be_1_to_100() {
        assert_eq!(parse("limit=100").unwrap().limit, 100);
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=ten"] {
            assert_eq!(error_fields(bad), vec!["limit"], "{bad}");
        }
    }

    #[test]
    fn bad_values_and_unknown_parameters_are_errors() {
        assert_eq!(error_fields("type=person"), vec!["type"]);
        assert_eq!(error_fields("since_datetime=yesterday"), vec!["since_datetime"]);
        assert_eq!(error_fields("total=yes"), vec!["total"]);
        assert_eq!(error_fields("starting_after=abc"), vec!["starting_after"]);
        assert_eq!(error_fields("colour=red"), vec!["colour"]);
        assert_eq!(error_fields("limit=5&limit=6"), vec!["limit"]);
    }

    #[test]
    fn booleans_are_true_or_false() {
        let p = parse("total=true&include_deleted=false").unwrap();
        assert!(p.total && !p.filter.include_deleted);
        assert!(!parse("total=false").unwrap().total);
        assert_eq!(error_fields("total=1"), vec!["total"]);
    }

    #[test]
    fn simpler_lists_page_by_limit_cursor_and_flags() {
        let pairs =
            |query: &str| -> Vec<(String, String)> { form_urlencoded::parse(query.as_bytes()).into_owned().collect() };
        let page = |query: &str| PageParams::parse(&pairs(query), &["type"]);
        let defaults = page("").unwrap();
        assert_eq!((defaults.limit, defaults.total, defaults.include_deleted), (DEFAULT_LIMIT, false, false));
        let given = page("limit=3&starting_after=t-1&total=true&include_deleted=true&type=card").unwrap();
        assert_eq!(given.limit, 3);
        assert_eq!(given.starting_after.as_deref(), Some("t-1"));
        assert!(given.total && given.include_deleted);
        assert_eq!(given.get("type"), Some("card"));
        assert_eq!(page("starting_after=").unwrap().starting_after, None, "an empty cursor is none");
        for bad in ["limit=0", "type=a%00", "colour=red", "total=1&total=1"] {
            assert!(page(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_nul_in_a_name_or_a_value_is_refused() {
        for query in ["search=a%00b", "se%00arch=x", "attributes_keys=k%00"] {
            let errors = parse(query).unwrap_err();
            assert_eq!(errors[0].code, "invalid_characters", "{query}");
        }
    }

    #[test]
    fn since_datetime_and_starting_after_conflict() {
        let q = "since_datetime=2026-01-01T00:00:00Z&starting_after=6f1c2a3e-58a8-4d2c-9b55-0a1e2a3b4c5d";
        assert_eq!(error_fields(q), vec!["starting_after"]);
    }

    #[test]
    fn repeatable_parameters_take_comma_separated_values_too() {
        let repeated = parse("attributes_keys=a&attributes_keys=b&attributes_values=1&attributes_values=2").unwrap();
        let separated = parse("attributes_keys=a,b&attributes_values=1,2").unwrap();
        assert_eq!(separated.filter.attributes, repeated.filter.attributes);
        assert_eq!(separated.filter.attributes.len(), 2);
        assert_eq!(parse("attributes_keys=a,b,c&attributes_values=1").unwrap().filter.attributes.len(), 3);
        assert_eq!(error_fields("attributes_keys=a,"), vec!["attributes_keys"]);
    }

    #[test]
    fn attribute_filters_are_capped() {
        let keys = |n: usize| (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(
            parse(&format!("attributes_keys={}", keys(MAX_ATTRIBUTE_FILTERS))).unwrap().filter.attributes.len(),
            10
        );
        assert_eq!(
            error_fields(&format!("attributes_keys={}", keys(MAX_ATTRIBUTE_FILTERS + 1))),
            vec!["attributes_keys"]
        );
        let repeated = (0..=MAX_ATTRIBUTE_FILTERS).map(|i| format!("attributes_keys=k{i}")).collect::<Vec<_>>();
        assert_eq!(error_fields(&repeated.join("&")), vec!["attributes_keys"], "repeated keys count alike");
        let values = format!("attributes_keys={}&attributes_values={}", keys(10), keys(11));
        assert_eq!(error_fields(&values), vec!["attributes_values", "attributes_values"], "unpaired and too many");
    }

    #[test]
    fn since_datetime_is_strict_rfc_3339() {
        assert!(parse("since_datetime=2026-01-01T00:00:00Z").is_ok());
        for bad in ["2026-1-1T00:00:00Z", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01%2000:00:00Z"] {
            assert_eq!(error_fields(&format!("since_datetime={bad}")), vec!["since_datetime"], "{bad}");
        }
    }

    #[test]
    fn attribute_values_pair_with_keys_by_position() {
        let p = parse("attributes_keys=a&attributes_keys=b&attributes_values=1").unwrap();
        assert_eq!(
            p.filter.attributes,
            vec![
                AttributeFilter { key: "a".into(), value: Some("1".into()) },
                AttributeFilter { key: "b".into(), value: None },
            ]
        );
        assert_eq!(error_fields("attributes_values=1"), vec!["attributes_values"]);
    }
}

/// Paging of the simpler lists (terms, tokens, token events): `limit`,
/// `starting_after`, `total`, `include_deleted`, plus the list's own
/// parameters, returned in `extra` when their name is in `allowed`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageParams {
    pub limit: u32,
    pub starting_after: Option<String>,
    pub total: bool,
    pub include_deleted: bool,
    pub extra: Vec<(String, String)>,
}

impl PageParams {
    pub fn parse(pairs: &[(String, String)], allowed: &[&str]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Errors::default();
        let mut params = PageParams { limit: DEFAULT_LIMIT, ..Default::default() };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if name.contains('\0') || value.contains('\0') {
                errors.add(name, "invalid_characters", "must not contain NUL characters");
                continue;
            }
            if seen.contains(&name.as_str()) {
                errors.add(name, "duplicate_parameter", "may be given only once");
                continue;
            }
            seen.push(name);
            match name.as_str() {
                "limit" => match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => params.limit = n,
                    _ => errors.add(name, "out_of_range", format!("must be an integer from 1 to {MAX_LIMIT}")),
                },
                // Empty, as an empty filter value: ignored (not "unknown").
                "starting_after" => params.starting_after = non_empty(value).map(str::to_owned),
                "total" => parse_bool(&mut errors, name, value, &mut params.total),
                "include_deleted" => parse_bool(&mut errors, name, value, &mut params.include_deleted),
                other if allowed.contains(&other) => params.extra.push((name.clone(), value.clone())),
                _ => errors.add(name, "unknown_parameter", "is not a parameter of this endpoint"),
            }
        }
        errors.into_result().map(|()| params)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// An RFC 3339 extra parameter.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, Vec<FieldError>> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_date_time(raw)
                .map(Some)
                .ok_or_else(|| vec![FieldError::new(name, "invalid_datetime", "must be an RFC 3339 date-time")]),
        }
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    fn parse(query: &str, allowed: &[&str]) -> Result<PageParams, Vec<FieldError>> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        PageParams::parse(&pairs, allowed)
    }

    #[test]
    fn page_parameters_and_extras() {
        let p = parse("limit=5&type=card&total=true&starting_after=t1", &["type"]).unwrap();
        assert_eq!((p.limit, p.total, p.get("type")), (5, true, Some("card")));
        assert_eq!(p.starting_after.as_deref(), Some("t1"));
        assert!(parse("type=card", &[]).is_err());
        assert!(parse("limit=0", &[]).is_err());
        let t = parse("since_datetime=2026-01-01T00:00:00Z", &["since_datetime"]).unwrap();
        assert!(t.time("since_datetime").unwrap().is_some());
        assert!(parse("since_datetime=x", &["since_datetime"]).unwrap().time("since_datetime").is_err());
        let lenient = parse("since_datetime=2026-01-01T00:00:00", &["since_datetime"]).unwrap();
        assert!(lenient.time("since_datetime").is_err());
    }
}
