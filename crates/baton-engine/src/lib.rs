//! A task's life: its worktree and sandbox, the build leg's loop of model calls and tool calls, the
//! acceptance checks that decide "verified", checkpoints, and resuming from the journal after a crash
//! or a pause. Every model call and tool call is journaled as started before it happens and as
//! finished after, so a restart continues exactly where the journal ends and never runs a tool call
//! twice: a call that was started but not finished is reported to the agent as interrupted.

mod handoff;
mod journal;
mod money;
mod plan;
mod review;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use baton_agent::ContextBudget;
use baton_core::{
    Answer, ApprovalPolicy, Credits, Decision, DecisionKind, Effect, Event, LegRole, Message, ModelRequest,
    ModelResponse, PromptSize, Rates, Recorded, Refusal, Secret, Status, StopReason, TaskId, TaskState, ToolSpec,
};
use baton_git::{GitError, Repo, Worktree};
use baton_model::{ModelClient, ModelError, ModelName, Price};
use baton_sandbox::{LocalSandbox, SandboxConfig, SandboxError};
use baton_store::{Store, StoreError};
use baton_tools::{ToolError, Toolbox, Workspace};
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;

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
    #[error("an event could not be redacted of the task's secrets, so it was not written: {0}")]
    Redaction(String),
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
}

pub struct Engine {
    store: Arc<dyn Store>,
    model: Arc<dyn ModelClient>,
    config: EngineConfig,
    /// Roles that use a model of their own instead of `config.model`.
    roles: std::collections::BTreeMap<LegRole, RoleModel>,
    /// Counts each long text of the prompts once.
    estimator: baton_model::Estimator,
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

/// What a task's legs work with: its worktree, its tools (with the session sandbox) and the fresh
/// sandbox its checks run in.
#[derive(Clone, Copy)]
struct Machine<'a> {
    toolbox: &'a Toolbox,
    checks: &'a LocalSandbox,
    worktree: &'a Worktree,
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

/// Why a model call gave no answer.
enum CallFailure {
    /// The budget refused its hold; nothing was sent.
    Refused(Refusal),
    Failed(ModelError),
}

/// The tool calls of an answer: `(id, name, arguments)`.
fn calls_of(response: &ModelResponse) -> Vec<(String, String, String)> {
    response.tool_calls().map(|(id, name, arguments)| (id.to_owned(), name.to_owned(), arguments.to_owned())).collect()
}

/// What a tool call produced, and the event it leads to, if any.
struct Outcome {
    output: String,
    is_error: bool,
    effect: Effect,
    then: Option<Event>,
}

impl Outcome {
    fn ok(output: String) -> Outcome {
        Outcome { output, is_error: false, effect: Effect::None, then: None }
    }

    fn error(output: String) -> Outcome {
        Outcome { output, is_error: true, effect: Effect::None, then: None }
    }
}

/// What stands between a tool call and its running.
enum Gate {
    Open,
    Answered(Answer),
    Ask(Decision),
}

/// The repository's instructions for `role`, read beneath the worktree by the toolbox (whose reads
/// follow no symlink and stop at the size cap).
fn instructions(toolbox: &Toolbox, spec: &baton_core::TaskSpec, role: LegRole) -> String {
    baton_agent::instructions(spec, role, |path| toolbox.read_own(path, baton_agent::MAX_INSTRUCTIONS))
}

/// A checkpoint commit every this many model steps (when something changed).
const CHECKPOINT_STEPS: u32 = 10;

/// Model steps without progress before the agent counts as stuck.
const STALL_STEPS: u32 = 8;
/// The same tool call with the same result this many times counts as stuck.
const REPEATS: u32 = 3;

/// Why the agent looks stuck, if it does. Progress is judged from the journal, so a command that
/// polls a background process and sees new output each time is not stuck.
fn stuck(work: &baton_core::Work) -> Option<String> {
    if work.most_repeated_call >= REPEATS {
        return Some(format!("the same tool call gave the same result {} times", work.most_repeated_call));
    }
    let stalled = work.stalled_steps();
    (stalled >= STALL_STEPS)
        .then(|| format!("{stalled} steps without a file change, a plan update, a check run or a new result"))
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, model: Arc<dyn ModelClient>, config: EngineConfig) -> Engine {
        Engine { store, model, config, roles: Default::default(), estimator: Default::default() }
    }

