//! The account clock (`account_clocks`): every write of an account takes a
//! strictly later timestamp under the clock row's lock, held until commit,
//! so writes commit in timestamp order and the change feed never misses one;
//! the same row counts `sequence` customer ids.

use chrono::{DateTime, Utc};

use crate::domain::ids::AccountId;

use super::engine::Conn;
use super::sql::{text, Dialect, Param, SqlBuilder};
use super::{micros_to_time, now_micros, StoreError};

/// Takes the account's next write timestamp. The row lock this takes is
/// held until commit, so writes of one account commit in timestamp order,
/// and each waits from its tick for the one before to commit. So a write
/// ticks as late as it can: what needs no timestamp (reads, checks,
/// attribute rows) comes before.
pub(super) async fn tick(conn: &mut impl Conn, account: &AccountId) -> Result<DateTime<Utc>, StoreError> {
    tick_block(conn, account, 1).await
}

/// Takes `n` consecutive write timestamps (microseconds apart) and returns
/// the first: every one later than anything the account has written.
pub(super) async fn tick_block(conn: &mut impl Conn, account: &AccountId, n: i64) -> Result<DateTime<Utc>, StoreError> {
    let greatest = greatest(conn.dialect());
    let last = now_micros().timestamp_micros() + n - 1;
    let mut q = SqlBuilder::new(conn.dialect(), "INSERT INTO account_clocks (account_id, last_us) VALUES (");
    q.bind(text(account.as_str()))
        .push(", ")
        .bind(Param::Int(last))
        .push(") ON CONFLICT (account_id) DO UPDATE SET last_us = ")
        .push(greatest)
        .push("(account_clocks.last_us + ")
        .bind(Param::Int(n))
        .push(", excluded.last_us) RETURNING last_us");
    let micros = conn.fetch_i64(q).await?.ok_or_else(|| StoreError::Other("clock returned no row".into()))?;
    Ok(micros_to_time(micros - n + 1))
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
