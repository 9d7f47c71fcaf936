//! Storage: the `Store` trait the HTTP layer talks to, its error type, the
//! records that cross the boundary and the derived index columns of a
//! customer. The SQL is written once (`sql_store` runs the flows of one
//! file per resource over `engine`'s connections, `sql` builds the
//! statements); the backends (`sqlite/`, `postgres`) only connect, bind and
//! translate errors.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::customer::{Customer, CustomerData};
use crate::domain::events::{Actor, Event, EventQuery};
use crate::domain::hooks::{Delivery, Subscription, SubscriptionSpec};
use crate::domain::ids::AccountId;
use crate::domain::listing::{ListParams, PageParams};
use crate::domain::patch::Patch;
use crate::domain::records::{
    ClearTokenEvents, Tag, TagInput, Terms, Token, TokenDetail, TokenEventRequest, TokenEvents, TokenInput,
};
use crate::domain::settings::Settings;
use crate::domain::stored::StoredCustomer;
use crate::domain::validate::FieldError;

mod admission;
mod clock;
mod columns;
mod cursors;
mod customers;
mod engine;
mod events;
mod hooks;
mod import;
pub mod listing;
mod pool;
pub mod postgres;
mod rows;
mod settings;
pub mod sql;
mod sql_store;
pub mod sqlite;
mod tags;
mod terms;
mod tokens;

pub use columns::IndexedColumns;
pub use engine::parsed;
pub use pool::CHECK_IDLE_AFTER;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write.
    #[error("conflict on {constraint:?}")]
    Conflict { constraint: Constraint },
    /// The write would break a rule that only the database can check
    /// (a referenced record is missing, a cursor names no customer, …).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// An update's patch function refused the current record.
    #[error("rejected")]
    Rejected(PatchError),
    /// An `Idempotency-Key` came back with a different request body.
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database stopped a statement at its time limit (see
    /// [`PoolOptions::statement_timeout`]); running it again would not help.
    #[error("a statement ran past its time limit")]
    TimedOut,
    #[error("database error: {0}")]
    Other(String),
}

/// Serialising a value for storage failed (it cannot for the types stored).
impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Other(error.to_string())
    }
}

impl StoreError {
    /// A write refused for one field only the database could check.
    pub fn invalid(field: &str, code: &str, message: &str) -> Self {
        StoreError::Invalid(vec![FieldError::new(field, code, message)])
    }
}

pub use crate::domain::customer::PatchError;

/// An updated customer, with the settings the update was checked against
/// (the caller needs them to answer: private attributes).
#[derive(Debug)]
pub struct Updated {
    pub customer: Customer,
    pub settings: Settings,
}

/// Computes a customer's new data from its current state and the account's
/// settings. Runs inside the store's transaction with the row locked, so
/// concurrent updates serialise.
pub type Patcher = Box<dyn FnOnce(&Customer, &Settings) -> Result<CustomerData, PatchError> + Send>;

/// One validated line of an import.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub customer_id: String,
    pub data: CustomerData,
    /// The columns derived from `data`, computed by [`ImportRow::new`] on
    /// the caller's thread: an import's reader makes them while the previous
    /// batch is being written, rather than inside the write transaction.
    /// (So a row is made by `new` from its final data.) `doc` is `None` when
    /// the document could not be made; the import then reports why.
    columns: IndexedColumns,
    doc: Option<sql::Param>,
}

impl ImportRow {
    pub fn new(line: u64, customer_id: String, data: CustomerData) -> Self {
        let columns = IndexedColumns::of(&customer_id, &data);
        let doc = columns::document(&data).ok();
        Self { line, customer_id, data, columns, doc }
    }
}

/// What an import batch does when the database refuses some of its rows
/// (a collision with a stored customer's email or phone number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRejected {
    /// Store the other rows and report the refused ones.
    KeepTheRest,
    /// Store nothing of the batch (`import --strict`).
    RollBack,
}

