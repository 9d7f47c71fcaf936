//! Admission for reads that may take long (a search, a count over many
//! matches): at most a few at once per process, the rest wait their turn.
//! More at once only share the cores (SQLite's, or the database server's)
//! and hold connections that point reads then wait for: on PostgreSQL,
//! GETs beside 8 connections of `total=true` searches ran at 1,438/s with
//! no limit (2 cores, 16 connections). One account holds at most half the
//! slots (at least one): two slow searches of one account made another
//! account's searches wait past their timeout five times in six.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;

/// Slots for long reads; a read holds one while it runs.
#[derive(Clone)]
pub struct LongReads {
    slots: Arc<Semaphore>,
    /// Each account's share of the slots, by account id.
    shares: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    share: usize,
    timeout: Duration,
}

/// A long read's slot, and its place in its account's share.
pub struct LongReadSlot {
    _slot: OwnedSemaphorePermit,
    _share: OwnedSemaphorePermit,
}

/// Accounts remembered before the ones holding no slot are forgotten.
const MAX_ACCOUNTS: usize = 10_000;

impl LongReads {
    /// `slots` at once (at least one); a read waits at most `timeout` for one.
    pub fn new(slots: u32, timeout: Duration) -> Self {
        let slots = slots.max(1) as usize;
        Self { slots: Arc::new(Semaphore::new(slots)), shares: Default::default(), share: (slots / 2).max(1), timeout }
    }

    /// A slot for a long read of `account`: first a place in the account's
    /// share, then one of the slots, both within the timeout.
    pub async fn slot(&self, account: &str) -> Result<LongReadSlot, StoreError> {
        let started = Instant::now();
        let share = acquire(&self.share_of(account), self.timeout, "a long-read slot of this account").await?;
        let remaining = self.timeout.saturating_sub(started.elapsed());
        let slot = acquire(&self.slots, remaining, "a long-read slot").await?;
        Ok(LongReadSlot { _slot: slot, _share: share })
    }

    fn share_of(&self, account: &str) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if shares.len() >= MAX_ACCOUNTS && !shares.contains_key(account) {
            // A held permit keeps its semaphore alive: those stay.
            shares.retain(|_, share| Arc::strong_count(share) > 1);
        }
        shares.entry(account.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.share))).clone()
    }

    /// Refuses further slots (the store is closing).
    pub fn close(&self) {
        self.slots.close();
    }
}

/// A permit of `permits`, without a timer when one is free at once.
pub async fn acquire(
    permits: &Arc<Semaphore>,
    timeout: Duration,
    what: &str,
) -> Result<OwnedSemaphorePermit, StoreError> {
    match permits.clone().try_acquire_owned() {
        Ok(permit) => Ok(permit),
        Err(_) => tokio::time::timeout(timeout, permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Unavailable(format!("timed out waiting for {what}")))?
            .map_err(|_| StoreError::Unavailable("the store is closed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_beyond_the_slots_waits_for_one_and_times_out() {
        let reads = LongReads::new(2, Duration::from_millis(100));
        let first = reads.slot("a").await.unwrap();
        let _second = reads.slot("b").await.unwrap();
        assert!(matches!(reads.slot("c").await, Err(StoreError::Unavailable(_))), "a third waits, then times out");
        let waiting = tokio::spawn({
            let reads = reads.clone();
            async move { reads.slot("c").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting read got the slot given back");
        reads.close();
        assert!(matches!(reads.slot("d").await, Err(StoreError::Unavailable(_))), "closed");
        assert!(LongReads::new(0, Duration::from_millis(10)).slot("a").await.is_ok(), "at least one slot");
    }

    #[tokio::test]
    async fn one_account_holds_at_most_half_the_slots() {
        let reads = LongReads::new(4, Duration::from_millis(50));
        let _greedy = [reads.slot("a").await.unwrap(), reads.slot("a").await.unwrap()];
        assert!(matches!(reads.slot("a").await, Err(StoreError::Unavailable(_))), "its share is taken");
        let _others = [reads.slot("b").await.unwrap(), reads.slot("c").await.unwrap()];
        assert_eq!(reads.shares.lock().unwrap().len(), 3);
    }
}
