//! Point reads coalesced (PostgreSQL): a GET by `customer_id` that arrives
//! while the database is busy with earlier ones waits for the next
//! statement, and goes out with every other GET that arrived meanwhile as
//! one `customer_id IN (…)` query. A statement's fixed costs (a round trip,
//! a backend woken, the executor started) are then paid once per batch
//! instead of once per request; at most `batches` statements are at the
//! database at once.
//!
//! Nothing waits for company: a GET that finds a batch slot free goes out
//! at once, with only the requests already running beside it. Each batch's
//! statement starts after every request in it arrived, so a GET still sees
//! every write that finished before it was made.
//!
//! The statement runs in a task of its own, so a request dropped while it
//! waits (a client hanging up, a timeout) cancels nobody else's read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, Semaphore};

use crate::domain::ids::AccountId;
use crate::domain::stored::StoredCustomer;
use crate::store::admission::acquire;
use crate::store::StoreError;

/// The most `customer_id`s one statement asks for; a longer queue goes out
/// in several.
pub const MAX_BATCH: usize = 64;

/// Reads the customers with these `customer_id`s in one account (those
/// that exist, in any order).
pub type Fetch =
    Arc<dyn Fn(AccountId, Vec<String>) -> BoxFuture<'static, Result<Vec<StoredCustomer>, StoreError>> + Send + Sync>;

type Answer = Result<Option<StoredCustomer>, StoreError>;

pub struct PointReads {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// One permit per statement at the database.
    batches: Arc<Semaphore>,
    /// How long a batch waits for a permit before its reads answer 503.
    timeout: Duration,
    fetch: Fetch,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// Whether a task is already waiting for a permit to take `waiting` out.
    leader: bool,
}

struct Waiter {
    account: AccountId,
    customer_id: String,
    answer: oneshot::Sender<Answer>,
}

impl PointReads {
    /// At most `batches` statements at once (at least one); a batch waits
    /// at most `timeout` for its turn.
    pub fn new(batches: u32, timeout: Duration, fetch: Fetch) -> Self {
        let batches = Arc::new(Semaphore::new(batches.max(1) as usize));
        let shared = Shared { queue: Mutex::default(), batches, timeout, fetch };
        Self { shared: Arc::new(shared) }
    }

    /// The customer with this `customer_id` in `account`, deleted or not.
    pub async fn get(&self, account: &AccountId, customer_id: &str) -> Answer {
        if customer_id.contains('\0') {
            // No stored id holds one, and PostgreSQL would refuse the
            // statement, and with it every other read in the batch.
            return Ok(None);
        }
        let (answer, answered) = oneshot::channel();
        let waiter = Waiter { account: account.clone(), customer_id: customer_id.to_owned(), answer };
        let lead = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(waiter);
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead {
            tokio::spawn(run_batch(self.shared.clone()));
        }
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the store is closing".into())))
    }

    /// Refuses further batches (the store is closing).
    pub fn close(&self) {
        self.shared.batches.close();
    }
}

/// Waits for a permit, then takes every read queued by then to the database.
async fn run_batch(shared: Arc<Shared>) {
    let permit = acquire(&shared.batches, shared.timeout, "a point-read batch").await;
    // Requests already woken on this worker get to join the batch before it
    // is taken (no timer: a quiet server loses one reschedule): batches
    // grew from 4.2 to 6.1 GETs.
    tokio::task::yield_now().await;
    let waiting = {
        let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.leader = false;
        std::mem::take(&mut queue.waiting)
    };
    if let Err(error) = &permit {
        for waiter in waiting {
            let _ = waiter.answer.send(Err(copy_error(error)));
        }
        return;
    }
    for (account, mut group) in by_account(waiting) {
        while !group.is_empty() {
            let rest = group.split_off(group.len().min(MAX_BATCH));
            let ids = group.iter().map(|w| w.customer_id.clone()).collect();
            let found = (shared.fetch)(account.clone(), ids).await;
            // Their ratio is the mean batch size.
            metrics::counter!("db_point_read_statements_total").increment(1);
            metrics::counter!("db_point_reads_total").increment(group.len() as u64);
            answer(std::mem::replace(&mut group, rest), found);
        }
    }
}

