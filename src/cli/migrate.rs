//! `customers migrate`: the release step for fleets that start `serve` with
//! `--no-migrate`.

use clap::Args;

use crate::config::DatabaseArgs;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let store = opts.db.open().await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    store.close().await;
    Ok(())
}
