//! The customer record (§4.1): its stored shape, the request shape, field
//! validation and the create/update merge rules of §4.2.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::patch::Patch;
use super::validate::{self, Errors, FieldError, MAX_TEXT};

pub type JsonObject = Map<String, Value>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerType {
    #[default]
    Customer,
    Company,
    Contact,
    Employee,
    Other,
}

impl CustomerType {
    pub const ALL: [CustomerType; 5] = [
        CustomerType::Customer,
        CustomerType::Company,
        CustomerType::Contact,
        CustomerType::Employee,
        CustomerType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerType::Customer => "customer",
            CustomerType::Company => "company",
            CustomerType::Contact => "contact",
            CustomerType::Employee => "employee",
            CustomerType::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// §2: creating or updating these types needs `admin` or `write`.
    pub fn is_privileged(self) -> bool {
        matches!(self, CustomerType::Employee | CustomerType::Other)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolledBy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub kind: Option<String>,
    #[schema(max_length = 1000)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Optional, as upstream: a consent entry may be recorded without a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<bool>,
    /// Set by the server whenever `consent` changes; ignored in requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    #[serde(deserialize_with = "crate::domain::time::optional_date_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketingConsent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<Consent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Consent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressType {
    Custom,
    Home,
    Other,
    Work,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(max_length = 1000)]
    pub address_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub address_line_2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub postal_code: Option<String>,
    #[schema(max_length = 1000)]
    pub postal_place: String,
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub longitude: Option<f64>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AddressType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub custom_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Term {
    /// The id of the account's terms record; both fields are optional, as upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 1000)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    #[serde(deserialize_with = "crate::domain::time::optional_date_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Company {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub organization_number: Option<String>,
    /// Spelled as in the Dintero contract.
    #[schema(max_length = 1000)]
    pub bussiness_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub website: Option<String>,
    /// A string, as upstream (`"42"`, `"10-50"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub number_of_employees: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRef {
    #[schema(min_length = 1, max_length = 255)]
    pub customer_id: String,
}

/// Everything about a customer that the caller owns (all but `customer_id`
/// and the server-set fields). Stored as one JSON document; the searchable
/// parts are copied into indexed columns by the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CustomerData {
    /// Every customer answer has it, erased customers' too.
    #[serde(rename = "type")]
    #[schema(required = true)]
    pub customer_type: CustomerType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub favorite_store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolled_by: Option<EnrolledBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketing_consent: Option<MarketingConsent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<Address>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<Term>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<Company>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_for: Option<Vec<ContactRef>>,
}

/// A stored customer as the API returns it. Of a deleted customer only the
/// type is left beside the ids and server timestamps (§4.2).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Customer {
    pub id: Uuid,
    pub customer_id: String,
    #[serde(flatten)]
    pub data: CustomerData,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::micros")]
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::domain::time::optional_micros")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

impl Customer {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The version tag of this state. `updated_at` changes on every write
    /// and is unique within the account, so it names one version.
    pub fn etag(&self) -> String {
        etag(&self.updated_at)
    }

