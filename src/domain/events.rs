//! The account event log (§10): what an event is, the names of the changes
//! that append one, who made a change, and the field-level `changes` of an
//! update, computed from the resource's JSON before and after.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::listing::PageParams;
use super::validate::{Errors, FieldError};

/// The kinds of change that append an event, named in Dintero's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName {
    CustomerAdd,
    CustomerUpdate,
    CustomerDelete,
    CustomerIdChange,
    CustomerTagsUpdate,
    CustomerTokenAdd,
    CustomerTokenDelete,
    TokenEventAdd,
    CustomersSettingsUpdate,
}

impl EventName {
    pub const ALL: [EventName; 9] = [
        EventName::CustomerAdd,
        EventName::CustomerUpdate,
        EventName::CustomerDelete,
        EventName::CustomerIdChange,
        EventName::CustomerTagsUpdate,
        EventName::CustomerTokenAdd,
        EventName::CustomerTokenDelete,
        EventName::TokenEventAdd,
        EventName::CustomersSettingsUpdate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::CustomerAdd => "customer_add",
            EventName::CustomerUpdate => "customer_update",
            EventName::CustomerDelete => "customer_delete",
            EventName::CustomerIdChange => "customer_id_change",
            EventName::CustomerTagsUpdate => "customer_tags_update",
            EventName::CustomerTokenAdd => "customer_token_add",
            EventName::CustomerTokenDelete => "customer_token_delete",
            EventName::TokenEventAdd => "token_event_add",
            EventName::CustomersSettingsUpdate => "customers_settings_update",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// Who made a change: the caller's subject (a client id, a customer's `id`
/// for a customer's own token, an operator's `--actor`) and the request it
/// came in (none for the command line).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub request_id: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// A change made outside a request (the command line).
    pub fn named(name: &'a str) -> Self {
        Self { name, request_id: None }
    }
}

/// One entry of the account's event log, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// Unique; a webhook receiver's dedupe key.
    pub id: Uuid,
    /// Increases in commit order within the account, with no gap a reader
    /// can fall into: a reader that saw `seq = n` never later finds a new
    /// event below `n`.
    pub seq: i64,
    #[schema(example = "customer_update")]
    pub event: String,
    pub account_id: String,
    /// The customer the change was about, as its `customer_id` was then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The resource after the change (for a delete: its ids only).
    #[schema(value_type = Object)]
    pub data: Value,
    /// For updates: `{field: {from, to}}` per changed field, nested fields
    /// as dotted paths (`metadata.tier`); arrays change as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Map<String, Value>>,
}

/// A page of the event log: after `starting_after` (an event id), filtered
/// (`GET /customers/events`; a customer's history takes only the paging).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub limit: u32,
    pub starting_after: Option<Uuid>,
    /// Only events with a greater `seq`.
    pub since_seq: Option<i64>,
    /// Only events about the customer with this `customer_id` now (its
    /// events from before a change of customer_id included).
    pub customer_id: Option<String>,
    pub event: Option<EventName>,
}

impl EventQuery {
    /// The feed's query string; `filters` false: only `limit` and
    /// `starting_after` (a customer's history).
    pub fn parse(pairs: &[(String, String)], filters: bool) -> Result<Self, Vec<FieldError>> {
        let allowed: &[&str] = if filters { &["since_seq", "customer_id", "event"] } else { &[] };
        let page = PageParams::parse(pairs, allowed)?;
        let mut errors = Errors::default();
        if page.total || page.include_deleted {
            errors.add(
                if page.total { "total" } else { "include_deleted" },
                "unknown_parameter",
                "the event log takes no such parameter",
            );
        }
        let starting_after = page.starting_after.as_deref().and_then(|raw| {
            let id = Uuid::parse_str(raw).ok();
            if id.is_none() {
                errors.add("starting_after", "invalid_cursor", "must be the id of an event");
            }
            id
        });
        let since_seq = page.get("since_seq").and_then(|raw| match raw.parse::<i64>() {
            Ok(seq) if seq >= 0 => Some(seq),
            _ => {
                errors.add("since_seq", "invalid_integer", "must be a whole number, 0 or more");
                None
            }
        });
        let event = page.get("event").and_then(|raw| {
            let name = EventName::parse(raw);
            if name.is_none() {
                let names: Vec<_> = EventName::ALL.iter().map(|e| e.as_str()).collect();
                errors.add("event", "invalid_value", format!("must be one of {}", names.join(", ")));
            }
            name
        });
        errors.into_result()?;
        Ok(EventQuery {
            limit: page.limit,
            starting_after,
            since_seq,
            customer_id: page.get("customer_id").map(str::to_owned),
            event,
        })
    }
}

