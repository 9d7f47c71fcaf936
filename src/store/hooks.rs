//! Webhooks (§11), written once over [`Conn`]: subscriptions, the deliveries
//! an appended event fans out to (in the event's transaction), and what the
//! delivery workers of every process share: claiming due deliveries under
//! a lease, recording attempts, giving up, pruning.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::domain::events::{Actor, Event};
use crate::domain::hooks::{
    Attempt, Delivery, DeliveryStatus, EventFilter, HookConfig, Subscription, SubscriptionSpec,
};
use crate::domain::ids::AccountId;
use crate::domain::patch::Patch;

use super::engine::Conn;
use super::events::{EventRow, EVENT_COLUMNS};
use super::rows::{db_row, Ts};
use super::sql::{self, text, Dialect, Param, SqlBuilder};
use super::{new_id, now_micros, Claimed, DeliveryOutcome, DeliveryResult, Page, StoreError};

db_row! {
    struct SubscriptionRow {
        id: Uuid,
        url: String,
        secret: Option<String>,
        events: String,
        active: i64,
        description: Option<String>,
        disabled_reason: Option<String>,
        created_at: Ts,
        created_by: String,
        updated_at: Ts,
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, url, secret, events, active, description, disabled_reason, created_at, created_by, updated_at";

impl From<SubscriptionRow> for Subscription {
    fn from(r: SubscriptionRow) -> Self {
        Subscription {
            id: r.id,
            config: HookConfig { url: r.url, content_type: "application/json".into(), signed: r.secret.is_some() },
            events: EventFilter::from_stored(&r.events).names(),
            active: r.active != 0,
            description: r.description,
            created_at: r.created_at.0,
            created_by: r.created_by,
            updated_at: r.updated_at.0,
            disabled_reason: r.disabled_reason,
        }
    }
}

pub(super) async fn create_subscription(
    conn: &mut impl Conn,
    account: &AccountId,
    spec: SubscriptionSpec,
    actor: Actor<'_>,
) -> Result<Subscription, StoreError> {
    let (id, at) = (new_id(), now_micros());
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO hook_subscriptions (id, account_id, url, secret, events, active, description, created_at, \
         created_by, updated_at) VALUES (",
    );
    sql::push_list(
        &mut q,
        [
            Param::Id(id),
            text(account.as_str()),
            text(spec.url.as_str()),
            spec.secret.into_option().map_or(Param::Null, Param::Text),
            Param::Text(spec.events.stored()),
            Param::Int(i64::from(spec.active)),
            spec.description.map_or(Param::Null, Param::Text),
            Param::Time(at),
            text(actor.name),
            Param::Time(at),
        ],
    );
    q.push(")");
    conn.execute(q).await?;
    get_subscription(conn, account, id).await?.ok_or(StoreError::NotFound)
}

pub(super) async fn get_subscription(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
) -> Result<Option<Subscription>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(SUBSCRIPTION_COLUMNS)
        .push(" FROM hook_subscriptions WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND id = ")
        .bind(Param::Id(id));
    let rows: Vec<SubscriptionRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().next().map(Into::into))
}

