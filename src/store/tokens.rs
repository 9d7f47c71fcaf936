//! Customer tokens (§6) and token events (§7), written once over [`Conn`]:
//! a customer's tokens, the events recorded against a token (type and
//! value, whether or not a customer holds it) and the status they resolve to.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::customer::{Customer, JsonObject};
use crate::domain::events::{Actor, EventName};
use crate::domain::ids::AccountId;
use crate::domain::listing::PageParams;
use crate::domain::records::{
    token_key, token_status, ClearTokenEvents, EventInput, Token, TokenDetail, TokenEvent, TokenEventRequest,
    TokenEvents, TokenInput, TokenRef,
};
use crate::domain::settings::Settings;

use super::customers::{live_customer, live_for_update, load_settings};
use super::engine::Conn;
use super::events::{record, NewEvent};
use super::rows::{db_row, Ts};
use super::sql::{self, opt_text, text, Param, SqlBuilder, CUSTOMER_COLUMNS};
use super::{new_id, now_micros, CustomerRef, EventListParams, Page, StoreError};

db_row! {
    struct TokenRow {
        pk: Uuid,
        token_id: String,
        customer_pk: Uuid,
        r#type: String,
        value: String,
        metadata: Option<Json<JsonObject>>,
        source: Option<String>,
        created_at: Ts,
        created_by: String,
        deleted_at: Option<Ts>,
        deleted_by: Option<String>,
    }
}

impl From<TokenRow> for Token {
    fn from(r: TokenRow) -> Self {
        Token {
            id: r.pk,
            token_id: r.token_id,
            kind: r.r#type,
            value: r.value,
            metadata: r.metadata.map(|m| m.0),
            source: r.source,
            created_at: r.created_at.0,
            created_by: r.created_by,
            deleted_at: r.deleted_at.map(|t| t.0),
            deleted_by: r.deleted_by,
        }
    }
}

const TOKEN_COLUMNS: &str =
    "pk, token_id, customer_pk, type, value, metadata, source, created_at, created_by, deleted_at, deleted_by";

async fn select_tokens(conn: &mut impl Conn, q: SqlBuilder) -> Result<Vec<TokenRow>, StoreError> {
    conn.fetch_all(q).await
}

pub(super) async fn add_token(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    input: TokenInput,
    delete_events: bool,
    by: Actor<'_>,
) -> Result<Token, StoreError> {
    let actor = by.name;
    let customer = live_for_update(conn, account, customer).await?;
    let token = Token {
        id: new_id(),
        token_id: input.token_id.unwrap_or_else(|| Uuid::new_v4().to_string()),
        kind: input.kind,
        value: input.value,
        metadata: input.metadata,
        source: None,
        created_at: now_micros(),
        created_by: actor.to_owned(),
        deleted_at: None,
        deleted_by: None,
    };
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO customer_tokens (pk, account_id, token_id, customer_pk, type, value, metadata, created_at, \
         created_by) VALUES (",
    );
    sql::push_list(
        &mut q,
        [
            Param::Id(token.id),
            text(account.as_str()),
            text(&token.token_id),
            Param::Id(customer.id),
            text(&token.kind),
            text(&token.value),
            sql::json_or_null(&token.metadata)?,
            Param::Time(token.created_at),
            text(actor),
        ],
    );
    q.push(")");
    conn.execute(q).await?;
    if delete_events {
        let reference = TokenRef { kind: token.kind.clone(), value: token.value.clone() };
        clear_events(conn, account, &reference, token.created_at, actor).await?;
    }
    let event =
        NewEvent { data: serde_json::to_string(&token)?, ..NewEvent::about(EventName::CustomerTokenAdd, &customer) };
    record(conn, account, event, by).await?;
    Ok(token)
}

