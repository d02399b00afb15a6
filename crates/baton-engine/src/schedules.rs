//! Firing schedules: each active schedule's due firings, decided and recorded before anything
//! starts. A firing is claimed (its task's id chosen) in the same transaction that moves the
//! schedule's cursor past it, so a server that dies after the claim finishes creating that same
//! task when it comes back, and one that dies before it finds the firing still due: no firing is
//! lost or started twice. Each run is bounded by the schedule's limits (a run and a month budget,
//! runs per day, no overlap), and a schedule whose runs keep failing pauses itself.

use std::sync::Arc;
use std::time::Duration;

use baton_core::{
    CatchUp, Credits, Firing, FiringOutcome, Schedule, ScheduleMode, Status, TaskId, TaskState, Template, Timestamp,
};
use baton_store::{Firings, SavedSchedule, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::journal;
use crate::timing::Timing;

/// Why a schedule was not saved.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `schedule` (its names and limits, its rule and time zone, its template) and keeps it,
/// firing from `at` on.
pub async fn add_schedule(store: &dyn Store, schedule: &Schedule, at: Timestamp) -> Result<(), ScheduleError> {
    schedule.check().map_err(ScheduleError::Invalid)?;
    Timing::new(schedule).map_err(ScheduleError::Invalid)?;
    match store.template(&schedule.template).await {
        Ok(_) => {}
        Err(StoreError::NoSuchTemplate(name)) => {
            return Err(ScheduleError::Invalid(format!("no template named `{name}`: make it first")));
        }
        Err(error) => return Err(error.into()),
    }
    store.add_schedule(schedule, at).await?;
    Ok(())
}

/// How long the loop sleeps at most, so that schedules made or changed by another process (the
/// command line) are seen without a firing to wake it.
const IDLE: Duration = Duration::from_secs(2);

/// Due firings recorded one by one in one pass; more (after long downtime) are recorded as one.
const LISTED_MISSES: usize = 20;

/// Creates the tasks that firings start. Each call names the task's id, chosen when the firing was
/// claimed, and succeeds without doing anything when that task exists already (a claim finished
/// after a restart).
#[async_trait::async_trait]
pub trait Starter: Send + Sync {
    /// Task `id` from `template` (its budget as the schedule allows) for `owner`, queued.
    async fn start(&self, id: &TaskId, template: &Template, owner: Option<String>) -> Result<(), String>;

    /// Task `id`, continuing `earlier`'s branch with `template`'s request and budget, queued.
    async fn continue_from(&self, id: &TaskId, earlier: &TaskState, template: &Template) -> Result<(), String>;
}

/// Fires the store's schedules while a server runs.
pub struct Schedules {
    store: Arc<dyn Store>,
    starter: Arc<dyn Starter>,
    /// Firings due before this were missed: no server was running to fire them.
    up_since: Timestamp,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules").field("up_since", &self.up_since).finish_non_exhaustive()
    }
}

/// What a due firing comes to, decided before it is recorded.
enum Verdict {
    Start(Box<Run>),
    Skip(String),
    /// It cannot start a task (its template is gone, ...): recorded as a failed run.
    Unstartable(String),
}

/// A run about to start: from the template (its budget lowered as the limits require), fresh or
/// continuing the schedule's previous run.
struct Run {
    template: Template,
    continues: Option<TaskState>,
}

impl Schedules {
    /// Schedules fired through `starter`; `wake` wakes the loop at once (a schedule was made or
    /// resumed).
    pub fn new(store: Arc<dyn Store>, starter: Arc<dyn Starter>, wake: Arc<Notify>) -> Schedules {
        Schedules { store, starter, up_since: journal::now(), wake }
    }

    /// Fires due schedules until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let next = self.pass().await;
            let sleep = next.map_or(IDLE, |at| {
                Duration::from_millis(
                    (at.as_millis() - journal::now().as_millis()).clamp(0, IDLE.as_millis() as i64) as u64
                )
            });
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Tends every active schedule once; the earliest next firing.
    async fn pass(&self) -> Option<Timestamp> {
        let saved = match self.store.schedules().await {
            Ok(saved) => saved,
            Err(error) => {
                eprintln!("schedules: cannot list them: {error}");
                return None;
            }
        };
        let mut next: Option<Timestamp> = None;
        for saved in saved.into_iter().filter(|saved| saved.paused.is_none()) {
            let name = saved.schedule.name.clone();
            match self.tend(saved).await {
                Ok(Some(at)) => next = Some(next.map_or(at, |earlier| earlier.min(at))),
                Ok(None) => {}
                // Changed by someone else meanwhile: the next pass reads it again.
                Err(StoreError::ScheduleChanged(_)) => {}
                Err(error) => eprintln!("schedules: {name}: {error}"),
            }
        }
        next
    }