/// The account's subscriptions, oldest first (an account has a handful).
pub(super) async fn list_subscriptions(
    conn: &mut impl Conn,
    account: &AccountId,
) -> Result<Vec<Subscription>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(SUBSCRIPTION_COLUMNS)
        .push(" FROM hook_subscriptions WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" ORDER BY created_at ASC, id ASC");
    let rows: Vec<SubscriptionRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Replaces a subscription; an absent secret keeps the stored one. Made
/// active, it loses the reason it was turned off for.
pub(super) async fn update_subscription(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    spec: SubscriptionSpec,
) -> Result<Subscription, StoreError> {
    let mut assignments = vec![
        ("url", text(spec.url.as_str())),
        ("events", Param::Text(spec.events.stored())),
        ("active", Param::Int(i64::from(spec.active))),
        ("description", spec.description.map_or(Param::Null, Param::Text)),
        ("updated_at", Param::Time(now_micros())),
    ];
    match spec.secret {
        Patch::Absent => {}
        Patch::Null => assignments.push(("secret", Param::Null)),
        Patch::Value(secret) => assignments.push(("secret", Param::Text(secret))),
    }
    if spec.active {
        assignments.push(("disabled_reason", Param::Null));
    }
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_subscriptions SET ");
    sql::push_assignments(&mut q, assignments);
    q.push(" WHERE account_id = ").bind(text(account.as_str())).push(" AND id = ").bind(Param::Id(id));
    if conn.execute(q).await? == 0 {
        return Err(StoreError::NotFound);
    }
    get_subscription(conn, account, id).await?.ok_or(StoreError::NotFound)
}

/// Deletes a subscription with its deliveries and their attempts.
pub(super) async fn delete_subscription(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
) -> Result<Subscription, StoreError> {
    let found = get_subscription(conn, account, id).await?.ok_or(StoreError::NotFound)?;
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM hook_subscriptions WHERE id = ");
    q.bind(Param::Id(id));
    conn.execute(q).await?;
    Ok(found)
}

/// Queues a `ping` event for the subscription (it is in no event log).
pub(super) async fn ping(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    actor: Actor<'_>,
) -> Result<Delivery, StoreError> {
    get_subscription(conn, account, id).await?.ok_or(StoreError::NotFound)?;
    let (event_id, at) = (new_id(), now_micros());
    let body = json!({
        "id": event_id,
        "event": "ping",
        "account_id": account.as_str(),
        "created_at": crate::domain::time::with_micros_text(&at, str::to_owned),
        "created_by": actor.name,
        "data": {"subscription_id": id},
    });
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO hook_deliveries (subscription_id, event_id, account_id, event, body, status, attempts, \
         next_attempt_at, created_at) VALUES (",
    );
    sql::push_list(
        &mut q,
        [
            Param::Id(id),
            Param::Id(event_id),
            text(account.as_str()),
            text("ping"),
            Param::Text(body.to_string()),
            text(DeliveryStatus::Pending.as_str()),
            Param::Int(0),
            Param::Time(at),
            Param::Time(at),
        ],
    );
    q.push(")");
    conn.execute(q).await?;
    delivery(conn, account, id, event_id).await
}

db_row! {
    struct DeliveryRow {
        subscription_id: Uuid,
        event_id: Uuid,
        event: String,
        status: String,
        next_attempt_at: Option<Ts>,
        created_at: Ts,
    }
}

const DELIVERY_COLUMNS: &str = "subscription_id, event_id, event, status, next_attempt_at, created_at";

db_row! {
    struct AttemptRow {
        subscription_id: Uuid,
        event_id: Uuid,
        attempted_at: Ts,
        status_code: Option<i64>,
        duration_ms: i64,
        error: Option<String>,
    }
}

/// Deliveries with their attempts, in the order given.
async fn with_attempts(conn: &mut impl Conn, rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>, StoreError> {
    let mut attempts: Vec<AttemptRow> = Vec::new();
    if !rows.is_empty() {
        let mut q = SqlBuilder::new(
            conn.dialect(),
            "SELECT subscription_id, event_id, attempted_at, status_code, duration_ms, error FROM hook_attempts \
             WHERE subscription_id = ",
        );
        q.bind(Param::Id(rows[0].subscription_id)).push(" AND event_id IN (");
        sql::push_list(&mut q, rows.iter().map(|r| Param::Id(r.event_id)));
        q.push(") ORDER BY attempted_at ASC");
        attempts = conn.fetch_all(q).await?;
    }
    Ok(rows
        .into_iter()
        .map(|r| Delivery {
            id: r.event_id,
            event_id: r.event_id,
            event: r.event,
            status: DeliveryStatus::parse(&r.status).unwrap_or(DeliveryStatus::Pending),
            next_attempt_at: r.next_attempt_at.map(|t| t.0),
            created_at: r.created_at.0,
            attempts: attempts
                .iter()
                .filter(|a| a.event_id == r.event_id && a.subscription_id == r.subscription_id)
                .map(|a| Attempt {
                    attempted_at: a.attempted_at.0,
                    status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
                    duration_ms: a.duration_ms.max(0) as u64,
                    error: a.error.clone(),
                })
                .collect(),
        })
        .collect())
}

/// One delivery of a subscription of the account.
pub(super) async fn delivery(
    conn: &mut impl Conn,
    account: &AccountId,
    subscription: Uuid,
    event_id: Uuid,
) -> Result<Delivery, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(DELIVERY_COLUMNS)
        .push(" FROM hook_deliveries WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND subscription_id = ")
        .bind(Param::Id(subscription))
        .push(" AND event_id = ")
        .bind(Param::Id(event_id));
    let rows: Vec<DeliveryRow> = conn.fetch_all(q).await?;
    with_attempts(conn, rows).await?.into_iter().next().ok_or(StoreError::NotFound)
}

/// A subscription's deliveries, newest first, after the delivery
/// `starting_after` names.
pub(super) async fn list_deliveries(
    conn: &mut impl Conn,
    account: &AccountId,
    subscription: Uuid,
    limit: u32,
    starting_after: Option<Uuid>,
) -> Result<Page<Delivery>, StoreError> {
    get_subscription(conn, account, subscription).await?.ok_or(StoreError::NotFound)?;
    let cursor = match starting_after {
        None => None,
        Some(id) => Some(delivery(conn, account, subscription, id).await.map_err(|_| {
            StoreError::invalid("starting_after", "invalid_cursor", "names no delivery of this subscription")
        })?),
    };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(DELIVERY_COLUMNS).push(" FROM hook_deliveries WHERE subscription_id = ").bind(Param::Id(subscription));
    if let Some(after) = &cursor {
        sql::push_desc_cursor(&mut q, "created_at", after.created_at, "event_id", Param::Id(after.event_id));
    }
    q.push(" ORDER BY created_at DESC, event_id ASC LIMIT ").bind(Param::Int(i64::from(limit) + 1));
    let rows: Vec<DeliveryRow> = conn.fetch_all(q).await?;
    let page = Page::from_rows(rows, limit, None);
    Ok(Page { items: with_attempts(conn, page.items).await?, has_more: page.has_more, total: None })
}

/// Queues a delivery again, now, with a new retry window. An attempt in
/// flight loses its lease: it goes unrecorded, and the delivery is sent
/// again as asked.
pub(super) async fn redeliver(
    conn: &mut impl Conn,
    account: &AccountId,
    subscription: Uuid,
    event_id: Uuid,
) -> Result<Delivery, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_deliveries SET ");
    sql::push_assignments(
        &mut q,
        [
            ("status", text(DeliveryStatus::Pending.as_str())),
            ("next_attempt_at", Param::Time(now_micros())),
            ("first_try_at", Param::NullTime),
            ("leased_until", Param::NullTime),
            ("lease_owner", Param::Null),
        ],
    );
    q.push(" WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND subscription_id = ")
        .bind(Param::Id(subscription))
        .push(" AND event_id = ")
        .bind(Param::Id(event_id));
    if conn.execute(q).await? == 0 {
        return Err(StoreError::NotFound);
    }
    delivery(conn, account, subscription, event_id).await
}