pub(super) async fn list_tokens(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    params: &PageParams,
) -> Result<Page<Token>, StoreError> {
    let customer = live_customer(conn, account, customer).await?;
    let cursor = match &params.starting_after {
        None => None,
        Some(token_id) => {
            let found = token_by_id(conn, customer.id, token_id).await?;
            Some(found.ok_or_else(|| {
                StoreError::invalid("starting_after", "invalid_cursor", "names no token of this customer")
            })?)
        }
    };
    let filter = |q: &mut SqlBuilder| {
        q.push(" FROM customer_tokens WHERE customer_pk = ").bind(Param::Id(customer.id));
        if !params.include_deleted {
            q.push(" AND deleted_at IS NULL");
        }
        if let Some(kind) = params.get("type") {
            q.push(" AND type = ").bind(text(kind));
        }
    };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS);
    filter(&mut q);
    if let Some(after) = &cursor {
        sql::push_desc_cursor(&mut q, "created_at", after.created_at.0, "token_id", text(&after.token_id));
    }
    q.push(" ORDER BY created_at DESC, token_id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let rows = select_tokens(conn, q).await?;
    let total = conn.count_if(params.total, &filter).await?;
    Ok(Page::from_rows(rows.into_iter().map(Into::into).collect(), params.limit, total))
}

pub(super) async fn delete_token(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    token_id: &str,
    actor: Actor<'_>,
) -> Result<Option<Token>, StoreError> {
    let customer = live_for_update(conn, account, customer).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customer_tokens SET ");
    sql::push_assignments(&mut q, [("deleted_at", Param::Time(now_micros())), ("deleted_by", text(actor.name))]);
    q.push(" WHERE customer_pk = ")
        .bind(Param::Id(customer.id))
        .push(" AND token_id = ")
        .bind(text(token_id))
        .push(" AND deleted_at IS NULL");
    if conn.execute(q).await? == 0 {
        return Ok(None);
    }
    let token: Token = token_by_id(conn, customer.id, token_id).await?.ok_or(StoreError::NotFound)?.into();
    let data = serde_json::to_string(&token)?;
    record(conn, account, NewEvent { data, ..NewEvent::about(EventName::CustomerTokenDelete, &customer) }, actor)
        .await?;
    Ok(Some(token))
}

/// A customer's token by its `token_id`, deleted or not.
async fn token_by_id(conn: &mut impl Conn, customer_pk: Uuid, token_id: &str) -> Result<Option<TokenRow>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS)
        .push(" FROM customer_tokens WHERE customer_pk = ")
        .bind(Param::Id(customer_pk))
        .push(" AND token_id = ")
        .bind(text(token_id));
    Ok(select_tokens(conn, q).await?.into_iter().next())
}

db_row! {
    struct EventRow {
        id: Uuid,
        token_type: String,
        token_value: String,
        event: String,
        status: Option<String>,
        metadata: Option<Json<JsonObject>>,
        expires_at: Option<Ts>,
        created_at: Ts,
        created_by: String,
        deleted_at: Option<Ts>,
        deleted_by: Option<String>,
    }
}

impl From<EventRow> for TokenEvent {
    fn from(r: EventRow) -> Self {
        TokenEvent {
            id: r.id,
            token: TokenRef { kind: r.token_type, value: r.token_value },
            event: r.event,
            status: r.status,
            metadata: r.metadata.map(|m| m.0),
            expires_at: r.expires_at.map(|t| t.0),
            created_at: r.created_at.0,
            created_by: r.created_by,
            deleted_at: r.deleted_at.map(|t| t.0),
            deleted_by: r.deleted_by,
        }
    }
}

const EVENT_COLUMNS: &str = "id, token_type, token_value, event, status, metadata, expires_at, created_at, \
                             created_by, deleted_at, deleted_by";

/// Soft-deletes every live event of a token.
async fn clear_events(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE token_events SET ");
    sql::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
    push_token_match(&mut q, account, token);
    q.push(" AND deleted_at IS NULL");
    conn.execute(q).await.map(drop)
}

fn push_token_match(q: &mut SqlBuilder, account: &AccountId, token: &TokenRef) {
    q.push(" WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND token_type = ")
        .bind(text(&token.kind))
        .push(" AND token_value = ")
        .bind(text(&token.value));
}

async fn insert_event(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
    event: EventInput,
    settings: &Settings,
    actor: &str,
) -> Result<(), StoreError> {
    let at = now_micros();
    let status = event.status;
    // An explicit expiry wins; else the settings' time-to-live for the status.
    let expires_at = event.expires_at.or_else(|| {
        let ttl = settings.event_ttl(status.as_deref()?)?;
        Some(at + chrono::Duration::seconds(i64::try_from(ttl).ok()?))
    });
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO token_events (id, account_id, token_type, token_value, event, status, metadata, expires_at, \
         created_at, created_by) VALUES (",
    );
    sql::push_list(
        &mut q,
        [
            Param::Id(new_id()),
            text(account.as_str()),
            text(&token.kind),
            text(&token.value),
            text(&event.event),
            opt_text(status.as_ref()),
            sql::json_or_null(&event.metadata)?,
            expires_at.map_or(Param::NullTime, Param::Time),
            Param::Time(at),
            text(actor),
        ],
    );
    q.push(")");
    conn.execute(q).await.map(drop)
}

