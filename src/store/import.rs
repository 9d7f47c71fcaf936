//! Bulk import (`customers import`): batches of validated lines written
//! with COPY (PostgreSQL) or multi-row inserts (SQLite), by the same rules
//! as the API's create, in transactions of one batch (PostgreSQL, two
//! batches at once) or of several (SQLite).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::events::{Actor, EventName};
use crate::domain::ids::AccountId;
use crate::domain::settings::{normalise_phone, AutoTokenValue, Settings};
use crate::domain::stored::{json_object, StoredCustomer, StoredDocument};

use super::clock::{customer_number, note_customer_number, tick_block, Tick};
use super::columns::{customer_columns, document};
use super::customers::{check_rules, load_settings};
use super::engine::{Backend, Conn};
use super::events::{append_all, NewEvent};
use super::rows::db_row;
use super::sql::{self, opt_text, text, Dialect, Param, SqlBuilder};
use super::{new_id, now_micros, BatchImport, ImportOutcome, ImportRow, OnRejected, StoreError};

db_row! {
    struct IdRow {
        id: Uuid,
    }
}

/// A batch import over one backend (see [`BatchImport`]).
pub(super) struct Importer<'a, B: Backend> {
    backend: &'a B,
    account: AccountId,
    actor: String,
    on_rejected: OnRejected,
    /// How large a transaction may grow, if beyond one batch.
    spans: Option<TransactionLimit>,
    /// The transaction that spans batches.
    open: Option<OpenTransaction<B::Conn>>,
}

/// A transaction is committed after the batch that takes it to `rows`
/// customers or past `time`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TransactionLimit {
    rows: u64,
    time: Duration,
}

struct OpenTransaction<C> {
    conn: C,
    rows: u64,
    began: Instant,
}

impl<'a, B: Backend> Importer<'a, B> {
    /// A transaction spans batches unless the database writes in parallel
    /// (PostgreSQL, which writes two batches at once instead) or a refused
    /// batch must be rolled back alone.
    pub(super) fn new(backend: &'a B, account: &AccountId, actor: &str, on_rejected: OnRejected) -> Self {
        let spans = !backend.concurrent_writes() && on_rejected == OnRejected::KeepTheRest;
        Self {
            backend,
            account: account.clone(),
            actor: actor.to_owned(),
            on_rejected,
            spans: spans.then_some(SQLITE_TRANSACTION_LIMIT),
            open: None,
        }
    }
}

/// SQLite: how large an import's transaction may grow. A commit writes
/// every page the transaction changed into the WAL, and a batch changes
/// pages all over eleven indexes: spanning batches writes each hot page
/// fewer times (measured in the README), without holding more rows in
/// memory. The time bounds how long the import holds the write lock, which
/// a serving process's writes wait for up to their 10 s busy timeout: at
/// most this plus one batch.
const SQLITE_TRANSACTION_LIMIT: TransactionLimit = TransactionLimit { rows: 100_000, time: Duration::from_secs(4) };

#[async_trait]
impl<B: Backend> BatchImport for Importer<'_, B> {
    fn batches_at_once(&self) -> usize {
        batches_at_once(self.backend)
    }

    /// Where a transaction spans batches, a batch's size no longer sets how
    /// often each hot page is written, only how much the importer holds
    /// (SQLite: the same rate at 5,000 as at 20,000, peak RSS 410 against
    /// 587 MiB). Where a batch is a transaction (PostgreSQL, `--strict`),
    /// larger batches are faster. See `docs/performance.md`.
    fn default_batch_size(&self) -> usize {
        if self.spans.is_some() {
            5_000
        } else {
            20_000
        }
    }

    async fn write(&mut self, batches: Vec<Vec<ImportRow>>) -> Result<Vec<ImportOutcome>, StoreError> {
        let Some(limit) = self.spans else {
            return import_batches(self.backend, &self.account, batches, &self.actor, self.on_rejected).await;
        };
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            // Taken out while it writes: a failed write drops (rolls back)
            // the transaction rather than leave half a batch to commit.
            let mut open = match self.open.take() {
                Some(open) => open,
                None => OpenTransaction { conn: self.backend.write().await?, rows: 0, began: Instant::now() },
            };
            let outcome = import_batch(&mut open.conn, &self.account, batch, &self.actor).await?;
            open.rows += outcome.inserted;
            outcomes.push(outcome);
            if open.rows >= limit.rows || open.began.elapsed() >= limit.time {
                open.conn.commit().await?;
            } else {
                self.open = Some(open);
            }
        }
        Ok(outcomes)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        match self.open.take() {
            Some(open) => open.conn.commit().await,
            None => Ok(()),
        }
    }
}

