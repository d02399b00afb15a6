//! `baton worker`: a process that only runs tasks, from a store it shares with servers and other
//! workers on other machines; and `baton migrate`, which brings a store's schema up to date.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use baton_engine::Observer;
use baton_store::SqlStore;
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;
use crate::config::Config;
use crate::serve::{scheduler, stopped};

pub async fn worker(home: &Path, config: &Config, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let WorkerArgs { running } = args;
    let Some(url) = crate::store::url() else {
        anyhow::bail!(
            "a worker runs tasks from a store it shares: give --store postgres://… (BATON_STORE); \
             on one machine, `baton serve` runs them"
        );
    };
    let store: Arc<dyn baton_store::Store> = Arc::new(crate::store::open(home).await?);
    let observer: Arc<Observer> = Arc::new(|_, _| {});
    let scheduler = scheduler(home, config, store, &running, observer)?;
    // The first line of output, for scripts and tests.
    println!(
        "baton worker {} runs {} slots on {}",
        baton_engine::holder_name(),
        scheduler.slots(),
        baton_store::redacted(url)
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stopped().await;
        stop.cancel();
    });
    // Returns once every run has stopped at its next step, its work committed and its lease let go.
    scheduler.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(home: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let migrated = match crate::store::url() {
        Some(url) => SqlStore::migrate(url).await?,
        None => SqlStore::open_migrated(home).await?,
    };
    if json {
        println!("{}", serde_json::json!({"from": migrated.from, "to": migrated.to}));
    } else if migrated.from == migrated.to {
        println!("the schema is at version {}, this baton's", migrated.to);
    } else {
        println!("the schema went from version {} to {}", migrated.from, migrated.to);
    }
    Ok(ExitCode::SUCCESS)
}