fn by_account(waiting: Vec<Waiter>) -> HashMap<AccountId, Vec<Waiter>> {
    let mut groups: HashMap<AccountId, Vec<Waiter>> = HashMap::new();
    for waiter in waiting {
        groups.entry(waiter.account.clone()).or_default().push(waiter);
    }
    groups
}

/// Hands each waiter its customer, or the statement's error. A waiter that
/// gave up (its request was dropped) is skipped.
fn answer(waiters: Vec<Waiter>, found: Result<Vec<StoredCustomer>, StoreError>) {
    let wanted_again: Vec<bool> =
        (0..waiters.len()).map(|i| waiters[i + 1..].iter().any(|w| w.customer_id == waiters[i].customer_id)).collect();
    let mut found = found.map(|customers| customers.into_iter().map(Some).collect::<Vec<_>>());
    for (waiter, wanted_again) in waiters.into_iter().zip(wanted_again) {
        let answer = match &mut found {
            Ok(customers) => Ok(take_customer(customers, &waiter.customer_id, wanted_again)),
            Err(error) => Err(copy_error(error)),
        };
        let _ = waiter.answer.send(answer);
    }
}

/// The customer with this id among `customers`: moved out, or copied when a
/// later waiter of the batch asked for the same one.
fn take_customer(customers: &mut [Option<StoredCustomer>], customer_id: &str, copy: bool) -> Option<StoredCustomer> {
    let slot = customers.iter_mut().find(|c| c.as_ref().is_some_and(|c| c.customer_id == customer_id))?;
    if copy {
        slot.clone()
    } else {
        slot.take()
    }
}

