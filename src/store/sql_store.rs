//! The store written once: [`SqlStore`] implements [`Store`] over any
//! [`Backend`] by running the flows of `customers`, `settings`, `terms`,
//! `tags`, `tokens` and `import` on its connections. Backends only connect,
//! bind and translate errors.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::customer::Customer;
use crate::domain::events::{Actor, Event, EventQuery};
use crate::domain::hooks::{Delivery, Subscription, SubscriptionSpec};
use crate::domain::ids::AccountId;
use crate::domain::listing::{ListParams, PageParams};
use crate::domain::records::{
    ClearTokenEvents, Tag, TagInput, Terms, Token, TokenDetail, TokenEventRequest, TokenEvents, TokenInput,
};
use crate::domain::settings::Settings;
use crate::domain::stored::StoredCustomer;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use super::cursors::CursorTimes;
use super::customers::{
    by_customer_id, change_customer_id, create_customer, delete_customer, load_settings, update_customer,
};
use super::engine::{read_again_if_lost, Backend, Conn};
use super::import::Importer;
use super::listing::list_customers;
use super::rows::{ClientRow, KeyRow};
use super::sql::{self, text, Dialect, Param, SqlBuilder};
use super::{customers, events, hooks, settings, tags, terms, tokens};
use super::{
    now_micros, BatchImport, Claimed, ClientRecord, Created, CustomerPage, CustomerRef, DeliveryOutcome,
    EventListParams, IdempotencyKey, NewCustomer, OnRejected, Page, Patcher, SecretHashes, SigningKeyRecord, Store,
    StoreError, Updated,
};

/// A backend, the next-page cursors its list pages handed out, and the
/// signal of committed writes.
pub struct SqlStore<B> {
    pub backend: B,
    pub cursors: Arc<CursorTimes>,
    pub committed: Arc<Notify>,
}

impl<B> SqlStore<B> {
    pub fn new(backend: B) -> Self {
        Self { backend, cursors: Default::default(), committed: Default::default() }
    }
}

/// Runs a read that blocks its thread and can take long (a search, a count
/// over many matches) on a blocking-pool thread, so that the async workers
/// go on answering point reads meanwhile. (`block_in_place` instead, with
/// 32 connections of counts, fell to 3 answers/s.)
async fn off_worker<T, F>(read: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
{
    use tokio::runtime::Handle;
    let runtime = Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(read))
        .await
        .unwrap_or_else(|error| Err(StoreError::Other(format!("a read failed: {error}"))))
}

/// The deployment's signing key, if one was stored.
async fn signing_key(conn: &mut impl Conn) -> Result<Option<SigningKeyRecord>, StoreError> {
    let q = SqlBuilder::new(conn.dialect(), "SELECT kid, private_pkcs8, public_key, created_at FROM signing_keys");
    let keys: Vec<KeyRow> = conn.fetch_all(q).await?;
    Ok(keys.into_iter().next().map(Into::into))
}

/// Runs `flow` in a write transaction of `store`'s backend and commits it
/// when it succeeds (dropping the transaction on error rolls it back), then
/// signals [`SqlStore::committed`] — unless `quiet` (a delivery worker's
/// claim, which must not wake the worker that made it).
macro_rules! in_write_tx {
    ($store:expr, |$conn:ident| $flow:expr) => {{
        let result = in_write_tx!($store, quiet, |$conn| $flow);
        if result.is_ok() {
            $store.committed.notify_one();
        }
        result
    }};
    ($store:expr, quiet, |$conn:ident| $flow:expr) => {{
        let mut $conn = $store.backend.write().await?;
        let result = $flow;
        if result.is_ok() {
            $conn.commit().await?;
        }
        result
    }};
}

/// Runs `flow` on a read connection of `backend`, once more on a new one
/// when it finds its connection lost (see [`read_again_if_lost`]).
macro_rules! on_read {
    ($backend:expr, |$conn:ident| $flow:expr) => {
        read_again_if_lost!(
            connect: $backend.read().await?,
            recover: $backend.recover_from_lost_connection(),
            |$conn| $flow
        )
    };
}

async fn insert_client_row(conn: &mut impl Conn, client: &ClientRecord) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO api_clients (client_id, account_id, secret_hash, scopes, created_at) VALUES (",
    );
    sql::push_list(
        &mut q,
        [
            text(&client.client_id),
            text(&client.account_id),
            text(&client.secret_hash),
            text(&client.scopes),
            Param::Time(client.created_at),
        ],
    );
    q.push(")");
    conn.execute(q).await.map(drop)
}