/// What became of an import batch's lines.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub inserted: u64,
    /// Lines whose `customer_id` was stored already.
    pub existing: Vec<u64>,
    /// Lines refused, with the reason.
    pub rejected: Vec<(u64, String)>,
}

/// An import in progress (`customers import`): consecutive batches of one
/// file, written in order. What [`write`](Self::write) reports is stored
/// once committed: a transaction may span several batches (SQLite, where
/// each commit writes every page it changed), and is committed when it is
/// large enough, by [`commit`](Self::commit), and never after a failed
/// write. Dropping the import rolls back what is not committed; an import
/// is idempotent, so a re-run adds it.
#[async_trait]
pub trait BatchImport: Send {
    /// How many consecutive batches `write` can write at once (2 on
    /// PostgreSQL, 1 on SQLite): an importer holds no more in memory than
    /// that.
    fn batches_at_once(&self) -> usize;
    /// How many customers a batch holds unless the importer is told.
    fn default_batch_size(&self) -> usize;
    /// Writes consecutive batches and returns what became of each (see
    /// [`ImportOutcome`]). With [`OnRejected::RollBack`] each batch is its
    /// own transaction, and the import stops after a refused batch.
    async fn write(&mut self, batches: Vec<Vec<ImportRow>>) -> Result<Vec<ImportOutcome>, StoreError>;
    /// Commits what is written (an importer calls it before it waits for
    /// input: on SQLite an open transaction holds the write lock).
    async fn commit(&mut self) -> Result<(), StoreError>;
}

/// One page of a simpler list (terms, tokens, token events).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub total: Option<i64>,
}

impl<T> Page<T> {
    /// A page from the `limit + 1` rows fetched for it.
    pub(crate) fn from_rows(mut items: Vec<T>, limit: u32, total: Option<i64>) -> Self {
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Page { items, has_more, total }
    }
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub customer_id: Option<String>,
    pub data: CustomerData,
    pub secrets: SecretHashes,
}

/// Argon2 hashes of a customer's `password` and `pin` (§4.1), as a patch:
/// absent keeps what is stored, `null` removes it. Never part of an answer.
#[derive(Debug, Clone, Default)]
pub struct SecretHashes {
    pub password: Patch<String>,
    pub pin: Patch<String>,
}

/// The customer a request names by `customer_id`; for a caller limited to
/// its own record (`user:customers`), also the `id` that record must have,
/// checked on the row the request reads or locks (not before), so a
/// concurrent change of customer ids cannot hand it another's record.
/// A mismatch is [`StoreError::NotFound`].
#[derive(Debug, Clone, Copy)]
pub struct CustomerRef<'a> {
    pub customer_id: &'a str,
    pub owner: Option<Uuid>,
}

impl<'a> CustomerRef<'a> {
    /// Any customer of the account with this `customer_id`.
    pub fn any(customer_id: &'a str) -> Self {
        Self { customer_id, owner: None }
    }

    /// Whether `customer` is the one this names.
    pub fn admits(&self, customer: &Customer) -> bool {
        customer.customer_id == self.customer_id && self.owner.is_none_or(|owner| owner == customer.id)
    }
}

/// An `Idempotency-Key` and the digest of the request body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// How long an idempotency key is remembered after its first use.
pub const IDEMPOTENCY_KEY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What a create did: stored a new customer, or found the key of an earlier
/// create with the same body and gives back that request's response.
#[derive(Debug, Clone)]
pub enum Created {
    New(Box<Customer>),
    Replayed { etag: String, body: String },
}

#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<StoredCustomer>,
    /// Customers that contacts in `customers` are `contact_for` (§4.3).
    pub related: Vec<StoredCustomer>,
    pub has_more: bool,
    pub total: Option<i64>,
}

/// An API client; the secret is only ever held as an Argon2 hash.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: String,
    pub account_id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_at: DateTime<Utc>,
}

