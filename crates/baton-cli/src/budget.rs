//! `baton budget ...`: the account's credits and rules, and a task's limits.

use anyhow::bail;
use baton_core::{AutoReload, Budget, Credits, EntryKind, Event, Policy, TaskId, TaskState};
use baton_server::{Change, LimitChange, Refused};
use baton_store::Store;
use serde_json::json;

use crate::backend::Backend;
use crate::cli::{BudgetCommand, Switch};
use crate::show;
use crate::task::{self, now};

pub async fn run(backend: &dyn Backend, command: BudgetCommand, json: bool) -> anyhow::Result<()> {
    match command {
        BudgetCommand::Show => {}
        BudgetCommand::Topup { amount, grant, note } => {
            let kind = if grant { EntryKind::Grant } else { EntryKind::TopUp };
            backend.credit(kind, amount, &note).await?;
        }
        BudgetCommand::SetCap { cap } => {
            let monthly_cap = optional(&cap, "cap", |text| text.parse::<Credits>().map_err(|e| e.to_string()))?;
            update(backend, |policy| policy.monthly_cap = monthly_cap).await?;
        }
        BudgetCommand::AutoReload { threshold, target, max_per_month, off } => {
            let reload = match (off, threshold, target) {
                (true, ..) => None,
                (false, Some(threshold), Some(target)) => Some(AutoReload { threshold, target, max_per_month }),
                _ => bail!("give --threshold and --target, or --off"),
            };
            update(backend, |policy| policy.auto_reload = reload).await?;
        }
        BudgetCommand::Overage { switch } => update(backend, |policy| policy.overage = switch == Switch::On).await?,
        BudgetCommand::History { limit } => {
            let entries = backend.entries(limit).await?;
            return if json { show::json(&entries) } else { show::entries(&entries) };
        }
        BudgetCommand::Task { id, credits, window, max_steps } => {
            return task_limits(backend, &id, credits, window, max_steps, json).await;
        }
    }
    let position = backend.account().await?;
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

async fn update(backend: &dyn Backend, change: impl FnOnce(&mut Policy)) -> anyhow::Result<()> {
    let mut policy = backend.account().await?.policy;
    change(&mut policy);
    backend.set_policy(policy).await
}

async fn task_limits(
    backend: &dyn Backend,
    id: &str,
    credits: Option<String>,
    window: Option<String>,
    max_steps: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let id = backend.resolve(id).await?;
    let change = LimitChange {
        credits: change(credits, |text| Ok(text.to_owned()))?,
        window_secs: change(window, |text| {
            humantime::parse_duration(text).map(|d| d.as_secs()).map_err(|e| format!("invalid window `{text}`: {e}"))
        })?,
        max_steps: change(max_steps, |text| {
            text.parse::<u64>().map_err(|e| format!("invalid step limit `{text}`: {e}"))
        })?,
    };
    let state = backend.set_limits(&id, &change).await?;
    if json {
        show::json(&state.spec.budget)
    } else {
        println!("task {id}: limits now {}; continue it with `baton resume {id}`", show::limits(&state.spec.budget));
        Ok(())
    }
}

/// A command line value as a change: absent keeps, `none` clears.
fn change<T>(text: Option<String>, parse: impl Fn(&str) -> Result<T, String>) -> anyhow::Result<Change<T>> {
    match text.as_deref() {
        None => Ok(Change::Keep),
        Some("none") => Ok(Change::Clear),
        Some(text) => parse(text).map(Change::Set).map_err(anyhow::Error::msg),
    }
}

/// Journals `change` to the limits of task `id` (from the command line or the API): the task's
/// state after it.
pub async fn set_limits(store: &dyn Store, id: &TaskId, change: &LimitChange) -> Result<TaskState, Refused> {
    let failed = |error: baton_store::StoreError| Refused::Failed(error.to_string());
    let state = store.load(id).await.map_err(failed)?;
    if state.status().is_terminal() {
        return Err(Refused::Conflict(format!(
            "task {id} has ended ({}); its limits no longer matter",
            state.status()
        )));
    }
    let mut budget: Budget = state.spec.budget;
    let credits = match &change.credits {
        Change::Set(text) => Change::Set(
            text.parse::<Credits>()
                .map_err(|e| Refused::Invalid(format!("invalid credits `{text}`: {e} (or none)")))?,
        ),
        Change::Clear => Change::Clear,
        Change::Keep => Change::Keep,
    };
    if matches!(credits, Change::Set(credits) if credits <= Credits::ZERO) {
        return Err(Refused::Invalid("a credit limit must be more than zero; use none for no limit".into()));
    }
    apply(&mut budget.credits, credits);
    apply(&mut budget.wall_clock_secs, change.window_secs.clone());
    apply(&mut budget.steps, change.max_steps.clone());
    let changed = Event::BudgetChanged { budget };
    store.append(id, state.next_seq, now(), &[changed]).await.map_err(|error| task::refusal(id, error))?;
    store.load(id).await.map_err(failed)
}

fn apply<T>(field: &mut Option<T>, change: Change<T>) {
    match change {
        Change::Keep => {}
        Change::Clear => *field = None,
        Change::Set(value) => *field = Some(value),
    }
}