/// Inserts `client` only into an empty client table; returns whether it did.
/// Servers starting together on a new database each try: in PostgreSQL the
/// table lock queues them (at READ COMMITTED each would see an empty table
/// and insert), in SQLite the write transaction already does.
async fn insert_if_no_client(conn: &mut impl Conn, client: &ClientRecord) -> Result<bool, StoreError> {
    if conn.dialect() == Dialect::Postgres {
        conn.execute(SqlBuilder::new(Dialect::Postgres, "LOCK TABLE api_clients IN SHARE ROW EXCLUSIVE MODE")).await?;
    }
    if any_client(conn).await? {
        return Ok(false);
    }
    insert_client_row(conn, client).await?;
    Ok(true)
}

async fn any_client(conn: &mut impl Conn) -> Result<bool, StoreError> {
    let q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM api_clients");
    Ok(conn.fetch_i64(q).await?.unwrap_or(0) > 0)
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.backend.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_read!(self.backend, |conn| {
            let q = SqlBuilder::new(conn.dialect(), "SELECT CAST(1 AS BIGINT)");
            conn.fetch_i64(q).await.map(drop)
        })
    }

    async fn close(&self) {
        self.backend.close().await
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        let mut conn = self.backend.connection().await?;
        let statement = match conn.dialect() {
            Dialect::Sqlite => "ANALYZE",
            // VACUUM also sets the visibility map, without which a count
            // cannot be answered from the covering indexes alone (autovacuum
            // would get there, later, if it runs at all).
            Dialect::Postgres => "VACUUM (ANALYZE) customers, customer_attributes, customer_tokens",
        };
        conn.execute(SqlBuilder::new(conn.dialect(), statement)).await.map(drop)
    }

    async fn ensure_signing_key(&self, candidate: SigningKeyRecord) -> Result<SigningKeyRecord, StoreError> {
        // Read first: a server on a database it cannot write (a read-only
        // SQLite file, a replica) still starts and serves reads.
        if let Some(key) = signing_key(&mut self.backend.read().await?).await? {
            return Ok(key);
        }
        in_write_tx!(self, |conn| {
            let mut q = SqlBuilder::new(
                conn.dialect(),
                "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at) VALUES (",
            );
            sql::push_list(
                &mut q,
                [
                    text(&candidate.kid),
                    Param::Bytes(candidate.private_pkcs8.clone()),
                    Param::Bytes(candidate.public_key.clone()),
                    Param::Time(candidate.created_at),
                ],
            );
            q.push(") ON CONFLICT (singleton) DO NOTHING");
            conn.execute(q).await?;
            signing_key(&mut conn).await?.ok_or_else(|| StoreError::Other("no signing key after insert".into()))
        })
    }

    async fn insert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        in_write_tx!(self, |conn| insert_client_row(&mut conn, &client).await)
    }

    async fn insert_first_client(&self, client: ClientRecord) -> Result<bool, StoreError> {
        in_write_tx!(self, |conn| insert_if_no_client(&mut conn, &client).await)
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        on_read!(self.backend, |conn| {
            let mut q = SqlBuilder::new(
                conn.dialect(),
                "SELECT client_id, account_id, secret_hash, scopes, created_at FROM api_clients WHERE client_id = ",
            );
            q.bind(text(client_id));
            let clients: Result<Vec<ClientRow>, _> = conn.fetch_all(q).await;
            clients.map(|clients| clients.into_iter().next().map(Into::into))
        })
    }

    async fn has_clients(&self) -> Result<bool, StoreError> {
        on_read!(self.backend, |conn| any_client(&mut conn).await)
    }

    async fn create_customer(
        &self,
        account: &AccountId,
        new: NewCustomer,
        actor: Actor<'_>,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Created, StoreError> {
        in_write_tx!(self, |conn| create_customer(&mut conn, account, new, actor, idempotency).await)
    }

    async fn get_customer(&self, account: &AccountId, customer_id: &str) -> Result<Option<StoredCustomer>, StoreError> {
        if let Some(answer) = self.backend.get_customer(account, customer_id).await {
            return answer;
        }
        on_read!(self.backend, |conn| {
            let found = conn.fetch_stored(by_customer_id(conn.dialect(), account, customer_id, false)).await;
            found.map(|customers| customers.into_iter().next())
        })
    }

    async fn update_customer(
        &self,
        account: &AccountId,
        customer_id: &str,
        patch: Patcher,
        secrets: SecretHashes,
        actor: Actor<'_>,
    ) -> Result<Updated, StoreError> {
        in_write_tx!(self, |conn| update_customer(&mut conn, account, customer_id, patch, secrets, actor).await)
    }

    async fn delete_customer(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        actor: Actor<'_>,
        delete_tokens: bool,
        if_match: Option<&str>,
    ) -> Result<Customer, StoreError> {
        in_write_tx!(self, |conn| {
            delete_customer(&mut conn, account, customer, actor, delete_tokens, if_match).await
        })
    }

    async fn change_customer_id(
        &self,
        account: &AccountId,
        customer_id: &str,
        new_customer_id: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<Customer, StoreError> {
        in_write_tx!(self, |conn| { change_customer_id(&mut conn, account, customer_id, new_customer_id, actor).await })
    }

    async fn list_customers(&self, account: &AccountId, params: &ListParams) -> Result<CustomerPage, StoreError> {
        let slot = if params.may_take_long() { self.backend.long_read_slot(account).await? } else { None };
        if slot.is_some() && self.backend.reads_block_thread() {
            let mut conn = self.backend.read().await?;
            let (account, params, cursors) = (account.clone(), params.clone(), self.cursors.clone());
            return off_worker(async move {
                let _slot = slot;
                list_customers(&mut conn, &account, &params, &cursors).await
            })
            .await;
        }
        let _slot = slot;
        on_read!(self.backend, |conn| list_customers(&mut conn, account, params, &self.cursors).await)
    }

    fn batch_import<'a>(
        &'a self,
        account: &AccountId,
        actor: &str,
        on_rejected: OnRejected,
    ) -> Box<dyn BatchImport + 'a> {
        Box::new(Importer::new(&self.backend, account, actor, on_rejected))
    }

    async fn customer_exists(
        &self,
        account: &AccountId,
        email: Option<&str>,
        phone_number: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_read!(self.backend, |conn| customers::customer_exists(&mut conn, account, email, phone_number).await)
    }

    async fn get_settings(&self, account: &AccountId) -> Result<Settings, StoreError> {
        on_read!(self.backend, |conn| load_settings(&mut conn, account).await)
    }

    async fn put_settings(
        &self,
        account: &AccountId,
        settings: Settings,
        actor: Actor<'_>,
    ) -> Result<Settings, StoreError> {
        in_write_tx!(self, |conn| settings::put_settings(&mut conn, account, settings, actor).await)
    }

    async fn create_terms(&self, account: &AccountId, terms: &str, actor: &str) -> Result<Terms, StoreError> {
        in_write_tx!(self, |conn| terms::create_terms(&mut conn, account, terms, actor).await)
    }

    async fn get_terms(&self, account: &AccountId, id: Uuid) -> Result<Option<Terms>, StoreError> {
        on_read!(self.backend, |conn| terms::get_terms(&mut conn, account, id).await)
    }

    async fn list_terms(&self, account: &AccountId, params: &PageParams) -> Result<Page<Terms>, StoreError> {
        on_read!(self.backend, |conn| terms::list_terms(&mut conn, account, params).await)
    }

    async fn delete_terms(&self, account: &AccountId, id: Uuid, actor: &str) -> Result<Terms, StoreError> {
        in_write_tx!(self, |conn| terms::delete_terms(&mut conn, account, id, actor).await)
    }

    async fn create_tag(&self, account: &AccountId, tag: TagInput, actor: &str) -> Result<Tag, StoreError> {
        in_write_tx!(self, |conn| tags::create_tag(&mut conn, account, tag, actor).await)
    }

    async fn list_tags(&self, account: &AccountId) -> Result<Vec<Tag>, StoreError> {
        on_read!(self.backend, |conn| tags::list_tags(&mut conn, account).await)
    }

    async fn delete_tag(&self, account: &AccountId, id: Uuid) -> Result<Tag, StoreError> {
        in_write_tx!(self, |conn| tags::delete_tag(&mut conn, account, id).await)
    }

    async fn customer_tags(&self, account: &AccountId, customer: CustomerRef<'_>) -> Result<Vec<Tag>, StoreError> {
        on_read!(self.backend, |conn| {
            match customers::live_customer(&mut conn, account, customer).await {
                Ok(customer) => tags::customer_tags(&mut conn, account, customer.id).await,
                Err(error) => Err(error),
            }
        })
    }

    async fn set_customer_tags(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        tags: &[Uuid],
        actor: Actor<'_>,
    ) -> Result<Vec<Tag>, StoreError> {
        in_write_tx!(self, |conn| tags::set_customer_tags(&mut conn, account, customer, tags, actor).await)
    }

    async fn add_token(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        token: TokenInput,
        delete_events: bool,
        actor: Actor<'_>,
    ) -> Result<Token, StoreError> {
        in_write_tx!(self, |conn| {
            tokens::add_token(&mut conn, account, customer, token, delete_events, actor).await
        })
    }

    async fn list_tokens(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        params: &PageParams,
    ) -> Result<Page<Token>, StoreError> {
        on_read!(self.backend, |conn| tokens::list_tokens(&mut conn, account, customer, params).await)
    }

    async fn delete_token(
        &self,
        account: &AccountId,
        customer: CustomerRef<'_>,
        token_id: &str,
        actor: Actor<'_>,
    ) -> Result<Option<Token>, StoreError> {
        in_write_tx!(self, |conn| tokens::delete_token(&mut conn, account, customer, token_id, actor).await)
    }

    async fn record_token_event(
        &self,
        account: &AccountId,
        request: TokenEventRequest,
        actor: Actor<'_>,
    ) -> Result<TokenDetail, StoreError> {
        in_write_tx!(self, |conn| tokens::record_token_event(&mut conn, account, request, actor).await)
    }

    async fn list_token_events(
        &self,
        account: &AccountId,
        params: &EventListParams,
    ) -> Result<Page<TokenEvents>, StoreError> {
        on_read!(self.backend, |conn| tokens::list_token_events(&mut conn, account, params).await)
    }

    async fn clear_token_events(
        &self,
        account: &AccountId,
        request: ClearTokenEvents,
        actor: Actor<'_>,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |conn| tokens::clear_token_events(&mut conn, account, request, actor).await)
    }

    fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    async fn create_subscription(
        &self,
        account: &AccountId,
        spec: SubscriptionSpec,
        actor: Actor<'_>,
    ) -> Result<Subscription, StoreError> {
        in_write_tx!(self, |conn| hooks::create_subscription(&mut conn, account, spec, actor).await)
    }

    async fn list_subscriptions(&self, account: &AccountId) -> Result<Vec<Subscription>, StoreError> {
        on_read!(self.backend, |conn| hooks::list_subscriptions(&mut conn, account).await)
    }

    async fn get_subscription(&self, account: &AccountId, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        on_read!(self.backend, |conn| hooks::get_subscription(&mut conn, account, id).await)
    }

    async fn update_subscription(
        &self,
        account: &AccountId,
        id: Uuid,
        spec: SubscriptionSpec,
    ) -> Result<Subscription, StoreError> {
        in_write_tx!(self, |conn| hooks::update_subscription(&mut conn, account, id, spec).await)
    }

    async fn delete_subscription(&self, account: &AccountId, id: Uuid) -> Result<Subscription, StoreError> {
        in_write_tx!(self, |conn| hooks::delete_subscription(&mut conn, account, id).await)
    }

    async fn ping_subscription(&self, account: &AccountId, id: Uuid, actor: Actor<'_>) -> Result<Delivery, StoreError> {
        in_write_tx!(self, |conn| hooks::ping(&mut conn, account, id, actor).await)
    }

    async fn list_deliveries(
        &self,
        account: &AccountId,
        subscription: Uuid,
        limit: u32,
        starting_after: Option<Uuid>,
    ) -> Result<Page<Delivery>, StoreError> {
        on_read!(self.backend, |conn| {
            hooks::list_deliveries(&mut conn, account, subscription, limit, starting_after).await
        })
    }

    async fn redeliver(&self, account: &AccountId, subscription: Uuid, delivery: Uuid) -> Result<Delivery, StoreError> {
        in_write_tx!(self, |conn| hooks::redeliver(&mut conn, account, subscription, delivery).await)
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
        busy: &[Uuid],
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = now_micros();
        if !on_read!(self.backend, |conn| hooks::any_due(&mut conn, now).await)? {
            return Ok(Vec::new());
        }
        let until = now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::seconds(60));
        in_write_tx!(self, quiet, |conn| hooks::claim(&mut conn, owner, now, until, limit, busy).await)
    }

    async fn finish_deliveries(&self, owner: &str, outcomes: &[DeliveryOutcome]) -> Result<(), StoreError> {
        in_write_tx!(self, |conn| hooks::finish(&mut conn, owner, outcomes).await)
    }

    async fn release_deliveries(&self, owner: &str) -> Result<u64, StoreError> {
        in_write_tx!(self, |conn| hooks::release(&mut conn, owner).await)
    }

    async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        on_read!(self.backend, |conn| hooks::pending_count(&mut conn).await)
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        in_write_tx!(self, quiet, |conn| hooks::prune(&mut conn, before, 10_000).await)
    }

    async fn list_events(&self, account: &AccountId, params: &EventQuery) -> Result<Page<Event>, StoreError> {
        on_read!(self.backend, |conn| events::list_events(&mut conn, account, params).await)
    }

    async fn customer_history(
        &self,
        account: &AccountId,
        customer_id: &str,
        params: &EventQuery,
    ) -> Result<Page<Event>, StoreError> {
        on_read!(self.backend, |conn| events::customer_history(&mut conn, account, customer_id, params).await)
    }
}
