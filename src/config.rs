//! Configuration shared by the subcommands: each field is a flag and a
//! `CUSTOMERS_*` environment variable. `Debug` hides database passwords.

use std::fmt;
use std::time::Duration;

use clap::Args;

use crate::store::PoolOptions;

#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH, sqlite:///absolute/path or postgres://user@host:port/db
    #[arg(long = "database", env = "CUSTOMERS_DATABASE_URL", default_value = "sqlite://customers.db")]
    pub url: String,
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
}

impl DatabaseArgs {
    pub fn pool(&self) -> PoolOptions {
        PoolOptions {
            max_connections: self.db_max_connections.unwrap_or(crate::store::default_max_connections(&self.url)).max(1),
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout),
            bulk: false,
            idle_timeout: Duration::from_secs(self.db_idle_timeout),
        }
    }

    pub async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        self.open_with(self.pool()).await
    }

    /// Opens the store for one bulk writer (see [`PoolOptions::bulk`]).
    pub async fn open_bulk(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        self.open_with(PoolOptions { bulk: true, ..self.pool() }).await
    }

    async fn open_with(&self, pool: PoolOptions) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        use anyhow::Context;
        crate::store::open(&self.url, &pool).await.with_context(|| format!("opening database {}", redact(&self.url)))
    }
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("url", &redact(&self.url))
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("db_idle_timeout", &self.db_idle_timeout)
            .finish()
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
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://customers.db"), "sqlite://customers.db");
    }
}
