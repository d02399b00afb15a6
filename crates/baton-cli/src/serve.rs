//! `baton serve`: the HTTP API and the scheduler on this data directory. Tasks created over the API
//! are validated as `baton run` validates them and queued; the scheduler runs queued tasks and takes
//! up the ones a previous server left interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use baton_core::{
    Credits, Event, FindingStatus, RepoSource, Schedule, Status, StopReason, TaskId, TaskState, Template, Timestamp,
};
use baton_engine::{Children, Engines, Observer, ScheduleError, Scheduler, Schedules, Starter, Timing, add_schedule};
use baton_server::{Access, Api, FollowedUp, LimitChange, Limits, Load, Meter, NewTask, Refused, Settled, Tasks};
use baton_store::{Store, StoreError};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::cli::{RunningArgs, ServeArgs, TaskArgs};
use crate::config::Config;
use crate::notifier::Notifier;
use crate::run::{self, Legs};
use crate::{budget, task};

pub async fn serve(home: &Path, config: &Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { addr, running, model, no_auth, rate_limit } = args;
    let store: Arc<dyn Store> = Arc::new(crate::store::open(home).await?);
    let (journaled, _) = broadcast::channel(4096);
    let announce = journaled.clone();
    let meter = Arc::new(Meter::default());
    let counted = meter.clone();
    let observer: Arc<Observer> = Arc::new(move |id, recorded| {
        counted.observe(id, recorded);
        let _ = announce.send((id.clone(), recorded.seq));
    });
    let scheduler = scheduler(home, config, store.clone(), &running, observer)?;
    // With no slots, workers elsewhere run the tasks this server takes in.
    let slots = if running.slots == Some(0) { 0 } else { scheduler.slots() };
    let scheduler = Arc::new(scheduler);
    let tasks = Arc::new(Creator {
        scheduler: scheduler.clone(),
        store: store.clone(),
        home: home.to_owned(),
        config: config.clone(),
        model,
        wake: scheduler.waker(),
        schedules: Arc::default(),
    });
    let schedules = Schedules::new(store.clone(), tasks.clone(), tasks.schedules.clone());
    let notifier = Notifier::new(store.clone())?;
    let access = if no_auth { Access::Open } else { Access::Tokens };
    baton_server::admits(access, addr)?;
    if access == Access::Tokens && !store.tokens().await?.iter().any(|token| token.revoked_at.is_none()) {
        anyhow::bail!(
            "no active token, so no request could be served: make one with `baton token create --name NAME \
             --scope admin`, or serve loopback to every local user with --no-auth"
        );
    }
    let limits = Arc::new(Limits::new(rate_limit));
    let shutdown = CancellationToken::new();
    let api = Api { store, tasks, journaled, access, limits, closing: shutdown.clone(), meter };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    // The first line of output, for scripts and tests that start a server on port 0.
    println!("baton serves {url} with {slots} slots");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stopped().await;
        stop.cancel();
    });
    // A server that cannot serve (or stops) stops the scheduler too.
    let server = async {
        let served = baton_server::serve(listener, api, shutdown.clone()).await;
        shutdown.cancel();
        served
    };
    let (served, (), (), ()) = tokio::join!(
        server,
        async {
            if slots > 0 {
                scheduler.run(shutdown.clone()).await
            }
        },
        schedules.run(shutdown.clone()),
        notifier.run(shutdown.clone())
    );
    served?;
    // Every run has stopped at its next step, its work in progress committed and its lease
    // released: the next start takes each task up where it stopped.
    Ok(ExitCode::SUCCESS)
}

/// The scheduler of a server or a worker: tasks run with this data directory's configuration.
pub fn scheduler(
    home: &Path,
    config: &Config,
    store: Arc<dyn Store>,
    running: &RunningArgs,
    observer: Arc<Observer>,
) -> anyhow::Result<Scheduler> {
    let lease_ttl = Duration::from_secs(running.lease_secs.max(3));
    let slots = match running.slots {
        Some(slots) => slots,
        None => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| total_memory(&text));
            let per_task = run::sandbox_config(home, config)?.limits.memory_bytes;
            default_slots(cores, memory, per_task)
        }
    };
    let engines: Arc<Engines> = {
        let (home, config, store) = (home.to_owned(), config.clone(), store.clone());
        Arc::new(move |state| {
            // A task on a path of another machine is for a process there.
            if let RepoSource::Local(path) = &state.spec.repo
                && !path.exists()
            {
                return Err(format!("its repository {} is not on this machine", path.display()));
            }
            let model = state.spec.model.clone().ok_or("the task names no model")?;
            let legs = Legs {
                context_window: state.spec.context_window,
                max_handoffs: state.spec.max_handoffs,
                role_models: state.spec.role_models.clone(),
            };
            let parts = run::engine_parts(&home, &config, &model, legs).map_err(|error| format!("{error:#}"))?;
            // The scheduler runs a task's attempts side by side.
            Ok(run::engine(store.clone(), parts).with_children(Children::Queued))
        })
    };
    let mut scheduler = Scheduler::new(store, home, slots, lease_ttl, engines, observer);
    if let Some(limit) = running.per_owner {
        scheduler = scheduler.per_owner(limit);
    }
    Ok(scheduler)
}

