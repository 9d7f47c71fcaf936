//! Webhook delivery (§11): a worker in every serving process claims due
//! deliveries from the database under a lease, POSTs each signed event,
//! records the attempt, and retries with backoff. The database decides who
//! sends what (see `store::hooks::claim`), so several processes share the
//! work without sending one attempt twice; a process that dies leaves
//! leases that run out and are taken over (at least once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use uuid::Uuid;

use crate::domain::hooks::{is_public, RetryPolicy, Signatures};
use crate::store::{now_micros, Claimed, DeliveryOutcome, DeliveryResult, Store};

pub mod target;

/// How this process delivers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a receiver may take to answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Deliveries in flight at once, and per subscription (so that a slow
    /// receiver holds at most that many and never stalls the others).
    pub concurrency: usize,
    pub per_subscription: usize,
    /// Deliver to loopback and private addresses too.
    pub allow_private: bool,
    /// How often the database is asked for due deliveries when no write of
    /// this process said there might be some (another process's writes,
    /// retries coming due).
    pub poll: Duration,
    /// Events older than this are pruned, unless a delivery still waits.
    pub retention: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            concurrency: 64,
            per_subscription: 32,
            allow_private: false,
            poll: Duration::from_millis(200),
            retention: Duration::from_secs(400 * 24 * 3600),
        }
    }
}

/// The least time between two claims of a worker.
const CLAIM_GAP: Duration = Duration::from_millis(5);
/// Deliveries claimed at most per database round trip.
const CLAIM_BATCH: usize = 100;
/// Attempts recorded at most per transaction.
const RECORD_BATCH: usize = 256;
/// The biggest part of a receiver's answer read (the rest is dropped).
const MAX_ANSWER: usize = 64 * 1024;
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A running worker: [`stop`](Self::stop) finishes the attempts in flight
/// (each bounded by the timeout) and gives back the leases of the rest.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: AbortOnDrop,
}

/// A task that stops when its handle is dropped (a worker dropped without
/// [`Worker::stop`], as a test server is).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    pub fn spawn(store: Arc<dyn Store>, config: WorkerConfig) -> anyhow::Result<Self> {
        let client = http_client(&config)?;
        let (stop, stopped) = watch::channel(false);
        let owner = format!("{}-{}", std::process::id(), Uuid::new_v4());
        let task = AbortOnDrop(tokio::spawn(run(store, client, config, owner, stopped)));
        Ok(Self { stop, task })
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task.0).await;
    }
}

/// The client deliveries go out on: no redirects, no proxies, bounded in
/// time, and (unless private targets are allowed) a resolver that yields
/// only public addresses.
fn http_client(config: &WorkerConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(config.per_subscription)
        .user_agent(concat!("customers-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(resolver) = target::resolver(config.allow_private) {
        builder = builder.dns_resolver(resolver);
    }
    Ok(builder.build()?)
}

/// What the sending tasks share with the loop that claims for them.
struct Shared {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: WorkerConfig,
    owner: String,
    slots: Arc<Semaphore>,
    in_flight: Mutex<HashMap<Uuid, usize>>,
    /// Signalled when a send finishes (a slot, and perhaps a customer's next
    /// event, is free).
    freed: Notify,
}

async fn run(
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: WorkerConfig,
    owner: String,
    mut stopped: watch::Receiver<bool>,
) {
    let committed = store.committed();
    let (outcomes, recorded) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        store,
        client,
        config,
        owner,
        in_flight: Mutex::new(HashMap::new()),
        freed: Notify::new(),
    });
    let recorder = tokio::spawn(record(shared.clone(), recorded));
    let _upkeep = AbortOnDrop(tokio::spawn(upkeep(shared.clone())));
    let mut last_claim: Option<Instant> = None;
    loop {
        // Claims at most every CLAIM_GAP: under a stream of writes each
        // commit wakes the worker, and a claim per write (a transaction of
        // several statements for a delivery or two) cost more than the
        // sends; waiting a few milliseconds lets a claim take many.
        if let Some(wait) = last_claim.and_then(|at| CLAIM_GAP.checked_sub(at.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        last_claim = Some(Instant::now());
        if !claim_and_send(&shared, &outcomes).await {
            // The database failed: wait a poll before trying again.
            tokio::time::sleep(shared.config.poll).await;
        }
        tokio::select! {
            _ = stopped.changed() => break,
            _ = committed.notified() => {}
            _ = shared.freed.notified() => {}
            _ = tokio::time::sleep(shared.config.poll) => {}
        }
    }
    // Sends in flight finish within the timeout; then every slot is back.
    let all = shared.config.concurrency.max(1) as u32;
    let _ = tokio::time::timeout(shared.config.timeout + Duration::from_secs(1), shared.slots.acquire_many(all)).await;
    drop(outcomes);
    let _ = recorder.await;
    if let Err(error) = shared.store.release_deliveries(&shared.owner).await {
        tracing::warn!(%error, "could not give back delivery leases; they run out on their own");
    }
}

/// Claims due deliveries while there are free slots and sends each on its
/// own task. Returns false when the database failed.
async fn claim_and_send(shared: &Arc<Shared>, outcomes: &mpsc::UnboundedSender<DeliveryOutcome>) -> bool {
    loop {
        let free = shared.slots.available_permits().min(CLAIM_BATCH);
        if free == 0 {
            return true;
        }
        let busy: Vec<Uuid> = {
            let in_flight = shared.in_flight.lock().expect("in-flight map");
            in_flight.iter().filter(|(_, n)| **n >= shared.config.per_subscription).map(|(id, _)| *id).collect()
        };
        // Long enough for the send and its recording; a process that dies
        // leaves its deliveries to others this long.
        let lease = shared.config.timeout * 2 + Duration::from_secs(1);
        let claimed = match shared.store.claim_deliveries(&shared.owner, lease, free as u32, &busy).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed");
                return false;
            }
        };
        let count = claimed.len();
        for delivery in claimed {
            let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                // Cannot happen (no more were claimed than slots were free);
                // the lease runs out and the delivery is claimed again.
                break;
            };
            *shared.in_flight.lock().expect("in-flight map").entry(delivery.subscription_id).or_default() += 1;
            let (shared, outcomes) = (shared.clone(), outcomes.clone());
            tokio::spawn(async move {
                let subscription = delivery.subscription_id;
                let outcome = attempt(&shared, delivery).await;
                let _ = outcomes.send(outcome);
                let mut in_flight = shared.in_flight.lock().expect("in-flight map");
                if let Some(n) = in_flight.get_mut(&subscription) {
                    *n -= 1;
                    if *n == 0 {
                        in_flight.remove(&subscription);
                    }
                }
                drop(in_flight);
                drop(slot);
                shared.freed.notify_one();
            });
        }
        if count < free {
            return true;
        }
    }
}

