//! `/v1/accounts/{aid}/customers/users…` (§4): thin handlers that check
//! scopes, call the domain and the store, and shape the response.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{HashingSlots, Principal};
use crate::domain::customer::{Customer, CustomerInput, Secrets, UpdateRules};
use crate::domain::ids::{AccountId, Scope};
use crate::domain::listing::ListParams;
use crate::domain::patch::Patch;
use crate::domain::settings::Settings;
use crate::domain::stored;
use crate::domain::validate::{self, Errors, FieldError};
use crate::store::{self, now_micros, Created, CustomerRef, NewCustomer, SecretHashes, StoreError, Updated};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{require, ApiJson, Auth, IdempotentJson, QueryPairs};
use super::paging::page_headers;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{aid}/customers/users", get(list_customers).post(create_customer).head(head_customers))
        .route(
            "/v1/accounts/{aid}/customers/users/{customer_id}",
            get(get_customer).put(update_customer).delete(delete_customer),
        )
        .route("/v1/accounts/{aid}/customers/users/{customer_id}/change_customer_id", post(change_customer_id))
}

/// The values of the list's `type` parameter, for the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum TypeParameter {
    Customer,
    Company,
    Contact,
    Employee,
    Other,
    Any,
}

/// `/v1/accounts/{aid}/customers/users/{customer_id}`; `aid` is checked by `Auth`.
#[derive(Deserialize)]
pub struct CustomerPath {
    #[allow(dead_code)]
    aid: String,
    pub customer_id: String,
}

const READERS: &[Scope] = &[Scope::Admin, Scope::Read];
const WRITERS: &[Scope] = &[Scope::Admin, Scope::Write];

/// Create a customer.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/users", tag = "customers",
    params(("aid" = String, Path, description = "account id"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "makes retries safe: a repeat with the same body replays the first response (24 h, per account)")),
    request_body = CustomerInput,
    responses(
        (status = 200, description = "the stored customer (or, for a repeated Idempotency-Key, the first response)", body = Customer),
        (status = 400, description = "invalid input or duplicate", body = ErrorBody),
        (status = 422, description = "the Idempotency-Key was used with another body", body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "create:customers:/users"])))]
pub async fn create_customer(
    State(state): State<AppState>,
    Auth(auth): Auth,
    query: QueryPairs,
    IdempotentJson { body: mut input, idempotency }: IdempotentJson<CustomerInput>,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::CreateUsers])?;
    query.flags(&[])?;
    reject_links_to_others(&auth, &input)?;
    let secrets = input.take_secrets();
    let (customer_id, data) = input.into_new(now_micros()).map_err(ApiError::invalid)?;
    secrets.validate().map_err(ApiError::invalid)?;
    if data.customer_type.is_privileged() && !auth.has_any(WRITERS) {
        return Err(ApiError::forbidden("customers of type employee or other need admin or write scope"));
    }
    let new = NewCustomer { customer_id, data, secrets: hash_secrets(&state.hashing, secrets).await? };
    match state.store.create_customer(&auth.account, new, auth.actor(), idempotency.as_ref()).await? {
        Created::New(customer) => Ok(with_etag(*customer)),
        Created::Replayed { etag, body } => Ok((
            [(header::ETAG, etag), (header::CONTENT_TYPE, JSON.to_owned())],
            [(HeaderName::from_static("idempotent-replayed"), "true")],
            body,
        )
            .into_response()),
    }
}

/// Get one customer.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/users/{customer_id}", tag = "customers",
    params(("aid" = String, Path), ("customer_id" = String, Path)),
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers", "user:customers", "user:customers:/customer/details"])))]
pub async fn get_customer(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(CustomerPath { customer_id, .. }): Path<CustomerPath>,
    query: QueryPairs,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::Read, Scope::User, Scope::UserDetails])?;
    query.flags(&[])?;
    let found = state.store.get_customer(&auth.account, &customer_id).await?;
    let own_only = !auth.has_any(READERS);
    match found {
        Some(c) if own_only && c.id.to_string() != auth.subject => Err(not_own_record()),
        Some(c) if !c.is_deleted() && own_only => {
            Ok(with_etag(hide_private(&state, &auth.account, store::parsed(c)?).await?))
        }
        Some(c) if !c.is_deleted() => Ok(json_response(c.etag(), stored::json_object(&c))),
        _ if own_only => Err(not_own_record()),
        _ => Err(ApiError::customer_not_found()),
    }
}

