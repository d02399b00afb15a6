//! A task's life: its worktree and sandbox, the build leg's loop of model calls and tool calls, the
//! acceptance checks that decide "verified", checkpoints, and resuming from the journal after a crash
//! or a pause. Every model call and tool call is journaled as started before it happens and as
//! finished after, so a restart continues exactly where the journal ends and never runs a tool call
//! twice: a call that was started but not finished is reported to the agent as interrupted.

mod attempts;
mod background;
mod build;
mod calls;
mod checkpoint;
mod clean;
mod confined_git;
mod environment;
mod gate;
mod handoff;
mod journal;
mod layout;
mod lease;
mod machine;
mod model_call;
mod money;
mod plan;
mod pull_request;
mod recover;
mod repository;
mod review;
mod scheduler;
mod schedules;
mod services;
mod snapshot;
mod timing;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use baton_core::{
    ApprovalPolicy, Event, LegRole, Phase, Rates, Recorded, Refusal, Status, StopReason, TaskId, TaskState,
};
use baton_git::GitError;
use baton_model::{ModelClient, ModelError, ModelName, Price};
use baton_sandbox::{SandboxConfig, SandboxError};
use baton_store::{Store, StoreError};
use baton_tools::{ToolError, Toolbox};

pub use crate::confined_git::SandboxedGit;
pub use crate::environment::{EnvironmentCheck, Resolved, check_environment};
use crate::journal::Journal;
pub use crate::layout::TaskLayout;
pub use crate::lease::{HeldLease, holder_name};
use crate::machine::Machine;
pub use crate::machine::discard;
pub use crate::pull_request::publish_event;
pub use crate::repository::{fetched_base, remotes, repository};
pub use crate::scheduler::{Engines, Observer, Scheduler};
pub use crate::schedules::{ScheduleError, Schedules, Starter, add_schedule};
pub use crate::snapshot::{Caches, Manifest, Provenance, SetupFailure, SetupStep, Snapshot, Snapshots, Source};
pub use crate::timing::Timing;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("the workspace: {0}")]
    Workspace(#[from] ToolError),
    #[error("task {task}: {source}")]
    Journal { task: TaskId, source: baton_core::FoldError },
    #[error("the plan: {0}")]
    Plan(String),
    #[error(transparent)]
    Environment(#[from] baton_core::EnvironmentError),
    #[error("the clean machine: {0}")]
    Clean(String),
    #[error("environments: {0}")]
    Environments(String),
    #[error("{0}")]
    Setup(SetupFailure),
    #[error("an event could not be redacted of the task's secrets, so it was not written: {0}")]
    Redaction(String),
    #[error("the task's machine could not be removed: {0}")]
    Teardown(std::io::Error),
    #[error("the remote: {0}")]
    Remote(String),
}

impl EngineError {
    /// The stop reason a task pauses with when this error ends a run; `None` for failures of the
    /// journal, which cannot record a pause.
    fn pauses_as(&self) -> Option<StopReason> {
        match self {
            EngineError::Store(_) | EngineError::Journal { .. } | EngineError::Redaction(_) => None,
            EngineError::Git(_)
            | EngineError::Sandbox(_)
            | EngineError::Workspace(_)
            | EngineError::Plan(_)
            | EngineError::Environment(_)
            | EngineError::Clean(_)
            | EngineError::Environments(_)
            | EngineError::Setup(_)
            | EngineError::Teardown(_)
            | EngineError::Remote(_) => Some(StopReason::EnvironmentError),
        }
    }
}

/// How the engine runs tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// baton's data directory: worktrees and sandbox layers live under it.
    pub home: PathBuf,
    /// `provider/model`, as the journal records it; requests carry the part after the provider.
    pub model: ModelName,
    /// The model's price: each call reserves its worst case before it starts and is charged what
    /// it used after. `None`: calls are not charged (and a credit budget cannot be kept).
    pub price: Option<Price>,
    /// What sandbox seconds and check runs cost.
    pub rates: Rates,
    /// Commands that wait for a human's approval before they run.
    pub approval: ApprovalPolicy,
    pub max_output_tokens: u32,
    /// The model's context window in tokens: legs hand off before their prompt outgrows it.
    pub context_window: u64,
    /// Handoffs a task may make before it pauses.
    pub max_handoffs: u32,
    /// How many times the checks may run before the task fails with `checks_failed`.
    pub max_verifications: u32,
    pub sandbox: SandboxConfig,
    /// Where the pull requests of tasks pushed to a remote go.
    pub forges: baton_forge::Forges,
    /// The variables of baton's own credentials, which no repository's declaration or task's
    /// request is handed.
    pub own_credentials: baton_core::OwnCredentials,
}