/// The deployment's token signing key pair (Ed25519, PKCS#8 DER).
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync {
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> Result<Vec<String>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Refreshes the planner's statistics (after a bulk import: a plan made
    /// without them can sort a whole account instead of walking an index)
    /// and, on PostgreSQL, the visibility map index-only counts rely on.
    async fn analyze(&self) -> Result<(), StoreError>;
    async fn close(&self);

    /// Stores `candidate` unless a key exists already; returns the key in force.
    async fn ensure_signing_key(&self, candidate: SigningKeyRecord) -> Result<SigningKeyRecord, StoreError>;
    async fn insert_client(&self, client: ClientRecord) -> Result<(), StoreError>;
    /// Stores `client` if no client exists yet; returns whether it did.
    async fn insert_first_client(&self, client: ClientRecord) -> Result<bool, StoreError>;
    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn has_clients(&self) -> Result<bool, StoreError>;

    /// Creates a customer; with an idempotency key, a repeat of the key's
    /// first request replays its response instead.
    async fn create_customer(
        &self,
        account: &AccountId,
        new: NewCustomer,
        actor: Actor<'_>,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Created, StoreError>;
    async fn get_customer(&self, account: &AccountId, customer_id: &str) -> Result<Option<StoredCustomer>, StoreError>;
    async fn update_customer(
        &self,
        account: &AccountId,
        customer_id: &str,
        patch: Patcher,
        secrets: SecretHashes,
        actor: Actor<'_>,
    ) -> Result<Updated, StoreError>;
    /// Soft delete with erasure; also deletes the customer's tokens when
    /// `delete_tokens` (its auto tokens always go: they derive from erased data).
    async fn delete_customer(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        actor: Actor<'_>,
        delete_tokens: bool,
        if_match: Option<&str>,
    ) -> Result<Customer, StoreError>;
    /// Gives a customer a new `customer_id`: the one given, or (`None`) one
    /// generated as a create would (UUID, or the next in `sequence` mode).
    async fn change_customer_id(
        &self,
        account: &AccountId,
        customer_id: &str,
        new_customer_id: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<Customer, StoreError>;
    async fn list_customers(&self, account: &AccountId, params: &ListParams) -> Result<CustomerPage, StoreError>;
    /// Starts an import into `account`: batches written in the file's
    /// order (see [`BatchImport`]); `on_rejected` says whether a batch's
    /// other rows are kept when the database refuses some.
    fn batch_import<'a>(
        &'a self,
        account: &AccountId,
        actor: &str,
        on_rejected: OnRejected,
    ) -> Box<dyn BatchImport + 'a>;
    /// Imports consecutive batches in one batch import and commits them.
    async fn import_customers(
        &self,
        account: &AccountId,
        batches: Vec<Vec<ImportRow>>,
        actor: &str,
        on_rejected: OnRejected,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        let mut import = self.batch_import(account, actor, on_rejected);
        let outcomes = import.write(batches).await?;
        import.commit().await?;
        Ok(outcomes)
    }
    /// Whether a live customer has exactly this email (any case) and/or phone.
    async fn customer_exists(
        &self,
        account: &AccountId,
        email: Option<&str>,
        phone_number: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// The account's settings (defaults when it has none stored).
    async fn get_settings(&self, account: &AccountId) -> Result<Settings, StoreError>;
    async fn put_settings(
        &self,
        account: &AccountId,
        settings: Settings,
        actor: Actor<'_>,
    ) -> Result<Settings, StoreError>;

    async fn create_terms(&self, account: &AccountId, terms: &str, actor: &str) -> Result<Terms, StoreError>;
    async fn get_terms(&self, account: &AccountId, id: Uuid) -> Result<Option<Terms>, StoreError>;
    async fn list_terms(&self, account: &AccountId, params: &PageParams) -> Result<Page<Terms>, StoreError>;
    async fn delete_terms(&self, account: &AccountId, id: Uuid, actor: &str) -> Result<Terms, StoreError>;

    async fn create_tag(&self, account: &AccountId, tag: TagInput, actor: &str) -> Result<Tag, StoreError>;
    async fn list_tags(&self, account: &AccountId) -> Result<Vec<Tag>, StoreError>;
    /// Deletes a tag and takes it off every customer.
    async fn delete_tag(&self, account: &AccountId, id: Uuid) -> Result<Tag, StoreError>;
    async fn customer_tags(&self, account: &AccountId, customer: CustomerRef<'_>) -> Result<Vec<Tag>, StoreError>;
    async fn set_customer_tags(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        tags: &[Uuid],
        actor: Actor<'_>,
    ) -> Result<Vec<Tag>, StoreError>;

    async fn add_token(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        token: TokenInput,
        delete_events: bool,
        actor: Actor<'_>,
    ) -> Result<Token, StoreError>;
    /// `params.extra` may hold `type`.
    async fn list_tokens(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        params: &PageParams,
    ) -> Result<Page<Token>, StoreError>;
    async fn delete_token(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        token_id: &str,
        actor: Actor<'_>,
    ) -> Result<Option<Token>, StoreError>;

    async fn record_token_event(
        &self,
        account: &AccountId,
        request: TokenEventRequest,
        actor: Actor<'_>,
    ) -> Result<TokenDetail, StoreError>;
    /// Tokens with events (§7), one item per token, ordered by the time of
    /// the token's newest listed event, which is the last of its `events`:
    /// a next page starts after that event's id.
    async fn list_token_events(
        &self,
        account: &AccountId,
        params: &EventListParams,
    ) -> Result<Page<TokenEvents>, StoreError>;
    async fn clear_token_events(
        &self,
        account: &AccountId,
        request: ClearTokenEvents,
        actor: Actor<'_>,
    ) -> Result<(), StoreError>;

    /// The account's event log, oldest first (§10).
    async fn list_events(&self, account: &AccountId, params: &EventQuery) -> Result<Page<Event>, StoreError>;
    /// Wakes when a write commits (a delivery may have become due): the
    /// delivery worker of this process waits on it between polls.
    fn committed(&self) -> Arc<tokio::sync::Notify>;

    async fn create_subscription(
        &self,
        account: &AccountId,
        spec: SubscriptionSpec,
        actor: Actor<'_>,
    ) -> Result<Subscription, StoreError>;
    async fn list_subscriptions(&self, account: &AccountId) -> Result<Vec<Subscription>, StoreError>;
    async fn get_subscription(&self, account: &AccountId, id: Uuid) -> Result<Option<Subscription>, StoreError>;
    async fn update_subscription(
        &self,
        account: &AccountId,
        id: Uuid,
        spec: SubscriptionSpec,
    ) -> Result<Subscription, StoreError>;
    /// Deletes a subscription with its deliveries.
    async fn delete_subscription(&self, account: &AccountId, id: Uuid) -> Result<Subscription, StoreError>;
    /// Queues a `ping` delivery to the subscription.
    async fn ping_subscription(&self, account: &AccountId, id: Uuid, actor: Actor<'_>) -> Result<Delivery, StoreError>;
    /// A subscription's deliveries, newest first, with their attempts.
    async fn list_deliveries(
        &self,
        account: &AccountId,
        subscription: Uuid,
        limit: u32,
        starting_after: Option<Uuid>,
    ) -> Result<Page<Delivery>, StoreError>;
    /// Queues a delivery again, now.
    async fn redeliver(&self, account: &AccountId, subscription: Uuid, delivery: Uuid) -> Result<Delivery, StoreError>;

    /// Leases up to `limit` due deliveries to `owner` for `lease`, none of
    /// the subscriptions in `busy` (see `hooks::claim`).
    async fn claim_deliveries(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
        busy: &[Uuid],
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records the attempts of deliveries `owner` leased.
    async fn finish_deliveries(&self, owner: &str, outcomes: &[DeliveryOutcome]) -> Result<(), StoreError>;
    /// Gives up `owner`'s leases; returns how many.
    async fn release_deliveries(&self, owner: &str) -> Result<u64, StoreError>;
    /// How many deliveries wait, across accounts.
    async fn pending_deliveries(&self) -> Result<i64, StoreError>;
    /// Deletes events created before `before` that no delivery waits for,
    /// and finished deliveries; returns how many events went.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// One customer's history, newest first; `NotFound` when the account
    /// never had a customer with this `customer_id`.
    async fn customer_history(
        &self,
        account: &AccountId,
        customer_id: &str,
        params: &EventQuery,
    ) -> Result<Page<Event>, StoreError>;
}

/// `GET /customers/tokens/events`: changes since a time, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventListParams {
    pub limit: u32,
    pub starting_after: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    /// List events cleared at or after this time instead of live ones.
    pub deleted_since: Option<DateTime<Utc>>,
}

/// A delivery leased to a worker, with what it takes to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub url: String,
    pub secret: Option<String>,
    /// The JSON sent: the event as the API shows it, erased values included.
    pub body: String,
    /// When the event was appended (none for a ping), for the lag metric.
    pub event_created_at: Option<DateTime<Utc>>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the first of them was made (the retry window starts there).
    pub first_try_at: Option<DateTime<Utc>>,
}

/// What one attempt of a [`Claimed`] delivery came to.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub result: DeliveryResult,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; try again then.
    Retry(DateTime<Utc>),
    /// Failed, and the retry window is over.
    GiveUp,
    /// The target answered `410 Gone`: the subscription is turned off.
    Gone,
}

/// Opens the store a database URL names. Accepted: `sqlite://PATH`,
/// `sqlite:///abs/path`, `sqlite::memory:`, `postgres://…`, `postgresql://…`.
pub async fn open(url: &str, pool: &PoolOptions) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, pool).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url, pool).await?))
    } else {
        anyhow::bail!(
            "unsupported database URL; use sqlite://PATH, sqlite:///absolute/path or postgres://user@host:port/db"
        )
    }
}