pub(super) async fn record_token_event(
    conn: &mut impl Conn,
    account: &AccountId,
    request: TokenEventRequest,
    actor: Actor<'_>,
) -> Result<TokenDetail, StoreError> {
    let recorded = request.event.is_some();
    if let Some(event) = request.event {
        let settings = load_settings(conn, account).await?;
        insert_event(conn, account, &request.token, event, &settings, actor.name).await?;
    }
    let detail = token_detail(conn, account, &request.token).await?;
    if recorded {
        record_token_event_added(conn, account, &detail, actor).await?;
    }
    Ok(detail)
}

/// Appends the `token_event_add` event: the token's state after it, about
/// the customer that holds the token, if one does.
async fn record_token_event_added(
    conn: &mut impl Conn,
    account: &AccountId,
    detail: &TokenDetail,
    actor: Actor<'_>,
) -> Result<(), StoreError> {
    let name = EventName::TokenEventAdd;
    let mut event = match &detail.customer {
        Some(owner) => NewEvent::about(name, owner),
        None => NewEvent::account(name, &serde_json::Value::Null),
    };
    event.data = serde_json::to_string(detail)?;
    record(conn, account, event, actor).await
}

pub(super) async fn clear_token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    request: ClearTokenEvents,
    actor: Actor<'_>,
) -> Result<(), StoreError> {
    clear_events(conn, account, &request.token, now_micros(), actor.name).await?;
    if let Some(event) = request.deleted_event() {
        let settings = load_settings(conn, account).await?;
        insert_event(conn, account, &request.token, event, &settings, actor.name).await?;
        let detail = token_detail(conn, account, &request.token).await?;
        record_token_event_added(conn, account, &detail, actor).await?;
    }
    Ok(())
}

/// What is known of a token: its owner and token record if a customer holds
/// it, its live events, and the resulting status (§7).
async fn token_detail(conn: &mut impl Conn, account: &AccountId, token: &TokenRef) -> Result<TokenDetail, StoreError> {
    let (token_record, owner) = token_owner(conn, account, token).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM token_events");
    push_token_match(&mut q, account, token);
    q.push(" AND deleted_at IS NULL ORDER BY created_at ASC, id ASC");
    let rows: Vec<EventRow> = conn.fetch_all(q).await?;
    let events: Vec<TokenEvent> = rows.into_iter().map(Into::into).collect();
    Ok(TokenDetail {
        id: token_key(token_record.as_ref(), token),
        status: token_status(owner.as_ref(), &events, now_micros()),
        customer: owner,
        token: token_record,
        events,
    })
}

/// The live token record of this type and value, and the customer holding it.
async fn token_owner(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
) -> Result<(Option<Token>, Option<Customer>), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS)
        .push(" FROM customer_tokens WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND type = ")
        .bind(text(&token.kind))
        .push(" AND value = ")
        .bind(text(&token.value))
        .push(" AND deleted_at IS NULL");
    let owned = select_tokens(conn, q).await?.into_iter().next();
    let owner = match &owned {
        Some(row) => {
            let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
            q.push(CUSTOMER_COLUMNS).push(" FROM customers c WHERE c.id = ").bind(Param::Id(row.customer_pk));
            conn.fetch_customers(q).await?.into_iter().next()
        }
        None => None,
    };
    Ok((owned.map(Into::into), owner))
}

