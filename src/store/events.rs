//! The account event log (§10), written once over [`Conn`]: every write
//! flow appends its event in its own transaction, at the `seq` its clock
//! tick reserved; the feed reads oldest first, a customer's history newest
//! first, both keyset-paged on `seq`.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::customer::Customer;
use crate::domain::events::{changes, Actor, Event, EventName, EventQuery};
use crate::domain::hooks::DeliveryStatus;
use crate::domain::ids::AccountId;

use super::clock::{tick, Tick};
use super::engine::Conn;
use super::rows::{db_row, Ts};
use super::sql::{self, text, Dialect, Param, SqlBuilder};
use super::{new_id, Page, StoreError};

/// An event about to be appended.
pub(super) struct NewEvent<'a> {
    pub name: EventName,
    /// The customer it is about: its `id` (which history follows) and its
    /// `customer_id` then.
    pub customer: Option<(Uuid, &'a str)>,
    /// The resource after the change, as JSON text.
    pub data: String,
    pub changes: Option<Map<String, Value>>,
}

impl<'a> NewEvent<'a> {
    /// An event about `customer`, its data the customer after the change.
    pub fn customer(name: EventName, customer: &'a Customer) -> Result<Self, StoreError> {
        Ok(Self { data: serde_json::to_string(customer)?, ..Self::about(name, customer) })
    }

    /// An event about `customer` with no data yet (the caller sets it).
    pub fn about(name: EventName, customer: &'a Customer) -> Self {
        Self::about_id(name, customer.id, &customer.customer_id)
    }

    /// An event about the customer with this `id` and `customer_id`, with
    /// no data yet.
    pub fn about_id(name: EventName, id: Uuid, customer_id: &'a str) -> Self {
        Self { name, customer: Some((id, customer_id)), data: "null".to_owned(), changes: None }
    }

    /// A customer's update: its data after, and what changed since `before`.
    pub fn customer_change(name: EventName, before: &Customer, after: &'a Customer) -> Result<Self, StoreError> {
        let data = serde_json::to_value(after)?;
        let changes = changes(&serde_json::to_value(before)?, &data);
        Ok(Self { data: data.to_string(), changes: Some(changes), ..Self::about(name, after) })
    }

    /// An event about an account's record that concerns no customer.
    pub fn account(name: EventName, data: &Value) -> Self {
        Self { name, customer: None, data: data.to_string(), changes: None }
    }
}

/// Appends a delivery of each event of the account with a `seq` in
/// `seqs` for every active subscription that wants it, in the events'
/// transaction (one statement however many events: an import's batch).
pub(super) async fn fan_out(
    conn: &mut impl Conn,
    account: &AccountId,
    seqs: std::ops::RangeInclusive<i64>,
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO hook_deliveries (subscription_id, event_id, account_id, event, event_seq, customer_pk, status, \
         attempts, next_attempt_at, created_at) SELECT s.id, e.id, e.account_id, e.event, e.seq, e.customer_pk, ",
    );
    q.bind(text(DeliveryStatus::Pending.as_str()))
        .push(
            ", 0, e.created_at, e.created_at FROM events e JOIN hook_subscriptions s ON s.account_id = e.account_id \
               WHERE e.account_id = ",
        )
        .bind(text(account.as_str()))
        .push(" AND e.seq >= ")
        .bind(Param::Int(*seqs.start()))
        .push(" AND e.seq <= ")
        .bind(Param::Int(*seqs.end()))
        .push(" AND s.active = 1 AND (s.events = '*' OR ")
        .push(&contains(conn.dialect(), "s.events"))
        .push("',' || e.event || ',') > 0)");
    conn.execute(q).await.map(drop)
}

/// The start of `strpos(haystack, <needle>)`: where the needle is in the
/// text, 0 when it is not.
fn contains(dialect: Dialect, haystack: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("instr({haystack}, "),
        Dialect::Postgres => format!("strpos({haystack}, "),
    }
}

const INSERT_EVENTS: &str = "INSERT INTO events (account_id, seq, id, event, customer_pk, customer_id, created_at, \
                             created_by, request_id, data, changes) VALUES ";