/// Until SIGINT or SIGTERM.
pub async fn stopped() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

impl Creator {
    /// Journals `event` after `state` (what the request was judged on) and wakes the scheduler; a
    /// task that changed meanwhile refuses it.
    async fn record(&self, state: &baton_core::TaskState, event: Event) -> Result<(), Refused> {
        self.store
            .append(&state.id, state.next_seq, task::now(), &[event])
            .await
            .map_err(|e| task::refusal(&state.id, e))?;
        self.wake.notify_one();
        Ok(())
    }
}

/// As many tasks at once as there are cores, and no more than the machine's memory holds at each
/// sandbox's memory limit (at least one).
fn default_slots(cores: usize, memory: Option<u64>, per_task: Option<u64>) -> usize {
    match (memory, per_task.filter(|bytes| *bytes > 0)) {
        (Some(memory), Some(per_task)) => cores.min((memory / per_task) as usize).max(1),
        _ => cores.max(1),
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn total_memory(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Creates tasks for the API as `baton run` would, and wakes the scheduler.
struct Creator {
    scheduler: Arc<Scheduler>,
    store: Arc<dyn Store>,
    home: PathBuf,
    config: Config,
    /// For tasks created without a model.
    model: Option<String>,
    wake: Arc<Notify>,
    /// Wakes the schedules.
    schedules: Arc<Notify>,
}

impl Creator {
    /// `template`, with this server's model when it names none.
    fn with_model(&self, template: &Template) -> Template {
        Template { model: template.model.clone().or_else(|| self.model.clone()), ..template.clone() }
    }

    /// What a client described, as a task definition (named `name` for a template): checked as the
    /// command line checks it, with a model that can be used (a key; a price for a budget).
    fn definition(&self, name: String, new: NewTask) -> Result<Template, String> {
        let model = new.model.or_else(|| self.model.clone()).ok_or("no model: give `model` (provider/model)")?;
        if new.checks.is_empty() {
            return Err("give at least one check: baton only calls a task done when its checks pass".into());
        }
        let budget = match &new.budget {
            Some(text) => Some(text.parse::<Credits>().map_err(|error| format!("budget: {error}"))?),
            None => None,
        };
        let legs = Legs { context_window: new.context_window, ..Legs::default() };
        let parts = run::engine_parts(&self.home, &self.config, &model, legs).map_err(|error| format!("{error:#}"))?;
        if budget.is_some() && parts.price.is_none() {
            return Err(format!("{model} has no price, so a credit budget cannot be kept"));
        }
        let args = TaskArgs {
            model: Some(model),
            repo: new.repo.clone(),
            push: new.push,
            push_remote: "origin".to_owned(),
            checks: new.checks,
            check_timeout: Duration::from_secs(new.check_timeout_secs.unwrap_or(600)),
            base: new.base.unwrap_or_else(|| "HEAD".to_owned()),
            scope: new.scope,
            protect: new.protect,
            env: None,
            budget,
            window: new.window_secs.map(Duration::from_secs),
            max_steps: new.max_steps,
            priority: new.priority.unwrap_or(0),
            context_window: new.context_window,
            max_handoffs: None,
            no_review: !new.review.unwrap_or(true),
            plan: new.plan,
            attempts: new.attempts.unwrap_or(1),
            pick: new.pick.unwrap_or_default(),
            owner: None,
            approve_plan: new.approve_plan,
            captain_model: new.captain_model,
            review_model: new.review_model,
        };
        task::definition(name, new.request, args).map_err(|error| format!("{error:#}"))
    }
}

/// Firings start their tasks as the API does, each as the task its firing claimed.
#[async_trait::async_trait]
impl Starter for Creator {
    async fn start(&self, id: &TaskId, template: &Template, owner: Option<String>) -> Result<(), String> {
        task::start_as(self.store.as_ref(), &self.home, &self.with_model(template), owner, id)
            .await
            .map_err(|error| format!("{error:#}"))?;
        self.wake.notify_one();
        Ok(())
    }

    async fn continue_from(&self, id: &TaskId, earlier: &TaskState, template: &Template) -> Result<(), String> {
        task::continue_as(self.store.as_ref(), earlier, &template.request, template.budget, id)
            .await
            .map_err(|refused| refused.to_string())?;
        self.wake.notify_one();
        Ok(())
    }
}

#[async_trait::async_trait]
impl Tasks for Creator {
    async fn create(&self, new: NewTask, owner: Option<String>) -> Result<TaskId, String> {
        let template = self.definition(String::new(), new)?;
        let state = task::start(self.store.as_ref(), &self.home, &template, owner)
            .await
            .map_err(|error| format!("{error:#}"))?;
        self.wake.notify_one();
        Ok(state.id)
    }

    async fn save_template(&self, name: String, new: NewTask) -> Result<Template, Refused> {
        let template = self.definition(name, new).map_err(Refused::Invalid)?;
        template.check().map_err(Refused::Invalid)?;
        baton_engine::fetched_base(&self.home, &template.repo, &template.base)
            .map_err(|error| Refused::Invalid(error.to_string()))?;
        match self.store.add_template(&template, task::now()).await {
            Ok(()) => Ok(template),
            Err(error @ StoreError::TemplateExists(_)) => Err(Refused::Conflict(error.to_string())),
            Err(error) => Err(Refused::Failed(error.to_string())),
        }
    }

    async fn start_template(&self, name: &str, owner: Option<String>) -> Result<TaskId, Refused> {
        let template = match self.store.template(name).await {
            Ok(template) => template,
            Err(error @ StoreError::NoSuchTemplate(_)) => return Err(Refused::Missing(error.to_string())),
            Err(error) => return Err(Refused::Failed(error.to_string())),
        };
        let state = task::start(self.store.as_ref(), &self.home, &self.with_model(&template), owner)
            .await
            .map_err(|error| Refused::Invalid(format!("{error:#}")))?;
        self.wake.notify_one();
        Ok(state.id)
    }

    async fn start_delivered(
        &self,
        id: &TaskId,
        template: &str,
        request: String,
        owner: Option<String>,
    ) -> Result<(), Refused> {
        let template = match self.store.template(template).await {
            Ok(template) => Template { request, ..template },
            Err(error @ StoreError::NoSuchTemplate(_)) => return Err(Refused::Invalid(error.to_string())),
            Err(error) => return Err(Refused::Failed(error.to_string())),
        };
        Starter::start(self, id, &template, owner).await.map_err(Refused::Invalid)
    }

    async fn save_schedule(&self, schedule: Schedule) -> Result<(), Refused> {
        match add_schedule(self.store.as_ref(), &schedule, task::now()).await {
            Ok(()) => {
                self.schedules.notify_one();
                Ok(())
            }
            Err(ScheduleError::Invalid(reason)) => Err(Refused::Invalid(reason)),
            Err(ScheduleError::Store(error @ StoreError::ScheduleExists(_))) => {
                Err(Refused::Conflict(error.to_string()))
            }
            Err(ScheduleError::Store(error)) => Err(Refused::Failed(error.to_string())),
        }
    }

    fn next_firings(&self, schedule: &Schedule, after: Timestamp, count: usize) -> Vec<Timestamp> {
        Timing::new(schedule).map(|timing| timing.after(after).take(count).collect()).unwrap_or_default()
    }

    fn wake_schedules(&self) {
        self.schedules.notify_one();
    }

    async fn resume(&self, id: &TaskId) -> Result<(), Refused> {
        let failed = |error: StoreError| Refused::Failed(error.to_string());
        let state = self.store.load(id).await.map_err(failed)?;
        if state.status() != Status::Paused {
            return Err(Refused::Conflict(format!("task {id} is {}; only a paused task resumes", state.status())));
        }
        // Running, and held by no one: the scheduler takes it up as it would a crashed server's.
        self.record(&state, Event::Resumed { detail: "resumed over the API".into() }).await
    }

    async fn may_write(&self, id: &TaskId, login: &str, user: Option<u64>) -> Result<bool, Refused> {
        let state = self.store.load(id).await.map_err(|error| Refused::Failed(error.to_string()))?;
        let Some(remote) = &state.spec.push else {
            return Err(Refused::Invalid(format!("task {id} is not pushed to a forge that can say who {login} is")));
        };
        let forges =
            baton_forge::Forges::read(&self.config.text).map_err(|error| Refused::Failed(error.to_string()))?;
        let Some(forge) = forges.for_remote(remote.as_str()) else {
            return Err(Refused::Invalid(format!("no forge is known for {remote}")));
        };
        let commenter = baton_forge::Commenter { login: login.to_owned(), id: user };
        forge.may_write(&commenter).await.map_err(|error| Refused::Failed(error.to_string()))
    }

    async fn publish_pull_request(&self, id: &TaskId) -> Result<(), Refused> {
        let forges =
            baton_forge::Forges::read(&self.config.text).map_err(|error| Refused::Invalid(error.to_string()))?;
        task::publish_pull_request(self.store.as_ref(), &forges, id).await.map(drop)
    }

    async fn cancel(&self, id: &TaskId, reason: &str) -> Result<(), Refused> {
        task::cancel(self.store.as_ref(), &self.home, id, reason).await.map(drop)
    }

    async fn decide(&self, id: &TaskId, decision: &str, answer: String, approved: bool) -> Result<(), Refused> {
        task::decide(self.store.as_ref(), id, decision, answer, approved).await?;
        // Running again and held by no one: the scheduler takes it up.
        self.wake.notify_one();
        Ok(())
    }

    async fn pick(&self, id: &TaskId, attempt: &str) -> Result<(), Refused> {
        task::pick(self.store.as_ref(), id, attempt).await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn settle(&self, id: &TaskId, finding: &str, settled: Settled, note: String) -> Result<(), Refused> {
        let status = match settled {
            Settled::Resolved => FindingStatus::Resolved,
            Settled::Dismissed => FindingStatus::Irrelevant,
        };
        task::settle_finding(self.store.as_ref(), id, finding, status, note).await.map(drop)
    }

    async fn limit(&self, id: &TaskId, change: &LimitChange) -> Result<(), Refused> {
        let state = budget::set_limits(self.store.as_ref(), id, change).await?;
        // Paused by a limit: runnable again, and the scheduler's to take up; if the new limits
        // are still too low, the run pauses again at once and says why.
        let by_limit = state
            .stop
            .as_ref()
            .is_some_and(|stop| matches!(stop.reason, StopReason::BudgetExhausted | StopReason::TimeWindowExhausted));
        if state.status() == Status::Paused && by_limit {
            self.record(&state, Event::Resumed { detail: "limits changed over the API".into() }).await?;
        }
        Ok(())
    }

    async fn follow_up(&self, id: &TaskId, text: &str) -> Result<FollowedUp, Refused> {
        let sent = task::follow_up(self.store.as_ref(), id, text).await?;
        self.wake.notify_one();
        Ok(sent)
    }

    fn load(&self) -> Load {
        Load {
            busy: self.scheduler.running(),
            slots: self.scheduler.slots(),
            runs_started: self.scheduler.runs_started(),
        }
    }

    async fn changed_files(&self, id: &TaskId) -> Result<Vec<baton_core::FileChange>, Refused> {
        let state = self.store.load(id).await.map_err(|error| Refused::Failed(error.to_string()))?;
        // git blocks: off the runtime that serves requests.
        let home = self.home.clone();
        let made = tokio::task::spawn_blocking(move || run::changed_files(&home, &state)).await;
        match made {
            Ok(Ok(files)) => Ok(files),
            Ok(Err(error)) => Err(Refused::Failed(format!("{error:#}"))),
            Err(error) => Err(Refused::Failed(error.to_string())),
        }
    }

    async fn diff(&self, id: &TaskId, upto: Option<&str>) -> Result<String, Refused> {
        let failed = |error: StoreError| Refused::Failed(error.to_string());
        let state = self.store.load(id).await.map_err(failed)?;
        // Only a commit the task checkpointed: the text names no other revision to git.
        if let Some(commit) = upto
            && !state.work.checkpoints.iter().any(|made| made == commit)
        {
            return Err(Refused::Missing(format!("task {id} has no checkpoint {commit:?}")));
        }
        let upto = upto.map(str::to_owned);
        // git blocks: off the runtime that serves requests.
        let home = self.home.clone();
        let made = tokio::task::spawn_blocking(move || run::diff_text(&home, &state, upto.as_deref())).await;
        match made {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(error)) => Err(Refused::Failed(format!("{error:#}"))),
            Err(error) => Err(Refused::Failed(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_default_to_the_cores_within_what_memory_holds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_slots(2, Some(24 * GIB), Some(4 * GIB)), 2, "cores bound");
        assert_eq!(default_slots(16, Some(24 * GIB), Some(4 * GIB)), 6, "memory bounds");
        assert_eq!(default_slots(4, Some(2 * GIB), Some(4 * GIB)), 1, "at least one");
        assert_eq!(default_slots(4, None, Some(4 * GIB)), 4, "memory unknown");
        assert_eq!(default_slots(4, Some(2 * GIB), None), 4, "no limit per sandbox");
        assert_eq!(total_memory("MemTotal:       24594892 kB\nMemFree: 1 kB\n"), Some(24594892 * 1024));
        assert_eq!(total_memory("MemFree: 1 kB\n"), None);
    }
}