/// The pool size a backend gets unless configured: SQLite connections each
/// keep a page cache and writes serialise anyway, so fewer serve as well.
pub fn default_max_connections(url: &str) -> u32 {
    if url.starts_with("sqlite:") {
        8
    } else {
        16
    }
}

/// Connection-pool settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
    /// Tuned for one bulk writer (`customers import`) rather than many
    /// requests: SQLite connections get a large page cache and check-point
    /// the WAL less often.
    pub bulk: bool,
    /// A connection idle this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Reads that may take long (searches, counts) running at once; the
    /// rest wait for a slot (see `admission`).
    pub long_reads: u32,
    /// How long one statement may run before the database stops it
    /// (PostgreSQL's `statement_timeout`; for SQLite's reads, an interrupt),
    /// so that the database stops working on a request once the service
    /// stops waiting for it. `None`: no limit (a bulk import's statements).
    pub statement_timeout: Option<std::time::Duration>,
}

/// One long read per core of this machine: the database's cores when it
/// runs here (SQLite always; PostgreSQL in a small deployment).
pub fn default_long_reads() -> u32 {
    cores()
}

/// The cores of this machine (2 when the system cannot tell).
fn cores() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: std::time::Duration::from_secs(5),
            bulk: false,
            idle_timeout: std::time::Duration::from_secs(600),
            long_reads: default_long_reads(),
            statement_timeout: Some(std::time::Duration::from_secs(30)),
        }
    }
}