    /// Whether an `If-Match` header value admits this version (RFC 9110
    /// §13.1.1: `*`, or a list of strong tags; a weak tag never matches).
    pub fn matches(&self, if_match: &str) -> bool {
        let etag = self.etag();
        if_match.split(',').map(str::trim).any(|tag| tag == "*" || tag == etag)
    }
}

/// The version tag of the customer state last written at `updated_at`.
pub fn etag(updated_at: &DateTime<Utc>) -> String {
    format!("\"{}\"", updated_at.timestamp_micros())
}

entity_input! {
    own_id
    /// The body of `POST` and `PUT /customers/users…`. Every field is a
    /// [`Patch`] so one type serves both: a create is a patch applied to an
    /// empty customer. Server-set fields are accepted and ignored so that a
    /// client can send back what it read (`id` must be the customer's own).
    pub struct CustomerInput {
        #[serde(default)]
        #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
        pub customer_id: Patch<String>,
        #[serde(rename = "type", default)]
        #[schema(value_type = Option<CustomerType>)]
        pub customer_type: Patch<CustomerType>,
        /// At most 1,000 characters and 1,000 bytes (UTF-8), lower-cased too.
        #[serde(default)]
        #[schema(value_type = Option<String>, max_length = 1000)]
        pub first_name: Patch<String>,
        /// At most 1,000 characters and 1,000 bytes (UTF-8), lower-cased too.
        #[serde(default)]
        #[schema(value_type = Option<String>, max_length = 1000)]
        pub last_name: Patch<String>,
        #[serde(default)]
        #[schema(value_type = Option<String>, format = Email, max_length = 254)]
        pub email: Patch<String>,
        #[serde(default)]
        #[schema(value_type = Option<String>, pattern = r"^\+?[1-9][0-9]{1,14}$")]
        pub phone_number: Patch<String>,
        /// Searchable attributes: at most 1,000 values (each list member
        /// counts), keys and values of at most 1,000 bytes (UTF-8).
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub attributes: Patch<JsonObject>,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub metadata: Patch<JsonObject>,
        #[serde(default)]
        #[schema(value_type = Option<String>, max_length = 1000)]
        pub status: Patch<String>,
        #[serde(default)]
        #[schema(value_type = Option<String>, max_length = 1000)]
        pub favorite_store: Patch<String>,
        #[serde(default)]
        #[schema(value_type = Option<String>, max_length = 1000)]
        pub gender: Patch<String>,
        #[serde(default, deserialize_with = "patch_full_date")]
        #[schema(value_type = Option<String>, format = Date)]
        pub date_of_birth: Patch<NaiveDate>,
        #[serde(default)]
        #[schema(value_type = Option<EnrolledBy>)]
        pub enrolled_by: Patch<EnrolledBy>,
        #[serde(default)]
        #[schema(value_type = Option<MarketingConsent>)]
        pub marketing_consent: Patch<MarketingConsent>,
        #[serde(default)]
        #[schema(value_type = Option<Vec<Address>>)]
        pub addresses: Patch<Vec<Address>>,
        #[serde(default)]
        #[schema(value_type = Option<Term>)]
        pub term: Patch<Term>,
        #[serde(default)]
        #[schema(value_type = Option<Company>)]
        pub company: Patch<Company>,
        #[serde(default)]
        #[schema(value_type = Option<Vec<ContactRef>>)]
        pub contact_for: Patch<Vec<ContactRef>>,
        /// Kept only as an Argon2 hash, never returned (login is out of scope).
        #[serde(default)]
        #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 1000)]
        pub password: Patch<String>,
        /// Six digits; kept only as an Argon2 hash, never returned.
        #[serde(default)]
        #[schema(value_type = Option<String>, write_only, pattern = "^[0-9]{6}$")]
        pub pin: Patch<String>,
        #[serde(default)]
        #[schema(value_type = Option<String>, format = Uuid)]
        pub id: Option<Uuid>,
    }
}

/// `date_of_birth` as a [`Patch`], read as a strict RFC 3339 full-date.
fn patch_full_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Patch<NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    struct Strict(#[serde(deserialize_with = "crate::domain::time::full_date")] NaiveDate);
    Ok(match Option::<Strict>::deserialize(deserializer)? {
        Some(Strict(date)) => Patch::Value(date),
        None => Patch::Null,
    })
}

/// The `password` and `pin` of a request (§4.1), taken out of the input
/// before anything else sees it. Debug output never shows them.
#[derive(Default)]
pub struct Secrets {
    pub password: Patch<String>,
    pub pin: Patch<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |p: &Patch<String>| match p {
            Patch::Absent => "absent",
            Patch::Null => "null",
            Patch::Value(_) => "<redacted>",
        };
        f.debug_struct("Secrets").field("password", &shown(&self.password)).field("pin", &shown(&self.pin)).finish()
    }
}

