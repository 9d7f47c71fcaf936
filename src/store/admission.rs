//! Admission for reads that may take long (a search, a count over many
//! matches): at most a few at once per process, the rest wait their turn.
//! More at once only share the cores (SQLite's, or the database server's)
//! and hold connections that point reads then wait for: on PostgreSQL,
//! GETs beside 8 connections of `total=true` searches ran at 1,438/s with
//! no limit (2 cores, 16 connections).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;

/// Slots for long reads; a read holds one while it runs.
#[derive(Clone)]
pub struct LongReads {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl LongReads {
    /// `slots` at once (at least one); a read waits at most `timeout` for one.
    pub fn new(slots: u32, timeout: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(slots.max(1) as usize)), timeout }
    }

    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        acquire(&self.slots, self.timeout, "a long-read slot").await
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
        let first = reads.slot().await.unwrap();
        let _second = reads.slot().await.unwrap();
        assert!(matches!(reads.slot().await, Err(StoreError::Unavailable(_))), "a third waits, then times out");
        let waiting = tokio::spawn({
            let reads = reads.clone();
            async move { reads.slot().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting read got the slot given back");
        reads.close();
        assert!(matches!(reads.slot().await, Err(StoreError::Unavailable(_))), "closed");
        assert!(LongReads::new(0, Duration::from_millis(10)).slot().await.is_ok(), "at least one slot");
    }
}