/// Imports consecutive batches of one file, in order, each in its own
/// transaction, and returns what became of each. With
/// [`OnRejected::RollBack`] it stops after the first batch with a refused
/// row, which stores nothing.
///
/// Where the database writes in parallel (PostgreSQL), two consecutive
/// batches that [`can_write_together`] are written at once by two
/// transactions ([`import_pair`]): a batch's server-side work (index
/// inserts, WAL) is one backend process on one core, so one writer leaves
/// the other core idle.
async fn import_batches<B: Backend>(
    backend: &B,
    account: &AccountId,
    batches: Vec<Vec<ImportRow>>,
    actor: &str,
    on_rejected: OnRejected,
) -> Result<Vec<ImportOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut batches = batches.into_iter().peekable();
    while let Some(batch) = batches.next() {
        let later = batches.next_if(|later| backend.concurrent_writes() && can_write_together(&batch, later));
        let written = match later {
            Some(later) => import_pair(backend, account, batch, later, actor, on_rejected).await?,
            None => vec![import_one(backend, account, batch, actor, on_rejected).await?],
        };
        let stop = written.iter().any(|outcome| !keeps(outcome, on_rejected));
        outcomes.extend(written);
        if stop {
            break;
        }
    }
    Ok(outcomes)
}

/// How many consecutive batches [`import_batches`] writes at once: a pair
/// where the database writes in parallel.
fn batches_at_once(backend: &impl Backend) -> usize {
    if backend.concurrent_writes() {
        2
    } else {
        1
    }
}

/// Keeps a batch's transaction unless it must store nothing.
fn keeps(outcome: &ImportOutcome, on_rejected: OnRejected) -> bool {
    outcome.rejected.is_empty() || on_rejected == OnRejected::KeepTheRest
}

async fn import_one<B: Backend>(
    backend: &B,
    account: &AccountId,
    batch: Vec<ImportRow>,
    actor: &str,
    on_rejected: OnRejected,
) -> Result<ImportOutcome, StoreError> {
    let mut conn = backend.write().await?;
    let outcome = import_batch(&mut conn, account, batch, actor).await?;
    // Not committed: dropping the transaction rolls it back.
    if keeps(&outcome, on_rejected) {
        conn.commit().await?;
    }
    Ok(outcome)
}

/// Whether two consecutive batches may be written at once and still give
/// what writing them one after the other gives:
/// - no value the database keeps unique (`customer_id`, email, phone
///   number, and the auto tokens made of the last two) is in both: each
///   insert would wait for the other's transaction, and the earlier batch's
///   transaction does not end before its rows are written;
/// - the later batch names no customer of the earlier one as `contact_for`:
///   its check would not yet see it.
pub(super) fn can_write_together(earlier: &[ImportRow], later: &[ImportRow]) -> bool {
    let taken: HashSet<String> = earlier.iter().flat_map(unique_values).collect();
    let mut contacts = later.iter().flat_map(|row| row.data.contact_ids());
    later.iter().flat_map(unique_values).all(|value| !taken.contains(&value)) && contacts.all(|id| !taken.contains(id))
}

/// A row's values under unique indexes, in every form an index holds them
/// (one set for all kinds: a match across kinds only costs the overlap).
/// An auto token is made of the email as `email_lower` holds it (a valid
/// email has no spaces to trim), and of the phone number with its `+`.
fn unique_values(row: &ImportRow) -> impl Iterator<Item = String> + '_ {
    [
        Some(row.customer_id.clone()),
        row.columns.email_lower.clone(),
        row.columns.phone_number.clone(),
        row.columns.phone_number.as_deref().map(normalise_phone),
    ]
    .into_iter()
    .flatten()
}

