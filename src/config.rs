//! Configuration shared by the subcommands: each field is a flag and a
//! `CUSTOMERS_*` environment variable. `Debug` hides database passwords.

use std::fmt;
use std::time::Duration;

use clap::Args;

use crate::store::PoolOptions;

/// Where the data lives: every subcommand takes it.
#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH, sqlite:///absolute/path or postgres://user@host:port/db
    #[arg(long = "database", env = "CUSTOMERS_DATABASE_URL", default_value = "sqlite://customers.db")]
    pub url: String,
}

impl DatabaseArgs {
    /// The pool a one-off command needs: the defaults for this backend.
    pub fn default_pool(&self) -> PoolOptions {
        PoolOptions { max_connections: crate::store::default_max_connections(&self.url), ..PoolOptions::default() }
    }

    /// Opens the store with the default pool (commands other than `serve`).
    pub async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        self.open_with(self.default_pool()).await
    }

    /// The pool of a bulk writer (see [`PoolOptions::bulk`]): at least two
    /// connections, as PostgreSQL imports write two batches at once, and no
    /// statement time limit.
    pub fn bulk_pool(&self) -> PoolOptions {
        let pool = self.default_pool();
        PoolOptions { bulk: true, max_connections: pool.max_connections.max(2), statement_timeout: None, ..pool }
    }

    /// Opens the store for one bulk writer.
    pub async fn open_bulk(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        self.open_with(self.bulk_pool()).await
    }

    pub async fn open_with(&self, pool: PoolOptions) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        use anyhow::Context;
        crate::store::open(&self.url, &pool).await.with_context(|| format!("opening database {}", redact(&self.url)))
    }
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs").field("url", &redact(&self.url)).finish()
    }
}

/// How a serving process uses its database: `serve` only.
#[derive(Args, Clone, Debug)]
pub struct PoolArgs {
    /// Most database connections this process opens [default: 8 for SQLite,
    /// whose connections each keep a page cache and serialise writes anyway;
    /// 16 for PostgreSQL].
    #[arg(long, env = "CUSTOMERS_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Seconds a request waits for a free database connection before 503.
    #[arg(long, env = "CUSTOMERS_DB_ACQUIRE_TIMEOUT", default_value_t = 5)]
    pub db_acquire_timeout: u64,
    /// Seconds a database connection may sit idle before it is closed.
    #[arg(long, env = "CUSTOMERS_DB_IDLE_TIMEOUT", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_idle_timeout: u64,
    /// Reads that may take long (searches, counts) this process runs at once;
    /// the rest wait for a slot [default: the cores of this machine]. Raise it
    /// when PostgreSQL runs on a machine with more cores.
    #[arg(long, env = "CUSTOMERS_DB_LONG_READS", value_parser = clap::value_parser!(u32).range(1..))]
    pub db_long_reads: Option<u32>,
    /// Seconds one database statement may run before the database stops it
    /// (a request has stopped waiting for it by then); 0: no limit.
    #[arg(long, env = "CUSTOMERS_DB_STATEMENT_TIMEOUT", default_value_t = 30)]
    pub db_statement_timeout: u64,
}

impl PoolArgs {
    pub fn pool(&self, url: &str) -> PoolOptions {
        PoolOptions {
            max_connections: self.db_max_connections.unwrap_or(crate::store::default_max_connections(url)).max(1),
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout),
            bulk: false,
            idle_timeout: Duration::from_secs(self.db_idle_timeout),
            long_reads: self.db_long_reads.unwrap_or_else(crate::store::default_long_reads),
            statement_timeout: (self.db_statement_timeout > 0).then(|| Duration::from_secs(self.db_statement_timeout)),
        }
    }
}