pub struct Engine {
    store: Arc<dyn Store>,
    model: Arc<dyn ModelClient>,
    config: EngineConfig,
    /// Roles that use a model of their own instead of `config.model`.
    roles: std::collections::BTreeMap<LegRole, RoleModel>,
    /// Counts each long text of the prompts once.
    estimator: baton_model::Estimator,
    /// Cancelled when baton is stopping: a build leg stops before its next step.
    stop: tokio_util::sync::CancellationToken,
    children: Children,
}

/// Where a task's attempts run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Children {
    /// Inside the parent's run, one after another: a run in a terminal.
    #[default]
    Inline,
    /// As tasks of their own, queued for a scheduler that runs them side by side: the parent's
    /// run returns while they go on, holding no slot, and is taken up again as they end.
    Queued,
}

/// A model a role uses instead of the task's: its name, its client and its price.
pub struct RoleModel {
    pub name: ModelName,
    pub client: Arc<dyn ModelClient>,
    pub price: Option<Price>,
}

impl std::fmt::Debug for RoleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleModel").field("name", &self.name).field("price", &self.price).finish_non_exhaustive()
    }
}

/// The model a leg calls.
struct Chosen<'a> {
    name: &'a ModelName,
    client: &'a dyn ModelClient,
    price: Option<Price>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How an answer's tool calls went.
enum Acted {
    Done,
    /// The agent called `finish` with this summary.
    Finish(String),
    /// The budget refused a call's sandbox time; the calls from there on did not start.
    Refused(Refusal),
    /// A call waits for a human; the calls from there on did not start.
    Waiting,
    /// The reviewer reported its findings: the review round is over.
    Reported,
    /// The captain's plan was accepted.
    Planned,
}

/// What a model call came to: its answer (or what was done with it), or why there is none.
enum Called<T> {
    Answered(T),
    /// The budget refused its hold; nothing was sent.
    Refused(Refusal),
    Failed(ModelError),
}

/// Whether the account and the task's limit admitted what was to be journaled.
enum Admission {
    Admitted,
    /// Nothing of it was written.
    Refused(Refusal),
}