    /// Has `role`'s legs call `model` instead of the task's.
    pub fn with_role_model(mut self, role: LegRole, model: RoleModel) -> Engine {
        self.roles.insert(role, model);
        self
    }

    fn chosen(&self, role: LegRole) -> Chosen<'_> {
        match self.roles.get(&role) {
            Some(model) => Chosen { name: &model.name, client: model.client.as_ref(), price: model.price },
            None => Chosen { name: &self.config.model, client: self.model.as_ref(), price: self.config.price },
        }
    }

    /// A request's input tokens, as the role's provider counts them.
    fn estimate(&self, request: &ModelRequest, role: LegRole) -> u64 {
        self.estimator.estimate(request, self.chosen(role).name.provider)
    }

    /// Runs (or resumes) a task until it is done, fails, or pauses. `observer` sees every event as it
    /// is journaled, for live progress.
    pub async fn run(
        &self,
        task: &TaskId,
        observer: &mut (dyn FnMut(&Recorded) + Send),
    ) -> Result<TaskState, EngineError> {
        let mut journal = Journal::open(self.store.as_ref(), task, observer).await?;
        match journal.state().status() {
            Status::Done | Status::Failed | Status::Cancelled => return Ok(journal.into_state()),
            Status::Queued => journal.append(Event::Started).await?,
            // A task waiting for a human waits, spending nothing, until `decision_made` resumes it.
            Status::Waiting => return Ok(journal.into_state()),
            Status::Paused => journal.append(Event::Resumed { detail: "resumed".into() }).await?,
            Status::Running | Status::Verifying | Status::Reviewing => {}
        }

        match self.prepare(journal.state()) {
            Ok((worktree, toolbox, checks)) => {
                journal.redact(toolbox.shared_secrets());
                let machine = Machine { toolbox: &toolbox, checks: &checks, worktree: &worktree };
                self.resume(&mut journal, machine).await?
            }
            Err(error) => {
                let detail = format!("the task's machine could not be prepared: {error}");
                journal.append(Event::Paused { reason: StopReason::EnvironmentError, detail }).await?;
            }
        }
        journal.flush().await?;
        Ok(journal.into_state())
    }

    /// The task's worktree, its tools (with a sandbox) and a second sandbox for the checks.
    fn prepare(&self, state: &TaskState) -> Result<(Worktree, Toolbox, LocalSandbox), EngineError> {
        let task = &state.id;
        let worktree_path = self.config.home.join("worktrees").join(task.as_str());
        let repo = Repo::open(&state.spec.repo)?;
        let worktree = repo.ensure_worktree(&state.branch, &worktree_path, &state.base_commit)?;
        let sandbox_state = self.config.home.join("sandboxes").join(task.as_str());
        let git_dirs = vec![worktree.common_dir()?];
        let sandbox =
            || LocalSandbox::new(self.config.sandbox.clone(), &sandbox_state, worktree.path(), git_dirs.clone());
        // Credentials a human granted: the journal keeps their names, the environment their values.
        let granted = state.work.decisions.iter().filter_map(|(decision, answer)| match (&decision.kind, answer) {
            (DecisionKind::Credential { name }, Some(answer)) if answer.approved => {
                std::env::var(name).ok().map(|value| Secret { name: name.clone(), value })
            }
            _ => None,
        });
        let toolbox = Toolbox::new(Workspace::open(worktree.path())?)
            .with_sandbox(Box::new(sandbox()?), granted.collect())
            .with_reader(Box::new(sandbox()?.reading_only()));
        let checks = sandbox()?;
        Ok((worktree, toolbox, checks))
    }

    /// Continues from wherever the journal ends, then works.
    async fn resume(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let Machine { toolbox, worktree, .. } = machine;
        let state = journal.state().clone();
        // A task with a plan starts with its captain, who opens its own leg.
        if state.work.leg == 0 && !state.spec.plan {
            let instructions = instructions(toolbox, &state.spec, LegRole::Build);
            let system = baton_agent::system_prompt(&instructions);
            let brief = baton_agent::brief(&state.spec);
            journal
                .append(Event::LegStarted {
                    leg: 1,
                    model: self.chosen(LegRole::Build).name.to_string(),
                    system,
                    brief,
                    role: LegRole::Build,
                })
                .await?;
        }
        // What a crash interrupted is told, never redone.
        for (call_id, name) in state.work.pending_tools.clone() {
            let output = format!(
                "interrupted: baton stopped while this `{name}` call ran; it may or may not have taken effect. Check before repeating it."
            );
            journal.append(Event::ToolCallFinished { call_id, output, is_error: true, effect: Effect::None }).await?;
        }
        if let Some(step) = state.work.model_call_in_flight {
            journal.append(Event::ModelCallFailed { step, error: "interrupted by a restart".into() }).await?;
        }
        // An interrupted call may have been billed: its hold is charged in full.
        for (key, charges) in state.money.held.clone() {
            journal.append(Event::Settled { key, charges }).await?;
        }
        // A budget overrun a human answered: the new limit, or a pause.
        if let Some((decision, Some(answer))) = state.work.decisions.last().filter(|_| state.work.overrun_answered)
            && let DecisionKind::BudgetOverrun { limit, .. } = decision.kind
        {
            match answer.answer.trim().parse::<Credits>().ok().filter(|raised| answer.approved && *raised > limit) {
                Some(raised) => {
                    let budget = baton_core::Budget { credits: Some(raised), ..state.spec.budget };
                    journal.append(Event::BudgetChanged { budget }).await?;
                }
                None => {
                    let detail = format!(
                        "the budget of {limit} credits stays (the answer to {} was not a higher limit: {:?})",
                        decision.id, answer.answer
                    );
                    return self.pause(journal, worktree, StopReason::BudgetExhausted, detail).await;
                }
            }
        }
        // A handoff a crash interrupted is written again: its summarisation call has no effect.
        if let Some((reason, emergency)) = state.work.handoff_in_flight.clone()
            && !self.hand_off(journal, worktree, &self.tools(toolbox, &state.work), reason, emergency, None).await?
        {
            return Ok(());
        }
        if journal.state().status() == Status::Verifying
            && self.verify(journal, machine, "verification interrupted by a restart").await?
        {
            return Ok(());
        }
        // A review a crash interrupted starts its round again.
        if journal.state().status() == Status::Reviewing
            && self.review(journal, machine, "verified (the review was interrupted by a restart)").await?
        {
            return Ok(());
        }
        // A crash between `finish` and the checks: the checks are still owed.
        if journal.state().work.finish_requested
            && self.verify(journal, machine, "finished (the checks were interrupted by a restart)").await?
        {
            return Ok(());
        }
        // A crash between an answer and its tool calls left calls that never started: run them now.
        let unanswered = journal.state().work.unanswered_calls();
        if !unanswered.is_empty() {
            let step = journal.state().work.steps;
            match self.act(journal, machine, step, unanswered).await? {
                // Only review and captain legs report or plan, and they do not get here.
                Acted::Done | Acted::Reported | Acted::Planned => {}
                Acted::Finish(summary) => {
                    if self.verify(journal, machine, &summary).await? {
                        return Ok(());
                    }
                }
                Acted::Refused(refusal) => {
                    return self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await;
                }
                Acted::Waiting => return Ok(()),
            }
        }
        if journal.state().spec.plan {
            return self.plan_and_delegate(journal, machine).await;
        }
        self.work(journal, machine).await
    }

    /// The leg's loop: call the model, run its tool calls, verify on `finish`.
    async fn work(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let Machine { toolbox, worktree, .. } = machine;
        // The tools do not change during a leg; built once per leg, not per step.
        let mut tools = (journal.state().work.leg, self.tools(toolbox, &journal.state().work));
        loop {
            if tools.0 != journal.state().work.leg {
                tools = (journal.state().work.leg, self.tools(toolbox, &journal.state().work));
            }
            let tools = &tools.1;
            let work = &journal.state().work;
            if let Some(limit) = journal.state().spec.budget.steps.filter(|limit| u64::from(work.steps) >= *limit) {
                let detail = format!("the step limit of {limit} is reached");
                return self.pause(journal, worktree, StopReason::BudgetExhausted, detail).await;
            }
            if let (Some(window), Some(started)) = (journal.state().spec.budget.wall_clock_secs, work.started_at) {
                let elapsed = journal::now().as_millis().saturating_sub(started.as_millis()) / 1000;
                if elapsed >= window as i64 {
                    let detail = format!("the {window} s window is over ({elapsed} s since the task started)");
                    return self.pause(journal, worktree, StopReason::TimeWindowExhausted, detail).await;
                }
            }
            if !work.budget_warned {
                let state = journal.state();
                let spent = Credits::from_micros(state.money.spent.micros() + state.money.held_total().micros());
                let elapsed = work.started_at.map_or(0, |at| (journal::now().as_millis() - at.as_millis()).max(0));
                if let Some(text) =
                    baton_agent::budget_note(&state.spec.budget, spent, u64::from(work.steps), elapsed as u64)
                {
                    journal.append(Event::BudgetLow { text }).await?;
                    continue;
                }
            }
            let step = work.steps + 1;
            let budget = self.budget(work);
            let request =
                self.request(work.role, work.system.clone(), baton_agent::elide(&work.transcript), tools, budget);
            let estimate = self.estimate(&request, work.role);
            if let Some((reason, emergency)) = budget.handoff_due(estimate, work.plan_step_completed) {
                if !self.hand_off(journal, worktree, tools, reason, emergency, None).await? {
                    return Ok(());
                }
                continue;
            }
            let response = match self.call_model(journal, &request, step, estimate, budget).await? {
                Ok(response) => response,
                Err(CallFailure::Refused(Refusal::TaskBudget { limit, spent, reserved, needed }))
                    if self.config.approval.ask_on_budget_overrun =>
                {
                    let spent = Credits::from_micros(spent.micros() + reserved.micros());
                    let question = format!(
                        "The task's budget of {limit} credits would be crossed ({spent} spent or held, the next step needs up to {needed}). Raise it? Answer with the new limit in credits."
                    );
                    let decision = Decision {
                        id: format!("d{}", journal.state().work.decisions.len() + 1),
                        kind: DecisionKind::BudgetOverrun { limit, spent, needed },
                        question,
                        options: vec![Credits::from_micros(limit.micros().saturating_mul(2)).to_string()],
                        why: "the approval policy asks before a budget overrun".to_owned(),
                        call_id: None,
                    };
                    self.checkpoint(journal, worktree, "work in progress at the budget limit".to_owned()).await?;
                    return journal.append(Event::DecisionRequested { decision }).await;
                }
                Err(CallFailure::Refused(refusal)) => {
                    return self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await;
                }
                Err(CallFailure::Failed(error)) => {
                    if let ModelError::ContextOverflow { .. } = error {
                        // What the provider says its window is, or else at most what it refused.
                        let window = error.stated_window().unwrap_or(estimate);
                        let reason = format!(
                            "the provider refused a prompt baton estimated at {estimate} tokens as too long for the model's context ({window} tokens)"
                        );
                        if !self.hand_off(journal, worktree, tools, reason, true, Some(window)).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    let detail = format!("the model call failed: {error}");
                    return self.pause(journal, worktree, StopReason::ModelError, detail).await;
                }
            };
            let calls = calls_of(&response);
            // Written with the first tool call's intent (or whatever comes next): if it is lost, the
            // model is asked again, and the lost call is charged its hold.
            journal.defer(Event::ModelCallFinished { step, response })?;
            if calls.is_empty() {
                let text = "You answered without calling a tool. Keep working with the tools, or call `finish` when the task is done.";
                journal.append(Event::Feedback { text: text.into() }).await?;
            }
            match self.act(journal, machine, step, calls).await? {
                // Only review and captain legs report or plan, and they do not get here.
                Acted::Done | Acted::Reported | Acted::Planned => {}
                Acted::Finish(summary) => {
                    if self.verify(journal, machine, &summary).await? {
                        return Ok(());
                    }
                    continue;
                }
                Acted::Refused(refusal) => {
                    return self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await;
                }
                Acted::Waiting => return Ok(()),
            }
            let steps = journal.state().work.steps;
            if steps.is_multiple_of(CHECKPOINT_STEPS) {
                self.checkpoint(journal, worktree, format!("work in progress at step {steps}")).await?;
            }
            if let Some(reason) = stuck(&journal.state().work) {
                if journal.state().work.nudged {
                    return self.pause(journal, worktree, StopReason::Stuck, reason).await;
                }
                let text = format!(
                    "baton: you seem stuck ({reason}). Step back: re-read the task and the last errors, try a different approach, or call `finish` if the work is done."
                );
                journal.append(Event::Nudged { reason, text }).await?;
            }
        }
    }

    /// The leg's tools: the toolbox's, and `recall` and `ask_human`, which the engine answers.
    fn tools(&self, toolbox: &Toolbox, work: &baton_core::Work) -> Vec<ToolSpec> {
        let mut tools = toolbox.specs();
        tools.push(baton_agent::recall_spec());
        match work.role {
            LegRole::Review => {
                tools.retain(|tool| baton_agent::REVIEW_TOOLS.contains(&tool.name.as_str()));
                tools.push(baton_agent::report_findings_spec());
            }
            LegRole::Captain => {
                tools.retain(|tool| baton_agent::CAPTAIN_TOOLS.contains(&tool.name.as_str()));
                tools.push(baton_agent::ask_human_spec());
                tools.push(baton_agent::submit_plan_spec());
            }
            LegRole::Build => {
                tools.push(baton_agent::ask_human_spec());
                tools.push(baton_agent::request_credential_spec());
                if !work.findings.is_empty() {
                    tools.push(baton_agent::resolve_finding_spec());
                }
            }
        }
        tools
    }

    /// The room a leg has: the configured window, or the smaller one a provider's refusal taught.
    fn budget(&self, work: &baton_core::Work) -> ContextBudget {
        let window = work.learned_window.map_or(self.config.context_window, |w| w.min(self.config.context_window));
        ContextBudget::new(window, u64::from(self.config.max_output_tokens))
    }

    fn request(
        &self,
        role: LegRole,
        system: String,
        messages: Vec<Message>,
        tools: &[ToolSpec],
        budget: ContextBudget,
    ) -> ModelRequest {
        ModelRequest {
            model: self.chosen(role).name.model.clone(),
            system,
            // Everything but the newest turn stays the same for the next call.
            stable_prefix: messages.len().saturating_sub(1),
            messages,
            tools: tools.to_vec(),
            max_output_tokens: budget.max_output() as u32,
        }
    }

    /// Commits the work so far on the task branch, if there is anything new.
    async fn checkpoint(
        &self,
        journal: &mut Journal<'_>,
        worktree: &Worktree,
        evidence: String,
    ) -> Result<(), EngineError> {
        let message = format!("baton checkpoint: {evidence}");
        match worktree.commit_all(&message) {
            Ok(Some(commit)) => journal.append(Event::Checkpointed { commit, evidence }).await,
            Ok(None) => Ok(()),
            // Nothing is committed while the agent keeps a repository in the worktree; it is told why.
            Err(refused @ GitError::EmbeddedRepositories(_)) => {
                journal.append(Event::Feedback { text: format!("baton did not commit your work: {refused}.") }).await
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Pauses with the work committed first, so nothing waits only in the worktree.
    async fn pause(
        &self,
        journal: &mut Journal<'_>,
        worktree: &Worktree,
        reason: StopReason,
        detail: String,
    ) -> Result<(), EngineError> {
        self.checkpoint(journal, worktree, format!("work in progress before pausing ({reason})")).await?;
        journal.append(Event::Paused { reason, detail }).await
    }

    /// One step of a leg that reads and reports (captain, reviewer): a model call, then its tool
    /// calls; an answer without one is told `nudge`.
    async fn reading_step(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        tools: &[ToolSpec],
        nudge: &str,
    ) -> Result<Result<Acted, CallFailure>, EngineError> {
        let work = &journal.state().work;
        let step = work.steps + 1;
        let budget = self.budget(work);
        let request = self.request(work.role, work.system.clone(), baton_agent::elide(&work.transcript), tools, budget);
        let estimate = self.estimate(&request, work.role);
        let response = match self.call_model(journal, &request, step, estimate, budget).await? {
            Ok(response) => response,
            Err(failure) => return Ok(Err(failure)),
        };
        let calls = calls_of(&response);
        journal.defer(Event::ModelCallFinished { step, response })?;
        if calls.is_empty() {
            journal.append(Event::Feedback { text: nudge.to_owned() }).await?;
            return Ok(Ok(Acted::Done));
        }
        self.act(journal, machine, step, calls).await.map(Ok)
    }

    /// One model call, journaled and charged: held before, settled after (a failed call is not
    /// billed). The answer is not journaled yet: the caller defers it with what comes next.
    async fn call_model(
        &self,
        journal: &mut Journal<'_>,
        request: &ModelRequest,
        step: u32,
        estimate: u64,
        budget: ContextBudget,
    ) -> Result<Result<ModelResponse, CallFailure>, EngineError> {
        let prompt = PromptSize { tokens: estimate, room: budget.input_limit() };
        let key = format!("step {step} model call #{}", journal.state().next_seq);
        let intent = vec![Event::ModelCallStarted { step, prompt: Some(prompt) }];
        let role = journal.state().work.role;
        if let Err(refusal) = self.start_charged(journal, intent, &key, self.call_hold(role, estimate, budget)).await? {
            return Ok(Err(CallFailure::Refused(refusal)));
        }
        let role = journal.state().work.role;
        match self.chosen(role).client.complete(request, &mut |_| {}, &CancellationToken::new()).await {
            Ok(response) => {
                self.settle(journal, &key, self.call_cost(role, &response.usage))?;
                Ok(Ok(response))
            }
            Err(error) => {
                self.settle(journal, &key, Vec::new())?;
                journal.append(Event::ModelCallFailed { step, error: error.to_string() }).await?;
                Ok(Err(CallFailure::Failed(error)))
            }
        }
    }

    /// Whether a call needs a human first: `ask_human` always, a command when the approval policy
    /// says so. A call whose decision is answered goes on with the answer.
    fn decision_for(
        &self,
        journal: &Journal<'_>,
        call_id: &str,
        name: &str,
        arguments: &str,
        shell: Option<&baton_tools::ShellCall>,
    ) -> Gate {
        let work = &journal.state().work;
        if let Some((_, answer)) = work.decisions.iter().find(|(d, _)| d.call_id.as_deref() == Some(call_id)) {
            return answer.clone().map_or(Gate::Open, Gate::Answered);
        }
        let id = format!("d{}", work.decisions.len() + 1);
        let call_id = Some(call_id.to_owned());
        if name == baton_agent::ASK_HUMAN {
            // Malformed arguments are answered as an error by the tool path, without a human.
            return match baton_agent::ask_human_args(arguments) {
                Ok((question, options, why)) => {
                    Gate::Ask(Decision { id, kind: DecisionKind::Ask, question, options, why, call_id })
                }
                Err(_) => Gate::Open,
            };
        }
        if name == baton_agent::REQUEST_CREDENTIAL {
            return match baton_agent::request_credential_args(arguments) {
                Ok((credential, why)) => Gate::Ask(Decision {
                    id,
                    question: format!("Give the agent the credential `{credential}`?"),
                    kind: DecisionKind::Credential { name: credential },
                    options: vec!["approve".to_owned(), "deny".to_owned()],
                    why,
                    call_id,
                }),
                Err(_) => Gate::Open,
            };
        }
        if name == baton_agent::SUBMIT_PLAN && journal.state().spec.approve_plan {
            // Only a plan that could be accepted is put to a human.
            return match baton_agent::parse_plan(arguments) {
                Ok(plan) => {
                    let listed: Vec<String> = plan
                        .iter()
                        .map(|s| {
                            let after = if s.depends_on.is_empty() {
                                String::new()
                            } else {
                                format!(" (after {})", s.depends_on.join(", "))
                            };
                            format!("{}{after}: {} [checks: {}]", s.key, s.request, s.checks.join("; "))
                        })
                        .collect();
                    Gate::Ask(Decision {
                        id,
                        kind: DecisionKind::PlanApproval,
                        question: format!("Approve this plan? {}", listed.join(" | ")),
                        options: vec!["approve".to_owned(), "deny with what to change".to_owned()],
                        why: "the task was started with --approve-plan".to_owned(),
                        call_id,
                    })
                }
                Err(_) => Gate::Open,
            };
        }
        let Some(command) = shell.map(|shell| shell.command.clone()) else {
            return Gate::Open;
        };
        match self.config.approval.needs_approval(&command) {
            Some(rule) => Gate::Ask(Decision {
                id,
                question: format!("May the agent run `{command}`?"),
                kind: DecisionKind::Destructive { rule: rule.to_owned(), command },
                options: vec!["approve".to_owned(), "deny".to_owned()],
                why: format!("it matches the approval rule \"{rule}\""),
                call_id,
            }),
            None => Gate::Open,
        }
    }

    /// Runs one answer's tool calls, each journaled before and after; calls after a `finish` in the
    /// same answer are not run. A command's sandbox time is held before it starts: when the budget
    /// refuses it, the calls from there on stay unanswered (a resume runs them).
    async fn act(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        step: u32,
        calls: Vec<(String, String, String)>,
    ) -> Result<Acted, EngineError> {
        let worktree = machine.worktree;
        let mut finish = None;
        for (call_id, name, arguments) in calls {
            let shell = baton_tools::shell_call(&name, &arguments);
            let answered = match self.decision_for(journal, &call_id, &name, &arguments, shell.as_ref()) {
                Gate::Open => None,
                Gate::Answered(answer) => Some(answer),
                Gate::Ask(decision) => {
                    // Nothing waits only in the worktree while a human thinks.
                    self.checkpoint(journal, worktree, format!("work in progress while waiting for {}", decision.id))
                        .await?;
                    journal.append(Event::DecisionRequested { decision }).await?;
                    return Ok(Acted::Waiting);
                }
            };
            let key = format!("step {step} {name} #{}", journal.state().next_seq);
            let denied = answered.as_ref().is_some_and(|answer| !answer.approved);
            let hold = match &shell {
                Some(shell) if finish.is_none() && !denied => self.config.rates.charges(shell.busy.as_secs(), 0),
                _ => Vec::new(),
            };
            let intent = vec![Event::ToolCallStarted {
                step,
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }];
            if let Err(refusal) = self.start_charged(journal, intent, &key, hold).await? {
                return Ok(Acted::Refused(refusal));
            }
            let started = Instant::now();
            let outcome = if finish.is_some() {
                Outcome::error("not run: `finish` was called earlier in the same turn".to_owned())
            } else {
                self.run_call(journal, machine, &name, &arguments, answered)?
            };
            let output = baton_agent::fit_output(outcome.output, self.budget(&journal.state().work).max_result_bytes());
            self.settle(journal, &key, self.config.rates.charges(started.elapsed().as_secs().max(1), 0))?;
            // Written with the next intent: if it is lost, the call is reported as interrupted.
            let effect = outcome.effect;
            if let Effect::Finish(summary) = &effect {
                finish = Some(summary.clone());
            }
            journal.defer(Event::ToolCallFinished { call_id, output, is_error: outcome.is_error, effect })?;
            if let Some(then) = outcome.then {
                let ends = match then {
                    Event::FindingsReported { .. } => Some(Acted::Reported),
                    Event::PlanSubmitted { .. } => Some(Acted::Planned),
                    _ => None,
                };
                journal.defer(then)?;
                if let Some(acted) = ends {
                    return Ok(acted);
                }
            }
        }
        Ok(finish.map_or(Acted::Done, Acted::Finish))
    }

    /// Answers one tool call: the harness's own tools here, the rest by the toolbox.
    #[allow(clippy::too_many_arguments)] // the machines a call may need, and the call itself
    fn run_call(
        &self,
        journal: &Journal<'_>,
        machine: Machine<'_>,
        name: &str,
        arguments: &str,
        answered: Option<Answer>,
    ) -> Result<Outcome, EngineError> {
        let Machine { toolbox, checks, worktree } = machine;
        let work = &journal.state().work;
        let allowed = match work.role {
            LegRole::Review => Some(baton_agent::REVIEW_TOOLS),
            LegRole::Captain => Some(baton_agent::CAPTAIN_TOOLS),
            LegRole::Build => None,
        };
        if let Some(allowed) = allowed.filter(|allowed| !allowed.contains(&name)) {
            let role = work.role;
            return Ok(Outcome::error(format!(
                "a {role} leg never edits; `{name}` is not one of: {}",
                allowed.join(", ")
            )));
        }
        Ok(match name {
            baton_agent::ASK_HUMAN => {
                let answer = answered.map_or_else(String::new, |a| a.answer);
                Outcome::ok(format!("The human answered: {answer}"))
            }
            _ if answered.as_ref().is_some_and(|a| !a.approved) => {
                let answer = answered.map(|a| a.answer).unwrap_or_default();
                let reason = if answer.is_empty() { String::new() } else { format!(": {answer}") };
                if name == baton_agent::SUBMIT_PLAN {
                    Outcome::error(format!("plan refused by a human{reason}. Change it and submit it again."))
                } else if name == baton_agent::REQUEST_CREDENTIAL {
                    Outcome::error(format!("a human refused the credential{reason}. Do without it, or ask_human."))
                } else {
                    Outcome::error(format!(
                        "not run: a human denied this command{reason}. Find another way, or ask_human."
                    ))
                }
            }
            baton_agent::REQUEST_CREDENTIAL => match baton_agent::request_credential_args(arguments) {
                Ok((credential, _)) => match std::env::var(&credential) {
                    Ok(value) => {
                        toolbox.grant(Secret { name: credential.clone(), value });
                        Outcome::ok(format!(
                            "`{credential}` is set in the environment of your shell commands from now on (its value is never shown)"
                        ))
                    }
                    Err(_) => Outcome::error(format!(
                        "approved, but `{credential}` is not set where baton runs; ask_human for another way"
                    )),
                },
                Err(error) => Outcome::error(error),
            },
            baton_agent::RECALL => match baton_agent::recall(&work.transcript, arguments) {
                Ok(output) => Outcome::ok(output),
                Err(error) => Outcome::error(error),
            },
            baton_agent::REPORT_FINDINGS if work.role == LegRole::Review => {
                match baton_agent::parse_findings(arguments, work.findings.len() + 1, work.review_rounds + 1) {
                    Ok(findings) => Outcome {
                        then: Some(Event::FindingsReported {
                            round: work.review_rounds + 1,
                            reviewed: worktree.head()?,
                            findings: findings.clone(),
                        }),
                        ..Outcome::ok(format!("{} findings recorded; the review is over", findings.len()))
                    },
                    Err(error) => Outcome::error(error),
                }
            }
            baton_agent::SUBMIT_PLAN if work.role == LegRole::Captain => match baton_agent::parse_plan(arguments) {
                Ok(plan) => match self.plan_problems(&plan, checks, toolbox).as_slice() {
                    [] => Outcome {
                        then: Some(Event::PlanSubmitted { subtasks: plan.clone() }),
                        ..Outcome::ok(format!("plan accepted: {} subtasks; baton runs them now", plan.len()))
                    },
                    problems => Outcome::error(format!("plan refused: {}", problems.join("; "))),
                },
                Err(error) => Outcome::error(format!("plan refused: {error}")),
            },
            baton_agent::RESOLVE_FINDING if work.role == LegRole::Build => {
                match baton_agent::parse_resolution(arguments, &work.findings) {
                    Ok((id, status, note)) => Outcome {
                        output: format!("{id} marked {status:?}"),
                        then: Some(Event::FindingUpdated { id, status, note, by: "build".to_owned() }),
                        ..Outcome::ok(String::new())
                    },
                    Err(error) => Outcome::error(error),
                }
            }
            _ => {
                // Roles that only read run their commands where the worktree is read-only.
                let result = match work.role {
                    LegRole::Build => toolbox.call(name, arguments),
                    LegRole::Captain | LegRole::Review => toolbox.call_reading(name, arguments),
                };
                Outcome { output: result.output, is_error: result.is_error, effect: result.effect, then: None }
            }
        })
    }
}
