//! The customer flows (§4): create, update, delete with erasure, change of
//! customer_id and listing — written once over [`Conn`], run by
//! the SQL store inside each backend's transactions.

use serde_json::json;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::domain::customer::{Customer, CustomerData};
use crate::domain::events::{Actor, EventName};
use crate::domain::ids::AccountId;
use crate::domain::settings::{AutoTokenValue, CustomerIdFormat, Settings};
use crate::domain::validate::Errors;

use super::clock::{next_customer_number, note_customer_number, tick};
use super::columns::{attribute_rows, customer_columns, document, secret_columns, IndexedColumns};
use super::engine::Conn;
use super::events::{append, erase_customer, NewEvent};
use super::rows::{IdempotencyRow, SettingsRow};
use super::sql::{self, opt_text, text, Dialect, Param, SqlBuilder, CUSTOMER_COLUMNS};
use super::{
    change_customer_id_key, new_id, now_micros, Created, CustomerRef, IdempotencyKey, NewCustomer, PatchError, Patcher,
    SecretHashes, StoreError, Updated, IDEMPOTENCY_KEY_TTL,
};
use crate::domain::patch::Patch;

/// The account's settings, or the defaults when it has stored none.
pub(super) async fn load_settings(conn: &mut impl Conn, account: &AccountId) -> Result<Settings, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT doc FROM account_settings WHERE account_id = ");
    q.bind(text(account.as_str()));
    let rows: Vec<SettingsRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().next().map(|r| r.doc.0).unwrap_or_default())
}

/// Checks what only the database and the settings know: `contact_for` names
/// live customers of the account, `term.id` names live terms, attributes
/// have their defined types.
pub(super) async fn check_rules(
    conn: &mut impl Conn,
    account: &AccountId,
    data: &CustomerData,
    settings: &Settings,
) -> Result<(), StoreError> {
    let mut errors = Errors::default();
    settings.check_attributes(data.attributes.as_ref(), &mut errors);
    let wanted = data.contact_ids();
    if !wanted.is_empty() {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT customer_id FROM customers WHERE account_id = ");
        q.bind(text(account.as_str())).push(" AND deleted_at IS NULL AND customer_id IN (");
        sql::push_list(&mut q, wanted.iter().map(|id| text(id)));
        q.push(")");
        let found = conn.fetch_strings(q).await?;
        for (i, id) in wanted.iter().enumerate() {
            if !found.iter().any(|f| f == id) {
                errors.add(format!("contact_for[{i}].customer_id"), "not_found", "names no customer of this account");
            }
        }
    }
    if let Some(term_id) = data.term.as_ref().and_then(|term| term.id.as_ref()) {
        let exists = match Uuid::parse_str(term_id) {
            Ok(id) => {
                let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM terms WHERE account_id = ");
                q.bind(text(account.as_str())).push(" AND id = ").bind(Param::Id(id)).push(" AND deleted_at IS NULL");
                conn.fetch_i64(q).await?.unwrap_or(0) > 0
            }
            Err(_) => false,
        };
        if !exists {
            errors.add("term.id", "not_found", "names no terms of this account");
        }
    }
    errors.into_result().map_err(StoreError::Invalid)
}

/// Keeps a customer's auto tokens (§6) equal to what its current email and
/// phone number call for: stale ones are deleted, missing ones added. A
/// value another customer already holds as a token stays with that one.
async fn sync_auto_tokens(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_pk: Uuid,
    wanted: &[AutoTokenValue],
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customer_tokens SET ");
    sql::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
    q.push(" WHERE customer_pk = ").bind(Param::Id(customer_pk)).push(" AND source IS NOT NULL AND deleted_at IS NULL");
    for token in wanted {
        q.push(" AND NOT (type = ").bind(text(token.kind)).push(" AND value = ").bind(text(&token.value)).push(")");
    }
    conn.execute(q).await?;
    add_auto_tokens(conn, account, customer_pk, wanted, at, actor).await
}

