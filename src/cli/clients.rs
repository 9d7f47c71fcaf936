//! `customers clients create`: an API client for one account; the secret is
//! printed once and stored only as a hash.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::config::DatabaseArgs;
use crate::domain::ids::{AccountId, Scope};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an API client and print it as JSON (with its secret, once).
    Create(CreateOpts),
}

#[derive(Args, Debug)]
pub struct CreateOpts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The account the client belongs to, e.g. T00000001.
    #[arg(long, value_parser = super::parse_account)]
    pub account: AccountId,
    /// Space-separated scopes, e.g. "read:customers write:customers".
    #[arg(long, value_parser = super::parse_scopes)]
    pub scopes: super::ScopeList,
    /// A client id of your choice (default: random).
    #[arg(long)]
    pub client_id: Option<String>,
    /// A secret of your choice (default: random, 256 bits).
    #[arg(long, env = "CUSTOMERS_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Create(opts) = command;
    let store = opts.db.open().await?;
    store.migrate().await?;
    let scopes: Vec<Scope> = opts.scopes.0;
    let (client, secret) =
        crate::auth::create_client(&*store, &opts.account, &scopes, opts.client_id, opts.client_secret).await?;
    println!(
        "{}",
        json!({
            "client_id": client.client_id,
            "client_secret": secret,
            "account_id": client.account_id,
            "scopes": client.scopes,
        })
    );
    store.close().await;
    Ok(())
}
