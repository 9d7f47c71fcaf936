//! The `customers` command line: one subcommand per file.

use clap::{Parser, Subcommand};

use crate::domain::ids::{AccountId, Scope};
use crate::telemetry::LogFormat;

pub mod clients;
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
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(opts) => serve::run(opts).await,
        Command::Migrate(opts) => migrate::run(opts).await,
        Command::Clients(command) => clients::run(command).await,
        Command::Tokens(command) => tokens::run(command).await,
        Command::Import(opts) => transfer::import(opts).await,
        Command::Export(opts) => transfer::export(opts).await,
    }
}

pub fn parse_account(raw: &str) -> Result<AccountId, String> {
    AccountId::parse(raw).ok_or_else(|| format!("`{raw}` is not an account id (T or P and 8 digits)"))
}

/// A space-separated scope list given as one argument.
#[derive(Debug, Clone)]
pub struct ScopeList(pub Vec<Scope>);

pub fn parse_scopes(raw: &str) -> Result<ScopeList, String> {
    Scope::parse_list(raw).map(ScopeList)
}