/// Adds the auto tokens a customer lacks (a new customer has none to
/// retire); a value another customer already holds stays with that one.
async fn add_auto_tokens(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_pk: Uuid,
    wanted: &[AutoTokenValue],
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    for token in wanted {
        let mut q = SqlBuilder::new(
            conn.dialect(),
            "INSERT INTO customer_tokens (pk, account_id, token_id, customer_pk, type, value, source, created_at, \
             created_by) VALUES (",
        );
        sql::push_list(
            &mut q,
            [
                Param::Id(new_id()),
                text(account.as_str()),
                text(&Uuid::new_v4().to_string()),
                Param::Id(customer_pk),
                text(token.kind),
                text(&token.value),
                text(token.source),
                Param::Time(at),
                text(actor),
            ],
        );
        q.push(") ON CONFLICT DO NOTHING");
        conn.execute(q).await?;
    }
    Ok(())
}

pub(super) async fn replace_attributes(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    rows: &[(String, Option<String>)],
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM customer_attributes WHERE customer_pk = ");
    q.bind(Param::Id(id));
    conn.execute(q).await?;
    insert_attributes(conn, account, id, rows).await
}

/// Adds a customer's attribute rows (a new customer has none to replace).
async fn insert_attributes(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    rows: &[(String, Option<String>)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO customer_attributes (customer_pk, account_id, key, value) VALUES ",
    );
    for (i, (key, value)) in rows.iter().enumerate() {
        q.push(if i == 0 { "(" } else { ", (" });
        sql::push_list(&mut q, [Param::Id(id), text(account.as_str()), text(key), opt_text(value.as_ref())]);
        q.push(")");
    }
    conn.execute(q).await?;
    Ok(())
}

pub(super) async fn create_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    new: NewCustomer,
    actor: Actor<'_>,
    idempotency: Option<&IdempotencyKey>,
) -> Result<Created, StoreError> {
    if let Some(key) = idempotency {
        if let Some(replay) = claim_idempotency_key(conn, account, key).await? {
            return Ok(replay);
        }
    }
    let customer = insert_customer(conn, account, new, actor).await?;
    if let Some(key) = idempotency {
        let body = serde_json::to_string(&customer).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE idempotency_keys SET etag = ");
        q.bind(Param::Text(customer.etag()))
            .push(", response = ")
            .bind(Param::Text(body))
            .push(", customer_pk = ")
            .bind(Param::Id(customer.id))
            .push(" WHERE account_id = ")
            .bind(text(account.as_str()))
            .push(" AND key = ")
            .bind(text(&key.key));
        conn.execute(q).await?;
    }
    Ok(Created::New(Box::new(customer)))
}

/// Takes `key` for this transaction's create, or returns the response of
/// the create that took it first. The row is inserted before the customer:
/// a concurrent request with the same key waits on the primary key until
/// this transaction ends, then replays it (or, after a rollback, takes the
/// key itself). Expired keys of the account are forgotten first.
async fn claim_idempotency_key(
    conn: &mut impl Conn,
    account: &AccountId,
    key: &IdempotencyKey,
) -> Result<Option<Created>, StoreError> {
    let now = now_micros();
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM idempotency_keys WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND created_at < ").bind(Param::Time(now - IDEMPOTENCY_KEY_TTL));
    conn.execute(q).await?;

    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO idempotency_keys (account_id, key, fingerprint, etag, response, created_at) VALUES (",
    );
    sql::push_list(
        &mut q,
        [text(account.as_str()), text(&key.key), text(&key.fingerprint), text(""), text(""), Param::Time(now)],
    );
    q.push(") ON CONFLICT (account_id, key) DO NOTHING");
    if conn.execute(q).await? == 1 {
        return Ok(None);
    }
    let mut q =
        SqlBuilder::new(conn.dialect(), "SELECT fingerprint, etag, response FROM idempotency_keys WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND key = ").bind(text(&key.key));
    let rows: Vec<IdempotencyRow> = conn.fetch_all(q).await?;
    match rows.into_iter().next() {
        Some(row) if row.fingerprint == key.fingerprint => {
            Ok(Some(Created::Replayed { etag: row.etag, body: row.response }))
        }
        Some(_) => Err(StoreError::IdempotencyKeyReused),
        None => Err(StoreError::Other("idempotency key vanished while claimed".into())),
    }
}