    /// Finishes a claim left by a restart; when the schedule is due, pauses it if its runs keep
    /// failing, or fires it; when it is next due.
    async fn tend(&self, saved: SavedSchedule) -> Result<Option<Timestamp>, StoreError> {
        let name = saved.schedule.name.clone();
        let timing = match Timing::new(&saved.schedule) {
            Ok(timing) => timing,
            Err(reason) => {
                self.store.pause_schedule(&name, &format!("its rule cannot be read: {reason}"), journal::now()).await?;
                return Ok(None);
            }
        };
        let recent =
            self.store.firings(&name, Firings::Runs, saved.resumed_at, saved.schedule.max_failures + 8).await?;
        if let Some(claimed) = recent.first().filter(|firing| firing.outcome == FiringOutcome::Claimed) {
            self.finish_claim(&saved, &timing, claimed).await?;
            return Ok(Some(journal::now()));
        }
        let now = journal::now();
        let due = timing.between(saved.cursor, now, usize::MAX);
        let Some(&latest) = due.last() else {
            return Ok(timing.after(now).next());
        };
        // Judged when it is due, so that a pass over schedules with nothing due reads no task.
        if let Some(reason) = self.failing(&saved, &recent).await? {
            self.store.pause_schedule(&name, &reason, now).await?;
            return Ok(None);
        }
        let mut firings = self.misses(&saved, &due[..due.len() - 1], latest, now);
        let mut run = None;
        let late = latest < self.up_since;
        if late && saved.schedule.catch_up == CatchUp::Skip {
            firings.push(skipped(&name, latest, now, "missed: no server was running (catch-up: skip)".into()));
        } else {
            let recorded = |outcome, task: Option<&TaskId>, detail: String| Firing {
                schedule: name.clone(),
                at: latest,
                outcome,
                task: task.map(TaskId::to_string),
                detail,
                recorded_at: now,
            };
            match self.verdict(&saved, &timing, latest, &recent).await? {
                Verdict::Skip(reason) => firings.push(recorded(FiringOutcome::Skipped, None, reason)),
                Verdict::Unstartable(reason) => firings.push(recorded(FiringOutcome::Unstartable, None, reason)),
                Verdict::Start(prepared) => {
                    let id = new_task_id();
                    firings.push(recorded(FiringOutcome::Claimed, Some(&id), "starting".into()));
                    run = Some((id, prepared));
                }
            }
        }
        self.store.advance_schedule(&name, saved.cursor, now, &firings).await?;
        if let Some((id, prepared)) = run {
            self.start(&saved.schedule.name, latest, &id, prepared, saved.schedule.owner.clone()).await?;
        }
        Ok(timing.after(now).next())
    }

    /// The firings before `latest` in one pass, recorded as skipped: missed while no server ran, or
    /// overtaken by a later one (a pass that came late); listed one by one up to a point.
    fn misses(&self, saved: &SavedSchedule, earlier: &[Timestamp], latest: Timestamp, now: Timestamp) -> Vec<Firing> {
        let name = &saved.schedule.name;
        let why = |at: Timestamp| {
            if at < self.up_since {
                "missed: no server was running".to_owned()
            } else {
                format!("overtaken by the firing at {latest}")
            }
        };
        let mut firings: Vec<Firing> =
            earlier.iter().take(LISTED_MISSES).map(|&at| skipped(name, at, now, why(at))).collect();
        if let (Some(first), Some(last)) = (earlier.get(LISTED_MISSES), earlier.last()) {
            let more = earlier.len() - LISTED_MISSES;
            firings.push(skipped(name, *first, now, format!("{more} more firings up to {last}: {}", why(*last))));
        }
        firings
    }

