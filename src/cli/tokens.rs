//! `customers tokens issue`: mint a token signed by the deployment's key,
//! e.g. a `user:customers` token whose subject is a customer's `id`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::auth::Keys;
use crate::config::{DatabaseArgs, TokenArgs};
use crate::domain::ids::{AccountId, Scope};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Issue an access token and print it as JSON.
    Issue(IssueOpts),
}

#[derive(Args, Debug)]
pub struct IssueOpts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    /// The account the token is for, e.g. T00000001.
    #[arg(long, value_parser = super::parse_account)]
    pub account: AccountId,
    /// Space-separated scopes.
    #[arg(long, value_parser = super::parse_scopes)]
    pub scopes: super::ScopeList,
    /// The token's `sub`: a client id, or a customer's `id` for user:customers.
    #[arg(long, value_parser = super::parse_subject)]
    pub subject: String,
    /// Lifetime in seconds (1 to 31,536,000: a year).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(super::TOKEN_TTL_RANGE))]
    pub ttl: u64,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Issue(opts) = command;
    let store = opts.db.open().await?;
    store.migrate().await?;
    let ttl = Duration::from_secs(opts.ttl);
    let keys = Keys::load_or_create(&*store, &opts.token.issuer, ttl).await?;
    let scopes: Vec<Scope> = opts.scopes.0;
    let token = keys.issue(&opts.account, &opts.subject, &scopes, ttl)?;
    println!("{}", json!({"access_token": token, "token_type": "Bearer", "expires_in": opts.ttl}));
    store.close().await;
    Ok(())
}