/// The unique constraints a write can run into, named as both migration
/// sets name their indexes. One list: each backend recognises them here,
/// and the HTTP layer maps each to its answer with an exhaustive `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    CustomerId,
    Email,
    PhoneNumber,
    ApiClient,
    Tag,
    TokenId,
    TokenValue,
    /// An index this list does not know (a bug: every unique index is here).
    Unknown,
}

impl Constraint {
    pub const ALL: [Constraint; 7] = [
        Constraint::CustomerId,
        Constraint::Email,
        Constraint::PhoneNumber,
        Constraint::ApiClient,
        Constraint::Tag,
        Constraint::TokenId,
        Constraint::TokenValue,
    ];

    /// The index's name in both migration sets.
    pub fn index_name(self) -> &'static str {
        match self {
            Constraint::CustomerId => "customers_customer_id_key",
            Constraint::Email => "customers_email_key",
            Constraint::PhoneNumber => "customers_phone_number_key",
            Constraint::ApiClient => "api_clients_pkey",
            Constraint::Tag => "tags_tag_key",
            Constraint::TokenId => "customer_tokens_token_id_key",
            Constraint::TokenValue => "customer_tokens_value_key",
            Constraint::Unknown => "unknown",
        }
    }

    /// The `table.column` SQLite's unique-violation message names.
    pub fn sqlite_column(self) -> &'static str {
        match self {
            Constraint::CustomerId => "customers.customer_id",
            Constraint::Email => "customers.email_lower",
            Constraint::PhoneNumber => "customers.phone_unique",
            Constraint::ApiClient => "api_clients.client_id",
            Constraint::Tag => " tags.tag",
            Constraint::TokenId => "customer_tokens.token_id",
            Constraint::TokenValue => "customer_tokens.value",
            Constraint::Unknown => "",
        }
    }

    /// The constraint PostgreSQL names by its index.
    pub fn from_index_name(name: &str) -> Self {
        Self::ALL.into_iter().find(|c| c.index_name() == name).unwrap_or(Constraint::Unknown)
    }

    /// The constraint a SQLite unique-violation message names by column.
    pub fn from_sqlite_message(message: &str) -> Self {
        Self::ALL.into_iter().find(|c| message.contains(c.sqlite_column())).unwrap_or(Constraint::Unknown)
    }
}