async fn insert_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    new: NewCustomer,
    actor: Actor<'_>,
) -> Result<Customer, StoreError> {
    let settings = load_settings(conn, account).await?;
    check_rules(conn, account, &new.data, &settings).await?;
    let tick = tick(conn, account).await?;
    let (at, actor_name) = (tick.at, actor.name);
    let customer_id = match new.customer_id {
        Some(id) => {
            note_customer_number(conn, account, &id).await?;
            id
        }
        None => generated_customer_id(conn, account, &settings).await?,
    };
    let id = new_id();
    let cols = IndexedColumns::of(&customer_id, &new.data);
    let mut q =
        SqlBuilder::new(conn.dialect(), "INSERT INTO customers (id, account_id, customer_id, created_at, created_by, ");
    let mut columns = customer_columns(&cols, document(&new.data)?, &new.data, &settings, at);
    columns.extend(secret_columns(new.secrets));
    q.push(&columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")).push(") VALUES (");
    sql::push_list(
        &mut q,
        [Param::Id(id), text(account.as_str()), text(&customer_id), Param::Time(at), text(actor_name)]
            .into_iter()
            .chain(columns.into_iter().map(|(_, p)| p)),
    );
    q.push(")");
    conn.execute(q).await?;
    // The id is new: no attribute or token row names it yet.
    insert_attributes(conn, account, id, &cols.attributes).await?;
    add_auto_tokens(conn, account, id, &settings.auto_tokens_for(&new.data), at, actor_name).await?;
    let customer = Customer {
        id,
        customer_id,
        data: new.data,
        created_at: at,
        created_by: actor_name.to_owned(),
        updated_at: at,
        deleted_at: None,
        deleted_by: None,
    };
    append(conn, account, tick, NewEvent::customer(EventName::CustomerAdd, &customer)?, actor).await?;
    Ok(customer)
}

/// A `customer_id` for a customer that was given none: a UUID, or the next
/// number in `sequence` mode (after [`tick`], see [`next_customer_number`]).
async fn generated_customer_id(
    conn: &mut impl Conn,
    account: &AccountId,
    settings: &Settings,
) -> Result<String, StoreError> {
    Ok(match settings.users.customer_id_format {
        CustomerIdFormat::Sequence => next_customer_number(conn, account).await?.to_string(),
        CustomerIdFormat::Uuid => Uuid::new_v4().to_string(),
    })
}

/// The customer with this `customer_id`; with `lock`, its row stays locked
/// until the transaction ends (SQLite's `BEGIN IMMEDIATE` already excludes
/// other writers).
pub(super) async fn select_by_customer_id(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_id: &str,
    lock: bool,
) -> Result<Option<Customer>, StoreError> {
    let q = by_customer_id(conn.dialect(), account, customer_id, lock);
    Ok(conn.fetch_customers(q).await?.into_iter().next())
}

/// The query for the customer with this `customer_id` (see above).
/// `SELECT <customer columns> FROM customers c WHERE c.account_id = $1`,
/// for the caller to add its conditions.
pub(super) fn customers_of(dialect: Dialect, account: &AccountId) -> SqlBuilder {
    let mut q = SqlBuilder::new(dialect, "SELECT ");
    q.push(CUSTOMER_COLUMNS).push(" FROM customers c WHERE c.account_id = ").bind(text(account.as_str()));
    q
}

pub(super) fn by_customer_id(dialect: Dialect, account: &AccountId, customer_id: &str, lock: bool) -> SqlBuilder {
    let mut q = customers_of(dialect, account);
    q.push(" AND c.customer_id = ").bind(text(customer_id));
    if lock && dialect == Dialect::Postgres {
        q.push(" FOR UPDATE");
    }
    q
}

/// The query for the customers with these `customer_id`s, for a batch of
/// point reads (`point_reads`). The list is padded to a power of two with
/// its own ids again, so that batches of any size share a few prepared
/// statements.
pub(super) fn by_customer_ids(dialect: Dialect, account: &AccountId, customer_ids: &[String]) -> SqlBuilder {
    let mut q = customers_of(dialect, account);
    q.push(" AND c.customer_id IN (");
    let padded = customer_ids.len().next_power_of_two();
    sql::push_list(&mut q, customer_ids.iter().cycle().take(padded).map(|id| text(id)));
    q.push(")");
    q
}

pub(super) async fn live_for_update(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
) -> Result<Customer, StoreError> {
    match select_by_customer_id(conn, account, customer.customer_id, true).await? {
        Some(c) if !c.is_deleted() && customer.admits(&c) => Ok(c),
        _ => Err(StoreError::NotFound),
    }
}

/// What a write of a stored customer sets.
struct Written {
    /// A new `customer_id`; `None` keeps the customer's.
    customer_id: Option<String>,
    data: CustomerData,
    secrets: SecretHashes,
}

/// Writes a customer's data and index columns and appends the change's
/// event (`name`); returns the stored record.
async fn write_data(
    conn: &mut impl Conn,
    account: &AccountId,
    current: Customer,
    written: Written,
    settings: &Settings,
    (name, actor): (EventName, Actor<'_>),
) -> Result<Customer, StoreError> {
    let Written { customer_id, data, secrets } = written;
    // Before the tick, which makes the account's other writes wait.
    replace_attributes(conn, account, current.id, &attribute_rows(&data)).await?;
    let tick = tick(conn, account).await?;
    let at = tick.at;
    let customer_id = customer_id.unwrap_or_else(|| current.customer_id.clone());
    let cols = IndexedColumns::of(&customer_id, &data);
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customers SET ");
    let mut assignments = vec![("customer_id", text(&customer_id))];
    assignments.extend(customer_columns(&cols, document(&data)?, &data, settings, at));
    assignments.extend(secret_columns(secrets));
    sql::push_assignments(&mut q, assignments);
    q.push(" WHERE id = ").bind(Param::Id(current.id));
    conn.execute(q).await?;
    sync_auto_tokens(conn, account, current.id, &settings.auto_tokens_for(&data), at, actor.name).await?;
    let written = Customer { customer_id, data, updated_at: at, ..current.clone() };
    append(conn, account, tick, NewEvent::customer_change(name, &current, &written)?, actor).await?;
    Ok(written)
}

pub(super) async fn update_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_id: &str,
    patch: Patcher,
    secrets: SecretHashes,
    actor: Actor<'_>,
) -> Result<Updated, StoreError> {
    let current = live_for_update(conn, account, CustomerRef::any(customer_id)).await?;
    let settings = load_settings(conn, account).await?;
    let data = patch(&current, &settings).map_err(StoreError::Rejected)?;
    check_rules(conn, account, &data, &settings).await?;
    let written = Written { customer_id: None, data, secrets };
    let customer = write_data(conn, account, current, written, &settings, (EventName::CustomerUpdate, actor)).await?;
    Ok(Updated { customer, settings })
}

pub(super) async fn change_customer_id(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_id: &str,
    given: Option<&str>,
    actor: Actor<'_>,
) -> Result<Customer, StoreError> {
    let current = live_for_update(conn, account, CustomerRef::any(customer_id)).await?;
    let settings = load_settings(conn, account).await?;
    let new_customer_id = match given {
        Some(id) => id.to_owned(),
        None => generated_customer_id(conn, account, &settings).await?,
    };
    if new_customer_id == current.customer_id {
        return Err(StoreError::invalid("customer_id", "unchanged", "must differ from the current customer_id"));
    }
    let mut data = current.data.clone();
    let at = now_micros();
    let record = json!({
        "created_at": at,
        "created_by": actor.name,
        "old": customer_id,
        "new": new_customer_id,
    });
    data.metadata
        .get_or_insert_with(Default::default)
        .insert(change_customer_id_key(at, customer_id, &new_customer_id), record);
    let written = Written { customer_id: Some(new_customer_id.clone()), data, secrets: SecretHashes::default() };
    // (A generated number was counted when it was taken.)
    let event = (EventName::CustomerIdChange, actor);
    let changed = write_data(conn, account, current, written, &settings, event).await?;
    if given.is_some() {
        note_customer_number(conn, account, &new_customer_id).await?;
    }
    Ok(changed)
}

/// Soft delete with erasure (§4.2): one statement nulls every personal
/// column and leaves only the type in the document, and the replayable
/// response of an idempotent create of the customer becomes the erased
/// record, all in the caller's transaction.
pub(super) async fn delete_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    by: Actor<'_>,
    delete_tokens: bool,
    if_match: Option<&str>,
) -> Result<Customer, StoreError> {
    let current = live_for_update(conn, account, customer).await?;
    if if_match.is_some_and(|tag| !current.matches(tag)) {
        return Err(StoreError::Rejected(PatchError::VersionMismatch));
    }
    replace_attributes(conn, account, current.id, &[]).await?;
    let tick = tick(conn, account).await?;
    let (at, actor) = (tick.at, by.name);
    let erased = current.data.erased();
    // The columns every write sets, derived from the erased data, so a
    // column added to them is erased too; the secrets removed.
    let cols = IndexedColumns::of(&current.customer_id, &erased);
    let mut assignments = customer_columns(&cols, document(&erased)?, &erased, &Settings::default(), at);
    assignments.extend(secret_columns(SecretHashes { password: Patch::Null, pin: Patch::Null }));
    assignments.extend([("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customers SET ");
    sql::push_assignments(&mut q, assignments);
    q.push(" WHERE id = ").bind(Param::Id(current.id));
    conn.execute(q).await?;
    if delete_tokens {
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customer_tokens SET ");
        sql::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
        q.push(" WHERE customer_pk = ").bind(Param::Id(current.id)).push(" AND deleted_at IS NULL");
        conn.execute(q).await?;
    } else {
        // Auto tokens derive from the erased email and phone number.
        sync_auto_tokens(conn, account, current.id, &[], at, actor).await?;
    }
    let deleted =
        Customer { data: erased, updated_at: at, deleted_at: Some(at), deleted_by: Some(actor.to_owned()), ..current };
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE idempotency_keys SET etag = ");
    q.bind(Param::Text(deleted.etag()))
        .push(", response = ")
        .bind(Param::Text(serde_json::to_string(&deleted)?))
        .push(" WHERE customer_pk = ")
        .bind(Param::Id(deleted.id));
    conn.execute(q).await?;
    erase_customer(conn, account, deleted.id).await?;
    // A delete's event names the customer by its ids only.
    let ids = json!({"id": deleted.id, "customer_id": deleted.customer_id});
    let event = NewEvent { data: ids.to_string(), ..NewEvent::about(EventName::CustomerDelete, &deleted) };
    append(conn, account, tick, event, by).await?;
    Ok(deleted)
}

/// A live (not deleted) customer, or `NotFound`.
pub(super) async fn live_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
) -> Result<Customer, StoreError> {
    match select_by_customer_id(conn, account, customer.customer_id, false).await? {
        Some(c) if !c.is_deleted() && customer.admits(&c) => Ok(c),
        _ => Err(StoreError::NotFound),
    }
}

/// Whether a live customer has this email and/or phone number (`HEAD`).
pub(super) async fn customer_exists(
    conn: &mut impl Conn,
    account: &AccountId,
    email: Option<&str>,
    phone_number: Option<&str>,
) -> Result<bool, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM customers WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND deleted_at IS NULL");
    if let Some(email) = email {
        q.push(" AND email_lower = ").bind(text(&email.to_lowercase()));
    }
    if let Some(phone) = phone_number {
        q.push(" AND phone_number = ").bind(text(phone));
    }
    Ok(conn.fetch_i64(q).await?.unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_ids_is_padded_to_a_power_of_two_with_its_own_ids() {
        let account = AccountId::parse("P00000001").unwrap();
        let ids = |n: usize| (0..n).map(|i| format!("c-{i}")).collect::<Vec<_>>();
        for (n, padded) in [(1, 1), (3, 4), (4, 4), (5, 8), (64, 64)] {
            let q = by_customer_ids(Dialect::Postgres, &account, &ids(n));
            let bound: Vec<_> = q.params()[1..]
                .iter()
                .map(|p| match p {
                    Param::Text(id) => id.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(bound.len(), padded, "{n} ids");
            assert_eq!(bound[..n], ids(n)[..], "every id, in order, first");
            assert!(bound[n..].iter().all(|id| ids(n).contains(id)), "padding repeats the batch's own ids");
            assert!(q.sql().contains(&format!("${}", padded + 1)) && !q.sql().contains(&format!("${}", padded + 2)));
        }
    }
}