/// Writes two consecutive batches at once, with the account's change
/// order kept: as if written one after the other.
///
/// - The `holder` transaction takes timestamps for both batches from the
///   account clock, which holds the clock's row lock until it commits: no
///   other write of the account commits meanwhile.
/// - The `writer` transaction writes the earlier batch with the block's
///   first timestamps, the holder the later batch with the rest, both at
///   once.
/// - The writer commits first, as soon as it is done; the holder commits
///   after it. So no later timestamp is ever visible before an earlier one
///   (the change feed's promise), and other writers wait as they would for
///   one batch.
/// - Should the holder then fail (or the process die), its clock update
///   rolls back while the writer's rows stay. The writer therefore commits
///   only once the wall clock has passed its last timestamp: the clock's
///   next tick is at least the wall clock, so later than those rows. Their
///   events keep their `seq`s, and the clock's next `seq` is above the
///   highest stored one (see `clock::tick_block`).
async fn import_pair<B: Backend>(
    backend: &B,
    account: &AccountId,
    earlier: Vec<ImportRow>,
    later: Vec<ImportRow>,
    actor: &str,
    on_rejected: OnRejected,
) -> Result<Vec<ImportOutcome>, StoreError> {
    let mut holder = backend.write().await?;
    begin_import(&mut holder).await?;
    let settings = load_settings(&mut holder, account).await?;
    let first = tick_block(&mut holder, account, (earlier.len() + later.len()) as i64).await?;
    let later_first = first.nth(earlier.len());
    if first.at - now_micros() > MAX_CLOCK_LEAD {
        // The clock runs ahead of the wall clock (which was set back): one
        // batch after the other, rather than wait. (The batch's own
        // microseconds are no wait: writing takes longer than that.)
        drop(holder);
        let mut outcomes = vec![import_one(backend, account, earlier, actor, on_rejected).await?];
        if keeps(&outcomes[0], on_rejected) {
            outcomes.push(import_one(backend, account, later, actor, on_rejected).await?);
        }
        return Ok(outcomes);
    }
    let mut writer = backend.write().await?;
    tracing::debug!(earlier = earlier.len(), later = later.len(), "two batches written at once");
    let write_earlier = async {
        begin_import(&mut writer).await?;
        // `can_write_together` keeps the writer from waiting on a row of the
        // holder's, which would wait forever (the holder commits after the
        // writer); should a case slip through, the import fails instead.
        writer.execute(SqlBuilder::new(writer.dialect(), "SET LOCAL lock_timeout = '30s'")).await?;
        let (accepted, mut outcome) = check_batch(&mut writer, account, earlier, &settings).await?;
        let highest = write_batch(&mut writer, account, accepted, first, &settings, actor, &mut outcome).await?;
        if keeps(&outcome, on_rejected) {
            sleep_until_past(later_first.at).await;
            writer.commit().await?;
        }
        Ok::<_, StoreError>((outcome, highest))
    };
    let write_later = async {
        let (accepted, mut outcome) = check_batch(&mut holder, account, later, &settings).await?;
        let highest = write_batch(&mut holder, account, accepted, later_first, &settings, actor, &mut outcome).await?;
        Ok::<_, StoreError>((outcome, highest))
    };
    let (written_earlier, written_later) = tokio::join!(write_earlier, write_later);
    let ((earlier_outcome, earlier_highest), (later_outcome, later_highest)) = (written_earlier?, written_later?);
    if !keeps(&earlier_outcome, on_rejected) {
        // Neither is committed: the import stops at the earlier batch.
        return Ok(vec![earlier_outcome]);
    }
    if keeps(&later_outcome, on_rejected) {
        note_highest_number(&mut holder, account, earlier_highest.max(later_highest)).await?;
        holder.commit().await?;
    }
    Ok(vec![earlier_outcome, later_outcome])
}

/// How far the account clock may run ahead of the wall clock for a pair
/// to be written at once: about the longest its earlier batch may then wait
/// before it commits (see [`import_pair`]).
const MAX_CLOCK_LEAD: chrono::Duration = chrono::Duration::milliseconds(100);

/// Returns once the wall clock is past `at`.
async fn sleep_until_past(at: DateTime<Utc>) {
    if let Ok(wait) = (at - now_micros()).to_std() {
        tokio::time::sleep(wait + std::time::Duration::from_micros(1)).await;
    }
}