/// Whether any delivery is due: read before a claim, which takes the
/// write lock on SQLite.
pub(super) async fn any_due(conn: &mut impl Conn, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "SELECT count(*) FROM (SELECT 1 FROM hook_deliveries WHERE status = 'pending' AND next_attempt_at <= ",
    );
    q.bind(Param::Time(now)).push(" LIMIT 1) due");
    Ok(conn.fetch_i64(q).await?.unwrap_or(0) > 0)
}

db_row! {
    struct ClaimRow {
        subscription_id: Uuid,
        event_id: Uuid,
        attempts: i64,
        first_try_at: Option<Ts>,
        body: Option<String>,
        url: String,
        secret: Option<String>,
    }
}

/// Leases up to `limit` due deliveries to `owner` until `until`: pending,
/// of an active subscription not in `busy`, not leased by another worker,
/// and the oldest pending one of their customer for their subscription (so
/// a customer's events arrive in order). On PostgreSQL concurrent claimers
/// skip each other's rows; SQLite's writer runs one claim at a time.
pub(super) async fn claim(
    conn: &mut impl Conn,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
    busy: &[Uuid],
) -> Result<Vec<Claimed>, StoreError> {
    if conn.dialect() == Dialect::Postgres {
        // The planner misjudges how many due rows pass the checks and would
        // read and sort all of them (69 ms a claim with 20,000 due); walking
        // the due index in order stops at the limit (0.4 ms).
        let q = SqlBuilder::new(
            Dialect::Postgres,
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)",
        );
        conn.fetch_strings(q).await?;
    }
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "SELECT d.subscription_id, d.event_id FROM hook_deliveries d JOIN hook_subscriptions s ON s.id = \
         d.subscription_id WHERE d.status = 'pending' AND s.active = 1 AND d.next_attempt_at <= ",
    );
    q.bind(Param::Time(now)).push(" AND (d.leased_until IS NULL OR d.leased_until < ").bind(Param::Time(now)).push(")");
    if !busy.is_empty() {
        q.push(" AND d.subscription_id NOT IN (");
        sql::push_list(&mut q, busy.iter().map(|id| Param::Id(*id)));
        q.push(")");
    }
    q.push(
        " AND NOT EXISTS (SELECT 1 FROM hook_deliveries e WHERE e.subscription_id = d.subscription_id AND \
         e.customer_pk = d.customer_pk AND e.status = 'pending' AND e.event_seq < d.event_seq) \
         ORDER BY d.next_attempt_at ASC LIMIT ",
    )
    .bind(Param::Int(i64::from(limit)));
    if conn.dialect() == Dialect::Postgres {
        q.push(" FOR UPDATE OF d SKIP LOCKED");
    }
    let keys: Vec<DeliveryKey> = conn.fetch_all(q).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_deliveries SET ");
    sql::push_assignments(&mut q, [("leased_until", Param::Time(until)), ("lease_owner", text(owner))]);
    q.push(" WHERE ");
    push_keys(&mut q, "", &keys);
    conn.execute(q).await?;

    let mut q = SqlBuilder::new(
        conn.dialect(),
        "SELECT d.subscription_id, d.event_id, d.attempts, d.first_try_at, d.body, s.url, s.secret FROM \
         hook_deliveries d JOIN hook_subscriptions s ON s.id = d.subscription_id WHERE ",
    );
    push_keys(&mut q, "d.", &keys);
    let rows: Vec<ClaimRow> = conn.fetch_all(q).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM events WHERE id IN (");
    sql::push_list(&mut q, keys.iter().map(|k| Param::Id(k.event_id)));
    q.push(")");
    let events: Vec<EventRow> = conn.fetch_all(q).await?;
    let events: Vec<Event> = events.into_iter().map(Event::try_from).collect::<Result<_, _>>()?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let event = events.iter().find(|e| e.id == row.event_id);
        let (body, created_at) = match (row.body, event) {
            (Some(body), _) => (body, None),
            (None, Some(event)) => (serde_json::to_string(event)?, Some(event.created_at)),
            // The event was pruned while pending (it never is): nothing to send.
            (None, None) => continue,
        };
        claimed.push(Claimed {
            subscription_id: row.subscription_id,
            event_id: row.event_id,
            url: row.url,
            secret: row.secret,
            body,
            event_created_at: created_at,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            first_try_at: row.first_try_at.map(|t| t.0),
        });
    }
    Ok(claimed)
}

