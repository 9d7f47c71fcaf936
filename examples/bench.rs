//! The benchmark's load generator (run by `scripts/bench.sh`).
//!
//! `seed`: fills a database through the store's import path with varied,
//! realistic customers (deterministic: customer `c{i}` of account A is the
//! same on every run).
//! `load`: drives each scenario for a fixed time with N concurrent workers
//! against a running server on 127.0.0.1, then the same queries through the
//! store directly (the store ceiling), and prints one table plus a JSON
//! report with every figure and the service ÷ ceiling ratios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use customers::domain::customer::CustomerInput;
use customers::domain::ids::AccountId;
use customers::domain::listing::ListParams;
use customers::store::{self, ImportRow, NewCustomer, OnRejected, PoolOptions, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const FIRST: &[&str] = &[
    "Ada",
    "Adam",
    "Agnes",
    "Alexander",
    "Alice",
    "Amalie",
    "Anders",
    "Andrea",
    "Anna",
    "Arne",
    "Astrid",
    "Benjamin",
    "Birgitte",
    "Bjørn",
    "Camilla",
    "Carl",
    "Caroline",
    "Christian",
    "Dag",
    "Daniel",
    "David",
    "Dina",
    "Eirik",
    "Elias",
    "Elin",
    "Elisabeth",
    "Emil",
    "Emma",
    "Erik",
    "Eva",
    "Filip",
    "Frida",
    "Frode",
    "Geir",
    "Grete",
    "Gunnar",
    "Hanna",
    "Hans",
    "Helene",
    "Henrik",
    "Ida",
    "Ingrid",
    "Isak",
    "Jakob",
    "Jan",
    "Johanne",
    "Jonas",
    "Julie",
    "Karen",
    "Kari",
    "Karl",
    "Kristian",
    "Lars",
    "Leah",
    "Lena",
    "Liv",
    "Lucas",
    "Magnus",
    "Maja",
    "Marius",
    "Markus",
    "Marte",
    "Martin",
    "Mathias",
    "Mia",
    "Mikkel",
    "Nils",
    "Nora",
    "Odd",
    "Ola",
    "Olav",
    "Oliver",
    "Oskar",
    "Per",
    "Petter",
    "Ragnhild",
    "Rasmus",
    "Rita",
    "Sander",
    "Sara",
    "Siri",
    "Sofie",
    "Solveig",
    "Stian",
    "Svein",
    "Thea",
    "Thomas",
    "Tobias",
    "Tone",
    "Tor",
    "Trine",
    "Turid",
    "Vilde",
    "William",
    "Åse",
    "Øystein",
];
const LAST: &[&str] = &[
    "Aas",
    "Andersen",
    "Bakke",
    "Berg",
    "Berge",
    "Bråthen",
    "Dahl",
    "Eide",
    "Eriksen",
    "Evensen",
    "Fjeld",
    "Gundersen",
    "Haugen",
    "Halvorsen",
    "Hansen",
    "Holm",
    "Iversen",
    "Jacobsen",
    "Jensen",
    "Johannessen",
    "Johansen",
    "Karlsen",
    "Kristiansen",
    "Larsen",
    "Lie",
    "Lund",
    "Lunde",
    "Martinsen",
    "Moe",
    "Myhre",
    "Nielsen",
    "Nilsen",
    "Nguyen",
    "Olsen",
    "Paulsen",
    "Pedersen",
    "Rasmussen",
    "Sandvik",
    "Solberg",
    "Strand",
    "Sæther",
    "Thorsen",
    "Tveit",
    "Vik",
    "Wang",
    "Østby",
];
const DOMAINS: &[&str] = &["example.com", "mail.no", "post.se", "inbox.dk", "firma.no", "web.de"];

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fill a database: `customers` in the main account, plus `accounts`
    /// accounts of `per_account` each, plus a 10,000-customer account for the
    /// search-growth comparison.
    Seed {
        #[arg(long)]
        database: String,
        /// Customers of the main account (scripts/bench.sh imports them
        /// with `customers import` instead, to time it).
        #[arg(long, default_value_t = 0)]
        customers: u64,
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        #[arg(long, default_value_t = 1000)]
        per_account: u64,
    },
    /// Print the main account's customers as NDJSON (the API's create
    /// shape), for timing `customers import` on a file.
    Ndjson {
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
    },
    /// Drive the scenarios and write the report.
    Load {
        #[arg(long)]
        database: String,
        #[arg(long)]
        base: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        small_token: String,
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Each read scenario's time is split into this many rounds of
        /// HTTP ceiling, service and store ceiling back to back.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// The server's pid, to read its memory after the load.
        #[arg(long)]
        server_pid: u32,
        /// Figures measured by the script, merged into the report.
        #[arg(long, default_value = "{}")]
        extra: String,
        #[arg(long, default_value = "target/bench/report.json")]
        report: String,
        /// Run only the scenarios whose name contains one of these
        /// (comma-separated), for a quick A/B; the others report 0 req/s.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Webhook figures: writes with and without a subscription, delivery
    /// lag at 500 writes/s, the rate a backlog drains at, bytes per event.
    /// The server must allow private targets (the receiver is on loopback).
    Webhooks {
        #[arg(long)]
        database: String,
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Deliveries in the backlog whose draining is timed.
        #[arg(long, default_value_t = 20_000)]
        backlog: u64,
        #[arg(long, default_value = "target/bench/webhooks.json")]
        report: String,
    },
    /// Mixed traffic for a long, bounded time: counts answers by status and
    /// samples the server's memory every `sample_every` seconds.
    Soak {
        #[arg(long)]
        base: String,
        #[arg(long)]
        token: String,
        /// Customers `c0…c{N-1}` seeded in the main account.
        #[arg(long)]
        customers: u64,
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long)]
        server_pid: u32,
        #[arg(long, default_value_t = 10)]
        sample_every: u64,
        #[arg(long, default_value = "target/bench/soak.json")]
        report: String,
    },
}