/// Imports a batch of validated customers in the caller's transaction with
/// multi-row inserts. A row whose `customer_id` exists already is counted as
/// existing (so re-running an import adds nothing); a row that breaks
/// another uniqueness rule or a database-checked rule is rejected alone.
pub(super) async fn import_batch(
    conn: &mut impl Conn,
    account: &AccountId,
    rows: Vec<ImportRow>,
    actor: &str,
) -> Result<ImportOutcome, StoreError> {
    begin_import(conn).await?;
    let settings = load_settings(conn, account).await?;
    let (accepted, mut outcome) = check_batch(conn, account, rows, &settings).await?;
    if accepted.is_empty() {
        return Ok(outcome);
    }
    let first = tick_block(conn, account, accepted.len() as i64).await?;
    let highest = write_batch(conn, account, accepted, first, &settings, actor, &mut outcome).await?;
    note_highest_number(conn, account, highest).await?;
    Ok(outcome)
}

async fn note_highest_number(conn: &mut impl Conn, account: &AccountId, number: Option<i64>) -> Result<(), StoreError> {
    match number {
        Some(number) => note_customer_number(conn, account, &number.to_string()).await,
        None => Ok(()),
    }
}

/// Sets up an import transaction.
pub(super) async fn begin_import(conn: &mut impl Conn) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        // An import is idempotent (a re-run adds what a crash lost), so its
        // commits need not wait for the WAL flush.
        conn.execute(SqlBuilder::new(Dialect::Postgres, "SET LOCAL synchronous_commit = off")).await?;
    }
    Ok(())
}

/// Splits a batch into the rows that pass the database-checked rules and
/// an outcome holding the refused ones.
async fn check_batch(
    conn: &mut impl Conn,
    account: &AccountId,
    rows: Vec<ImportRow>,
    settings: &Settings,
) -> Result<(Vec<ImportRow>, ImportOutcome), StoreError> {
    let mut outcome = ImportOutcome::default();
    let mut accepted = Vec::with_capacity(rows.len());
    for row in rows {
        match check_rules(conn, account, &row.data, settings).await {
            Ok(()) => accepted.push(row),
            Err(StoreError::Invalid(errors)) => outcome.rejected.push((row.line, describe(&errors))),
            Err(other) => return Err(other),
        }
    }
    Ok((accepted, outcome))
}

/// Writes checked rows with the ticks `first`, `first.nth(1)`, … (times a
/// microsecond apart, consecutive `seq`s), each with its `customer_add`
/// event, and returns the highest numeric `customer_id` among them (stored now or
/// before: a re-run thus notes what an interrupted run stored but did not
/// note), for [`note_customer_number`].
async fn write_batch(
    conn: &mut impl Conn,
    account: &AccountId,
    mut accepted: Vec<ImportRow>,
    first: Tick,
    settings: &Settings,
    actor: &str,
    outcome: &mut ImportOutcome,
) -> Result<Option<i64>, StoreError> {
    if accepted.is_empty() {
        return Ok(None);
    }
    let highest_number = accepted.iter().filter_map(|row| customer_number(&row.customer_id)).max();
    let ids: Vec<Uuid> = accepted.iter().map(|_| new_id()).collect();
    // Each row's column values, and its attribute rows (kept for the rows
    // the insert stores).
    let mut values = Vec::with_capacity(accepted.len());
    let mut row_attributes = Vec::with_capacity(accepted.len());
    let mut names = String::from("id, account_id, customer_id, created_at, created_by");
    let mut documents = Vec::with_capacity(accepted.len());
    for (index, (row, id)) in accepted.iter_mut().zip(&ids).enumerate() {
        let at = first.nth(index).at;
        let cols = std::mem::take(&mut row.columns);
        let doc = match row.doc.take() {
            Some(doc) => doc,
            None => document(&row.data)?,
        };
        // The document again, for the row's event (a copy, not another
        // serialisation: see `added_event`).
        documents.push(match &doc {
            Param::Text(text) => Some(text.clone()),
            _ => None,
        });
        let columns = customer_columns(&cols, doc, &row.data, settings, at);
        row_attributes.push(cols.attributes);
        if index == 0 {
            names.extend(columns.iter().flat_map(|(c, _)| [", ", c]));
        }
        let fixed = [Param::Id(*id), text(account.as_str()), text(&row.customer_id), Param::Time(at), text(actor)];
        values.push(fixed.into_iter().chain(columns.into_iter().map(|(_, p)| p)).collect::<Vec<_>>());
    }
    let inserted: HashSet<Uuid> = if copy_new_customers(conn, &names, &values).await? {
        ids.iter().copied().collect()
    } else {
        insert_customer_rows(conn, &names, values).await?
    };

    let mut attributes = Vec::new();
    let mut tokens = Vec::new();
    let mut skipped = Vec::new();
    let mut events = Vec::new();
    let rows = accepted.iter().zip(&ids).zip(row_attributes).zip(documents);
    for (index, (((row, id), row_attributes), doc)) in rows.enumerate() {
        if !inserted.contains(id) {
            skipped.push(row);
            continue;
        }
        outcome.inserted += 1;
        let tick = first.nth(index);
        attributes.extend(row_attributes.into_iter().map(|a| (*id, a)));
        tokens.extend(settings.auto_tokens_for(&row.data).into_iter().map(|t| (*id, tick.at, t)));
        events.push((tick, added_event(*id, row, doc, tick, actor)?));
    }
    insert_attribute_rows(conn, account, &attributes).await?;
    insert_auto_token_rows(conn, account, &tokens, actor).await?;
    append_all(conn, account, events, Actor::named(actor)).await?;
    classify_skipped(conn, account, &skipped, outcome).await?;
    Ok(highest_number)
}

