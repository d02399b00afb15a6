//! Planning: a captain leg reads the repository and submits a plan of subtasks; the harness checks
//! it (scope paths exist, checks run), then runs each subtask as a child task on its own branch, in
//! dependency order, each starting from the result of those it depends on. The parent ends with the
//! last result, verified by its own checks.

use std::time::Duration;

use baton_core::{
    Budget, CheckSpec, Credits, Event, LegRole, StopReason, Subtask, SubtaskOutcome, TaskId, TaskSpec, Timestamp,
    branch_name,
};
use baton_git::Worktree;
use baton_sandbox::{LocalSandbox, RunRequest, Sandbox};
use baton_tools::Toolbox;

use crate::clean::CleanMachines;
use crate::journal::{self, Journal};
use crate::{Acted, CallFailure, Engine, EngineError, Machine, instructions};

/// Model steps a captain may take to submit a valid plan.
const PLAN_STEPS: u32 = 30;
/// How long a check may run when the plan is checked: long enough to show that it runs.
pub(crate) const CHECK_PROBE: Duration = Duration::from_secs(120);

/// How many checks submitting `arguments` as a plan probes (none for a plan that does not parse).
pub(crate) fn probes(arguments: &str) -> u64 {
    baton_agent::parse_plan(arguments).map_or(0, |plan| plan.iter().map(|subtask| subtask.checks.len() as u64).sum())
}

impl Engine {
    /// The life of a task with a plan: the captain (until a plan is accepted), then the subtasks.
    pub(crate) async fn plan_and_delegate(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
    ) -> Result<(), EngineError> {
        if journal.state().work.subtasks.is_empty() && !self.captain(journal, machine).await? {
            return Ok(());
        }
        self.delegate(journal, machine).await
    }

