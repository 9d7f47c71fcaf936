//! The `customers` command line: one subcommand per file.

use clap::{Parser, Subcommand};

use crate::domain::ids::{AccountId, Scope};
use crate::telemetry::LogFormat;

pub mod clients;
pub mod hooks;
pub mod migrate;
pub mod serve;
pub mod tokens;
pub mod transfer;

#[derive(Parser, Debug)]
#[command(name = "customers", version, about = "Customer records, following the Dintero Customers API")]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "CUSTOMERS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service.
    Serve(serve::Opts),
    /// Apply pending database migrations and list what ran.
    Migrate(migrate::Opts),
    /// Manage API clients.
    #[command(subcommand)]
    Clients(clients::Command),
    /// Mint access tokens.
    #[command(subcommand)]
    Tokens(tokens::Command),
    /// Import customers from NDJSON (one create body per line).
    Import(transfer::ImportOpts),
    /// Export an account's customers as NDJSON to standard output.
    Export(transfer::ExportOpts),
    /// Webhook tools for receivers.
    #[command(subcommand)]
    Hooks(hooks::Command),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(opts) => serve::run(opts).await,
        Command::Migrate(opts) => migrate::run(opts).await,
        Command::Clients(command) => clients::run(command).await,
        Command::Tokens(command) => tokens::run(command).await,
        Command::Import(opts) => transfer::import(opts).await,
        Command::Export(opts) => transfer::export(opts).await,
        Command::Hooks(command) => hooks::run(command).await,
    }
}

pub fn parse_account(raw: &str) -> Result<AccountId, String> {
    AccountId::parse(raw).ok_or_else(|| format!("`{raw}` is not an account id (T or P and 8 digits)"))
}

/// Token lifetimes: from a second to a year (a larger value overflowed the
/// expiry into the past, or made a token valid for ever).
pub const TOKEN_TTL_RANGE: std::ops::RangeInclusive<u64> = 1..=365 * 24 * 3600;

/// A token subject: a client id or a customer's id — one line of at most
/// 255 bytes, no control characters.
pub fn parse_subject(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        Err("the subject must not be empty".into())
    } else if raw.len() > 255 {
        Err("the subject must be at most 255 bytes".into())
    } else if raw.chars().any(char::is_control) {
        Err("the subject must be one line without control characters".into())
    } else {
        Ok(raw.to_owned())
    }
}

/// A space-separated scope list given as one argument.
#[derive(Debug, Clone)]
pub struct ScopeList(pub Vec<Scope>);

pub fn parse_scopes(raw: &str) -> Result<ScopeList, String> {
    Scope::parse_list(raw).map(ScopeList)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_bounded_line() {
        assert_eq!(parse_subject("client_1").unwrap(), "client_1");
        for bad in ["", "  ", "a\nb", "tab\there", &"x".repeat(256)] {
            assert!(parse_subject(bad).is_err(), "{bad:?}");
        }
        assert!(parse_subject(&"x".repeat(255)).is_ok());
    }
}