/// A customer as a `user:customers` caller may see it: without the
/// attributes the account's settings mark private.
async fn hide_private(state: &AppState, account: &AccountId, mut customer: Customer) -> ApiResult<Customer> {
    let settings = state.store.get_settings(account).await?;
    settings.hide_private(&mut customer.data);
    Ok(customer)
}

/// A single customer with its version tag (for `If-Match`).
fn with_etag(customer: Customer) -> Response {
    let etag = customer.etag();
    ([(header::ETAG, etag)], Json(customer)).into_response()
}

/// A customer's JSON written by `domain::stored`, with its version tag.
fn json_response(etag: String, body: Vec<u8>) -> Response {
    ([(header::ETAG, etag), (header::CONTENT_TYPE, JSON.to_owned())], body).into_response()
}

const JSON: &str = "application/json";

/// The `If-Match` list: several header lines count as one comma-separated
/// list (RFC 9110 §5.3).
fn if_match(headers: &HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers.get_all(header::IF_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

fn not_own_record() -> ApiError {
    ApiError::forbidden("a user:customers token may only access its own customer")
}

/// The customer of the path as `auth` may reach it: any customer with one
/// of the `full` scopes, else (`user:customers`) only the caller's own
/// record, whose `id` is the token's subject.
pub fn reachable<'a>(auth: &Principal, customer_id: &'a str, full: &[Scope]) -> CustomerRef<'a> {
    let owner = (!auth.has_any(full)).then(|| Uuid::parse_str(&auth.subject).unwrap_or(Uuid::nil()));
    CustomerRef { customer_id, owner }
}

/// A store answer for a [`reachable`] customer: for a caller limited to its
/// own record, "not found" says only that the record is not its own (403),
/// so it learns nothing of other customers.
pub fn own_or_forbidden<T>(customer: CustomerRef<'_>, result: Result<T, StoreError>) -> ApiResult<T> {
    match result {
        Err(StoreError::NotFound) if customer.owner.is_some() => Err(not_own_record()),
        other => Ok(other?),
    }
}

/// Update a customer: absent fields stay, `null` clears, `metadata` merges.
#[utoipa::path(put, path = "/v1/accounts/{aid}/customers/users/{customer_id}", tag = "customers",
    params(("aid" = String, Path), ("customer_id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "update only this version (an ETag of the customer, or *)")),
    request_body = CustomerInput,
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "user:customers"])))]
pub async fn update_customer(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(CustomerPath { customer_id, .. }): Path<CustomerPath>,
    headers: HeaderMap,
    query: QueryPairs,
    ApiJson(mut input): ApiJson<CustomerInput>,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::User])?;
    let expected = if_match(&headers);
    query.flags(&[])?;
    reject_links_to_others(&auth, &input)?;
    let secrets = input.take_secrets();
    secrets.validate().map_err(ApiError::invalid)?;
    let secrets = hash_secrets(&state.hashing, secrets).await?;
    let restricted = !auth.has_any(WRITERS);
    let rules = UpdateRules { own_record: restricted.then(|| auth.subject.clone()), expected_version: expected };
    let patch = Box::new(move |current: &Customer, settings: &Settings| {
        let private: Vec<String> = settings.private_attributes().map(str::to_owned).collect();
        rules.apply(input, current, &private, now_micros())
    });
    match state.store.update_customer(&auth.account, &customer_id, patch, secrets, auth.actor()).await {
        Err(StoreError::NotFound) if restricted => Err(not_own_record()),
        Ok(Updated { mut customer, settings }) if restricted => {
            settings.hide_private(&mut customer.data);
            Ok(with_etag(customer))
        }
        result => Ok(with_etag(result?.customer)),
    }
}