impl Secrets {
    pub fn is_absent(&self) -> bool {
        self.password.is_absent() && self.pin.is_absent()
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if let Patch::Value(password) = &self.password {
            if password.is_empty() {
                errors.add("password", "required", "must not be empty");
            }
            errors.text("password", password, MAX_TEXT);
        }
        if let Patch::Value(pin) = &self.pin {
            if pin.len() != 6 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                errors.add("pin", "invalid_pin", "must be six digits");
            }
        }
        errors.into_result()
    }
}

/// What an update may not touch; `None` for a create.
pub struct Identity<'a> {
    pub id: Uuid,
    pub customer_id: &'a str,
}

impl CustomerInput {
    /// Takes the `password` and `pin` out of the request: they never become
    /// part of the customer's data.
    pub fn take_secrets(&mut self) -> Secrets {
        Secrets { password: std::mem::take(&mut self.password), pin: std::mem::take(&mut self.pin) }
    }

    /// Builds the data of a new customer, and the caller's `customer_id` if given.
    pub fn into_new(self, now: DateTime<Utc>) -> Result<(Option<String>, CustomerData), Vec<FieldError>> {
        let mut errors = Errors::default();
        let customer_id = self.customer_id.clone().into_option();
        if let Some(id) = &customer_id {
            validate::check_customer_id(&mut errors, "customer_id", id);
        }
        let data = self.apply(CustomerData::default(), now, errors)?;
        Ok((customer_id, data))
    }

    /// Applies this patch to a stored customer's data (§4.2 merge rules) and
    /// validates the result as a whole.
    pub fn apply_to(
        self,
        current: CustomerData,
        identity: Identity<'_>,
        now: DateTime<Utc>,
    ) -> Result<CustomerData, Vec<FieldError>> {
        let mut errors = Errors::default();
        if let Some(given) = self.customer_id.as_value() {
            if given != identity.customer_id {
                errors.add("customer_id", "read_only", "cannot be changed here; use change_customer_id");
            }
        }
        if matches!(self.customer_id, Patch::Null) {
            errors.add("customer_id", "read_only", "cannot be cleared");
        }
        if self.id.is_some_and(|id| id != identity.id) {
            errors.add("id", "read_only", "cannot be changed");
        }
        self.apply(current, now, errors)
    }

    fn apply(
        self,
        current: CustomerData,
        now: DateTime<Utc>,
        mut errors: Errors,
    ) -> Result<CustomerData, Vec<FieldError>> {
        if matches!(self.customer_type, Patch::Null) {
            errors.add("type", "required", "cannot be null");
        }
        let marketing_consent = merge_consent(current.marketing_consent.clone(), self.marketing_consent, now);
        let data = CustomerData {
            customer_type: self.customer_type.into_option().unwrap_or(current.customer_type),
            first_name: self.first_name.apply_to(current.first_name),
            last_name: self.last_name.apply_to(current.last_name),
            email: self.email.apply_to(current.email),
            phone_number: self.phone_number.apply_to(current.phone_number),
            attributes: self.attributes.apply_to(current.attributes),
            metadata: merge_metadata(current.metadata, self.metadata),
            status: self.status.apply_to(current.status),
            favorite_store: self.favorite_store.apply_to(current.favorite_store),
            gender: self.gender.apply_to(current.gender),
            date_of_birth: self.date_of_birth.apply_to(current.date_of_birth),
            enrolled_by: self.enrolled_by.apply_to(current.enrolled_by),
            marketing_consent,
            addresses: self.addresses.apply_to(current.addresses),
            term: self.term.apply_to(current.term),
            company: self.company.apply_to(current.company),
            contact_for: self.contact_for.apply_to(current.contact_for),
        };
        data.validate(&mut errors);
        errors.into_result().map(|()| data)
    }
}

/// §4.2: `metadata` merges key by key; a `null` value removes the key and
/// `"metadata": null` removes them all.
pub fn merge_metadata(current: Option<JsonObject>, patch: Patch<JsonObject>) -> Option<JsonObject> {
    match patch {
        Patch::Absent => current,
        Patch::Null => None,
        Patch::Value(changes) => {
            let mut merged = current.unwrap_or_default();
            for (key, value) in changes {
                if value.is_null() {
                    merged.remove(&key);
                } else {
                    merged.insert(key, value);
                }
            }
            Some(merged)
        }
    }
}