/// The server's timestamps have microsecond precision in both stores.
pub fn now_micros() -> DateTime<Utc> {
    micros_to_time(Utc::now().timestamp_micros())
}

pub fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// A fresh, time-ordered customer `id` (UUIDv7 keeps index inserts local).
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// The metadata key §4.2 records a customer-id change under.
pub fn change_customer_id_key(at: DateTime<Utc>, old: &str, new: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{old}\u{0}{new}\u{0}{}", at.timestamp_micros()));
    let hash = crate::domain::hex(&digest[..4]);
    format!("dintero_change_customer_id_{}.{hash}", at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constraints_are_recognised_by_index_name_and_by_sqlite_column() {
        for constraint in Constraint::ALL {
            assert_eq!(Constraint::from_index_name(constraint.index_name()), constraint);
            let message = format!("UNIQUE constraint failed: {}", constraint.sqlite_column().trim());
            assert_eq!(Constraint::from_sqlite_message(&message), constraint, "{message}");
        }
        // `customer_tags.tag_id` is no tag name.
        assert_eq!(
            Constraint::from_sqlite_message("UNIQUE constraint failed: customer_tags.tag_id"),
            Constraint::Unknown
        );
        assert_eq!(Constraint::from_index_name("other_key"), Constraint::Unknown);
    }

    #[test]
    fn indexed_columns_lower_case_and_join_names() {
        let data: CustomerData = serde_json::from_value(json!({
            "first_name": "Ada", "last_name": "LoveLace", "email": "Ada@X.io",
            "attributes": {"tier": "gold", "n": 3, "tags": ["a", "b"], "obj": {"x": 1}, "empty": []}
        }))
        .unwrap();
        let cols = IndexedColumns::of("Cust-1", &data);
        assert_eq!(cols.customer_id_lower, "cust-1");
        assert_eq!(cols.email.as_deref(), Some("Ada@X.io"));
        assert_eq!(cols.email_lower.as_deref(), Some("ada@x.io"));
        assert_eq!(cols.full_name_lower.as_deref(), Some("ada lovelace"));
        let mut attrs = cols.attributes;
        attrs.sort();
        let some = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        assert_eq!(
            attrs,
            vec![
                ("empty".to_string(), None),
                some("n", "3"),
                ("obj".to_string(), None),
                some("tags", "a"),
                some("tags", "b"),
                some("tier", "gold"),
            ]
        );
    }

    #[test]
    fn change_key_has_timestamp_and_hash() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let key = change_customer_id_key(at, "a", "b");
        assert!(key.starts_with("dintero_change_customer_id_1767323045000."), "{key}");
        assert_ne!(key, change_customer_id_key(at, "a", "c"));
    }
}