/// An event's row, in [`INSERT_EVENTS`]'s column order.
fn event_row(account: &AccountId, tick: Tick, event: NewEvent<'_>, actor: Actor<'_>) -> Result<Vec<Param>, StoreError> {
    let (customer_pk, customer_id) = event.customer.unzip();
    let changes = event.changes.map(|c| serde_json::to_string(&c)).transpose()?;
    Ok(vec![
        text(account.as_str()),
        Param::Int(tick.seq),
        Param::Id(new_id()),
        text(event.name.as_str()),
        customer_pk.map_or(Param::NullId, Param::Id),
        customer_id.map_or(Param::Null, text),
        Param::Time(tick.at),
        text(actor.name),
        actor.request_id.map_or(Param::Null, text),
        Param::Text(event.data),
        changes.map_or(Param::Null, Param::Text),
    ])
}

/// Appends `event` at the place `tick` reserved for the caller's write,
/// with its deliveries.
pub(super) async fn append(
    conn: &mut impl Conn,
    account: &AccountId,
    tick: Tick,
    event: NewEvent<'_>,
    actor: Actor<'_>,
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), INSERT_EVENTS);
    q.push("(");
    sql::push_list(&mut q, event_row(account, tick, event, actor)?);
    q.push(")");
    conn.execute(q).await?;
    fan_out(conn, account, tick.seq..=tick.seq).await
}

/// Appends many events with their deliveries (an import's batch): with
/// COPY on PostgreSQL, multi-row inserts on SQLite. Their ticks lie in one
/// block taken for the batch, in order.
pub(super) async fn append_all(
    conn: &mut impl Conn,
    account: &AccountId,
    events: Vec<(Tick, NewEvent<'_>)>,
    actor: Actor<'_>,
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (events.first().map(|e| e.0.seq), events.last().map(|e| e.0.seq)) else {
        return Ok(());
    };
    let rows = events
        .into_iter()
        .map(|(tick, event)| event_row(account, tick, event, actor))
        .collect::<Result<Vec<_>, _>>()?;
    let columns =
        "account_id, seq, id, event, customer_pk, customer_id, created_at, created_by, request_id, data, changes";
    if conn.copy_in(&format!("COPY events ({columns}) FROM STDIN"), &rows).await?.is_none() {
        // 11 parameters an event: 500 a statement stays under both limits.
        for chunk in rows.chunks(500) {
            let mut q = SqlBuilder::new(conn.dialect(), INSERT_EVENTS);
            for (i, row) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                sql::push_list(&mut q, row.iter().cloned());
                q.push(")");
            }
            conn.execute(q).await?;
        }
    }
    fan_out(conn, account, first..=last).await
}

/// Appends the event of a write that took no tick of its own.
pub(super) async fn record(
    conn: &mut impl Conn,
    account: &AccountId,
    event: NewEvent<'_>,
    actor: Actor<'_>,
) -> Result<(), StoreError> {
    let at = tick(conn, account).await?;
    append(conn, account, at, event, actor).await
}

db_row! {
    struct ErasableRow {
        seq: i64,
        data: String,
        changes: Option<String>,
    }
}

/// Erases the personal data of a customer's events (see
/// [`crate::domain::events::erase`]) in the caller's transaction: the
/// history keeps its events, names, times and actors. Deliveries not yet
/// sent are made from the event when sent, so they carry the erased values.
pub(super) async fn erase_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_pk: Uuid,
) -> Result<u64, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT seq, data, changes FROM events WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND customer_pk = ").bind(Param::Id(customer_pk));
    let rows: Vec<ErasableRow> = conn.fetch_all(q).await?;
    for row in &rows {
        let data: Value = serde_json::from_str(&row.data)?;
        let changes: Option<Map<String, Value>> = row.changes.as_deref().map(serde_json::from_str).transpose()?;
        let (data, changes) = crate::domain::events::erase(&data, changes.as_ref());
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE events SET ");
        sql::push_assignments(
            &mut q,
            [
                ("data", Param::Text(serde_json::to_string(&data)?)),
                ("changes", changes.map(|c| serde_json::to_string(&c)).transpose()?.map_or(Param::Null, Param::Text)),
            ],
        );
        q.push(" WHERE account_id = ").bind(text(account.as_str())).push(" AND seq = ").bind(Param::Int(row.seq));
        conn.execute(q).await?;
    }
    Ok(rows.len() as u64)
}