/// The server stamps `updated_at` on a consent whose value changed, and keeps
/// the old stamp when the caller re-sends the same value.
fn merge_consent(
    current: Option<MarketingConsent>,
    patch: Patch<MarketingConsent>,
    now: DateTime<Utc>,
) -> Option<MarketingConsent> {
    let stamp = |old: Option<&Consent>, new: Option<Consent>| {
        new.map(|new| match old {
            Some(old) if old.consent == new.consent => old.clone(),
            _ => Consent { consent: new.consent, updated_at: Some(now) },
        })
    };
    match patch {
        Patch::Absent => current,
        Patch::Null => None,
        Patch::Value(new) => {
            let old = current.unwrap_or_default();
            Some(MarketingConsent {
                sms: stamp(old.sms.as_ref(), new.sms),
                email: stamp(old.email.as_ref(), new.email),
            })
        }
    }
}

impl CustomerData {
    /// Field formats and the rules that tie fields to the customer type.
    pub fn validate(&self, errors: &mut Errors) {
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("status", &self.status),
            ("favorite_store", &self.favorite_store),
            ("gender", &self.gender),
        ] {
            if let Some(v) = value {
                errors.text(field, v, MAX_TEXT);
            }
        }
        for (field, name) in [("first_name", &self.first_name), ("last_name", &self.last_name)] {
            if let Some(name) = name {
                errors.indexed(field, name);
            }
        }
        if let Some(attributes) = &self.attributes {
            validate::check_attribute_entries(errors, attributes);
        }
        if let Some(email) = &self.email {
            if !validate::is_valid_email(email) {
                errors.add("email", "invalid_email", "is not a valid email address");
            }
        }
        if let Some(phone) = &self.phone_number {
            if !validate::is_valid_phone(phone) {
                errors.add("phone_number", "invalid_phone_number", "must be an E.164 number such as +4799999999");
            }
        }
        if let Some(enrolled) = &self.enrolled_by {
            errors.text("enrolled_by.value", &enrolled.value, MAX_TEXT);
            if let Some(kind) = &enrolled.kind {
                errors.text("enrolled_by.type", kind, MAX_TEXT);
            }
        }
        for (field, object) in [("metadata", &self.metadata), ("attributes", &self.attributes)] {
            if let Some(map) = object {
                validate::check_json(errors, field, map);
            }
        }
        if let Some(company) = &self.company {
            for (name, value) in [
                ("organization_number", company.organization_number.as_ref()),
                ("bussiness_name", Some(&company.bussiness_name)),
                ("department", company.department.as_ref()),
                ("industry", company.industry.as_ref()),
                ("website", company.website.as_ref()),
                ("number_of_employees", company.number_of_employees.as_ref()),
            ] {
                if let Some(v) = value {
                    errors.text(&format!("company.{name}"), v, MAX_TEXT);
                }
            }
        }
        for (i, address) in self.addresses.iter().flatten().enumerate() {
            validate_address(errors, i, address);
        }
        if let Some(id) = self.term.as_ref().and_then(|term| term.id.as_ref()) {
            if id.trim().is_empty() {
                errors.add("term.id", "required", "must name a terms record");
            }
            errors.text("term.id", id, MAX_TEXT);
        }
        self.validate_type_rules(errors);
    }

    fn validate_type_rules(&self, errors: &mut Errors) {
        let kind = self.customer_type;
        match &self.company {
            None if kind == CustomerType::Company => {
                errors.add("company", "required", "is required for type company");
            }
            Some(_) if !matches!(kind, CustomerType::Company | CustomerType::Other) => {
                errors.add("company", "not_allowed", "is allowed only for types company and other");
            }
            Some(company) if company.bussiness_name.trim().is_empty() => {
                errors.add("company.bussiness_name", "required", "must not be empty");
            }
            Some(_) | None => {}
        }
        match &self.contact_for {
            Some(_) if kind != CustomerType::Contact => {
                errors.add("contact_for", "not_allowed", "is allowed only for type contact");
            }
            Some(list) => {
                for (i, contact) in list.iter().enumerate() {
                    validate::check_customer_id(errors, &format!("contact_for[{i}].customer_id"), &contact.customer_id);
                }
            }
            None => {}
        }
    }

    /// What erasure (§4.2) leaves of a customer's data: its type.
    pub fn erased(&self) -> CustomerData {
        CustomerData { customer_type: self.customer_type, ..CustomerData::default() }
    }

    /// The customer ids this record says it is a contact for.
    pub fn contact_ids(&self) -> Vec<&str> {
        self.contact_for.iter().flatten().map(|c| c.customer_id.as_str()).collect()
    }
}