/// An imported customer's `customer_add` event. Its data is the customer as
/// a GET answers it, written around the document already serialised for
/// the row rather than by serialising the customer a second time.
fn added_event<'a>(
    id: Uuid,
    row: &'a ImportRow,
    doc: Option<String>,
    tick: Tick,
    actor: &str,
) -> Result<NewEvent<'a>, StoreError> {
    let doc = match doc.and_then(StoredDocument::from_object_text) {
        Some(doc) => doc,
        None => StoredDocument::from_object_text(serde_json::to_string(&row.data)?)
            .ok_or_else(|| StoreError::Other("a customer document is no JSON object".into()))?,
    };
    let stored = StoredCustomer {
        id,
        customer_id: row.customer_id.clone(),
        doc,
        created_at: tick.at,
        created_by: actor.to_owned(),
        updated_at: tick.at,
        deleted_at: None,
        deleted_by: None,
    };
    let data = String::from_utf8(json_object(&stored)).map_err(|e| StoreError::Other(e.to_string()))?;
    Ok(NewEvent { data, ..NewEvent::about_id(EventName::CustomerAdd, id, &row.customer_id) })
}

/// PostgreSQL: a batch's customers in one COPY, when none of them collides
/// with a stored customer (a first import). A collision fails the COPY, which
/// is undone to its savepoint, and the batch takes the row-by-row path (as a
/// re-run does). Returns whether the rows were written.
async fn copy_new_customers(conn: &mut impl Conn, columns: &str, values: &[Vec<Param>]) -> Result<bool, StoreError> {
    if conn.dialect() != Dialect::Postgres {
        return Ok(false);
    }
    conn.execute(SqlBuilder::new(Dialect::Postgres, "SAVEPOINT import_copy")).await?;
    match conn.copy_in(&format!("COPY customers ({columns}) FROM STDIN"), values).await {
        Ok(_) => {
            conn.execute(SqlBuilder::new(Dialect::Postgres, "RELEASE SAVEPOINT import_copy")).await?;
            Ok(true)
        }
        Err(StoreError::Conflict { .. }) => {
            conn.execute(SqlBuilder::new(Dialect::Postgres, "ROLLBACK TO SAVEPOINT import_copy")).await?;
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

/// Inserts customer rows, skipping those that collide with stored ones;
/// returns the ids of the rows it stored.
async fn insert_customer_rows(
    conn: &mut impl Conn,
    columns: &str,
    values: Vec<Vec<Param>>,
) -> Result<std::collections::HashSet<Uuid>, StoreError> {
    let mut inserted = std::collections::HashSet::new();
    // 15 parameters a row; 1,000 rows stay under both backends' limits.
    let mut rows = values.into_iter().peekable();
    while rows.peek().is_some() {
        // SQLite: `OR IGNORE`, not `ON CONFLICT DO NOTHING`, which skips the
        // same rows here (the customers table has no CHECK, and validated
        // rows have no NULL where NOT NULL stands) but leaves NOT NULL able
        // to abort the statement. A statement that may abort inside a
        // transaction keeps a statement journal: a copy of every page it
        // touches, for a 1,000-row insert most of eleven indexes' hot pages.
        // Without it, 1M customers: 19.8k → 24.2k/s.
        let (verb, conflict) = match conn.dialect() {
            Dialect::Sqlite => ("INSERT OR IGNORE INTO customers (", ""),
            Dialect::Postgres => ("INSERT INTO customers (", " ON CONFLICT DO NOTHING"),
        };
        let mut q = SqlBuilder::new(conn.dialect(), verb);
        q.push(columns).push(") VALUES ");
        for (i, row) in rows.by_ref().take(1000).enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            sql::push_list(&mut q, row);
            q.push(")");
        }
        q.push(conflict).push(" RETURNING id");
        let returned: Vec<IdRow> = conn.fetch_all(q).await?;
        inserted.extend(returned.into_iter().map(|r| r.id));
    }
    Ok(inserted)
}

/// Rows the insert skipped: their `customer_id` exists (already imported),
/// or they collide on email or phone number.
async fn classify_skipped(
    conn: &mut impl Conn,
    account: &AccountId,
    skipped: &[&ImportRow],
    outcome: &mut ImportOutcome,
) -> Result<(), StoreError> {
    for chunk in skipped.chunks(1000) {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT customer_id FROM customers WHERE account_id = ");
        q.bind(text(account.as_str())).push(" AND customer_id IN (");
        sql::push_list(&mut q, chunk.iter().map(|r| text(&r.customer_id)));
        q.push(")");
        let existing = conn.fetch_strings(q).await?;
        for row in chunk {
            if existing.contains(&row.customer_id) {
                outcome.existing.push(row.line);
            } else {
                outcome.rejected.push((row.line, "email or phone_number belongs to another customer".to_owned()));
            }
        }
    }
    Ok(())
}

async fn insert_attribute_rows(
    conn: &mut impl Conn,
    account: &AccountId,
    rows: &[(Uuid, (String, Option<String>))],
) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres && !rows.is_empty() {
        let values: Vec<Vec<Param>> = rows
            .iter()
            .map(|(id, (key, value))| vec![Param::Id(*id), text(account.as_str()), text(key), opt_text(value.as_ref())])
            .collect();
        let statement = "COPY customer_attributes (customer_pk, account_id, key, value) FROM STDIN";
        if conn.copy_in(statement, &values).await?.is_some() {
            return Ok(());
        }
    }
    for chunk in rows.chunks(2000) {
        let mut q = SqlBuilder::new(
            conn.dialect(),
            "INSERT INTO customer_attributes (customer_pk, account_id, key, value) VALUES ",
        );
        for (i, (id, (key, value))) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            sql::push_list(&mut q, [Param::Id(*id), text(account.as_str()), text(key), opt_text(value.as_ref())]);
            q.push(")");
        }
        conn.execute(q).await?;
    }
    Ok(())
}