pub const MAIN: &str = "P00000001";
pub const SMALL: &str = "P00000002";

fn customer(rng: &mut StdRng, index: u64) -> Value {
    let first = FIRST[rng.gen_range(0..FIRST.len())];
    let last = LAST[rng.gen_range(0..LAST.len())];
    let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
    let email = format!(
        "{}.{}{}@{domain}",
        first.to_lowercase().replace(['ø', 'å', 'æ'], "o"),
        last.to_lowercase().replace(['ø', 'å', 'æ'], "o"),
        index
    );
    let country = ["+47", "+46", "+45"][rng.gen_range(0..3)];
    let tier = ["gold", "silver", "bronze"][rng.gen_range(0..3)];
    json!({
        "customer_id": format!("c{index}"),
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone_number": format!("{country}{}", 40_000_000 + index),
        "metadata": {"source": "bench", "segment": rng.gen_range(0..20), "note": format!("seeded {index}")},
        "attributes": {"tier": tier},
    })
}

async fn open(url: &str) -> Arc<dyn Store> {
    // The server's default pool, so the store ceiling is like for like.
    let pool = PoolOptions { max_connections: store::default_max_connections(url), ..PoolOptions::default() };
    let store = store::open(url, &pool).await.expect("open database");
    store.migrate().await.expect("migrate");
    store
}

async fn seed_account(store: &dyn Store, account: &str, count: u64) -> f64 {
    let account = AccountId::parse(account).unwrap();
    let mut rng = account_rng(account.as_str());
    let started = Instant::now();
    let mut import = store.batch_import(&account, "bench", OnRejected::KeepTheRest);
    let mut index = 0;
    while index < count {
        // As many batches a call as the store writes at once.
        let mut batches = Vec::new();
        while batches.len() < import.batches_at_once() && index < count {
            let rows: Vec<ImportRow> = (index..(index + 5000).min(count))
                .map(|i| {
                    let input: CustomerInput = serde_json::from_value(customer(&mut rng, i)).unwrap();
                    let (customer_id, data) = input.into_new(chrono::Utc::now()).unwrap();
                    ImportRow::new(i + 1, customer_id.unwrap(), data)
                })
                .collect();
            index += rows.len() as u64;
            batches.push(rows);
        }
        import.write(batches).await.expect("import");
    }
    import.commit().await.expect("import");
    count as f64 / started.elapsed().as_secs_f64()
}

/// Each account's customers come from its own seed (its number), so a file
/// from [`ndjson`] holds what [`seed_account`] would write.
fn account_rng(account: &str) -> StdRng {
    StdRng::seed_from_u64(account[1..].parse::<u64>().unwrap())
}

/// The same customers [`seed_account`] makes for the main account.
fn ndjson(count: u64) {
    use std::io::Write;
    let mut rng = account_rng(MAIN);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        writeln!(out, "{}", customer(&mut rng, i)).expect("write");
    }
    out.flush().expect("flush");
}

async fn seed(database: &str, customers: u64, accounts: u64, per_account: u64) {
    let store = open(database).await;
    let rate = seed_account(&*store, MAIN, customers).await;
    if customers > 0 {
        eprintln!("seeded {customers} customers in {MAIN} at {rate:.0}/s");
    }
    seed_account(&*store, SMALL, 10_000).await;
    let started = Instant::now();
    for a in 0..accounts {
        seed_account(&*store, &format!("P{:08}", 10 + a), per_account).await;
    }
    eprintln!("seeded {accounts} accounts × {per_account} in {:.1} s", started.elapsed().as_secs_f64());
    store.analyze().await.expect("analyze");
    let figures = if customers > 0 { json!({"seed_per_second": rate.round()}) } else { json!({}) };
    println!("{figures}");
    store.close().await;
}