pub(super) async fn list_token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    params: &EventListParams,
) -> Result<Page<TokenEvents>, StoreError> {
    let listing = EventListing::of(params);
    let cursor = match params.starting_after {
        None => None,
        Some(id) => {
            let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
            q.push(EVENT_COLUMNS)
                .push(" FROM token_events WHERE account_id = ")
                .bind(text(account.as_str()))
                .push(" AND id = ")
                .bind(Param::Id(id));
            let rows: Vec<EventRow> = conn.fetch_all(q).await?;
            let event: TokenEvent = rows
                .into_iter()
                .next()
                .ok_or_else(|| {
                    StoreError::invalid("starting_after", "invalid_cursor", "names no event of this account")
                })?
                .into();
            let at = if listing.deleted { event.deleted_at } else { Some(event.created_at) };
            Some((at.unwrap_or(event.created_at), id))
        }
    };
    // One row per token: its newest listed event (no listed event of the
    // same token is newer), in the order of those events.
    let column = listing.time_column();
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM token_events e WHERE ");
    listing.push_filter(&mut q, account, "e");
    q.push(" AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.token_type = e.token_type")
        .push(" AND n.token_value = e.token_value AND ");
    listing.push_filter(&mut q, account, "n");
    q.push(" AND (n.").push(column).push(" > e.").push(column);
    q.push(" OR (n.").push(column).push(" = e.").push(column).push(" AND n.id > e.id)))");
    if let Some((at, id)) = cursor {
        q.push(" AND (e.").push(column).push(" > ").bind(Param::Time(at));
        q.push(" OR (e.").push(column).push(" = ").bind(Param::Time(at)).push(" AND e.id > ").bind(Param::Id(id));
        q.push("))");
    }
    q.push(" ORDER BY e.").push(column).push(" ASC, e.id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let newest: Vec<EventRow> = conn.fetch_all(q).await?;
    let page = Page::from_rows(newest, params.limit, None);
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        let token = TokenRef { kind: row.token_type, value: row.token_value };
        items.push(token_events(conn, account, token, &listing).await?);
    }
    Ok(Page { items, has_more: page.has_more, total: None })
}

/// Which events `GET /customers/tokens/events` lists: live ones created
/// since a time, or (`deleted_since`) cleared ones cleared since a time.
struct EventListing {
    deleted: bool,
    since: Option<DateTime<Utc>>,
}

impl EventListing {
    fn of(params: &EventListParams) -> Self {
        match params.deleted_since {
            Some(at) => Self { deleted: true, since: Some(at) },
            None => Self { deleted: false, since: params.since },
        }
    }

    /// The time a listed event is ordered by.
    fn time_column(&self) -> &'static str {
        if self.deleted {
            "deleted_at"
        } else {
            "created_at"
        }
    }

    fn push_filter(&self, q: &mut SqlBuilder, account: &AccountId, alias: &str) {
        q.push(alias).push(".account_id = ").bind(text(account.as_str()));
        q.push(" AND ").push(alias).push(if self.deleted { ".deleted_at IS NOT NULL" } else { ".deleted_at IS NULL" });
        if let Some(since) = self.since {
            q.push(" AND ").push(alias).push(".").push(self.time_column()).push(" >= ").bind(Param::Time(since));
        }
    }
}

/// One token of the list: its listed events in their order (the newest,
/// the page's cursor, last) and the status its live events resolve to.
async fn token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    token: TokenRef,
    listing: &EventListing,
) -> Result<TokenEvents, StoreError> {
    let (token_record, owner) = token_owner(conn, account, &token).await?;
    let dialect = conn.dialect();
    let select = |listing: &EventListing| {
        let mut q = SqlBuilder::new(dialect, "SELECT ");
        q.push(EVENT_COLUMNS).push(" FROM token_events e WHERE ");
        // Every live event of the token, or its cleared events since the time.
        let scope = EventListing { deleted: listing.deleted, since: listing.since.filter(|_| listing.deleted) };
        scope.push_filter(&mut q, account, "e");
        q.push(" AND e.token_type = ").bind(text(&token.kind)).push(" AND e.token_value = ").bind(text(&token.value));
        q.push(" ORDER BY e.").push(scope.time_column()).push(" ASC, e.id ASC");
        q
    };
    let all_live = EventListing { deleted: false, since: None };
    let live: Vec<TokenEvent> =
        conn.fetch_all::<EventRow>(select(&all_live)).await?.into_iter().map(Into::into).collect();
    let status = token_status(owner.as_ref(), &live, now_micros());
    let events = if listing.deleted {
        conn.fetch_all::<EventRow>(select(listing)).await?.into_iter().map(Into::into).collect()
    } else {
        live
    };
    Ok(TokenEvents { id: token_key(token_record.as_ref(), &token), token, status, events })
}