/// One attempt of one delivery.
async fn attempt(shared: &Shared, delivery: Claimed) -> DeliveryOutcome {
    let attempted_at = now_micros();
    let started = Instant::now();
    let answer = send(shared, &delivery, attempted_at.timestamp()).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status_code, error) = match answer {
        Ok(status) => (Some(status), None),
        Err(error) => (None, Some(error)),
    };
    let result = match status_code {
        Some(200..=299) => DeliveryResult::Delivered,
        Some(410) => DeliveryResult::Gone,
        _ => {
            let first_try = delivery.first_try_at.unwrap_or(attempted_at);
            let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
            match shared.config.retry.next_attempt(delivery.attempts + 1, first_try, attempted_at, jitter) {
                Some(at) => DeliveryResult::Retry(at),
                None => DeliveryResult::GiveUp,
            }
        }
    };
    let outcome = match result {
        DeliveryResult::Delivered => "delivered",
        DeliveryResult::Retry(_) => "retry",
        DeliveryResult::GiveUp => "failed",
        DeliveryResult::Gone => "gone",
    };
    metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(1);
    if let (DeliveryResult::Delivered, Some(created)) = (result, delivery.event_created_at) {
        let lag = (now_micros() - created).to_std().unwrap_or_default();
        metrics::histogram!("webhook_delivery_lag_seconds").record(lag.as_secs_f64());
    }
    DeliveryOutcome {
        subscription_id: delivery.subscription_id,
        event_id: delivery.event_id,
        attempted_at,
        status_code,
        duration_ms,
        error,
        result,
    }
}

/// POSTs the delivery; the receiver's status code, or why none came.
async fn send(shared: &Shared, delivery: &Claimed, timestamp: i64) -> Result<u16, String> {
    let url = url::Url::parse(&delivery.url).map_err(|_| "the target URL does not parse".to_owned())?;
    // A literal address does not go through the resolver: checked here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal.filter(|ip| !shared.config.allow_private && !is_public(*ip)) {
        return Err(format!("refused: {ip} is not a public address"));
    }
    let id = delivery.event_id.to_string();
    let mut request = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &delivery.secret {
        let signed = Signatures::sign(secret, &id, timestamp, delivery.body.as_bytes());
        request = request
            .header("event-signature", signed.event_signature)
            .header("webhook-signature", signed.webhook_signature);
    }
    let mut response = request.body(delivery.body.clone()).send().await.map_err(describe)?;
    let status = response.status().as_u16();
    // Read a little of the answer so the connection can be used again.
    let mut read = 0;
    while read < MAX_ANSWER {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
    Ok(status)
}

/// A failed send, said without the request (which carries personal data).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        let mut cause = String::from("could not connect");
        while let Some(inner) = source {
            cause = format!("could not connect: {inner}");
            source = inner.source();
        }
        cause
    } else {
        "the request failed".to_owned()
    }
}

/// Records attempts in batches, as they come.
async fn record(shared: Arc<Shared>, mut recorded: mpsc::UnboundedReceiver<DeliveryOutcome>) {
    while let Some(first) = recorded.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match recorded.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        // Should the database stay unreachable, the attempts go unrecorded:
        // their leases run out and the deliveries are sent again (at least
        // once, never lost).
        let mut wait = Duration::from_millis(50);
        for _ in 0..10 {
            match shared.store.finish_deliveries(&shared.owner, &batch).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, attempts = batch.len(), "recording webhook attempts failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The queue-depth gauge, and pruning of old events.
async fn upkeep(shared: Arc<Shared>) {
    let mut last_prune: Option<Instant> = None;
    loop {
        if let Ok(depth) = shared.store.pending_deliveries().await {
            metrics::gauge!("webhook_queue_depth").set(depth as f64);
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let retention = chrono::TimeDelta::from_std(shared.config.retention).unwrap_or(chrono::TimeDelta::MAX);
            let Some(before) = now_micros().checked_sub_signed(retention) else { continue };
            loop {
                match shared.store.prune_events(before).await {
                    Ok(pruned) if pruned >= 10_000 => continue,
                    Ok(pruned) => {
                        if pruned > 0 {
                            tracing::info!(pruned, "pruned events past their retention");
                        }
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pruning old events failed");
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