db_row! {
    struct DeliveryKey {
        subscription_id: Uuid,
        event_id: Uuid,
    }
}

/// `(subscription_id, event_id) IN ((…), …)` for `keys`.
fn push_keys(q: &mut SqlBuilder, prefix: &str, keys: &[DeliveryKey]) {
    q.push(&format!("({prefix}subscription_id, {prefix}event_id) IN ("));
    for (i, key) in keys.iter().enumerate() {
        q.push(if i == 0 { "(" } else { ", (" });
        sql::push_list(q, [Param::Id(key.subscription_id), Param::Id(key.event_id)]);
        q.push(")");
    }
    q.push(")");
}

/// Records attempts: each delivery's new state (its lease released), the
/// attempt itself, and for a `410 Gone` its subscription turned off. Only
/// the lease's owner records: a worker that lost its lease (it ran out and
/// another took the delivery over) records nothing. Deliveries that
/// succeeded — nearly all — are recorded with one statement each for the
/// batch's states and attempts.
pub(super) async fn finish(conn: &mut impl Conn, owner: &str, outcomes: &[DeliveryOutcome]) -> Result<(), StoreError> {
    let (delivered, others): (Vec<&DeliveryOutcome>, Vec<&DeliveryOutcome>) =
        outcomes.iter().partition(|o| o.result == DeliveryResult::Delivered);
    let mut recorded: Vec<&DeliveryOutcome> = Vec::with_capacity(outcomes.len());
    if let Some(earliest) = delivered.iter().map(|o| o.attempted_at).min() {
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_deliveries SET attempts = attempts + 1, ");
        sql::push_assignments(
            &mut q,
            [
                ("status", text(DeliveryStatus::Delivered.as_str())),
                ("next_attempt_at", Param::NullTime),
                ("leased_until", Param::NullTime),
                ("lease_owner", Param::Null),
            ],
        );
        q.push(", first_try_at = COALESCE(first_try_at, ").bind(Param::Time(earliest)).push(") WHERE lease_owner = ");
        q.bind(text(owner)).push(" AND ");
        let keys: Vec<DeliveryKey> = delivered
            .iter()
            .map(|o| DeliveryKey { subscription_id: o.subscription_id, event_id: o.event_id })
            .collect();
        push_keys(&mut q, "", &keys);
        q.push(" RETURNING subscription_id, event_id");
        let updated: Vec<DeliveryKey> = conn.fetch_all(q).await?;
        recorded.extend(
            delivered
                .iter()
                .filter(|o| updated.iter().any(|k| k.subscription_id == o.subscription_id && k.event_id == o.event_id)),
        );
    }
    for outcome in others {
        let (status, next) = match outcome.result {
            DeliveryResult::Retry(at) => (DeliveryStatus::Pending, Some(at)),
            _ => (DeliveryStatus::Failed, None),
        };
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_deliveries SET attempts = attempts + 1, ");
        sql::push_assignments(
            &mut q,
            [
                ("status", text(status.as_str())),
                ("next_attempt_at", next.map_or(Param::NullTime, Param::Time)),
                ("leased_until", Param::NullTime),
                ("lease_owner", Param::Null),
            ],
        );
        q.push(", first_try_at = COALESCE(first_try_at, ")
            .bind(Param::Time(outcome.attempted_at))
            .push(") WHERE subscription_id = ")
            .bind(Param::Id(outcome.subscription_id))
            .push(" AND event_id = ")
            .bind(Param::Id(outcome.event_id))
            .push(" AND lease_owner = ")
            .bind(text(owner));
        if conn.execute(q).await? == 0 {
            continue;
        }
        recorded.push(outcome);
        if outcome.result == DeliveryResult::Gone {
            let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_subscriptions SET ");
            sql::push_assignments(
                &mut q,
                [
                    ("active", Param::Int(0)),
                    ("disabled_reason", text("the target answered 410 Gone")),
                    ("updated_at", Param::Time(now_micros())),
                ],
            );
            q.push(" WHERE id = ").bind(Param::Id(outcome.subscription_id));
            conn.execute(q).await?;
        }
    }
    insert_attempts(conn, &recorded).await
}