    /// Whether the firing at `at` starts a run, and with what.
    async fn verdict(
        &self,
        saved: &SavedSchedule,
        timing: &Timing,
        at: Timestamp,
        recent: &[Firing],
    ) -> Result<Verdict, StoreError> {
        let schedule = &saved.schedule;
        let previous = match recent.iter().find(|firing| firing.outcome == FiringOutcome::Started) {
            Some(firing) => self.newest_of_line(firing).await?,
            None => self.previous_run(saved).await?,
        };
        if let Some(previous) = &previous {
            if still_going(previous.status()) {
                return Ok(Verdict::Skip(format!("no overlap: task {} is still {}", previous.id, previous.status())));
            }
            if schedule.mode == ScheduleMode::Continue && previous.status() == Status::Paused {
                return Ok(Verdict::Skip(format!(
                    "task {} is {}: resume or cancel it, and the next firing continues its line",
                    previous.id,
                    ended(previous)
                )));
            }
        }
        if let Some(limit) = schedule.runs_per_day {
            let today = self.store.firings(&schedule.name, Firings::Runs, timing.day_start(at), u32::MAX).await?;
            let started =
                today.iter().filter(|firing| firing.at < at && firing.outcome != FiringOutcome::Unstartable).count();
            if started >= limit as usize {
                return Ok(Verdict::Skip(format!("{started} runs today already (at most {limit} a day)")));
            }
        }
        let mut template = match self.store.template(&schedule.template).await {
            Ok(template) => template,
            Err(StoreError::NoSuchTemplate(_)) => {
                return Ok(Verdict::Unstartable(format!("template {} is gone", schedule.template)));
            }
            Err(error) => return Err(error),
        };
        let mut budget = [template.budget.credits, schedule.run_budget].into_iter().flatten().min();
        if let Some(cap) = schedule.month_budget {
            let spent = self.spent_since(&schedule.name, timing.month_start(at), at).await?;
            let left = Credits::from_micros(cap.micros() - spent.micros());
            if left <= Credits::ZERO {
                return Ok(Verdict::Skip(format!("its month budget of {cap} credits is spent ({spent})")));
            }
            budget = Some(budget.map_or(left, |budget| budget.min(left)));
        }
        template.budget.credits = budget;
        let continues = match schedule.mode {
            ScheduleMode::Fresh => None,
            ScheduleMode::Continue => previous,
        };
        Ok(Verdict::Start(Box::new(Run { template, continues })))
    }

    /// The schedule's newest started run, looked up past any resume (for overlap and continuing).
    async fn previous_run(&self, saved: &SavedSchedule) -> Result<Option<TaskState>, StoreError> {
        let started = self.store.firings(&saved.schedule.name, Firings::Runs, Timestamp(0), 64).await?;
        match started.iter().find(|firing| firing.outcome == FiringOutcome::Started) {
            Some(firing) => self.newest_of_line(firing).await,
            None => Ok(None),
        }
    }

    /// The task a started firing made, or the newest task continuing it (a follow-up from a person
    /// continues a run's branch in a task of its own).
    async fn newest_of_line(&self, firing: &Firing) -> Result<Option<TaskState>, StoreError> {
        let Some(mut id) = firing.task.as_deref().and_then(|task| TaskId::parse(task).ok()) else {
            return Ok(None);
        };
        let mut newest = None;
        loop {
            let state = match self.store.load(&id).await {
                Ok(state) => state,
                // A continuation still being created: the line ends before it.
                Err(StoreError::NotFound(_)) => return Ok(newest),
                Err(error) => return Err(error),
            };
            let next = state.work.continued_by.as_deref().and_then(|next| TaskId::parse(next).ok());
            newest = Some(state);
            match next {
                Some(next) => id = next,
                None => return Ok(newest),
            }
        }
    }

