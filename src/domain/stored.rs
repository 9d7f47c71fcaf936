//! A customer read for an answer (a GET, a list page, an export). Its
//! details stay the JSON text the store holds and are copied into the answer
//! as they are: parsing every document into [`CustomerData`] only to
//! serialise it again was about a sixth of a list page's server CPU.
//!
//! The text is what serialising `CustomerData` wrote (the store writes
//! nothing else into the column), so the answer has the fields, values and
//! shape that serialising a [`Customer`] gives; only the order of the keys
//! inside the details may differ, which JSON leaves free.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::customer::{etag, ContactRef, Customer, CustomerData};
use super::time::{micros_text, with_micros_text};

/// A customer's details as stored: the text of one JSON object, without
/// whitespace outside its strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument(String);

impl StoredDocument {
    /// `text` when it is a JSON object, as the store hands it over: an
    /// object's text from the database is trusted to be well-formed (the
    /// store wrote it from a serialised value), so only its braces are
    /// checked here; a bad document fails when it is parsed.
    pub fn from_object_text(text: String) -> Option<Self> {
        let trimmed = text.trim();
        if trimmed.len() >= 2 && trimmed.starts_with('{') && trimmed.ends_with('}') {
            Some(Self(if trimmed.len() == text.len() { text } else { trimmed.to_owned() }))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object's members, without its braces (empty for `{}`).
    fn members(&self) -> &str {
        self.0[1..self.0.len() - 1].trim()
    }
}

/// A stored customer as the API returns it; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCustomer {
    pub id: Uuid,
    pub customer_id: String,
    /// The details; an erased (deleted) customer's hold only its type (§4.2).
    pub doc: StoredDocument,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

impl StoredCustomer {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The version tag, as [`Customer::etag`] gives it.
    pub fn etag(&self) -> String {
        etag(&self.updated_at)
    }

    /// The customer with its details parsed, for the answers that change
    /// them (hiding private attributes) and for writes.
    pub fn into_customer(self) -> Result<Customer, serde_json::Error> {
        let data = serde_json::from_str::<CustomerData>(self.doc.as_str())?;
        // Erasure left only the type; a document written before it did is empty.
        let data = if self.is_deleted() { data.erased() } else { data };
        Ok(Customer {
            id: self.id,
            customer_id: self.customer_id,
            data,
            created_at: self.created_at,
            created_by: self.created_by,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            deleted_by: self.deleted_by,
        })
    }

    /// The `customer_id`s this customer is a contact for. The document is
    /// parsed only when it holds the key: a serialiser writes `contact_for`
    /// as it is (no character of it is escaped), so a document without that
    /// text has none.
    pub fn contact_ids(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Contacts {
            #[serde(default)]
            contact_for: Option<Vec<ContactRef>>,
        }
        if self.is_deleted() || !self.doc.as_str().contains("\"contact_for\"") {
            return Vec::new();
        }
        match serde_json::from_str::<Contacts>(self.doc.as_str()) {
            Ok(found) => found.contact_for.into_iter().flatten().map(|c| c.customer_id).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Appends this customer's JSON: the members of [`Customer`]'s
    /// serialisation, with the stored details copied in between.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
        out.extend_from_slice(b"\",\"customer_id\":");
        write_string(out, &self.customer_id);
        out.push(b',');
        let members = self.doc.members();
        if !members.is_empty() {
            out.extend_from_slice(members.as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"created_at\":");
        write_time(out, &self.created_at);
        out.extend_from_slice(b",\"created_by\":");
        write_string(out, &self.created_by);
        out.extend_from_slice(b",\"updated_at\":");
        write_time(out, &self.updated_at);
        if let Some(at) = &self.deleted_at {
            out.extend_from_slice(b",\"deleted_at\":");
            write_time(out, at);
        }
        if let Some(by) = &self.deleted_by {
            out.extend_from_slice(b",\"deleted_by\":");
            write_string(out, by);
        }
        out.push(b'}');
    }

    /// At least the size of [`Self::write_json`]'s output for a live
    /// customer whose strings need no escaping, so that a list answer's
    /// buffer is allocated once (a hint 4 bytes short made every list page
    /// copy its whole buffer once more near its end).
    fn json_size_hint(&self) -> usize {
        self.doc.as_str().len() + self.customer_id.len() + self.created_by.len() + JSON_MEMBERS_SIZE
    }
}

/// What [`StoredCustomer::write_json`] writes beyond the document's text and
/// the `customer_id` and `created_by` text: keys, quotes, the id and two
/// times, 164 bytes, and room for a few escaped characters.
const JSON_MEMBERS_SIZE: usize = 168;

/// The JSON array of `customers`, for a list answer.
pub fn json_array(customers: &[&StoredCustomer]) -> Vec<u8> {
    let size = customers.iter().map(|c| c.json_size_hint() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(size);
    out.push(b'[');
    for (i, customer) in customers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        customer.write_json(&mut out);
    }
    out.push(b']');
    out
}

/// One customer's JSON, for a single-customer answer.
pub fn json_object(customer: &StoredCustomer) -> Vec<u8> {
    let mut out = Vec::with_capacity(customer.json_size_hint());
    customer.write_json(&mut out);
    out
}

fn write_string(out: &mut Vec<u8>, value: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_time(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    out.push(b'"');
    match micros_text(at) {
        Some(text) => out.extend_from_slice(&text),
        None => with_micros_text(at, |text| out.extend_from_slice(text.as_bytes())),
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::customer::CustomerInput;

    fn time(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    /// A customer stored as the store stores it: the details serialised
    /// through `serde_json::Value` (which sorts the keys).
    fn stored(input: Value, deleted: bool) -> (Customer, StoredCustomer) {
        let input: CustomerInput = serde_json::from_value(input).unwrap();
        let (customer_id, data) = input.into_new(time(1_700_000_000_000_001)).unwrap();
        let data = if deleted { data.erased() } else { data };
        let doc = serde_json::to_value(&data).unwrap();
        let customer = Customer {
            id: Uuid::now_v7(),
            customer_id: customer_id.unwrap_or_else(|| "generated".to_owned()),
            data,
            created_at: time(1_700_000_000_000_001),
            created_by: "client:\"quoted\"\\".to_owned(),
            updated_at: time(1_700_000_001_234_567),
            deleted_at: deleted.then(|| time(1_700_000_002_000_000)),
            deleted_by: deleted.then(|| "remover".to_owned()),
        };
        let stored = StoredCustomer {
            id: customer.id,
            customer_id: customer.customer_id.clone(),
            doc: StoredDocument::from_object_text(doc.to_string()).unwrap(),
            created_at: customer.created_at,
            created_by: customer.created_by.clone(),
            updated_at: customer.updated_at,
            deleted_at: customer.deleted_at,
            deleted_by: customer.deleted_by.clone(),
        };
        (customer, stored)
    }

    fn full() -> Value {
        json!({
            "customer_id": "ünï \"code\"",
            "type": "contact",
            "first_name": "Åse",
            "last_name": "O'Brien \\ \t",
            "email": "ase@example.com",
            "phone_number": "+4799999999",
            "attributes": {"tier": "gold", "n": 1.5, "nested": {"b": [1, null, true]}},
            "metadata": {"z": "last", "a": -3},
            "date_of_birth": "1990-02-03",
            "marketing_consent": {"sms": {"consent": true}},
            "addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO",
                "latitude": 59.9139, "longitude": 10.7522, "type": "home"}],
            "contact_for": [{"customer_id": "boss"}, {"customer_id": "other"}],
        })
    }

    fn company() -> Value {
        json!({
            "customer_id": "acme",
            "type": "company",
            "company": {"bussiness_name": "Acme AS", "number_of_employees": "12"},
            "term": {"id": "t1", "accepted_at": "2026-01-02T03:04:05.678901Z"},
        })
    }

    #[test]
    fn contacts_are_named_by_live_records_only() {
        let contact = json!({"type": "contact", "contact_for": [{"customer_id": "c-1"}, {"customer_id": "c-2"}]});
        let (_, live) = stored(contact.clone(), false);
        assert!(!live.is_deleted());
        assert_eq!(live.contact_ids(), ["c-1", "c-2"]);
        // A deleted record whose stored text still names contacts (as one
        // erased before erasure dropped them would) names none.
        let (_, mut gone) = stored(contact, false);
        gone.deleted_at = Some(time(1_700_000_003_000_000));
        assert!(gone.is_deleted());
        assert!(gone.contact_ids().is_empty());
        let (_, plain) = stored(json!({"first_name": "Ada"}), false);
        assert!(plain.contact_ids().is_empty());
    }

    #[test]
    fn written_json_is_what_serialising_the_customer_gives() {
        let cases = [(full(), false), (full(), true), (company(), false), (json!({"customer_id": "min"}), false)];
        for (input, deleted) in cases {
            let (customer, stored) = stored(input, deleted);
            let written: Value = serde_json::from_slice(&json_object(&stored)).unwrap();
            assert_eq!(written, serde_json::to_value(&customer).unwrap());
            assert_eq!(stored.etag(), customer.etag());
            assert_eq!(stored.clone().into_customer().unwrap(), customer);
        }
    }

    #[test]
    fn an_erased_customer_keeps_its_type_also_from_an_empty_document() {
        let (_, mut erased) = stored(full(), true);
        let written: Value = serde_json::from_slice(&json_object(&erased)).unwrap();
        assert_eq!(written["type"], "contact");
        assert!(written.get("first_name").is_none(), "{written}");
        erased.doc = StoredDocument::from_object_text("{}".to_owned()).unwrap();
        assert_eq!(erased.into_customer().unwrap().data.customer_type, crate::domain::customer::CustomerType::Customer);
    }

    #[test]
    fn the_size_hint_covers_a_live_customer_without_escapes() {
        for input in [json!({"customer_id": "min"}), company(), json!({"customer_id": "c1", "first_name": "Ann"})] {
            let (_, mut customer) = stored(input, false);
            customer.created_by = "client_CuKXxaPuv-wzMa57".to_owned();
            let written = json_object(&customer).len();
            let hint = customer.json_size_hint();
            assert!(hint >= written && hint <= written + 8, "hint {hint}, written {written}");
        }
    }

    #[test]
    fn an_array_holds_each_customer_once_in_order() {
        let (a, first) = stored(full(), false);
        let (b, second) = stored(json!({"customer_id": "two"}), true);
        let written: Value = serde_json::from_slice(&json_array(&[&first, &second])).unwrap();
        assert_eq!(written, json!([a, b]));
        assert_eq!(json_array(&[]), b"[]");
    }

    #[test]
    fn contact_ids_come_from_live_documents_that_have_them() {
        assert_eq!(stored(full(), false).1.contact_ids(), ["boss", "other"]);
        assert!(stored(full(), true).1.contact_ids().is_empty());
        assert!(stored(json!({"customer_id": "x", "metadata": {"k": "contact_for"}}), false)
            .1
            .contact_ids()
            .is_empty());
        let (_, mut tricky) = stored(json!({"customer_id": "x"}), false);
        tricky.doc = StoredDocument::from_object_text(r#"{"metadata":{"v":"\"contact_for\""}}"#.to_owned()).unwrap();
        assert!(tricky.contact_ids().is_empty());
    }

    #[test]
    fn a_document_must_be_an_object() {
        for bad in ["", "{", "[]", "null", "\"{}\"", " } "] {
            assert!(StoredDocument::from_object_text(bad.to_owned()).is_none(), "{bad:?}");
        }
        assert_eq!(StoredDocument::from_object_text(" {} \n".to_owned()).unwrap().as_str(), "{}");
        assert_eq!(StoredDocument::from_object_text("{}".to_owned()).unwrap().members(), "");
    }
}
