//! `baton schedule`: cron rules that start tasks from templates while `baton serve` runs.

use std::path::Path;

use baton_core::{Firing, Schedule, Timestamp};
use baton_engine::{Timing, add_schedule};
use baton_store::{Firings, SavedSchedule, Store};

use crate::cli::{ScheduleArgs, ScheduleCommand};
use crate::show;
use crate::task::now;

/// How many next firings `schedule show` lists.
const SHOWN_NEXT: usize = 5;

pub async fn run(home: &Path, command: ScheduleCommand, json: bool) -> anyhow::Result<()> {
    let store = crate::store::open(home).await?;
    match command {
        ScheduleCommand::Create(args) => {
            let schedule = definition(*args);
            add_schedule(&store, &schedule, now()).await?;
            let saved = store.schedule(&schedule.name).await?;
            if json { show::json(&saved) } else { describe(&store, &saved).await }
        }
        ScheduleCommand::List => {
            let schedules = store.schedules().await?;
            if json {
                return show::json(&schedules);
            }
            if schedules.is_empty() {
                println!("no schedules; make one with `baton schedule create --template N --cron RULE`");
            }
            for saved in &schedules {
                let state = match &saved.paused {
                    Some(reason) => format!("paused: {reason}"),
                    None => next_firings(saved, 1).first().map_or("never fires".into(), |at| format!("next {at} UTC")),
                };
                println!(
                    "{:<24} {:<18} {:<16} {state}",
                    saved.schedule.name, saved.schedule.cron, saved.schedule.template
                );
            }
            Ok(())
        }
        ScheduleCommand::Show { name } => {
            let saved = store.schedule(&name).await?;
            if json { show::json(&saved) } else { describe(&store, &saved).await }
        }
        ScheduleCommand::Pause { name, reason } => {
            let saved = store.pause_schedule(&name, &reason, now()).await?;
            if json {
                show::json(&saved)
            } else {
                println!("schedule {name} paused");
                Ok(())
            }
        }
        ScheduleCommand::Resume { name } => {
            let saved = store.resume_schedule(&name, now()).await?;
            if json {
                return show::json(&saved);
            }
            let next = next_firings(&saved, 1);
            println!(
                "schedule {name} resumed; next firing {}",
                next.first().map_or("never".into(), |at| format!("{at} UTC"))
            );
            Ok(())
        }
        ScheduleCommand::Delete { name } => {
            store.delete_schedule(&name).await?;
            if !json {
                println!("schedule {name} deleted");
            }
            Ok(())
        }
        ScheduleCommand::Runs { name, limit } => {
            store.schedule(&name).await?;
            let firings = store.firings(&name, Firings::All, Timestamp(0), limit).await?;
            if json {
                show::json(&firings)
            } else {
                print_firings(&firings);
                Ok(())
            }
        }
    }
}

fn definition(args: ScheduleArgs) -> Schedule {
    Schedule {
        name: args.name.unwrap_or_else(|| args.template.clone()),
        template: args.template,
        cron: args.cron,
        timezone: args.tz,
        mode: args.mode,
        catch_up: args.catch_up,
        runs_per_day: args.runs_per_day,
        run_budget: args.run_budget,
        month_budget: args.month_budget,
        max_failures: args.max_failures,
        owner: None,
    }
}

/// When an active schedule fires next (none while it is paused).
pub fn next_firings(saved: &SavedSchedule, count: usize) -> Vec<Timestamp> {
    if saved.paused.is_some() {
        return Vec::new();
    }
    match Timing::new(&saved.schedule) {
        Ok(timing) => timing.after(saved.cursor.max(now())).take(count).collect(),
        Err(_) => Vec::new(),
    }
}

async fn describe(store: &dyn Store, saved: &SavedSchedule) -> anyhow::Result<()> {
    let schedule = &saved.schedule;
    let limit = |value: Option<String>| value.unwrap_or_else(|| "none".into());
    let rows = [
        ("schedule", schedule.name.clone()),
        ("template", schedule.template.clone()),
        ("cron", format!("{} ({})", schedule.cron, schedule.timezone)),
        ("mode", schedule.mode.to_string()),
        ("catch-up", schedule.catch_up.to_string()),
        ("per day", limit(schedule.runs_per_day.map(|n| format!("{n} runs")))),
        ("per run", limit(schedule.run_budget.map(|c| format!("{c} credits")))),
        ("per month", limit(schedule.month_budget.map(|c| format!("{c} credits")))),
        ("pauses", format!("after {} failed runs in a row", schedule.max_failures)),
        ("state", saved.paused.as_ref().map_or("active".into(), |reason| format!("paused: {reason}"))),
    ];
    for (name, value) in rows {
        println!("{name:<9} {value}");
    }
    for at in next_firings(saved, SHOWN_NEXT) {
        println!("next      {at} UTC");
    }
    let latest = store.firings(&schedule.name, Firings::All, Timestamp(0), 10).await?;
    if !latest.is_empty() {
        println!();
        print_firings(&latest);
    }
    Ok(())
}

fn print_firings(firings: &[Firing]) {
    for firing in firings {
        println!("{} UTC  {:<11} {}", firing.at, firing.outcome, firing.detail);
    }
}