/// Why an update was refused.
#[derive(Debug)]
pub enum PatchError {
    Invalid(Vec<FieldError>),
    Forbidden(&'static str),
    /// The caller's `If-Match` names another version.
    VersionMismatch,
}

/// The rules of an update beyond each field's own: which record a caller
/// may change, its version, the types only writers may set, and the
/// private attributes a self-service caller neither sees nor sets.
pub struct UpdateRules {
    /// For a `user:customers` caller: the `id` of the only record it may
    /// change. `None`: a writer (admin or write scope).
    pub own_record: Option<String>,
    /// The `If-Match` list, when one was sent.
    pub expected_version: Option<String>,
}

impl UpdateRules {
    /// The customer's new data: `input` applied to `current`, or why not.
    /// `private` names the account's private attributes.
    pub fn apply(
        &self,
        input: CustomerInput,
        current: &Customer,
        private: &[String],
        now: DateTime<Utc>,
    ) -> Result<CustomerData, PatchError> {
        let self_service = self.own_record.is_some();
        if self.own_record.as_ref().is_some_and(|own| *own != current.id.to_string()) {
            return Err(PatchError::Forbidden("a user:customers token may only access its own customer"));
        }
        if self.expected_version.as_deref().is_some_and(|tag| !current.matches(tag)) {
            return Err(PatchError::VersionMismatch);
        }
        let data = current.data.clone();
        let was_privileged = data.customer_type.is_privileged();
        if self_service {
            reject_private_attributes(&input, private)?;
        }
        let kept: Vec<(String, Value)> = private
            .iter()
            .filter_map(|name| Some((name.clone(), data.attributes.as_ref()?.get(name)?.clone())))
            .collect();
        let identity = Identity { id: current.id, customer_id: &current.customer_id };
        let mut updated = input.apply_to(data, identity, now).map_err(PatchError::Invalid)?;
        if self_service && (was_privileged || updated.customer_type.is_privileged()) {
            return Err(PatchError::Forbidden("customers of type employee or other need admin or write scope"));
        }
        if self_service && !kept.is_empty() {
            // The caller cannot see private attributes, so replacing the
            // attributes object must not drop them.
            updated.attributes.get_or_insert_with(Default::default).extend(kept);
        }
        Ok(updated)
    }
}

/// A self-service caller may not set attributes it cannot see.
fn reject_private_attributes(input: &CustomerInput, private: &[String]) -> Result<(), PatchError> {
    let Some(attributes) = input.attributes.as_value() else {
        return Ok(());
    };
    let errors: Vec<FieldError> = private
        .iter()
        .filter(|name| attributes.contains_key(*name))
        .map(|name| FieldError::new(format!("attributes.{name}"), "not_allowed", "is a private attribute"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PatchError::Invalid(errors))
    }
}

fn validate_address(errors: &mut Errors, i: usize, address: &Address) {
    let field = |name: &str| format!("addresses[{i}].{name}");
    if address.address_line.trim().is_empty() {
        errors.add(field("address_line"), "required", "must not be empty");
    }
    if address.postal_place.trim().is_empty() {
        errors.add(field("postal_place"), "required", "must not be empty");
    }
    if !validate::is_valid_country(&address.country) {
        errors.add(field("country"), "invalid_country", "must be an ISO 3166-1 alpha-2 code such as NO");
    }
    if address.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        errors.add(field("latitude"), "out_of_range", "must be between -90 and 90");
    }
    if address.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        errors.add(field("longitude"), "out_of_range", "must be between -180 and 180");
    }
    for (name, value) in [
        ("address_line", Some(&address.address_line)),
        ("address_line_2", address.address_line_2.as_ref()),
        ("postal_code", address.postal_code.as_ref()),
        ("postal_place", Some(&address.postal_place)),
        ("custom_type", address.custom_type.as_ref()),
        ("comment", address.comment.as_ref()),
    ] {
        if let Some(v) = value {
            errors.text(&field(name), v, MAX_TEXT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(body: Value) -> CustomerInput {
        serde_json::from_value(body).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    fn codes(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors.iter().map(|e| (e.field.as_str(), e.code.as_str())).collect()
    }

    fn customer(id: Uuid, data: Value) -> Customer {
        Customer {
            id,
            customer_id: "c-1".into(),
            data: serde_json::from_value(data).unwrap(),
            created_at: now(),
            created_by: "t".into(),
            updated_at: now(),
            deleted_at: None,
            deleted_by: None,
        }
    }

    #[test]
    fn update_rules_keep_self_service_callers_to_their_record_and_rights() {
        let id = Uuid::from_u128(7);
        let current =
            customer(id, json!({"type": "customer", "first_name": "Ada", "attributes": {"score": 3, "tier": "a"}}));
        let private = vec!["score".to_owned()];
        let own = UpdateRules { own_record: Some(id.to_string()), expected_version: None };
        let writer = UpdateRules { own_record: None, expected_version: None };

        let other = UpdateRules { own_record: Some(Uuid::from_u128(8).to_string()), expected_version: None };
        assert!(matches!(other.apply(input(json!({})), &current, &private, now()), Err(PatchError::Forbidden(_))));
        let promoted = own.apply(input(json!({"type": "employee"})), &current, &private, now());
        assert!(matches!(promoted, Err(PatchError::Forbidden(_))), "only writers set privileged types");
        assert_eq!(
            writer.apply(input(json!({"type": "employee"})), &current, &private, now()).unwrap().customer_type,
            CustomerType::Employee
        );

        let Err(PatchError::Invalid(errors)) =
            own.apply(input(json!({"attributes": {"score": 9}})), &current, &private, now())
        else {
            panic!("a private attribute set by a self-service caller")
        };
        assert_eq!(codes(&errors), vec![("attributes.score", "not_allowed")]);
        let replaced = own.apply(input(json!({"attributes": {"tier": "b"}})), &current, &private, now()).unwrap();
        assert_eq!(
            replaced.attributes.unwrap(),
            json!({"tier": "b", "score": 3}).as_object().unwrap().clone(),
            "the private one is kept"
        );
        let by_writer = writer.apply(input(json!({"attributes": {"tier": "b"}})), &current, &private, now()).unwrap();
        assert_eq!(
            by_writer.attributes.unwrap(),
            json!({"tier": "b"}).as_object().unwrap().clone(),
            "a writer replaces all"
        );
    }

    #[test]
    fn update_rules_check_the_version() {
        let current = customer(Uuid::from_u128(7), json!({"type": "customer"}));
        let rules = |tag: &str| UpdateRules { own_record: None, expected_version: Some(tag.to_owned()) };
        assert!(matches!(
            rules("\"1\"").apply(input(json!({})), &current, &[], now()),
            Err(PatchError::VersionMismatch)
        ));
        assert!(rules(&current.etag()).apply(input(json!({})), &current, &[], now()).is_ok());
        assert!(rules("*").apply(input(json!({})), &current, &[], now()).is_ok());
    }

    #[test]
    fn secrets_are_taken_out_checked_and_never_shown() {
        let mut given = input(json!({"first_name": "Ada", "password": "hunter2", "pin": "123456"}));
        let secrets = given.take_secrets();
        assert!(given.password.is_absent() && given.pin.is_absent(), "taken out of the input");
        assert!(!secrets.is_absent());
        assert!(secrets.validate().is_ok());
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("123456") && shown.contains("<redacted>"), "{shown}");
        assert_eq!(
            format!("{:?}", Secrets { password: Patch::Null, pin: Patch::Absent }),
            r#"Secrets { password: "null", pin: "absent" }"#
        );

        assert!(Secrets::default().is_absent());
        for only_one in [
            Secrets { pin: Patch::Null, ..Secrets::default() },
            Secrets { password: Patch::Null, ..Secrets::default() },
        ] {
            assert!(!only_one.is_absent(), "{only_one:?}");
        }
        let invalid = |password: &str, pin: &str| {
            let secrets = Secrets { password: Patch::Value(password.into()), pin: Patch::Value(pin.into()) };
            secrets
                .validate()
                .err()
                .map(|errors| codes(&errors).into_iter().map(|(f, c)| format!("{f}:{c}")).collect::<Vec<_>>())
        };
        assert_eq!(invalid("ok", "000000"), None);
        assert_eq!(invalid("", "12345"), Some(vec!["password:required".into(), "pin:invalid_pin".into()]));
        assert_eq!(invalid("ok", "1234567"), Some(vec!["pin:invalid_pin".into()]));
        assert_eq!(invalid("ok", "12345a"), Some(vec!["pin:invalid_pin".into()]));
        assert_eq!(invalid("ok", "١٢٣٤٥٦"), Some(vec!["pin:invalid_pin".into()]), "ASCII digits only");
    }

    #[test]
    fn the_etag_is_the_quoted_update_time_in_microseconds() {
        let customer = customer(Uuid::from_u128(1), json!({"type": "customer"}));
        assert_eq!(customer.etag(), format!("\"{}\"", now().timestamp_micros()));
        assert!(customer.matches(&format!("\"1\", {}", customer.etag())));
        assert!(!customer.matches("\"1\""));
    }

    #[test]
    fn privileged_types_and_deletion_are_told() {
        assert!(CustomerType::Employee.is_privileged() && CustomerType::Other.is_privileged());
        assert!(!CustomerType::Customer.is_privileged() && !CustomerType::Contact.is_privileged());
        let mut customer = customer(Uuid::from_u128(1), json!({"type": "customer"}));
        assert!(!customer.is_deleted());
        customer.deleted_at = Some(now());
        assert!(customer.is_deleted());
    }

    #[test]
    fn create_defaults_to_type_customer_and_keeps_given_fields() {
        let (id, data) =
            input(json!({"customer_id": "c1", "first_name": "Ada", "email": "ada@x.io"})).into_new(now()).unwrap();
        assert_eq!(id.as_deref(), Some("c1"));
        assert_eq!(data.customer_type, CustomerType::Customer);
        assert_eq!(data.first_name.as_deref(), Some("Ada"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<CustomerInput>(json!({"frist_name": "Ada"})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn all_field_errors_are_reported_together() {
        let errors =
            input(json!({"email": "nope", "phone_number": "012", "customer_id": " x"})).into_new(now()).unwrap_err();
        let codes = codes(&errors);
        assert!(codes.contains(&("email", "invalid_email")));
        assert!(codes.contains(&("phone_number", "invalid_phone_number")));
        assert!(codes.contains(&("customer_id", "invalid_whitespace")));
    }

    #[test]
    fn company_is_required_for_companies_and_refused_for_persons() {
        let errors = input(json!({"type": "company"})).into_new(now()).unwrap_err();
        assert_eq!(codes(&errors), vec![("company", "required")]);
        let errors = input(json!({"company": {"bussiness_name": "ACME"}})).into_new(now()).unwrap_err();
        assert_eq!(codes(&errors), vec![("company", "not_allowed")]);
        assert!(input(json!({"type": "other", "company": {"bussiness_name": "ACME"}})).into_new(now()).is_ok());
    }

    #[test]
    fn a_blank_business_name_is_refused() {
        for blank in ["", "   "] {
            let errors =
                input(json!({"type": "company", "company": {"bussiness_name": blank}})).into_new(now()).unwrap_err();
            assert_eq!(codes(&errors), vec![("company.bussiness_name", "required")], "{blank:?}");
        }
    }

    #[test]
    fn contact_for_only_on_contacts() {
        let errors = input(json!({"contact_for": [{"customer_id": "a"}]})).into_new(now()).unwrap_err();
        assert_eq!(codes(&errors), vec![("contact_for", "not_allowed")]);
        assert!(input(json!({"type": "contact", "contact_for": [{"customer_id": "a"}]})).into_new(now()).is_ok());
    }

    #[test]
    fn addresses_need_a_real_country() {
        let errors = input(json!({"addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "XX", "latitude": 91.0}]}))
            .into_new(now())
            .unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![("addresses[0].country", "invalid_country"), ("addresses[0].latitude", "out_of_range")]
        );
    }

    fn stored() -> CustomerData {
        input(json!({
            "first_name": "Ada", "last_name": "Lovelace", "email": "ada@x.io",
            "metadata": {"a": 1, "b": 2},
            "marketing_consent": {"sms": {"consent": true}}
        }))
        .into_new(now())
        .unwrap()
        .1
    }

    fn update(current: CustomerData, body: Value, at: DateTime<Utc>) -> Result<CustomerData, Vec<FieldError>> {
        let identity = Identity { id: Uuid::nil(), customer_id: "c1" };
        input(body).apply_to(current, identity, at)
    }

    #[test]
    fn if_match_admits_the_current_tag_a_list_or_star_only() {
        let customer = Customer {
            id: Uuid::nil(),
            customer_id: "c".into(),
            data: CustomerData::default(),
            created_at: now(),
            created_by: "x".into(),
            updated_at: now(),
            deleted_at: None,
            deleted_by: None,
        };
        let etag = customer.etag();
        assert!(customer.matches(&etag));
        assert!(customer.matches(&format!("\"1\", {etag}")));
        assert!(customer.matches("*"));
        assert!(!customer.matches("\"1\""));
        assert!(!customer.matches(&format!("W/{etag}")));
    }

    #[test]
    fn update_keeps_absent_fields_and_clears_null_ones() {
        let updated = update(stored(), json!({"first_name": null, "gender": "f"}), now()).unwrap();
        assert_eq!(updated.first_name, None);
        assert_eq!(updated.last_name.as_deref(), Some("Lovelace"));
        assert_eq!(updated.gender.as_deref(), Some("f"));
    }

    #[test]
    fn metadata_merges_key_by_key() {
        let updated = update(stored(), json!({"metadata": {"a": null, "c": 3}}), now()).unwrap();
        assert_eq!(Value::Object(updated.metadata.unwrap()), json!({"b": 2, "c": 3}));
        let cleared = update(stored(), json!({"metadata": null}), now()).unwrap();
        assert_eq!(cleared.metadata, None);
    }

    #[test]
    fn consent_stamp_changes_only_when_the_value_changes() {
        let later: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
        let same = update(stored(), json!({"marketing_consent": {"sms": {"consent": true}}}), later).unwrap();
        assert_eq!(same.marketing_consent.unwrap().sms.unwrap().updated_at, Some(now()));
        let changed = update(
            stored(),
            json!({"marketing_consent": {"sms": {"consent": false}, "email": {"consent": true}}}),
            later,
        )
        .unwrap();
        let consent = changed.marketing_consent.unwrap();
        assert_eq!(consent.sms.unwrap().updated_at, Some(later));
        assert_eq!(consent.email.unwrap().updated_at, Some(later));
    }

    #[test]
    fn update_cannot_change_customer_id_or_id() {
        let errors = update(stored(), json!({"customer_id": "other", "id": Uuid::new_v4()}), now()).unwrap_err();
        assert_eq!(codes(&errors), vec![("customer_id", "read_only"), ("id", "read_only")]);
        assert!(update(stored(), json!({"customer_id": "c1", "id": Uuid::nil()}), now()).is_ok());
    }

    #[test]
    fn changing_type_revalidates_the_whole_record() {
        let errors = update(stored(), json!({"type": "company"}), now()).unwrap_err();
        assert_eq!(codes(&errors), vec![("company", "required")]);
    }
}