db_row! {
    pub(super) struct EventRow {
        id: Uuid,
        seq: i64,
        event: String,
        account_id: String,
        customer_id: Option<String>,
        created_at: Ts,
        created_by: String,
        request_id: Option<String>,
        data: String,
        changes: Option<String>,
    }
}

pub(super) const EVENT_COLUMNS: &str =
    "id, seq, event, account_id, customer_id, created_at, created_by, request_id, data, changes";

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let changes = r.changes.map(|c| serde_json::from_str(&c)).transpose()?;
        Ok(Event {
            id: r.id,
            seq: r.seq,
            event: r.event,
            account_id: r.account_id,
            customer_id: r.customer_id,
            created_at: r.created_at.0,
            created_by: r.created_by,
            request_id: r.request_id,
            data: serde_json::from_str(&r.data)?,
            changes,
        })
    }
}

/// Where a page of events starts: after the event `starting_after` names.
async fn cursor_seq(conn: &mut impl Conn, account: &AccountId, id: Option<Uuid>) -> Result<Option<i64>, StoreError> {
    let Some(id) = id else { return Ok(None) };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT seq FROM events WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND id = ").bind(Param::Id(id));
    match conn.fetch_i64(q).await? {
        Some(seq) => Ok(Some(seq)),
        None => Err(StoreError::invalid("starting_after", "invalid_cursor", "names no event of this account")),
    }
}

db_row! {
    struct CustomerPk {
        id: Uuid,
    }
}

/// The `id` of the customer with this `customer_id`, deleted or not.
async fn customer_pk(conn: &mut impl Conn, account: &AccountId, customer_id: &str) -> Result<Option<Uuid>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT id FROM customers WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND customer_id = ").bind(text(customer_id));
    let rows: Vec<CustomerPk> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().next().map(|row| row.id))
}

/// The account's events, oldest first (`GET /customers/events`). A
/// `customer_id` that names no customer has no events.
pub(super) async fn list_events(
    conn: &mut impl Conn,
    account: &AccountId,
    params: &EventQuery,
) -> Result<Page<Event>, StoreError> {
    let after = cursor_seq(conn, account, params.starting_after).await?;
    let customer = match &params.customer_id {
        Some(customer_id) => match customer_pk(conn, account, customer_id).await? {
            Some(pk) => Some(pk),
            None => return Ok(Page { items: Vec::new(), has_more: false, total: None }),
        },
        None => None,
    };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM events WHERE account_id = ").bind(text(account.as_str()));
    for seq in [params.since_seq, after].into_iter().flatten() {
        q.push(" AND seq > ").bind(Param::Int(seq));
    }
    if let Some(pk) = customer {
        q.push(" AND customer_pk = ").bind(Param::Id(pk));
    }
    if let Some(name) = params.event {
        q.push(" AND event = ").bind(text(name.as_str()));
    }
    q.push(" ORDER BY seq ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    fetch_page(conn, q, params.limit).await
}

/// One customer's history, newest first; `NotFound` when the account has
/// no customer with this `customer_id` (a deleted one still has its
/// history).
pub(super) async fn customer_history(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_id: &str,
    params: &EventQuery,
) -> Result<Page<Event>, StoreError> {
    let limit = params.limit;
    let pk = customer_pk(conn, account, customer_id).await?.ok_or(StoreError::NotFound)?;
    let before = cursor_seq(conn, account, params.starting_after).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS)
        .push(" FROM events WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND customer_pk = ")
        .bind(Param::Id(pk));
    if let Some(seq) = before {
        q.push(" AND seq < ").bind(Param::Int(seq));
    }
    q.push(" ORDER BY seq DESC LIMIT ").bind(Param::Int(i64::from(limit) + 1));
    fetch_page(conn, q, limit).await
}

async fn fetch_page(conn: &mut impl Conn, q: SqlBuilder, limit: u32) -> Result<Page<Event>, StoreError> {
    let rows: Vec<EventRow> = conn.fetch_all(q).await?;
    let events = rows.into_iter().map(Event::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(events, limit, None))
}