/// What an erased value reads as in the event log (§12).
pub const ERASED: &str = "[erased]";

/// The top-level fields of an event's `data` and `changes` that say which
/// record it was and when, not who the person is: an erasure keeps them.
const NOT_PERSONAL: &[&str] =
    &["id", "customer_id", "type", "created_at", "created_by", "updated_at", "deleted_at", "deleted_by", "token_id"];

/// An event about a customer who is erased: every value of its `data` and
/// every `from`/`to` of its `changes` becomes [`ERASED`], except the fields
/// that identify the record and its times; which fields changed stays.
pub fn erase(data: &Value, changes: Option<&Map<String, Value>>) -> (Value, Option<Map<String, Value>>) {
    let data = match data {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), if NOT_PERSONAL.contains(&k.as_str()) { v.clone() } else { erased(v) }))
                .collect(),
        ),
        other => erased(other),
    };
    let changes = changes.map(|changes| {
        changes
            .iter()
            .map(|(field, change)| {
                let kept = NOT_PERSONAL.contains(&field.as_str());
                (field.clone(), if kept { change.clone() } else { serde_json::json!({"from": ERASED, "to": ERASED}) })
            })
            .collect()
    });
    (data, changes)
}

/// A value with every scalar in it replaced by the marker (`null` stays:
/// it holds nothing).
fn erased(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(erased).collect()),
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), erased(v))).collect()),
        _ => Value::String(ERASED.to_owned()),
    }
}

/// The fields of a resource's JSON that change with every write and say
/// nothing about what changed.
const NOT_COMPARED: &[&str] = &["updated_at"];

/// The field-level difference between two states of a resource: for each
/// field that differs, `{from, to}` (a field absent on one side is `null`
/// there). Objects on both sides are compared field by field and named by
/// dotted paths; anything else (arrays, scalars, an object against a
/// non-object) is one field.
pub fn changes(before: &Value, after: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let (Value::Object(before), Value::Object(after)) = (before, after) {
        let keys = before.keys().chain(after.keys().filter(|k| !before.contains_key(*k)));
        for key in keys.filter(|k| !NOT_COMPARED.contains(&k.as_str())) {
            diff(key, before.get(key), after.get(key), &mut out);
        }
    }
    out
}

