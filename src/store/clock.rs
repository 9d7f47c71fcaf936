//! The account clock (`account_clocks`): every write of an account takes a
//! strictly later timestamp and the next event `seq` under the clock row's
//! lock, held until commit, so writes commit in timestamp and `seq` order:
//! neither the change feed nor the event log has a gap a reader can fall
//! into. The same row counts `sequence` customer ids.

use chrono::{DateTime, Utc};

use crate::domain::ids::AccountId;

use super::engine::Conn;
use super::rows::db_row;
use super::sql::{text, Dialect, Param, SqlBuilder};
use super::{micros_to_time, now_micros, StoreError};

/// A write's place in its account's order: its timestamp and the `seq` of
/// the event it appends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tick {
    pub at: DateTime<Utc>,
    pub seq: i64,
}

impl Tick {
    /// The `i`-th of a block of ticks taken at once (see [`tick_block`]).
    pub fn nth(self, i: usize) -> Tick {
        Tick { at: self.at + chrono::TimeDelta::microseconds(i as i64), seq: self.seq + i as i64 }
    }
}

db_row! {
    struct ClockRow {
        last_us: i64,
        last_seq: i64,
    }
}

/// Takes the account's next write timestamp and event `seq`. The row lock
/// this takes is held until commit, so writes of one account commit in
/// timestamp order, and each waits from its tick for the one before to
/// commit. So a write ticks as late as it can: what needs no timestamp
/// (reads, checks, attribute rows) comes before.
pub(super) async fn tick(conn: &mut impl Conn, account: &AccountId) -> Result<Tick, StoreError> {
    tick_block(conn, account, 1).await
}

/// Takes `n` consecutive write timestamps (microseconds apart) and event
/// `seq`s and returns the first: every one later than anything the account
/// has written. A `seq` is also above every stored event's: an import's
/// earlier batch commits its events before the transaction holding the
/// clock (`import::import_pair`), and should that one then fail, its clock
/// update is undone while those events stay.
pub(super) async fn tick_block(conn: &mut impl Conn, account: &AccountId, n: i64) -> Result<Tick, StoreError> {
    let greatest = greatest(conn.dialect());
    let last = now_micros().timestamp_micros() + n - 1;
    let highest_event = |q: &mut SqlBuilder| {
        q.push("(SELECT COALESCE(max(seq), 0) FROM events WHERE account_id = ").bind(text(account.as_str())).push(")");
    };
    let mut q = SqlBuilder::new(conn.dialect(), "INSERT INTO account_clocks (account_id, last_us, last_seq) VALUES (");
    q.bind(text(account.as_str())).push(", ").bind(Param::Int(last)).push(", ");
    highest_event(&mut q);
    q.push(" + ")
        .bind(Param::Int(n))
        .push(") ON CONFLICT (account_id) DO UPDATE SET last_us = ")
        .push(greatest)
        .push("(account_clocks.last_us + ")
        .bind(Param::Int(n))
        .push(", excluded.last_us), last_seq = ")
        .push(greatest)
        .push("(account_clocks.last_seq, ");
    highest_event(&mut q);
    q.push(") + ").bind(Param::Int(n)).push(" RETURNING last_us, last_seq");
    let rows: Vec<ClockRow> = conn.fetch_all(q).await?;
    let row = rows.into_iter().next().ok_or_else(|| StoreError::Other("clock returned no row".into()))?;
    Ok(Tick { at: micros_to_time(row.last_us - n + 1), seq: row.last_seq - n + 1 })
}

/// The next `sequence` customer id: one above the highest numeric
/// customer_id the account has used. Runs after [`tick`], whose row lock
/// makes concurrent creates take distinct, increasing numbers.
pub(super) async fn next_customer_number(conn: &mut impl Conn, account: &AccountId) -> Result<i64, StoreError> {
    let mut q =
        SqlBuilder::new(conn.dialect(), "UPDATE account_clocks SET last_number = last_number + 1 WHERE account_id = ");
    q.bind(text(account.as_str())).push(" RETURNING last_number");
    conn.fetch_i64(q).await?.ok_or_else(|| StoreError::Other("no clock row for the account".into()))
}

/// A customer_id made only of digits, as the number `sequence` ids count in.
pub(super) fn customer_number(customer_id: &str) -> Option<i64> {
    let digits = customer_id.len() <= 18 && customer_id.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| customer_id.parse().ok()).flatten()
}

/// Remembers a caller-chosen numeric customer_id, so `sequence` ids never
/// collide with it.
pub(super) async fn note_customer_number(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_id: &str,
) -> Result<(), StoreError> {
    let Some(number) = customer_number(customer_id) else {
        return Ok(());
    };
    let greatest = greatest(conn.dialect());
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE account_clocks SET last_number = ");
    q.push(greatest)
        .push("(last_number, ")
        .bind(Param::Int(number))
        .push(") WHERE account_id = ")
        .bind(text(account.as_str()));
    conn.execute(q).await.map(drop)
}

fn greatest(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "max",
        Dialect::Postgres => "GREATEST",
    }
}