/// What one scenario measured.
#[derive(Default, Clone)]
struct Figures {
    name: String,
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// Adds another run of the same scenario.
    fn merge(&mut self, more: Figures) {
        self.name = more.name;
        self.requests += more.requests;
        self.errors += more.errors;
        self.seconds += more.seconds;
        self.latencies_us.extend(more.latencies_us);
        self.latencies_us.sort_unstable();
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "requests": self.requests, "errors": self.errors,
            "rps": self.rps().round(), "p50_ms": self.percentile_ms(0.5), "p99_ms": self.percentile_ms(0.99)})
    }
}

/// `load --only`: the scenario-name fragments to run (empty: all). A global
/// so that every `drive` call site stays as it is.
static ONLY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Runs `op` from `concurrency` workers for `seconds`; `op` returns whether
/// the request succeeded.
async fn drive<F, Fut>(name: &str, concurrency: usize, seconds: u64, op: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    if !selected(name) {
        return Figures { name: name.to_owned(), seconds: 1.0, ..Default::default() };
    }
    measure(name, concurrency, Duration::from_secs(seconds), op).await
}

/// Whether `load --only` lets the scenario `name` run.
fn selected(name: &str) -> bool {
    let only = ONLY.get().map(Vec::as_slice).unwrap_or_default();
    only.is_empty() || only.iter().any(|fragment| name.contains(fragment.as_str()))
}

