//! Planning: a captain leg reads the repository and submits a plan of subtasks; the harness checks
//! it (scope paths exist, checks run, each child's spec is valid), then runs each subtask as a child
//! task on its own branch, in dependency order. A subtask without dependencies starts from the
//! parent's base; one with dependencies from the first one's result, the others merged in (a
//! conflict is its first leg's to resolve). The parent merges the results no other subtask built
//! on — a conflict there becomes a build leg of its own — and is verified by its own checks.

use std::time::Duration;

use baton_core::{
    Budget, CheckMark, CheckSpec, Credits, DiffStat, Event, FindingStatus, LegRole, Status, StopReason, Subtask,
    SubtaskOutcome, TaskId, TaskSpec, TaskState, Timestamp, branch_name,
};
use baton_git::Worktree;
use baton_sandbox::{LocalSandbox, RunRequest, Sandbox};
use baton_tools::Toolbox;

use crate::clean::CleanMachines;
use crate::journal::{self, Journal};
use crate::{Acted, Called, Engine, EngineError, Machine, instructions};

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
                Called::Answered(Acted::Planned) => {
                    journal.flush().await?;
                    return Ok(true);
                }
                Called::Answered(Acted::Waiting) => return Ok(false),
                Called::Answered(Acted::Refused(refusal)) | Called::Refused(refusal) => {
                    self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await?;
                    return Ok(false);
                }
                Called::Failed(error) => {
                    let detail = format!("the captain's model call failed: {error}");
                    self.pause(journal, worktree, StopReason::ModelError, detail).await?;
                    return Ok(false);
                }
                Called::Answered(Acted::Done | Acted::Finish(_) | Acted::Reported) => {}
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
        state: &baton_core::TaskState,
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
            if let Err(error) = child_spec(state, subtask).validate() {
                problems.push(format!("`{}`: {error}", subtask.key));
            }
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

    /// Runs the plan's subtasks in order, each as a child task; then merges their results into the
    /// parent's branch and verifies it.
    async fn delegate(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let worktree = machine.worktree;
        // A build leg of the parent's own resolves what merging the results left in conflict.
        if journal.state().work.role == LegRole::Build {
            return self.work(journal, machine).await;
        }
        let count = journal.state().work.subtasks.len();
        for index in 0..count {
            let subtask = journal.state().work.subtasks[index].clone();
            if subtask.outcome.as_ref().is_some_and(|o| o.verified) {
                continue;
            }
            let Some((child, outcome)) = self.run_child(journal, &subtask).await? else { return Ok(()) };
            if !outcome.verified {
                let detail = format!("subtask `{}` ({child}) is not verified: {}", subtask.plan.key, outcome.detail);
                return self.pause(journal, worktree, StopReason::SubtaskStopped, detail).await;
            }
        }
        let state = journal.state();
        let keys = state.work.subtasks.iter().map(|s| s.plan.key.as_str()).collect::<Vec<_>>().join(", ");
        let summary = format!("{} subtasks verified: {keys}", state.work.subtasks.len());
        let merges: Vec<(String, String)> = leaves(&state.work.subtasks)
            .into_iter()
            .map(|(key, commit)| (format!("the result of subtask {key}"), commit))
            .collect();
        let conflicts = self.merge_in(journal, worktree, &merges).await?;
        if conflicts.is_empty() {
            self.verify(journal, machine, &summary).await?;
            return Ok(());
        }
        let state = journal.state();
        let instructions = instructions(machine.toolbox, &state.spec, LegRole::Build);
        let leg = Event::LegStarted {
            leg: state.work.leg + 1,
            model: self.chosen(LegRole::Build).name.to_string(),
            system: baton_agent::system_prompt(&instructions),
            brief: baton_agent::brief(&state.spec)
                + &baton_agent::conflicts_brief(&conflicts)
                + &baton_agent::environment_brief(&machine.environment.declared),
            role: LegRole::Build,
        };
        journal.append(leg).await?;
        self.work(journal, machine).await
    }

    /// Runs `subtask`'s child task (created first if need be) until it ends, stops or waits, and
    /// journals how: the child and its outcome. `None` when baton is stopping and the child was
    /// left running: nothing is journaled, and the next run takes the child up again.
    pub(crate) async fn run_child(
        &self,
        journal: &mut Journal<'_>,
        subtask: &baton_core::SubtaskState,
    ) -> Result<Option<(TaskId, SubtaskOutcome)>, EngineError> {
        let child = self.child_of(journal, subtask).await?;
        // A child journals into its own task, watched by the parent's observer; the parent
        // records how it ended.
        journal.flush().await?;
        let end = Box::pin(self.run(&child, journal.observer())).await?;
        if self.stop.is_cancelled() && end.status().is_active() {
            return Ok(None);
        }
        let outcome = self.child_stopped(journal, &subtask.plan.key, &end).await?;
        Ok(Some((child, outcome)))
    }

    /// `subtask`'s child task, created (queued) if it has none yet.
    pub(crate) async fn child_of(
        &self,
        journal: &mut Journal<'_>,
        subtask: &baton_core::SubtaskState,
    ) -> Result<TaskId, EngineError> {
        match &subtask.task {
            Some(id) => TaskId::parse(id).map_err(|e| EngineError::Plan(e.to_string())),
            None => self.create_child(journal, &subtask.plan).await,
        }
    }

    /// Journals how the child task of subtask `key` ended or stopped, as `end` shows it.
    pub(crate) async fn child_stopped(
        &self,
        journal: &mut Journal<'_>,
        key: &str,
        end: &TaskState,
    ) -> Result<SubtaskOutcome, EngineError> {
        let detail = match (&end.stop, &end.question) {
            (Some(stop), _) => format!("{}: {}", stop.reason, stop.detail),
            (None, Some(question)) => format!("waiting for a human: {question}"),
            (None, None) => end.status().to_string(),
        };
        let commit = end.work.last_commit.clone();
        // Sized from the child's own base: its work alone, whatever it started from.
        let diff = match &commit {
            Some(commit) => {
                let stat = crate::repository(&self.config.home, &end.spec.repo)?.shortstat(&end.base_commit, commit)?;
                Some(DiffStat { files: stat.files, insertions: stat.insertions, deletions: stat.deletions })
            }
            None => None,
        };
        let outcome = SubtaskOutcome {
            verified: end.status() == Status::Done,
            commit,
            detail,
            spent: end.money.spent_in_all(),
            open_findings: end.work.findings.iter().filter(|f| f.status == FindingStatus::Open).count() as u32,
            diff,
            checks: end
                .work
                .last_checks
                .iter()
                .map(|check| CheckMark { name: check.name.clone(), passed: check.passed })
                .collect(),
        };
        journal.append(Event::SubtaskEnded { key: key.to_owned(), outcome: outcome.clone() }).await?;
        Ok(outcome)
    }

    /// Creates the child task of `subtask`: on the parent's repository, from the parent's base or
    /// its dependencies' results, with its shares of the parent's limits.
    async fn create_child(&self, journal: &mut Journal<'_>, subtask: &Subtask) -> Result<TaskId, EngineError> {
        let state = journal.state();
        let results: Vec<String> = state
            .work
            .subtasks
            .iter()
            .filter(|s| subtask.depends_on.contains(&s.plan.key))
            .filter_map(|s| s.outcome.as_ref().and_then(|o| o.commit.clone()))
            .collect();
        let (base, merges) = match results.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => (state.base_commit.clone(), Vec::new()),
        };
        let spec = TaskSpec { base_ref: base.clone(), merges, ..child_spec(state, subtask) };
        spec.validate().map_err(|error| EngineError::Plan(format!("subtask `{}`: {error}", subtask.key)))?;
        // Derived from the parent and the subtask's place, so a retried creation names the same child.
        let entropy = state
            .id
            .as_str()
            .bytes()
            .chain(subtask.key.bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let child = TaskId::from_entropy(entropy);
        let branch = branch_name(&spec.request, &child);
        let created = Event::TaskCreated { spec: Box::new(spec), base_commit: base, branch };
        let at: Timestamp = journal::now();
        match self.store.append(&child, 0, at, &[created]).await {
            Ok(_) | Err(baton_store::StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        journal.append(Event::SubtaskCreated { key: subtask.key.clone(), task: child.to_string() }).await?;
        Ok(child)
    }
}

/// The spec of `subtask`'s child task, from the parent's base: the parent's repository, model and
/// settings; the subtask's request, scope and checks; its share of the parent's step limit and
/// window, and of its credit limit within what the parent and earlier children left.
fn child_spec(state: &baton_core::TaskState, subtask: &Subtask) -> TaskSpec {
    let share = u64::from(subtask.budget_share);
    // In u128: a limit near u64::MAX times a share would overflow.
    let part = |limit: u64| (u128::from(limit) * u128::from(share)).div_ceil(100).max(1) as u64;
    let budget = &state.spec.budget;
    let credits = budget.credits.map(|limit| {
        let left = limit.micros() - state.money.spent_in_all().micros() - state.money.held_total().micros();
        Credits::from_micros(((i128::from(limit.micros()) * i128::from(share) / 100) as i64).min(left))
    });
    let window = budget.wall_clock_secs.map(|window| {
        let elapsed = state.work.started_at.map_or(0, |at| (journal::now().as_millis() - at.as_millis()).max(0) / 1000);
        part(window).min(window.saturating_sub(elapsed as u64))
    });
    TaskSpec {
        request: subtask.request.clone(),
        repo: state.spec.repo.clone(),
        push: state.spec.push.clone(),
        base_ref: state.base_commit.clone(),
        // A check the parent has keeps its name and timeout.
        checks: subtask
            .checks
            .iter()
            .map(|command| {
                let own = state.spec.checks.iter().find(|check| check.command == *command).cloned();
                own.unwrap_or_else(|| CheckSpec { name: command.clone(), command: command.clone(), timeout_secs: 600 })
            })
            .collect(),
        scope: subtask.scope.clone(),
        protect: state.spec.protect.clone(),
        budget: Budget { credits, steps: budget.steps.map(part), wall_clock_secs: window },
        model: state.spec.model.clone(),
        context_window: state.spec.context_window,
        max_handoffs: state.spec.max_handoffs,
        review: state.spec.review,
        plan: false,
        approve_plan: false,
        role_models: state.spec.role_models.clone(),
        parent: Some(state.id.to_string()),
        environment: state.spec.environment.clone(),
        merges: Vec::new(),
        priority: state.spec.priority,
        attempts: 1,
        pick: baton_core::Pick::Rule,
        owner: state.spec.owner.clone(),
        continues: None,
    }
}

/// The results no other subtask started from, `(key, commit)`, in plan order: merging them gives
/// every subtask's work.
fn leaves(subtasks: &[baton_core::SubtaskState]) -> Vec<(String, String)> {
    let built_on = |key: &str| subtasks.iter().any(|s| s.plan.depends_on.iter().any(|d| d == key));
    subtasks
        .iter()
        .filter(|s| !built_on(&s.plan.key))
        .filter_map(|s| Some((s.plan.key.clone(), s.outcome.as_ref()?.commit.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use baton_core::{Budget, Credits, Event, Recorded, Subtask, TaskId, TaskSpec, Timestamp};

    /// A share of a limit near the largest there is is worked out without overflowing.
    #[test]
    fn a_share_of_a_huge_limit_does_not_overflow() {
        let mut spec = TaskSpec::new("plan", std::path::PathBuf::from("/repo"));
        let huge = Credits::from_micros(i64::MAX / 2);
        spec.budget = Budget { credits: Some(huge), steps: Some(u64::MAX / 2), wall_clock_secs: None };
        let created = Event::TaskCreated { spec: Box::new(spec), base_commit: "0".repeat(40), branch: "b".into() };
        let id = TaskId::from_entropy(1);
        let state = baton_core::fold(id, &[Recorded { seq: 0, at: Timestamp(0), event: created }]).unwrap();
        let subtask = Subtask {
            key: "s1".into(),
            request: "all of it".into(),
            scope: vec![],
            checks: vec![],
            depends_on: vec![],
            budget_share: 100,
        };
        let child = super::child_spec(&state, &subtask);
        assert_eq!((child.budget.credits, child.budget.steps), (Some(huge), Some(u64::MAX / 2)));
    }
}