/// Hashes a request's `password` and `pin` with Argon2, off the runtime's
/// worker threads (a hash takes tens of milliseconds).
async fn hash_secrets(hashing: &HashingSlots, secrets: Secrets) -> ApiResult<SecretHashes> {
    if secrets.is_absent() {
        return Ok(SecretHashes::default());
    }
    let hash = |patch: Patch<String>| -> anyhow::Result<Patch<String>> {
        Ok(match patch {
            Patch::Value(secret) => Patch::Value(crate::auth::hash_secret(&secret)?),
            Patch::Null => Patch::Null,
            Patch::Absent => Patch::Absent,
        })
    };
    let hashed = hashing
        .run(move || Ok::<_, anyhow::Error>((hash(secrets.password)?, hash(secrets.pin)?)))
        .await?
        .map_err(|_| ApiError::internal())?;
    Ok(SecretHashes { password: hashed.0, pin: hashed.1 })
}

/// Self-service callers (`user:customers`, `create:customers:/users`) may
/// not set `contact_for`: it names other customers, and whether the names
/// exist would tell such a caller about records it may not see. Refused
/// before anything is looked up, so the answer is the same either way.
fn reject_links_to_others(auth: &Principal, input: &CustomerInput) -> ApiResult<()> {
    if auth.has_any(WRITERS) || input.contact_for.is_absent() {
        return Ok(());
    }
    Err(ApiError::invalid(vec![FieldError::new(
        "contact_for",
        "not_allowed",
        "needs admin or write scope: it names other customers",
    )]))
}

/// Delete a customer: its personal data is erased in the same transaction.
#[utoipa::path(delete, path = "/v1/accounts/{aid}/customers/users/{customer_id}", tag = "customers",
    params(("aid" = String, Path), ("customer_id" = String, Path),
        ("delete_tokens" = Option<bool>, Query, description = "also delete the customer's tokens"),
        ("If-Match" = Option<String>, Header, description = "delete only this version (an ETag of the customer, or *)")),
    responses((status = 200, description = "the erased record", body = Customer), (status = 404, body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody)),
    security(("bearer" = ["admin:customers", "write:customers", "user:customers"])))]
pub async fn delete_customer(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(CustomerPath { customer_id, .. }): Path<CustomerPath>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::Write, Scope::User])?;
    let delete_tokens = query.flags(&["delete_tokens"])?[0];
    let expected = if_match(&headers);
    let target = reachable(&auth, &customer_id, WRITERS);
    let deleted =
        state.store.delete_customer(&auth.account, target, auth.actor(), delete_tokens, expected.as_deref()).await;
    Ok(with_etag(own_or_forbidden(target, deleted)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCustomerId {
    /// The new `customer_id`; when absent, one is generated as for a create.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub customer_id: Option<String>,
}

/// Change a customer's `customer_id` (admin only); the change is recorded
/// in a `dintero_change_customer_id_*` metadata key.
#[utoipa::path(post, path = "/v1/accounts/{aid}/customers/users/{customer_id}/change_customer_id", tag = "customers",
    params(("aid" = String, Path), ("customer_id" = String, Path)),
    request_body = ChangeCustomerId,
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin:customers", "admin:accounts"])))]
pub async fn change_customer_id(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Path(CustomerPath { customer_id, .. }): Path<CustomerPath>,
    query: QueryPairs,
    ApiJson(body): ApiJson<ChangeCustomerId>,
) -> ApiResult<Response> {
    require(&auth, &[Scope::Admin, Scope::AdminAccounts])?;
    query.flags(&[])?;
    if let Some(new_id) = &body.customer_id {
        let mut errors = Errors::default();
        validate::check_customer_id(&mut errors, "customer_id", new_id);
        errors.into_result().map_err(ApiError::invalid)?;
    }
    let new_id = body.customer_id.as_deref();
    let customer = state.store.change_customer_id(&auth.account, &customer_id, new_id, auth.actor()).await?;
    Ok(with_etag(customer))
}

/// List customers (§4.3): filters, keyset paging, `Link` and `total-count`.
#[utoipa::path(get, path = "/v1/accounts/{aid}/customers/users", tag = "customers",
    params(("aid" = String, Path),
        ("email" = Option<String>, Query, description = "case-insensitive prefix"),
        ("phone_number" = Option<String>, Query, description = "prefix"),
        ("type" = Option<TypeParameter>, Query, description = "one type, or any; without it, contacts are left out"),
        ("search" = Option<String>, Query, description = "case-insensitive prefix of names, phone, customer_id, email"),
        ("tag_id" = Option<String>, Query, description = "customers carrying this tag"),
        ("token_type" = Option<String>, Query), ("token_value" = Option<String>, Query),
        ("attributes_keys" = Option<Vec<String>>, Query,
            description = "customers having these attribute keys; repeated or comma-separated, at most 10"),
        ("attributes_values" = Option<Vec<String>>, Query,
            description = "the values of the keys at the same positions; repeated or comma-separated, at most 10"),
        ("include_deleted" = Option<bool>, Query),
        ("since_datetime" = Option<String>, Query, description = "RFC 3339; changes at or after, oldest first"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "default 10"),
        ("starting_after" = Option<String>, Query, description = "id of the last customer of the previous page"),
        ("total" = Option<bool>, Query, description = "send a total-count header")),
    responses((status = 200, body = Vec<Customer>),
        (status = 400, description = "an invalid parameter, or more than 10 attribute filters", body = ErrorBody),
        (status = 503, description = "the query ran past the database's time limit (query_timeout)", body = ErrorBody)),
    security(("bearer" = ["admin:customers", "read:customers"])))]