    /// What the runs started since `since` (and before `before`) have spent, their subtasks' and
    /// attempts' spending included.
    async fn spent_since(&self, name: &str, since: Timestamp, before: Timestamp) -> Result<Credits, StoreError> {
        let runs = self.store.firings(name, Firings::Runs, since, u32::MAX).await?;
        let mut spent = 0;
        for firing in runs.iter().filter(|firing| firing.at < before) {
            let Some(id) = firing.task.as_deref().and_then(|task| TaskId::parse(task).ok()) else { continue };
            match self.store.load(&id).await {
                Ok(state) => spent += state.money.spent.micros() + state.money.delegated.micros(),
                Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Credits::from_micros(spent))
    }

    /// Why the schedule should pause itself: its latest runs (since it was last resumed) failed,
    /// as many in a row as it allows.
    async fn failing(&self, saved: &SavedSchedule, recent: &[Firing]) -> Result<Option<String>, StoreError> {
        let allowed = saved.schedule.max_failures as usize;
        let mut failed = Vec::new();
        for firing in recent {
            let failure = match (firing.outcome, firing.task.as_deref().and_then(|task| TaskId::parse(task).ok())) {
                (FiringOutcome::Unstartable, _) => Some(format!("a firing at {} could not start", firing.at)),
                (FiringOutcome::Started, Some(id)) => match self.store.load(&id).await {
                    Ok(state) if state.status() == Status::Done => break,
                    // Cancelled by a person: not the automation's failure, and not a success.
                    Ok(state) if state.status() == Status::Cancelled => break,
                    Ok(state) if still_going(state.status()) => None,
                    Ok(state) => Some(format!("task {id} {}", ended(&state))),
                    Err(StoreError::NotFound(_)) => None,
                    Err(error) => return Err(error),
                },
                _ => None,
            };
            failed.extend(failure);
            if failed.len() >= allowed {
                return Ok(Some(format!("{allowed} failed runs in a row: {}", failed.join("; "))));
            }
        }
        Ok(None)
    }

    /// Creates the task of a claimed firing and records what came of it.
    async fn start(
        &self,
        name: &str,
        at: Timestamp,
        id: &TaskId,
        run: Box<Run>,
        owner: Option<String>,
    ) -> Result<(), StoreError> {
        let started = match &run.continues {
            Some(earlier) => self.starter.continue_from(id, earlier, &run.template).await,
            None => self.starter.start(id, &run.template, owner).await,
        };
        let continuing =
            run.continues.as_ref().map_or(String::new(), |earlier| format!(", continuing task {}", earlier.id));
        let late = if at < self.up_since { ", caught up after downtime" } else { "" };
        let (outcome, detail) = match started {
            Ok(()) => (FiringOutcome::Started, format!("started task {id}{continuing}{late}")),
            Err(reason) => (FiringOutcome::Unstartable, reason),
        };
        self.store.settle_firing(name, at, outcome, &detail).await
    }

    /// A firing claimed by a server that stopped before its task was created: the same task,
    /// created now, unless the schedule's limits no longer let it start.
    async fn finish_claim(&self, saved: &SavedSchedule, timing: &Timing, claimed: &Firing) -> Result<(), StoreError> {
        let name = &saved.schedule.name;
        let Some(id) = claimed.task.as_deref().and_then(|task| TaskId::parse(task).ok()) else {
            return self.store.settle_firing(name, claimed.at, FiringOutcome::Unstartable, "no task id claimed").await;
        };
        let earlier: Vec<Firing> = self
            .store
            .firings(name, Firings::Runs, saved.resumed_at, saved.schedule.max_failures + 8)
            .await?
            .into_iter()
            .filter(|firing| firing.at < claimed.at)
            .collect();
        match self.verdict(saved, timing, claimed.at, &earlier).await? {
            Verdict::Start(run) => self.start(name, claimed.at, &id, run, saved.schedule.owner.clone()).await,
            Verdict::Skip(reason) => self.store.settle_firing(name, claimed.at, FiringOutcome::Skipped, &reason).await,
            Verdict::Unstartable(reason) => {
                self.store.settle_firing(name, claimed.at, FiringOutcome::Unstartable, &reason).await
            }
        }
    }
}

/// Whether a run blocks the next one: queued, running, being checked or reviewed, or waiting for a
/// person. A paused run (out of budget or time, or stopped by an error) has stopped short: it
/// counts as a failed run, and a schedule that continues sends it its next request.
fn still_going(status: Status) -> bool {
    matches!(status, Status::Queued | Status::Running | Status::Waiting | Status::Verifying | Status::Reviewing)
}

fn ended(state: &TaskState) -> String {
    match &state.stop {
        Some(stop) => format!("{} ({})", state.status(), stop.reason),
        None => state.status().to_string(),
    }
}

fn skipped(name: &str, at: Timestamp, now: Timestamp, detail: String) -> Firing {
    Firing { schedule: name.to_owned(), at, outcome: FiringOutcome::Skipped, task: None, detail, recorded_at: now }
}

fn new_task_id() -> TaskId {
    // Without entropy the clock stands in: ids stay unique per millisecond and schedule pass.
    let entropy = getrandom::u64().unwrap_or_else(|_| journal::now().as_millis() as u64);
    TaskId::from_entropy(entropy)
}