/// The repository's instructions for `role`, read beneath the worktree by the toolbox (whose reads
/// follow no symlink and stop at the size cap).
fn instructions(toolbox: &Toolbox, spec: &baton_core::TaskSpec, role: LegRole) -> String {
    baton_agent::instructions(spec, role, |path| toolbox.read_own(path, baton_agent::MAX_INSTRUCTIONS))
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, model: Arc<dyn ModelClient>, config: EngineConfig) -> Engine {
        Engine {
            store,
            model,
            config,
            roles: Default::default(),
            estimator: Default::default(),
            stop: Default::default(),
            children: Children::Inline,
        }
    }

    /// Runs a task's attempts as `children` says.
    pub fn with_children(mut self, children: Children) -> Engine {
        self.children = children;
        self
    }

    /// Has a run stop before its next step once `stop` is cancelled: the work in progress is
    /// committed on the task's branch and the task left running, for whoever takes it up next.
    pub fn stopping_on(mut self, stop: tokio_util::sync::CancellationToken) -> Engine {
        self.stop = stop;
        self
    }

    /// Has `role`'s legs call `model` instead of the task's.
    pub fn with_role_model(mut self, role: LegRole, model: RoleModel) -> Engine {
        self.roles.insert(role, model);
        self
    }

    /// Runs (or resumes) a task until it is done, fails, or pauses. `observer` sees every event as it
    /// is journaled, for live progress.
    pub async fn run(
        &self,
        task: &TaskId,
        observer: &mut (dyn FnMut(&Recorded) + Send),
    ) -> Result<TaskState, EngineError> {
        self.run_leased(task, None, observer).await
    }

    /// [`Engine::run`], every append made under `lease` when one is given: a run whose lease was
    /// taken over (its holder frozen past the expiry) fails at its next write, having written
    /// nothing more.
    pub async fn run_leased(
        &self,
        task: &TaskId,
        lease: Option<&baton_store::Lease>,
        observer: &mut (dyn FnMut(&Recorded) + Send),
    ) -> Result<TaskState, EngineError> {
        let mut journal = Journal::open(self.store.as_ref(), task, lease, observer).await?;
        match journal.state().status() {
            Status::Done | Status::Failed | Status::Cancelled => return Ok(journal.into_state()),
            Status::Queued => journal.append(Event::Started).await?,
            // A task waiting for a human waits, spending nothing, until `decision_made` resumes it.
            Status::Waiting => return Ok(journal.into_state()),
            Status::Paused => journal.append(Event::Resumed { detail: "resumed".into() }).await?,
            Status::Running | Status::Verifying | Status::Reviewing => {}
        }
        // Nothing to do until an attempt running on its own ends: no machine is prepared for it.
        if self.awaits_children(journal.state()).await? {
            return Ok(journal.into_state());
        }

        let snapshots = Snapshots::new(&self.config.home, self.config.sandbox.clone());
        match self.prepare(journal.state(), &snapshots) {
            Ok(prepared) => {
                journal.redact(prepared.toolbox.shared_secrets());
                // A resume on the environment the task was on says nothing new: recovery comes first.
                let work = &journal.state().work;
                let unchanged = |event: &Event| match event {
                    Event::EnvironmentPrepared { hash, snapshot, .. } => {
                        work.environment.as_ref() == Some(hash) && work.snapshot == *snapshot
                    }
                    _ => false,
                };
                let events: Vec<Event> =
                    prepared.environment.events.iter().filter(|event| !unchanged(event)).cloned().collect();
                for event in events {
                    journal.append(event).await?;
                }
                let machine = Machine {
                    toolbox: &prepared.toolbox,
                    clean: &prepared.clean,
                    worktree: &prepared.worktree,
                    environment: &prepared.environment,
                    snapshots: &snapshots,
                };
                if let Err(error) = self.resume(&mut journal, machine).await {
                    // A failure of the task's machine (a commit git refused, a check the sandbox
                    // could not start) pauses the task with what failed; `resume` tries again.
                    // One of the journal itself cannot be journaled.
                    let running =
                        matches!(journal.state().status(), Status::Running | Status::Verifying | Status::Reviewing);
                    let Some(reason) = error.pauses_as().filter(|_| running) else { return Err(error) };
                    let detail = format!("baton could not go on: {error}");
                    journal.append(Event::Paused { reason, detail }).await?;
                }
            }
            Err(error) => {
                if let EngineError::Setup(failure) = &error {
                    for (host, port) in failure.steps.iter().flat_map(|step| step.refused.clone()) {
                        journal.append(Event::ConnectionRefused { host, port, phase: Phase::Initialize }).await?;
                    }
                }
                let detail = format!("the task's machine could not be prepared: {error}");
                journal.append(Event::Paused { reason: StopReason::EnvironmentError, detail }).await?;
            }
        }
        journal.flush().await?;
        Ok(journal.into_state())
    }
}