    /// Runs the captain's leg until it submits a plan the harness accepts. Returns false when the
    /// task paused or waits instead.
    async fn captain(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<bool, EngineError> {
        let Machine { toolbox, worktree, .. } = machine;
        if journal.state().work.role != LegRole::Captain {
            let state = journal.state();
            let instructions = instructions(toolbox, &state.spec, LegRole::Captain);
            let leg = Event::LegStarted {
                leg: state.work.leg + 1,
                model: self.chosen(LegRole::Captain).name.to_string(),
                system: baton_agent::captain_system(&instructions),
                brief: baton_agent::captain_brief(&state.spec),
                role: LegRole::Captain,
            };
            journal.append(leg).await?;
        }
        let tools = self.tools(toolbox, &journal.state().work);
        for _ in 0..PLAN_STEPS {
            let nudge = "Submit the plan with `submit_plan`.";
            match self.reading_step(journal, machine, &tools, nudge).await? {
                Ok(Acted::Planned) => {
                    journal.flush().await?;
                    return Ok(true);
                }
                Ok(Acted::Waiting) => return Ok(false),
                Ok(Acted::Refused(refusal)) | Err(CallFailure::Refused(refusal)) => {
                    self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await?;
                    return Ok(false);
                }
                Err(CallFailure::Failed(error)) => {
                    let detail = format!("the captain's model call failed: {error}");
                    self.pause(journal, worktree, StopReason::ModelError, detail).await?;
                    return Ok(false);
                }
                Ok(Acted::Done | Acted::Finish(_) | Acted::Reported) => {}
            }
        }
        let detail = format!("the captain submitted no plan baton could accept in {PLAN_STEPS} steps");
        self.pause(journal, worktree, StopReason::Stuck, detail).await?;
        Ok(false)
    }

    /// What in a structurally sound plan cannot work in this repository: scope paths that do not
    /// exist, checks that do not run (not found, not executable).
    /// Scope paths are resolved beneath the worktree, so a plan cannot probe the host's files; the
    /// checks are tried on a clean machine with the branch's head, read-only.
    pub(crate) fn plan_problems(
        &self,
        plan: &[Subtask],
        clean: &CleanMachines,
        worktree: &Worktree,
        toolbox: &Toolbox,
        lower: Option<std::path::PathBuf>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let probing = plan.iter().any(|subtask| !subtask.checks.is_empty());
        let machine = probing.then(|| {
            let head = worktree.head()?;
            clean.build(worktree, &head, lower).map(LocalSandbox::reading_only)
        });
        for subtask in plan {
            for path in subtask.scope.iter().filter(|p| !toolbox.exists(p)) {
                problems.push(format!("`{}`: scope path `{path}` does not exist", subtask.key));
            }
            for command in &subtask.checks {
                let checks = match &machine {
                    Some(Ok(checks)) => checks,
                    Some(Err(error)) => {
                        problems.push(format!("`{}`: check `{command}` could not be tried: {error}", subtask.key));
                        continue;
                    }
                    None => continue,
                };
                match checks.run(&RunRequest::shell(command, CHECK_PROBE)) {
                    Ok(outcome) => {
                        let _ = std::fs::remove_file(&outcome.output_file);
                        if matches!(outcome.exit_code, 126 | 127) {
                            let said = outcome.output.text();
                            let said = said.lines().last().unwrap_or("").trim().to_owned();
                            problems.push(format!(
                                "`{}`: check `{command}` does not run (exit code {}: {said})",
                                subtask.key, outcome.exit_code
                            ));
                        }
                    }
                    Err(error) => {
                        problems.push(format!("`{}`: check `{command}` could not be tried: {error}", subtask.key))
                    }
                }
            }
        }
        problems
    }

    /// Runs the plan's subtasks in order, each as a child task; then verifies the parent on the
    /// last one's result.
    async fn delegate(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let worktree = machine.worktree;
        let count = journal.state().work.subtasks.len();
        for index in 0..count {
            let subtask = journal.state().work.subtasks[index].clone();
            if subtask.outcome.as_ref().is_some_and(|o| o.verified) {
                continue;
            }
            let child = match &subtask.task {
                Some(id) => TaskId::parse(id).map_err(|e| EngineError::Plan(e.to_string()))?,
                None => self.create_child(journal, &subtask.plan).await?,
            };
            // A child journals into its own task, watched by the parent's observer; the parent
            // records how it ended.
            journal.flush().await?;
            let end = Box::pin(self.run(&child, journal.observer())).await?;
            let verified = end.status() == baton_core::Status::Done;
            let detail = match (&end.stop, &end.question) {
                (Some(stop), _) => format!("{}: {}", stop.reason, stop.detail),
                (None, Some(question)) => format!("waiting for a human: {question}"),
                (None, None) => end.status().to_string(),
            };
            let outcome = SubtaskOutcome { verified, commit: end.work.last_commit.clone(), detail: detail.clone() };
            journal.append(Event::SubtaskEnded { key: subtask.plan.key.clone(), outcome }).await?;
            if !verified {
                let detail = format!("subtask `{}` ({child}) is not verified: {detail}", subtask.plan.key);
                return self.pause(journal, worktree, StopReason::SubtaskStopped, detail).await;
            }
        }
        let state = journal.state();
        let last = state.work.subtasks.iter().rev().find_map(|s| s.outcome.as_ref().and_then(|o| o.commit.clone()));
        if let Some(commit) = last {
            worktree.fast_forward(&commit)?;
        }
        let summary = format!(
            "{} subtasks verified: {}",
            state.work.subtasks.len(),
            state.work.subtasks.iter().map(|s| s.plan.key.as_str()).collect::<Vec<_>>().join(", ")
        );
        self.verify(journal, machine, &summary).await?;
        Ok(())
    }

    /// Creates the child task of `subtask`: on the parent's repository, starting from the result of
    /// the last of its dependencies (or the parent's base), with its share of the parent's credits.
    async fn create_child(&self, journal: &mut Journal<'_>, subtask: &Subtask) -> Result<TaskId, EngineError> {
        let state = journal.state();
        let base = state
            .work
            .subtasks
            .iter()
            .filter(|s| subtask.depends_on.contains(&s.plan.key))
            .filter_map(|s| s.outcome.as_ref().and_then(|o| o.commit.clone()))
            .next_back()
            .unwrap_or_else(|| state.base_commit.clone());
        let share = |credits: Credits| Credits::from_micros(credits.micros() * i64::from(subtask.budget_share) / 100);
        let spec = TaskSpec {
            request: subtask.request.clone(),
            repo: state.spec.repo.clone(),
            base_ref: base.clone(),
            checks: subtask
                .checks
                .iter()
                .map(|command| CheckSpec { name: command.clone(), command: command.clone(), timeout_secs: 600 })
                .collect(),
            scope: subtask.scope.clone(),
            protect: state.spec.protect.clone(),
            budget: Budget { credits: state.spec.budget.credits.map(share), ..Budget::default() },
            model: state.spec.model.clone(),
            context_window: state.spec.context_window,
            review: state.spec.review,
            plan: false,
            approve_plan: false,
            role_models: state.spec.role_models.clone(),
            parent: Some(state.id.to_string()),
            environment: state.spec.environment.clone(),
        };
        // Derived from the parent and the subtask's place, so a retried creation names the same child.
        let entropy = state
            .id
            .as_str()
            .bytes()
            .chain(subtask.key.bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let child = TaskId::from_entropy(entropy);
        let branch = branch_name(&spec.request, &child);
        let created = Event::TaskCreated { spec, base_commit: base, branch };
        let at: Timestamp = journal::now();
        match self.store.append(&child, 0, at, &[created]).await {
            Ok(_) | Err(baton_store::StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        journal.append(Event::SubtaskCreated { key: subtask.key.clone(), task: child.to_string() }).await?;
        Ok(child)
    }
}