/// The attempts' rows, 200 to a statement.
async fn insert_attempts(conn: &mut impl Conn, attempts: &[&DeliveryOutcome]) -> Result<(), StoreError> {
    for chunk in attempts.chunks(200) {
        let mut q = SqlBuilder::new(
            conn.dialect(),
            "INSERT INTO hook_attempts (subscription_id, event_id, attempted_at, status_code, duration_ms, error) \
             VALUES ",
        );
        for (i, outcome) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            sql::push_list(
                &mut q,
                [
                    Param::Id(outcome.subscription_id),
                    Param::Id(outcome.event_id),
                    Param::Time(outcome.attempted_at),
                    outcome.status_code.map_or(Param::NullInt, |c| Param::Int(i64::from(c))),
                    Param::Int(i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX)),
                    outcome.error.clone().map_or(Param::Null, Param::Text),
                ],
            );
            q.push(")");
        }
        conn.execute(q).await?;
    }
    Ok(())
}

/// Gives up `owner`'s leases (a worker stopping with deliveries unsent).
pub(super) async fn release(conn: &mut impl Conn, owner: &str) -> Result<u64, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE hook_deliveries SET ");
    sql::push_assignments(&mut q, [("leased_until", Param::NullTime), ("lease_owner", Param::Null)]);
    q.push(" WHERE lease_owner = ").bind(text(owner)).push(" AND status = 'pending'");
    conn.execute(q).await
}

/// How many deliveries wait (for the queue-depth metric).
pub(super) async fn pending_count(conn: &mut impl Conn) -> Result<i64, StoreError> {
    let q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM hook_deliveries WHERE status = 'pending'");
    Ok(conn.fetch_i64(q).await?.unwrap_or(0))
}

/// Deletes events older than `before` that no delivery still waits for,
/// and finished deliveries created before it; at most `batch` events per
/// call. Returns how many events went.
pub(super) async fn prune(conn: &mut impl Conn, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
    let mut q =
        SqlBuilder::new(conn.dialect(), "DELETE FROM hook_deliveries WHERE status <> 'pending' AND created_at < ");
    q.bind(Param::Time(before));
    conn.execute(q).await?;
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "DELETE FROM events WHERE id IN (SELECT id FROM events e WHERE e.created_at < ",
    );
    q.bind(Param::Time(before))
        .push(
            " AND NOT EXISTS (SELECT 1 FROM hook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending') \
             ORDER BY e.created_at LIMIT ",
        )
        .bind(Param::Int(i64::from(batch)))
        .push(")");
    conn.execute(q).await
}