/// How a serving process delivers webhooks (§11): `serve` only.
#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Let webhook subscriptions target loopback, private, link-local and
    /// other non-public addresses (a development machine, a private
    /// network). Off: such targets are refused at subscribe and at connect.
    #[arg(long, env = "CUSTOMERS_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// How long a webhook receiver may take to answer (500ms, 10s, …).
    #[arg(long, env = "CUSTOMERS_WEBHOOKS_TIMEOUT", default_value = "10s", value_parser = crate::domain::hooks::parse_duration)]
    pub webhooks_timeout: Duration,
    /// The waits between tries of a failed delivery; the last one repeats.
    #[arg(long, env = "CUSTOMERS_WEBHOOKS_RETRY_DELAYS", default_value = "5s,30s,2m,10m,30m,1h,2h", value_parser = parse_delays)]
    pub webhooks_retry_delays: Delays,
    /// How long after its first try a failing delivery is given up.
    #[arg(long, env = "CUSTOMERS_WEBHOOKS_GIVE_UP_AFTER", default_value = "3d", value_parser = crate::domain::hooks::parse_duration)]
    pub webhooks_give_up_after: Duration,
    /// Deliveries this process sends at once (half of them at most to one
    /// subscription, so a slow receiver leaves the other half to the rest).
    #[arg(long, env = "CUSTOMERS_WEBHOOKS_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub webhooks_concurrency: u32,
    /// Days the event log keeps an event (longer while a delivery of it waits).
    #[arg(long, env = "CUSTOMERS_EVENTS_RETENTION_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub events_retention_days: u32,
}

/// A list of retry delays, as one argument.
#[derive(Debug, Clone)]
pub struct Delays(pub Vec<Duration>);

fn parse_delays(raw: &str) -> Result<Delays, String> {
    crate::domain::hooks::RetryPolicy::parse_delays(raw).map(Delays)
}

impl WebhookArgs {
    pub fn worker(&self) -> crate::webhooks::WorkerConfig {
        let concurrency = self.webhooks_concurrency as usize;
        crate::webhooks::WorkerConfig {
            timeout: self.webhooks_timeout.max(Duration::from_millis(1)),
            retry: crate::domain::hooks::RetryPolicy {
                delays: self.webhooks_retry_delays.0.clone(),
                give_up_after: self.webhooks_give_up_after,
            },
            concurrency,
            per_subscription: (concurrency / 2).max(1),
            allow_private: self.webhooks_allow_private,
            retention: Duration::from_secs(u64::from(self.events_retention_days) * 24 * 3600),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The `iss` of issued tokens; audiences are `<issuer>/v1/accounts/<aid>`.
    #[arg(long, env = "CUSTOMERS_ISSUER", default_value = "customers")]
    pub issuer: String,
}

/// A URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{DatabaseArgs, PoolArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        pool: PoolArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("customers").chain(args.iter().copied()))
    }

    fn pool(args: &[&str]) -> Result<crate::store::PoolOptions, clap::Error> {
        parse(args).map(|cli| cli.pool.pool(&cli.db.url))
    }

    #[test]
    fn pool_flags_reach_the_pool_options() {
        let given = pool(&[
            "--database",
            "postgres://u@h/db",
            "--db-max-connections",
            "3",
            "--db-acquire-timeout",
            "7",
            "--db-idle-timeout",
            "42",
            "--db-long-reads",
            "5",
            "--db-statement-timeout",
            "0",
        ])
        .unwrap();
        assert_eq!(given.max_connections, 3);
        assert_eq!(given.acquire_timeout, Duration::from_secs(7));
        assert_eq!(given.idle_timeout, Duration::from_secs(42));
        assert_eq!(given.long_reads, 5);
        assert_eq!(given.statement_timeout, None);
        assert!(!given.bulk);
        // A zero idle timeout would close every connection at once: refused.
        assert!(pool(&["--db-idle-timeout", "0"]).is_err());
        assert!(pool(&["--db-max-connections", "0"]).unwrap().max_connections >= 1);
        let defaults = pool(&["--database", "sqlite://x.db"]).unwrap();
        assert_eq!((defaults.max_connections, defaults.statement_timeout), (8, Some(Duration::from_secs(30))));
    }

    #[test]
    fn a_bulk_pool_has_room_for_two_writers_and_no_statement_limit() {
        let bulk = parse(&["--database", "postgres://u@h/db"]).unwrap().db.bulk_pool();
        assert!(bulk.bulk);
        assert!(bulk.max_connections >= 2);
        assert_eq!(bulk.statement_timeout, None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://customers.db"), "sqlite://customers.db");
        let debug = format!("{:?}", parse(&["--database", "postgres://u:secret@h/db"]).unwrap().db);
        assert!(!debug.contains("secret"), "{debug}");
    }
}