pub async fn list_customers(
    State(state): State<AppState>,
    Auth(auth): Auth,
    uri: Uri,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<Response> {
    require(&auth, READERS)?;
    let params = ListParams::parse(&pairs).map_err(ApiError::invalid)?;
    let page = state.store.list_customers(&auth.account, &params).await?;
    let next = page.customers.last().filter(|_| page.has_more).map(|last| {
        if params.filter.since.is_some() {
            // The contract forbids starting_after with since_datetime: move
            // the time past the last change instead (update times are unique
            // per account).
            let after = last.updated_at + chrono::Duration::microseconds(1);
            ("since_datetime", after.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        } else {
            ("starting_after", last.id.to_string())
        }
    });
    let headers = page_headers(uri.path(), &pairs, next, page.total);
    let body = stored::json_array(&page.customers.iter().chain(&page.related).collect::<Vec<_>>());
    Ok((headers, [(header::CONTENT_TYPE, JSON)], body).into_response())
}

/// `HEAD /customers/users?email=…&phone_number=…`: 200 when a live customer
/// has them, 404 when none does, 405 unless the account's settings enable it.
#[utoipa::path(head, path = "/v1/accounts/{aid}/customers/users", tag = "customers",
    params(("aid" = String, Path),
        ("email" = Option<String>, Query, description = "exact, case-insensitive"),
        ("phone_number" = Option<String>, Query, description = "exact")),
    responses((status = 200, description = "a customer matches"), (status = 404, description = "none matches"),
        (status = 405, description = "HEAD is disabled for this account")),
    security(("bearer" = ["admin:customers", "read:customers", "public:customers"])))]
pub async fn head_customers(
    State(state): State<AppState>,
    Auth(auth): Auth,
    QueryPairs(pairs): QueryPairs,
) -> ApiResult<StatusCode> {
    require(&auth, &[Scope::Admin, Scope::Read, Scope::Public])?;
    if !state.store.get_settings(&auth.account).await?.users.head.enabled {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "HEAD is disabled; enable users.head.enabled in settings",
        ));
    }
    let (mut email, mut phone) = (None, None);
    let mut errors = Errors::default();
    for (name, value) in &pairs {
        match name.as_str() {
            "email" => email = Some(value.as_str()),
            "phone_number" => phone = Some(value.as_str()),
            _ => errors.add(name, "unknown_parameter", "is not a parameter of this endpoint"),
        }
        if value.contains('\0') || value.is_empty() {
            errors.add(name, "invalid_value", "must be a non-empty value");
        }
    }
    if email.is_none() && phone.is_none() {
        errors.add("email", "required", "give email, phone_number or both");
    }
    errors.into_result().map_err(ApiError::invalid)?;
    if state.store.customer_exists(&auth.account, email, phone).await? {
        Ok(StatusCode::OK)
    } else {
        Ok(StatusCode::NOT_FOUND)
    }
}