/// [`drive`] without the `--only` check.
async fn measure<F, Fut>(name: &str, concurrency: usize, time: Duration, op: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + time;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut n = w as u64 * 1_000_003;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !op(n).await {
                        errors += 1;
                    }
                    latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut figures = Figures { name: name.to_owned(), ..Default::default() };
    for worker in workers {
        let (latencies, errors) = worker.await.unwrap();
        figures.requests += latencies.len() as u64;
        figures.errors += errors;
        figures.latencies_us.extend(latencies);
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.latencies_us.sort_unstable();
    eprintln!(
        "{:<28} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        name,
        figures.rps(),
        figures.percentile_ms(0.5),
        figures.percentile_ms(0.99),
        figures.errors
    );
    figures
}

const CEILING: &str = "http ceiling (/health/live)";

/// A list scenario's query string for the `n`-th request.
type ListQuery = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// The read scenarios measured against their ceilings, and what they gave.
struct Rounds {
    rounds: u32,
    round: Duration,
    concurrency: usize,
    /// Every round's HTTP ceiling, merged.
    ceiling: Figures,
    service: Vec<Figures>,
    store: Vec<Figures>,
    ratios: serde_json::Map<String, Value>,
}

impl Rounds {
    /// Runs the service for one round unmeasured (a warm-up: the store
    /// ceiling of a round meets the caches the service's requests just
    /// filled, and without it the first round's service met them cold), then
    /// the HTTP ceiling, the service and the store ceiling back to back,
    /// `rounds` times, and keeps the figures and the median over the rounds
    /// of service ÷ min(HTTP ceiling, store ceiling).
    async fn paired<C, CF, S, SF, T, TF>(&mut self, name: &str, ceiling_op: C, service: S, store: T)
    where
        C: Fn(u64) -> CF + Send + Sync + Clone + 'static,
        CF: std::future::Future<Output = bool> + Send,
        S: Fn(u64) -> SF + Send + Sync + Clone + 'static,
        SF: std::future::Future<Output = bool> + Send,
        T: Fn(u64) -> TF + Send + Sync + Clone + 'static,
        TF: std::future::Future<Output = bool> + Send,
    {
        let store_name = format!("store: {name}");
        let (mut served, mut stored, mut ratios) = (Figures::default(), Figures::default(), Vec::new());
        measure(&format!("warm-up: {name}"), self.concurrency, self.round, service.clone()).await;
        for _ in 0..self.rounds.max(1) {
            let http = measure(CEILING, self.concurrency, self.round, ceiling_op.clone()).await;
            let service = measure(name, self.concurrency, self.round, service.clone()).await;
            let store = measure(&store_name, self.concurrency, self.round, store.clone()).await;
            ratios.push(service.rps() / http.rps().min(store.rps()));
            self.ceiling.merge(http);
            served.merge(service);
            stored.merge(store);
        }
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        self.service.push(served);
        self.store.push(stored);
        self.ratios.insert(name.to_owned(), json!((median * 100.0).round() / 100.0));
    }
}

/// A pseudo-random number from a worker's counter (cheap, no shared RNG).
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

fn prefix(n: u64) -> String {
    let names: Vec<&str> = FIRST.iter().chain(LAST.iter()).copied().collect();
    names[(mix(n) % names.len() as u64) as usize].chars().take(3).collect::<String>().to_lowercase()
}

fn list_params(query: &str) -> ListParams {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    ListParams::parse(&pairs).unwrap()
}

/// Sends a request and reads its whole answer, as a client does, so the
/// figures include receiving the body (reading it lowered GET from 6,167 to
/// 4,924 req/s on PostgreSQL: the unread bodies were not being counted).
async fn succeeded(request: reqwest::RequestBuilder) -> bool {
    match request.send().await {
        Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
        _ => false,
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[allow(clippy::too_many_arguments)]
async fn load(
    database: String,
    base: String,
    token: String,
    small_token: String,
    customers: u64,
    seconds: u64,
    concurrency: usize,
    rounds: u32,
    server_pid: u32,
    extra: String,
    report: String,
) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let store = open(&database).await;
    let main = AccountId::parse(MAIN).unwrap();
    let users = format!("{base}/v1/accounts/{MAIN}/customers/users");
    let small_users = format!("{base}/v1/accounts/{SMALL}/customers/users");

    // Cursor ids for "next page" requests: a sample of real ids.
    let mut ids = Vec::new();
    let mut params = list_params("limit=100");
    for _ in 0..20 {
        let page = store.list_customers(&main, &params).await.unwrap();
        ids.extend(page.customers.iter().map(|c| c.id));
        params.starting_after = page.customers.last().map(|c| c.id);
    }
    let ids = Arc::new(ids);
    let n = customers.max(1);

    let get = |url: String, token: String, http: reqwest::Client| async move {
        succeeded(http.get(url).bearer_auth(token)).await
    };
    // Each read scenario runs in rounds; in each, the HTTP ceiling, the
    // service and the store ceiling (the same work through the Store trait,
    // no HTTP) run back to back for a share of the time, so that all three
    // meet the machine in the same state: on a shared VM its speed drifts by
    // 20-40 % within minutes, and a ceiling measured once, minutes before a
    // scenario, moved the ratios as much.
    let round = Duration::from_secs_f64(seconds as f64 / rounds.max(1) as f64);
    let health = format!("{base}/health/live");
    let ceiling_op = {
        let (http, token) = (http.clone(), token.clone());
        move |_| get(health.clone(), token.clone(), http.clone())
    };
    let mut reads = Rounds {
        rounds,
        round,
        concurrency,
        ceiling: Figures::default(),
        service: Vec::new(),
        store: Vec::new(),
        ratios: serde_json::Map::new(),
    };
    let small = AccountId::parse(SMALL).unwrap();
    let lists: [(&str, &AccountId, &str, &str, ListQuery); 6] = [
        ("list first page", &main, &users, &token, Arc::new(|_| "limit=10".to_owned())),
        ("list next page", &main, &users, &token, {
            let ids = ids.clone();
            Arc::new(move |i| format!("limit=10&starting_after={}", ids[(mix(i) % ids.len() as u64) as usize]))
        }),
        ("search (1M account)", &main, &users, &token, Arc::new(|i| format!("search={}", prefix(i)))),
        ("search (10k account)", &small, &small_users, &small_token, Arc::new(|i| format!("search={}", prefix(i)))),
        ("email prefix", &main, &users, &token, Arc::new(|i| format!("email={}", prefix(i)))),
        ("search total=true", &main, &users, &token, Arc::new(|i| format!("search={}&total=true", prefix(i)))),
    ];
    if selected("get customer") {
        let service = {
            let (http, token, users) = (http.clone(), token.clone(), users.clone());
            move |i| get(format!("{users}/c{}", mix(i) % n), token.clone(), http.clone())
        };
        let store_op = {
            let (store, account) = (store.clone(), main.clone());
            move |i| {
                let (store, account) = (store.clone(), account.clone());
                async move { store.get_customer(&account, &format!("c{}", mix(i) % n)).await.is_ok() }
            }
        };
        reads.paired("get customer", ceiling_op.clone(), service, store_op).await;
    }
    for (name, account, users, token, query) in lists.into_iter().filter(|list| selected(list.0)) {
        let service = {
            let (http, token, users, query) = (http.clone(), token.to_owned(), users.to_owned(), query.clone());
            move |i| get(format!("{users}?{}", query(i)), token.clone(), http.clone())
        };
        let store_op = {
            let (store, account) = (store.clone(), account.clone());
            move |i| {
                let (store, account, query) = (store.clone(), account.clone(), query.clone());
                async move { store.list_customers(&account, &list_params(&query(i))).await.is_ok() }
            }
        };
        reads.paired(name, ceiling_op.clone(), service, store_op).await;
    }
    // Point reads on three quarters of the connections while counts run on
    // the rest: a count must not hold the GETs back (SQLite runs counts on
    // blocking threads, one per core, for this).
    let beside = {
        let counters = (concurrency / 4).max(1);
        let (counts_http, counts_token, counts_users) = (http.clone(), token.clone(), users.clone());
        let (gets_http, gets_token, gets_users) = (http.clone(), token.clone(), users.clone());
        let (counts, gets) = tokio::join!(
            drive("total=true beside get", counters, seconds, move |i| get(
                format!("{counts_users}?search={}&total=true", prefix(i)),
                counts_token.clone(),
                counts_http.clone()
            )),
            drive("get beside total=true", concurrency.saturating_sub(counters).max(1), seconds, move |i| get(
                format!("{gets_users}/c{}", mix(i) % n),
                gets_token.clone(),
                gets_http.clone()
            )),
        );
        [gets, counts]
    };

    // Writes last, so every read scenario (service and ceiling) sees the same data.
    // Creates run in rounds like the reads: their ceiling is the disk's sync
    // rate, which swung from 334 to 1,032 creates/s between two 3-second
    // rounds, so service and store creates are timed back to back. Every
    // email is new, also when a run is repeated on the same database (a 409
    // would not write).
    if selected("create") {
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let sequence = Arc::new(AtomicU64::new(0));
        let email = move |who: &str| format!("{who}{run}-{}@bench.io", sequence.fetch_add(1, Ordering::Relaxed));
        let service = {
            let (http, token, users, email) = (http.clone(), token.clone(), users.clone(), email.clone());
            move |_| {
                let body = json!({"first_name": "Bench", "last_name": "Create", "email": email("create")});
                succeeded(http.post(users.clone()).bearer_auth(token.clone()).json(&body))
            }
        };
        let store_op = {
            let (store, account) = (store.clone(), main.clone());
            move |_| {
                let body = json!({"first_name": "Bench", "last_name": "Store", "email": email("store")});
                let (store, account) = (store.clone(), account.clone());
                async move {
                    let input: CustomerInput = serde_json::from_value(body).unwrap();
                    let (customer_id, data) = input.into_new(chrono::Utc::now()).unwrap();
                    store
                        .create_customer(
                            &account,
                            NewCustomer { customer_id, data, secrets: Default::default() },
                            customers::domain::events::Actor::named("bench"),
                            None,
                        )
                        .await
                        .is_ok()
                }
            }
        };
        reads.paired("create", ceiling_op.clone(), service, store_op).await;
    }
    let Rounds { mut ceiling, service: mut http_figures, store: store_figures, ratios, .. } = reads;
    ceiling.name = CEILING.to_owned();
    http_figures.insert(0, ceiling);
    // Reads first in the table, as they ran.
    let created = http_figures.iter().position(|f| f.name == "create").map(|at| http_figures.remove(at));
    http_figures.extend(beside);
    http_figures.extend(created);
    {
        let (http, token, users) = (http.clone(), token.clone(), users.clone());
        http_figures.push(
            drive("update (PUT metadata)", concurrency, seconds, move |i| {
                let (http, token, users) = (http.clone(), token.clone(), users.clone());
                async move {
                    let body = json!({"metadata": {format!("k{}", i % 7): i}});
                    let url = format!("{users}/c{}", mix(i) % n);
                    succeeded(http.put(url).bearer_auth(token).json(&body)).await
                }
            })
            .await,
        );
    }
    let rss_after = rss_kib(server_pid);

    let find = |list: &[Figures], name: &str| list.iter().find(|f| f.name == name).cloned().unwrap_or_default();
    let search_growth = find(&http_figures, "search (1M account)").percentile_ms(0.99)
        / find(&http_figures, "search (10k account)").percentile_ms(0.99).max(0.001);
    let total_vs_store = find(&http_figures, "search total=true").percentile_ms(0.5)
        / find(&store_figures, "store: search total=true").percentile_ms(0.5).max(0.001);

    let mut doc = json!({
        "backend": store.backend(),
        "customers": customers,
        "seconds_per_scenario": seconds,
        "concurrency": concurrency,
        "rss_after_load_kib": rss_after,
        "service": http_figures.iter().map(Figures::json).collect::<Vec<_>>(),
        "store": store_figures.iter().map(Figures::json).collect::<Vec<_>>(),
        "ratio_service_over_min_ceiling": ratios,
        "search_p99_growth_1m_over_10k": (search_growth * 100.0).round() / 100.0,
        "total_p50_over_store_p50": (total_vs_store * 100.0).round() / 100.0,
    });
    if let (Some(obj), Ok(Value::Object(more))) = (doc.as_object_mut(), serde_json::from_str::<Value>(&extra)) {
        obj.extend(more);
    }
    if let Some(dir) = std::path::Path::new(&report).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&report, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    store.close().await;
}

/// One soak worker's request: reads, searches, creates, updates and deletes
/// in proportions like a busy integration's (4:1:1:1:1:1:1).
async fn soak_request(http: &reqwest::Client, users: &str, token: &str, customers: u64, worker: usize, n: u64) -> u16 {
    let pick = mix(n);
    let existing = format!("{users}/c{}", pick % customers.max(1));
    let own = format!("soak-{worker}-{n}");
    let request = match pick % 10 {
        0..=3 => http.get(existing),
        4 => http.get(format!("{users}?limit=10")),
        5 => http.get(format!("{users}?search={}", prefix(n))),
        6 => http.get(format!("{users}?email={}", prefix(n + 1))),
        7 => http
            .post(users)
            .json(&json!({"customer_id": own, "first_name": "Soak", "email": format!("{own}@soak.example")})),
        8 => http.put(existing).json(&json!({"metadata": {format!("k{}", n % 50): n}})),
        _ => http.delete(format!("{users}/soak-{worker}-{}", n.saturating_sub(3))),
    };
    match request.bearer_auth(token).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

#[allow(clippy::too_many_arguments)]
async fn soak(
    base: String,
    token: String,
    customers: u64,
    seconds: u64,
    concurrency: usize,
    server_pid: u32,
    sample_every: u64,
    report: String,
) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let users = format!("{base}/v1/accounts/{MAIN}/customers/users");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, users, token) = (http.clone(), users.clone(), token.clone());
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
                let mut n = worker as u64 * 1_000_003;
                while Instant::now() < deadline {
                    *statuses.entry(soak_request(&http, &users, &token, customers, worker, n).await).or_default() += 1;
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let elapsed = started.elapsed().as_secs();
        let rss = rss_kib(server_pid).unwrap_or(0);
        eprintln!("{elapsed:>5} s  RSS {:>7.1} MiB", rss as f64 / 1024.0);
        samples.push(json!({"second": elapsed, "rss_kib": rss}));
        tokio::time::sleep(Duration::from_secs(sample_every).min(deadline - Instant::now())).await;
    }
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for worker in workers {
        for (status, count) in worker.await.unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    samples.push(json!({"second": started.elapsed().as_secs(), "rss_kib": rss_kib(server_pid).unwrap_or(0)}));
    let total: u64 = statuses.values().sum();
    let server_errors: u64 = statuses.iter().filter(|(s, _)| **s >= 500 || **s == 0).map(|(_, c)| c).sum();
    // Flat: the last sample within 10 % (or 4 MiB) of the first sample after warm-up (a fifth of the run).
    let rss_at = |i: usize| samples[i]["rss_kib"].as_u64().unwrap_or(0);
    let warm = rss_at(samples.len() / 5);
    let last = rss_at(samples.len() - 1);
    let flat = last <= warm + (warm / 10).max(4096);
    let doc = json!({
        "seconds": seconds, "concurrency": concurrency, "requests": total,
        "rps": (total as f64 / started.elapsed().as_secs_f64()).round(),
        "statuses": statuses.iter().map(|(s, c)| (s.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "server_errors_or_failed_connections": server_errors,
        "rss_samples": samples, "rss_warm_kib": warm, "rss_last_kib": last, "rss_flat": flat,
    });
    std::fs::write(&report, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    if server_errors > 0 || !flat {
        std::process::exit(1);
    }
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Seed { database, customers, accounts, per_account } => {
            seed(&database, customers, accounts, per_account).await
        }
        Command::Ndjson { customers } => ndjson(customers),
        Command::Load {
            database,
            base,
            token,
            small_token,
            customers,
            seconds,
            concurrency,
            rounds,
            server_pid,
            extra,
            report,
            only,
        } => {
            ONLY.set(only).expect("set once");
            load(database, base, token, small_token, customers, seconds, concurrency, rounds, server_pid, extra, report)
                .await
        }
        Command::Webhooks { database, base, seconds, concurrency, backlog, report } => {
            webhooks::run(database, base, seconds, concurrency, backlog, report).await
        }
        Command::Soak { base, token, customers, seconds, concurrency, server_pid, sample_every, report } => {
            soak(base, token, customers, seconds, concurrency, server_pid, sample_every, report).await
        }
    }
}

/// `bench webhooks`: what the event log and webhook delivery cost and give
/// (issue targets: writes with a subscription ≥ 0.8 of writes without,
/// ≥ 2,000 deliveries/s per process, p99 lag ≤ 250 ms at 500 writes/s).
mod webhooks {
    use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use customers::auth::Keys;
    use customers::domain::ids::{AccountId, Scope};
    use futures::StreamExt;
    use serde_json::{json, Value};

    use super::{measure, succeeded, Figures};

    /// Writes without a subscription, writes with one, the lag run, the backlog.
    const PLAIN: &str = "P00000901";
    const SUBSCRIBED: &str = "P00000902";
    const BACKLOG: &str = "P00000903";

    /// A receiver in this process: it counts what it is sent, answers
    /// `status`, and keeps each delivery's lag (receipt − the event's
    /// `created_at`) for events whose `customer_id` starts with "lag-".
    struct Receiver {
        url: String,
        status: Arc<AtomicU16>,
        received: Arc<AtomicU64>,
        ok: Arc<AtomicU64>,
        lags_us: Arc<Mutex<Vec<u64>>>,
    }

    async fn receiver() -> Receiver {
        let status = Arc::new(AtomicU16::new(200));
        let (received, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let lags_us = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let (status, received, ok, lags_us) = (status.clone(), received.clone(), ok.clone(), lags_us.clone());
            move |body: axum::body::Bytes| {
                let (status, received, ok, lags_us) = (status.clone(), received.clone(), ok.clone(), lags_us.clone());
                async move {
                    received.fetch_add(1, Ordering::Relaxed);
                    let code = status.load(Ordering::Relaxed);
                    if code == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                        if event["customer_id"].as_str().is_some_and(|c| c.starts_with("lag-")) {
                            let created: Option<chrono::DateTime<chrono::Utc>> =
                                event["created_at"].as_str().and_then(|t| t.parse().ok());
                            if let Some(created) = created {
                                let lag = (chrono::Utc::now() - created).num_microseconds().unwrap_or(0).max(0);
                                lags_us.lock().unwrap().push(lag as u64);
                            }
                        }
                    }
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
        Receiver { url, status, received, ok, lags_us }
    }

    async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> Option<Duration> {
        let started = Instant::now();
        while !done() {
            if started.elapsed() > within {
                eprintln!("{what}: not within {within:?}");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(started.elapsed())
    }

    fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
        let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
        sorted_us.get(i).map(|us| *us as f64 / 1000.0)
    }

    /// Rows of the backlog account's deliveries made due at once, through
    /// the database (the API has no bulk redeliver): `next_attempt_at` back
    /// to their creation.
    async fn make_due(database: &str) -> u64 {
        let sql = format!("UPDATE hook_deliveries SET next_attempt_at = created_at WHERE account_id = '{BACKLOG}'");
        if database.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(database).await.unwrap();
            sqlx::query(&sql).execute(&pool).await.unwrap().rows_affected()
        } else {
            let pool = sqlx::PgPool::connect(database).await.unwrap();
            sqlx::query(&sql).execute(&pool).await.unwrap().rows_affected()
        }
    }

    /// The event log's size on disk per event (table and indexes).
    async fn bytes_per_event(database: &str) -> Value {
        if database.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(database).await.unwrap();
            let size: Result<(i64, i64), _> = sqlx::query_as(
                "SELECT (SELECT sum(pgsize) FROM dbstat WHERE name IN ('events', 'events_id_key', \
                 'events_customer_idx', 'events_created_idx')), (SELECT count(*) FROM events)",
            )
            .fetch_one(&pool)
            .await;
            match size {
                Ok((bytes, count)) => json!({"events": count, "bytes_per_event": bytes / count.max(1)}),
                Err(error) => json!({"error": error.to_string()}),
            }
        } else {
            let pool = sqlx::PgPool::connect(database).await.unwrap();
            let (bytes, count): (i64, i64) =
                sqlx::query_as("SELECT pg_total_relation_size('events'), (SELECT count(*) FROM events)")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            json!({"events": count, "bytes_per_event": bytes / count.max(1)})
        }
    }

    pub async fn run(database: String, base: String, seconds: u64, concurrency: usize, backlog: u64, report: String) {
        let store = super::open(&database).await;
        let keys = Keys::load_or_create(&*store, "customers", Duration::from_secs(7200)).await.unwrap();
        let token = |account: &str| {
            keys.issue(
                &AccountId::parse(account).unwrap(),
                "bench",
                &[Scope::Admin, Scope::HooksAdmin],
                Duration::from_secs(7200),
            )
            .unwrap()
        };
        let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
        let target = receiver().await;
        for account in [SUBSCRIBED, BACKLOG] {
            let url = format!("{base}/v1/accounts/{account}/hooks/subscriptions");
            let body = json!({"config": {"url": target.url, "secret": "bench-secret-0123456789"}, "events": ["*"]});
            let reply = http.post(url).bearer_auth(token(account)).json(&body).send().await.unwrap();
            assert_eq!(reply.status(), 201, "subscribing: {}", reply.text().await.unwrap_or_default());
        }
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let sequence = Arc::new(AtomicU64::new(0));

        // Creates and updates into an account without and one with a
        // subscription, in alternating rounds (the machine drifts). Updates
        // go to 200 customers made first in each account.
        for account in [PLAIN, SUBSCRIBED] {
            let account = AccountId::parse(account).unwrap();
            for i in 0..200 {
                let data = serde_json::from_value(json!({"first_name": "Updated"})).unwrap();
                let new = customers::store::NewCustomer {
                    customer_id: Some(format!("u{run}-{i}")),
                    data,
                    secrets: Default::default(),
                };
                store
                    .create_customer(&account, new, customers::domain::events::Actor::named("bench"), None)
                    .await
                    .unwrap();
            }
        }
        let mut figures: Vec<Figures> = Vec::new();
        let rounds = 4;
        let round = Duration::from_secs_f64(seconds as f64 / rounds as f64);
        for kind in ["create", "update (PUT metadata)"] {
            let mut plain = Figures::default();
            let mut subscribed = Figures::default();
            for _ in 0..rounds {
                for (account, into) in [(PLAIN, &mut plain), (SUBSCRIBED, &mut subscribed)] {
                    let users = format!("{base}/v1/accounts/{account}/customers/users");
                    let (http, token, sequence) = (http.clone(), token(account), sequence.clone());
                    let label =
                        format!("{kind}, {}", if account == PLAIN { "no subscription" } else { "1 subscription" });
                    let op = move |i: u64| {
                        let request = if kind == "create" {
                            let n = sequence.fetch_add(1, Ordering::Relaxed);
                            let body =
                                json!({"customer_id": format!("w{run}-{n}"), "email": format!("w{run}-{n}@bench.io")});
                            http.post(users.clone()).bearer_auth(token.clone()).json(&body)
                        } else {
                            let body = json!({"metadata": {"k": i}});
                            http.put(format!("{users}/u{run}-{}", i % 200)).bearer_auth(token.clone()).json(&body)
                        };
                        succeeded(request)
                    };
                    into.merge(measure(&label, concurrency, round, op).await);
                }
            }
            figures.push(plain);
            figures.push(subscribed);
        }
        let rate = |name: &str| figures.iter().find(|f| f.name == name).map(Figures::rps).unwrap_or(0.0);
        let ratio = |kind: &str| {
            let with = rate(&format!("{kind}, 1 subscription"));
            let without = rate(&format!("{kind}, no subscription"));
            (with / without.max(1.0) * 100.0).round() / 100.0
        };
        let (create_ratio, update_ratio) = (ratio("create"), ratio("update (PUT metadata)"));
        // What the paired writes queued is delivered before the lag run.
        quiet(&target, Duration::from_millis(500), Duration::from_secs(120)).await;

        // Lag at a steady 500 writes/s.
        let lag_seconds = seconds.max(5);
        let users = format!("{base}/v1/accounts/{SUBSCRIBED}/customers/users");
        let mut every = tokio::time::interval(Duration::from_millis(2));
        let started = Instant::now();
        let mut writes = Vec::new();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(lag_seconds) {
            every.tick().await;
            let (http, token, users) = (http.clone(), token(SUBSCRIBED), users.clone());
            let body = json!({"customer_id": format!("lag-{run}-{n}")});
            writes.push(tokio::spawn(async move { succeeded(http.post(users).bearer_auth(token).json(&body)).await }));
            n += 1;
        }
        let written = futures::future::join_all(writes).await.into_iter().filter(|w| matches!(w, Ok(true))).count();
        let write_rate = written as f64 / started.elapsed().as_secs_f64();
        let _ = wait_until("the lag run's deliveries", Duration::from_secs(60), || {
            target.lags_us.lock().unwrap().len() >= written
        })
        .await;
        let mut lags = target.lags_us.lock().unwrap().clone();
        lags.sort_unstable();

        // A backlog: deliveries that failed once (503) and wait an hour,
        // made due at once; the time to drain it is the delivery rate.
        target.status.store(503, Ordering::Relaxed);
        let before = target.received.load(Ordering::Relaxed);
        let account = AccountId::parse(BACKLOG).unwrap();
        let rows: Vec<_> = (0..backlog)
            .map(|i| {
                let data = serde_json::from_value(json!({"first_name": "Backlog"})).unwrap();
                customers::store::NewCustomer {
                    customer_id: Some(format!("b{run}-{i}")),
                    data,
                    secrets: Default::default(),
                }
            })
            .collect();
        let creates = rows.into_iter().map(|new| {
            let (store, account) = (store.clone(), account.clone());
            async move {
                store
                    .create_customer(&account, new, customers::domain::events::Actor::named("bench"), None)
                    .await
                    .is_ok()
            }
        });
        let created = futures::stream::iter(creates)
            .buffer_unordered(concurrency)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await as u64;
        let _ = wait_until("the backlog's first (refused) attempts", Duration::from_secs(300), || {
            target.received.load(Ordering::Relaxed) >= before + created
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ok_before = target.ok.load(Ordering::Relaxed);
        target.status.store(200, Ordering::Relaxed);
        let due = make_due(&database).await;
        let drained = wait_until("draining the backlog", Duration::from_secs(300), || {
            target.ok.load(Ordering::Relaxed) >= ok_before + created
        })
        .await;
        let deliveries_per_second = drained.map(|t| (created as f64 / t.as_secs_f64()).round());

        let doc = json!({
            "paired_writes": figures.iter().map(Figures::json).collect::<Vec<_>>(),
            "create_with_subscription_over_without": create_ratio,
            "update_with_subscription_over_without": update_ratio,
            "lag": {"writes_per_second": write_rate.round(), "events": lags.len(),
                "p50_ms": percentile_ms(&lags, 0.5), "p99_ms": percentile_ms(&lags, 0.99)},
            "backlog": {"deliveries": created, "made_due": due, "deliveries_per_second": deliveries_per_second},
            "storage": bytes_per_event(&database).await,
        });
        eprintln!("{}", serde_json::to_string_pretty(&doc).unwrap());
        std::fs::write(&report, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        store.close().await;
    }

    /// Waits (at most `within`) until nothing has arrived at the receiver
    /// for `calm`: the queue is drained.
    async fn quiet(target: &Receiver, calm: Duration, within: Duration) {
        let started = Instant::now();
        let mut seen = target.received.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while since.elapsed() < calm && started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = target.received.load(Ordering::Relaxed);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
    }
}
