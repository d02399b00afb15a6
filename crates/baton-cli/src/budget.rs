//! `baton budget ...`: the account's credits and rules, and a task's limits.

use std::path::Path;

use anyhow::{Context, bail};
use baton_core::{AutoReload, Budget, Credits, EntryKind, Event, Policy};
use baton_store::{SqliteStore, Store};
use serde_json::json;

use crate::cli::{BudgetCommand, Switch};
use crate::show;
use crate::task::now;

pub async fn run(home: &Path, command: BudgetCommand, json: bool) -> anyhow::Result<()> {
    let store = SqliteStore::open(home).await?;
    match command {
        BudgetCommand::Show => {}
        BudgetCommand::Topup { amount, grant, note } => {
            let kind = if grant { EntryKind::Grant } else { EntryKind::TopUp };
            if amount <= Credits::ZERO {
                bail!("a top-up must be more than zero credits, not {amount}");
            }
            store.credit(now(), kind, amount, &note).await?;
        }
        BudgetCommand::SetCap { cap } => {
            let monthly_cap = optional(&cap, "cap", |text| text.parse::<Credits>().map_err(|e| e.to_string()))?;
            update(&store, |policy| policy.monthly_cap = monthly_cap).await?;
        }
        BudgetCommand::AutoReload { threshold, target, max_per_month, off } => {
            let reload = match (off, threshold, target) {
                (true, ..) => None,
                (false, Some(threshold), Some(target)) if target > threshold => {
                    Some(AutoReload { threshold, target, max_per_month })
                }
                (false, Some(threshold), Some(target)) => {
                    bail!("the target ({target}) must be above the threshold ({threshold})")
                }
                _ => bail!("give --threshold and --target, or --off"),
            };
            update(&store, |policy| policy.auto_reload = reload).await?;
        }
        BudgetCommand::Overage { switch } => update(&store, |policy| policy.overage = switch == Switch::On).await?,
        BudgetCommand::History { limit } => {
            let entries = store.entries(limit).await?;
            return if json { show::json(&entries) } else { show::entries(&entries) };
        }
        BudgetCommand::Task { id, credits, window, max_steps } => {
            return task_limits(&store, &id, credits, window, max_steps, json).await;
        }
    }
    let position = store.account(now()).await?;
    if json {
        show::json(&json!({"position": position, "available": position.available()}))
    } else {
        show::position(&position)
    }
}

/// A value of `text`, or no value for `none`.
fn optional<T>(text: &str, what: &str, parse: impl Fn(&str) -> Result<T, String>) -> anyhow::Result<Option<T>> {
    if text == "none" {
        return Ok(None);
    }
    parse(text).map(Some).map_err(|e| anyhow::anyhow!("invalid {what} `{text}`: {e} (or `none`)"))
}

async fn update(store: &SqliteStore, change: impl FnOnce(&mut Policy)) -> anyhow::Result<()> {
    let mut policy = store.account(now()).await?.policy;
    change(&mut policy);
    store.set_policy(policy).await?;
    Ok(())
}

async fn task_limits(
    store: &SqliteStore,
    id: &str,
    credits: Option<String>,
    window: Option<String>,
    max_steps: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let id = store.resolve(id).await?;
    let state = store.load(&id).await?;
    if state.status().is_terminal() {
        bail!("task {id} has ended ({}); its limits no longer matter", state.status());
    }
    let mut budget: Budget = state.spec.budget;
    if let Some(text) = credits {
        budget.credits = optional(&text, "credits", |t| t.parse::<Credits>().map_err(|e| e.to_string()))?;
        if budget.credits.is_some_and(|c| c <= Credits::ZERO) {
            bail!("a credit limit must be more than zero; use `none` for no limit");
        }
    }
    if let Some(text) = window {
        budget.wall_clock_secs = optional(&text, "window", |t| {
            humantime::parse_duration(t).map(|d| d.as_secs()).map_err(|e| e.to_string())
        })?;
    }
    if let Some(text) = max_steps {
        budget.steps = optional(&text, "step limit", |t| t.parse::<u64>().map_err(|e| e.to_string()))?;
    }
    store
        .append(&id, state.next_seq, now(), &[Event::BudgetChanged { budget }])
        .await
        .with_context(|| format!("cannot change the limits of task {id}"))?;
    let state = store.load(&id).await?;
    if json {
        show::json(&state.spec.budget)
    } else {
        println!("task {id}: limits now {}; continue it with `baton resume {id}`", show::limits(&state.spec.budget));
        Ok(())
    }
}
