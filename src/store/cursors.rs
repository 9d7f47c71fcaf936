//! The `created_at` of the customers that list pages handed out as their
//! next-page cursor, so that the next page need not look it up.
//!
//! A next page is the rows after its cursor customer in `created_at` order,
//! so the statement needs the cursor's `created_at`: looked up in the
//! statement, that is an index seek and a table seek (SQLite: 13k of a next
//! page's 175k instructions; PostgreSQL: two scalar subqueries). But the
//! customer a client pages after is nearly always the last one of the page
//! this process just served (the `Link` header names it), and a customer's
//! `created_at` never changes and its row is never removed (deletion erases
//! it in place). So the time is kept here, per account, when a page is
//! served, and bound as a value when the cursor comes back. A cursor not
//! kept (another process served the page, or a client made it up) is looked
//! up in the statement as before; nothing else changes.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::ids::AccountId;

/// How many cursors are kept. When full, the map starts again empty: a
/// miss only costs the lookup in the statement, and the memory stays
/// bounded (about 64 bytes a cursor).
const KEPT: usize = 4096;

#[derive(Default)]
pub struct CursorTimes {
    /// Customer id → (its account, its `created_at`).
    times: Mutex<HashMap<Uuid, (AccountId, DateTime<Utc>)>>,
}

impl CursorTimes {
    /// The `created_at` of customer `id` of `account`, if a page served it
    /// as a cursor.
    pub fn get(&self, account: &AccountId, id: Uuid) -> Option<DateTime<Utc>> {
        let times = self.times.lock().ok()?;
        times.get(&id).filter(|(owner, _)| owner == account).map(|(_, at)| *at)
    }

    /// Keeps the cursor a page handed out: customer `id` of `account`,
    /// created at `at`.
    pub fn remember(&self, account: &AccountId, id: Uuid, at: DateTime<Utc>) {
        if let Ok(mut times) = self.times.lock() {
            if times.len() >= KEPT && !times.contains_key(&id) {
                times.clear();
            }
            times.insert(id, (account.clone(), at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> AccountId {
        AccountId::parse(id).unwrap()
    }

    #[test]
    fn a_cursor_is_known_only_to_the_account_whose_page_handed_it_out() {
        let cursors = CursorTimes::default();
        let (id, at) = (Uuid::from_u128(7), DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap());
        assert_eq!(cursors.get(&account("T00000001"), id), None);
        cursors.remember(&account("T00000001"), id, at);
        assert_eq!(cursors.get(&account("T00000001"), id), Some(at));
        assert_eq!(cursors.get(&account("T00000002"), id), None);
        assert_eq!(cursors.get(&account("T00000001"), Uuid::from_u128(8)), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let cursors = CursorTimes::default();
        let at = DateTime::from_timestamp_micros(0).unwrap();
        for n in 0..(3 * KEPT as u128) {
            cursors.remember(&account("T00000001"), Uuid::from_u128(n), at);
        }
        assert!(cursors.times.lock().unwrap().len() <= KEPT);
        let last = Uuid::from_u128(3 * KEPT as u128 - 1);
        assert_eq!(cursors.get(&account("T00000001"), last), Some(at), "the newest is kept");
    }
}