async fn insert_auto_token_rows(
    conn: &mut impl Conn,
    account: &AccountId,
    rows: &[(Uuid, DateTime<Utc>, AutoTokenValue)],
    actor: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(1000) {
        let mut q = SqlBuilder::new(
            conn.dialect(),
            "INSERT INTO customer_tokens (pk, account_id, token_id, customer_pk, type, value, source, created_at, \
             created_by) VALUES ",
        );
        for (i, (id, at, token)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            sql::push_list(
                &mut q,
                [
                    Param::Id(new_id()),
                    text(account.as_str()),
                    text(&Uuid::new_v4().to_string()),
                    Param::Id(*id),
                    text(token.kind),
                    text(&token.value),
                    text(token.source),
                    Param::Time(*at),
                    text(actor),
                ],
            );
            q.push(")");
        }
        q.push(" ON CONFLICT DO NOTHING");
        conn.execute(q).await?;
    }
    Ok(())
}

fn describe(errors: &[crate::domain::validate::FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::customer::CustomerInput;

    fn row(body: serde_json::Value) -> ImportRow {
        let input: CustomerInput = serde_json::from_value(body).unwrap();
        let (customer_id, data) = input.into_new(Utc::now()).unwrap();
        ImportRow::new(1, customer_id.unwrap(), data)
    }

    #[test]
    fn batches_are_written_together_only_when_no_unique_value_or_contact_links_them() {
        let earlier = [row(json!({"customer_id": "a", "email": "a@x.io", "phone_number": "+4790000001"}))];
        let unrelated = row(json!({"customer_id": "b", "email": "b@x.io", "phone_number": "+4790000002"}));
        assert!(can_write_together(&earlier, std::slice::from_ref(&unrelated)));

        for clash in [
            json!({"customer_id": "a"}),
            json!({"customer_id": "b", "email": "A@X.IO"}),
            json!({"customer_id": "b", "phone_number": "+4790000001"}),
            json!({"customer_id": "b", "type": "contact", "contact_for": [{"customer_id": "a"}]}),
        ] {
            let later = [unrelated.clone(), row(clash.clone())];
            assert!(!can_write_together(&earlier, &later), "{clash}");
        }
        // A contact of a customer stored before both batches is checked
        // alike either way.
        let contact_of_older =
            row(json!({"customer_id": "d", "type": "contact", "contact_for": [{"customer_id": "zz"}]}));
        assert!(can_write_together(&earlier, &[contact_of_older]));
        // A contact in the earlier batch was checked against what is stored
        // before it, as it would be in a lone batch.
        let contact = row(json!({"customer_id": "c", "type": "contact", "contact_for": [{"customer_id": "zz"}]}));
        assert!(can_write_together(&[contact], &[unrelated]));
    }

    /// SQLite: an import's transaction spans batches until it reaches its
    /// limit of rows or time; what is not committed when the import is
    /// dropped is not stored, and a re-run stores it.
    #[tokio::test]
    async fn a_sqlite_transaction_spans_batches_up_to_its_limit() {
        use crate::store::sqlite::SqliteStore;
        use crate::store::{PoolOptions, Store};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url, &PoolOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let account = AccountId::parse("T00000001").unwrap();
        let batch = |ids: &[&str]| ids.iter().map(|id| row(json!({"customer_id": id}))).collect::<Vec<_>>();
        let stored = |id: &'static str| {
            let (store, account) = (&store, &account);
            async move { store.get_customer(account, id).await.unwrap().is_some() }
        };

        let mut import = Importer::new(&store.backend, &account, "test", OnRejected::KeepTheRest);
        assert_eq!(import.spans, Some(SQLITE_TRANSACTION_LIMIT));
        import.spans = Some(TransactionLimit { rows: 4, time: Duration::from_secs(3600) });
        import.write(vec![batch(&["a", "b"])]).await.unwrap();
        assert!(!stored("a").await, "2 rows of 4: the transaction stays open");
        import.write(vec![batch(&["c", "d"]), batch(&["e"])]).await.unwrap();
        assert!(stored("d").await, "4 rows of 4: committed");
        assert!(!stored("e").await, "a new transaction");
        drop(import);
        assert!(!stored("e").await, "dropped, not committed");

        // A transaction open for its time is committed after the batch.
        let mut timed = Importer::new(&store.backend, &account, "test", OnRejected::KeepTheRest);
        timed.spans = Some(TransactionLimit { rows: 100, time: Duration::from_millis(300) });
        timed.write(vec![batch(&["f"])]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        timed.write(vec![batch(&["g"])]).await.unwrap();
        assert!(stored("g").await, "committed after its time");
        drop(timed);

        let mut again = Importer::new(&store.backend, &account, "test", OnRejected::KeepTheRest);
        let outcomes = again.write(vec![batch(&["d", "e"])]).await.unwrap();
        again.commit().await.unwrap();
        assert_eq!((outcomes[0].inserted, outcomes[0].existing.len()), (1, 1));
        assert!(stored("e").await);

        // Under `--strict` a refused batch is rolled back alone: one
        // transaction a batch.
        let strict = Importer::new(&store.backend, &account, "test", OnRejected::RollBack);
        assert_eq!(strict.spans, None);
        store.close().await;
    }

    #[test]
    fn a_phone_number_counts_also_in_the_form_its_auto_token_hashes() {
        let earlier = [row(json!({"customer_id": "a", "phone_number": "4790000001"}))];
        let later = [row(json!({"customer_id": "b", "phone_number": "+4790000001"}))];
        assert!(!can_write_together(&earlier, &later));
    }
}