fn diff(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Map<String, Value>) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            for key in b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))) {
                diff(&format!("{path}.{key}"), b.get(key), a.get(key), out);
            }
        }
        _ => {
            let null = Value::Null;
            let (from, to) = (before.unwrap_or(&null), after.unwrap_or(&null));
            if from != to {
                out.insert(path.to_owned(), serde_json::json!({"from": from, "to": to}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for name in EventName::ALL {
            assert_eq!(EventName::parse(name.as_str()), Some(name));
        }
        let mut names: Vec<_> = EventName::ALL.iter().map(|e| e.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventName::ALL.len());
        assert_eq!(EventName::parse("ping"), None);
    }

    fn pairs(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    #[test]
    fn the_feed_query_parses_filters_and_refuses_bad_values() {
        let id = Uuid::now_v7();
        let query = EventQuery::parse(
            &pairs(&format!("since_seq=5&event=customer_add&customer_id=c1&limit=7&starting_after={id}")),
            true,
        )
        .unwrap();
        assert_eq!(
            query,
            EventQuery {
                limit: 7,
                starting_after: Some(id),
                since_seq: Some(5),
                customer_id: Some("c1".into()),
                event: Some(EventName::CustomerAdd)
            }
        );
        let fields = |q: &str, filters| -> Vec<String> {
            EventQuery::parse(&pairs(q), filters).unwrap_err().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(fields("since_seq=-1&event=nope&starting_after=x", true), ["starting_after", "since_seq", "event"]);
        assert_eq!(fields("since_seq=1.5", true), ["since_seq"]);
        assert_eq!(fields("total=true", true), ["total"]);
        // A customer's history takes no filters.
        assert_eq!(fields("since_seq=1", false), ["since_seq"]);
        assert_eq!(EventQuery::parse(&[], false).unwrap().since_seq, None);
    }

    #[test]
    fn erasing_keeps_ids_times_and_changed_field_names_only() {
        let data = json!({"id": "u1", "customer_id": "c1", "type": "customer", "first_name": "Ada",
            "addresses": [{"city": "Oslo", "n": 3}], "metadata": {"tier": "gold"}, "phone_number": null,
            "updated_at": "2026-01-01T00:00:00.000000Z"});
        let changes = json!({"first_name": {"from": "Ada", "to": "Augusta"}, "metadata.tier": {"from": null, "to": "x"},
            "customer_id": {"from": "a", "to": "b"}});
        let (data, changes) = erase(&data, changes.as_object());
        assert_eq!(
            data,
            json!({"id": "u1", "customer_id": "c1", "type": "customer", "first_name": ERASED,
                "addresses": [{"city": ERASED, "n": ERASED}], "metadata": {"tier": ERASED}, "phone_number": null,
                "updated_at": "2026-01-01T00:00:00.000000Z"})
        );
        assert_eq!(
            Value::Object(changes.unwrap()),
            json!({"first_name": {"from": ERASED, "to": ERASED}, "metadata.tier": {"from": ERASED, "to": ERASED},
                "customer_id": {"from": "a", "to": "b"}})
        );
        assert_eq!(erase(&json!("text"), None), (json!(ERASED), None));
    }

    #[test]
    fn changed_fields_only_with_from_and_to() {
        let before = json!({"first_name": "Ada", "last_name": "Lovelace", "email": "a@x.io", "updated_at": "1"});
        let after =
            json!({"first_name": "Ada", "last_name": "Byron", "phone_number": "+4712345678", "updated_at": "2"});
        let got = changes(&before, &after);
        assert_eq!(
            Value::Object(got),
            json!({
                "last_name": {"from": "Lovelace", "to": "Byron"},
                "email": {"from": "a@x.io", "to": null},
                "phone_number": {"from": null, "to": "+4712345678"},
            })
        );
    }

    #[test]
    fn nested_objects_become_dotted_paths_and_arrays_change_whole() {
        let before = json!({"metadata": {"tier": "gold", "n": 1, "deep": {"a": 1}}, "addresses": [{"city": "Oslo"}]});
        let after =
            json!({"metadata": {"tier": "silver", "n": 1, "deep": {"a": 2}}, "addresses": [{"city": "Bergen"}]});
        assert_eq!(
            Value::Object(changes(&before, &after)),
            json!({
                "metadata.tier": {"from": "gold", "to": "silver"},
                "metadata.deep.a": {"from": 1, "to": 2},
                "addresses": {"from": [{"city": "Oslo"}], "to": [{"city": "Bergen"}]},
            })
        );
    }

    #[test]
    fn an_object_appearing_is_one_field_and_equal_states_have_no_changes() {
        let before = json!({"a": 1});
        let after = json!({"a": 1, "metadata": {"tier": "gold"}});
        assert_eq!(
            Value::Object(changes(&before, &after)),
            json!({"metadata": {"from": null, "to": {"tier": "gold"}}})
        );
        assert!(changes(&after, &after).is_empty());
        // Only `updated_at` differs: nothing changed.
        assert!(changes(&json!({"a": 1, "updated_at": 1}), &json!({"a": 1, "updated_at": 2})).is_empty());
        // Types differ: one leaf.
        assert_eq!(
            Value::Object(changes(&json!({"a": {"b": 1}}), &json!({"a": 2}))),
            json!({"a": {"from": {"b": 1}, "to": 2}})
        );
    }
}