/// The error for each read of a failed batch. A plain `SELECT` fails as
/// the database does (`Unavailable`, `Other`) or on a value it cannot take
/// (`Invalid`; the one known, a NUL, never gets this far).
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        StoreError::Invalid(errors) => StoreError::Invalid(errors.clone()),
        other => StoreError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    use crate::domain::stored::StoredDocument;

    fn customer(customer_id: &str) -> StoredCustomer {
        StoredCustomer {
            id: Uuid::new_v4(),
            customer_id: customer_id.to_owned(),
            doc: StoredDocument::from_object_text("{}".into()).unwrap(),
            created_at: Utc::now(),
            created_by: "test".into(),
            updated_at: Utc::now(),
            deleted_at: None,
            deleted_by: None,
        }
    }

    /// A table of customers behind a gate the test opens; records each
    /// statement's account and ids.
    struct Table {
        statements: Mutex<Vec<(AccountId, Vec<String>)>>,
        gate: Semaphore,
    }

    fn gated_table() -> Arc<Table> {
        Arc::new(Table { statements: Mutex::default(), gate: Semaphore::new(0) })
    }

    fn reads(table: &Arc<Table>, batches: u32, timeout: Duration) -> Arc<PointReads> {
        let table = table.clone();
        let fetch: Fetch = Arc::new(move |account: AccountId, ids: Vec<String>| {
            let table = table.clone();
            Box::pin(async move {
                table.statements.lock().unwrap().push((account.clone(), ids.clone()));
                let _pass = table.gate.acquire().await.unwrap();
                if ids.iter().any(|id| id == "broken") {
                    return Err(StoreError::Unavailable("connection lost".into()));
                }
                Ok(ids.iter().filter(|id| id.starts_with("c-")).map(|id| customer(id)).collect())
            })
        });
        Arc::new(PointReads::new(batches, timeout, fetch))
    }

    /// A GET in a task of its own, as a request would make it.
    fn spawn_get(reads: &Arc<PointReads>, aid: &str, id: &str) -> tokio::task::JoinHandle<Answer> {
        let (reads, aid, id) = (reads.clone(), account(aid), id.to_owned());
        tokio::spawn(async move { reads.get(&aid, &id).await })
    }

    fn account(id: &str) -> AccountId {
        AccountId::parse(id).unwrap()
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn reads_that_arrive_while_the_database_is_busy_go_out_as_one_statement() {
        let table = gated_table();
        let reads = reads(&table, 1, Duration::from_secs(5));
        let first = spawn_get(&reads, "P00000001", "c-0");
        settle().await;
        let later: Vec<_> =
            ["c-1", "c-2", "missing", "c-2"].iter().map(|id| spawn_get(&reads, "P00000001", id)).collect();
        let other_account = spawn_get(&reads, "P00000002", "c-9");
        settle().await;
        assert_eq!(table.statements.lock().unwrap().len(), 1, "the later reads wait for the first statement");
        table.gate.add_permits(100);

        assert_eq!(first.await.unwrap().unwrap().unwrap().customer_id, "c-0");
        let answers: Vec<_> = futures::future::join_all(later).await.into_iter().map(|a| a.unwrap().unwrap()).collect();
        let ids: Vec<_> = answers.iter().map(|c| c.as_ref().map(|c| c.customer_id.as_str())).collect();
        assert_eq!(ids, [Some("c-1"), Some("c-2"), None, Some("c-2")]);
        assert_eq!(other_account.await.unwrap().unwrap().unwrap().customer_id, "c-9");

        let mut statements = table.statements.lock().unwrap().clone();
        statements.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()).then(a.1.len().cmp(&b.1.len())));
        let expected = [
            (account("P00000001"), vec!["c-0".to_string()]),
            (account("P00000001"), ["c-1", "c-2", "missing", "c-2"].map(String::from).to_vec()),
            (account("P00000002"), vec!["c-9".to_string()]),
        ];
        assert_eq!(statements, expected, "one statement per account for the queued reads");
    }

    #[tokio::test]
    async fn a_long_queue_goes_out_in_statements_of_at_most_max_batch() {
        let table = gated_table();
        let reads = reads(&table, 1, Duration::from_secs(5));
        let blocker = spawn_get(&reads, "P00000001", "c-first");
        settle().await;
        let queued: Vec<_> = (0..MAX_BATCH + 3).map(|i| spawn_get(&reads, "P00000001", &format!("c-{i}"))).collect();
        settle().await;
        table.gate.add_permits(1000);
        assert!(blocker.await.unwrap().unwrap().is_some());
        for (i, read) in queued.into_iter().enumerate() {
            assert_eq!(read.await.unwrap().unwrap().unwrap().customer_id, format!("c-{i}"));
        }
        let sizes: Vec<usize> = table.statements.lock().unwrap().iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes, [1, MAX_BATCH, 3]);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_its_reads_and_a_dropped_read_fails_none() {
        let table = gated_table();
        let reads = reads(&table, 1, Duration::from_secs(5));
        let get = |id: &str| spawn_get(&reads, "P00000001", id);
        let first = get("c-0");
        settle().await;
        let dropped = get("c-1");
        let broken = [get("broken"), get("c-2")];
        settle().await;
        dropped.abort();
        table.gate.add_permits(100);
        assert!(first.await.unwrap().unwrap().is_some());
        for read in broken {
            assert!(matches!(read.await.unwrap(), Err(StoreError::Unavailable(_))), "the batch's error");
        }
        assert_eq!(get("c-3").await.unwrap().unwrap().unwrap().customer_id, "c-3", "the next batch runs");
        assert_eq!(reads.get(&account("P00000001"), "c-\0").await.unwrap(), None, "a NUL never reaches the database");
    }

    #[tokio::test]
    async fn a_batch_that_waits_too_long_for_its_turn_answers_unavailable() {
        let table = gated_table();
        let reads = reads(&table, 1, Duration::from_millis(50));
        let stuck = spawn_get(&reads, "P00000001", "c-0");
        settle().await;
        assert!(matches!(reads.get(&account("P00000001"), "c-1").await, Err(StoreError::Unavailable(_))));
        table.gate.add_permits(100);
        assert!(stuck.await.unwrap().unwrap().is_some());
        reads.close();
        assert!(matches!(reads.get(&account("P00000001"), "c-2").await, Err(StoreError::Unavailable(_))), "closed");
    }
}
