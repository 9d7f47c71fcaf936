//! `customers serve`: open the store, migrate (unless told not to), load the
//! signing key, bootstrap a first client on an empty database, then serve
//! until SIGINT/SIGTERM and finish the requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::auth::Keys;
use crate::config::{DatabaseArgs, PoolArgs, TokenArgs, WebhookArgs};
use crate::domain::ids::{AccountId, Scope};
use crate::http::throttle::RateLimit;
use crate::http::{AppState, HttpLimits};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Address to listen on.
    #[arg(long, env = "CUSTOMERS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not apply migrations on start (run `customers migrate` instead).
    #[arg(long, env = "CUSTOMERS_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Lifetime of issued access tokens, in seconds (1 to 31,536,000).
    #[arg(long, env = "CUSTOMERS_TOKEN_TTL", default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(super::TOKEN_TTL_RANGE))]
    pub token_ttl: u64,
    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "CUSTOMERS_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Seconds a client may take to send a request's headers (slow clients
    /// are disconnected).
    #[arg(long, env = "CUSTOMERS_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a new connection may stay silent before its first byte.
    #[arg(long, env = "CUSTOMERS_FIRST_BYTE_TIMEOUT", default_value_t = 10)]
    pub first_byte_timeout: u64,
    /// Seconds a connection may stay open with no request in flight
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    #[arg(long, env = "CUSTOMERS_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Open connections at most; at the cap the longest idle one is closed
    /// to make room. 0: three quarters of the open-file limit (which
    /// `serve` raises to its hard limit).
    #[arg(long, env = "CUSTOMERS_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Token requests per second each address may sustain (each checks a
    /// secret with Argon2, whatever client id it names).
    #[arg(long, env = "CUSTOMERS_TOKEN_RATE_LIMIT", default_value_t = 5)]
    pub token_rate_limit: u32,
    /// Token requests an address may send at once above its rate.
    #[arg(long, env = "CUSTOMERS_TOKEN_RATE_LIMIT_BURST", default_value_t = 20)]
    pub token_rate_limit_burst: u32,
    /// Requests per second each client (each address, for calls without
    /// credentials) may sustain; 0 turns rate limiting off.
    #[arg(long, env = "CUSTOMERS_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
    /// Requests a client may send at once above its rate.
    #[arg(long, env = "CUSTOMERS_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CUSTOMERS_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// The account of the admin client created on an empty database.
    #[arg(long, env = "CUSTOMERS_BOOTSTRAP_ACCOUNT", default_value = "T00000001", value_parser = super::parse_account)]
    pub bootstrap_account: AccountId,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = opts.db.open_with(opts.pool.pool(&opts.db.url)).await?;
    if !opts.no_migrate {
        for name in store.migrate().await.context("applying migrations")? {
            tracing::info!(migration = %name, "applied migration");
        }
    }
    let keys = Keys::load_or_create(&*store, &opts.token.issuer, Duration::from_secs(opts.token_ttl)).await?;
    let listener =
        tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("binding {}", opts.listen))?;
    let address = listener.local_addr()?;
    bootstrap_first_client(&*store, &opts.bootstrap_account, address).await?;

    let limits = HttpLimits {
        request_timeout: Duration::from_secs(opts.request_timeout),
        body_limit: opts.body_limit,
        header_read_timeout: Duration::from_secs(opts.header_read_timeout),
        first_byte_timeout: Duration::from_secs(opts.first_byte_timeout),
        idle_timeout: Duration::from_secs(opts.idle_timeout.max(1)),
        max_connections: match opts.max_connections {
            0 => crate::sys::connection_cap(crate::sys::raise_open_files_limit()),
            cap => cap,
        },
        token_rate_limit: RateLimit {
            per_second: opts.token_rate_limit.max(1),
            burst: opts.token_rate_limit_burst.max(opts.token_rate_limit).max(1),
        },
        rate_limit: (opts.rate_limit > 0)
            .then(|| RateLimit { per_second: opts.rate_limit, burst: opts.rate_limit_burst.max(opts.rate_limit) }),
    };
    let mut state = AppState::new(store.clone(), Arc::new(keys), &limits);
    state.private_targets = opts.webhooks.webhooks_allow_private;
    crate::http::spawn_metrics_upkeep(state.metrics.clone());
    let deliveries = crate::webhooks::Worker::spawn(store.clone(), opts.webhooks.worker())?;
    tracing::info!(%address, backend = store.backend(), max_connections = limits.max_connections, ready_in_ms = started.elapsed().as_millis() as u64, "listening");
    let served = crate::serve(listener, crate::app(state, &limits), &limits, shutdown_signal()).await;
    // The deliveries in flight finish (or give back their leases) first.
    deliveries.stop().await;
    served?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// On a database with no API client, creates an admin client for the
/// bootstrap account and prints its credentials once, with a ready curl.
async fn bootstrap_first_client(store: &dyn Store, account: &AccountId, address: SocketAddr) -> anyhow::Result<()> {
    if store.has_clients().await? {
        return Ok(());
    }
    let (client, secret) = crate::auth::new_client(account, &[Scope::Admin, Scope::HooksAdmin], None, None)?;
    if !store.insert_first_client(client.clone()).await? {
        // Another server on the same database created the first client meanwhile.
        return Ok(());
    }
    let base = format!("http://{address}");
    println!(
        "\nNo API client existed, so an admin client was created for account {account}.\n\
         Its secret is shown only this once (lost it? `customers clients create` makes another):\n\n  \
         client_id:     {id}\n  client_secret: {secret}\n\n\
         For the README's walkthrough, in another shell:\n\n  \
         export CLIENT_ID={id} CLIENT_SECRET={secret} BASE={base} ACCOUNT={account}\n\n\
         Get an access token:\n\n  \
         curl -s -u \"$CLIENT_ID:$CLIENT_SECRET\" -H 'content-type: application/json' \\\n    \
         -d '{{\"grant_type\":\"client_credentials\",\"audience\":\"{base}/v1/accounts/{account}\"}}' \\\n    \
         {base}/v1/accounts/{account}/auth/token\n",
        id = client.client_id,
    );
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
