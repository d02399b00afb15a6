//! Best of N: the request tried `spec.attempts` times from the same base, each attempt a child task
//! with an equal share of the parent's limits, one after another. The best verified attempt (see
//! [`rank`]) is merged into the parent's branch and verified there; its result is the task's.

use baton_core::{Credits, Event, FindingStatus, StopReason, Subtask, SubtaskState, TaskId};
use baton_git::Repo;

use crate::journal::Journal;
use crate::{Engine, EngineError, Machine};

/// How an attempt compares with the others; lower is better, in this order of importance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Standing {
    /// Unverified attempts are never picked; among verified ones:
    pub open_findings: usize,
    /// Lines added and removed against the base: the smaller change.
    pub changed_lines: usize,
    pub spent: Credits,
    /// The earlier attempt, last.
    pub index: usize,
}

impl Standing {
    fn describe(&self) -> String {
        format!("{} open findings, {} changed lines, {} credits", self.open_findings, self.changed_lines, self.spent)
    }
}

/// The index of the attempt to pick among `standings` (`None` for an unverified one): verified,
/// then the fewest open review findings, the smallest change, the cheapest, the earliest.
pub(crate) fn rank(standings: &[Option<Standing>]) -> Option<usize> {
    standings.iter().flatten().min().map(|best| best.index)
}

impl Engine {
    /// The life of a task with attempts: run each, pick the best, make it the task's result.
    pub(crate) async fn best_of(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let state = journal.state();
        if state.work.subtasks.is_empty() {
            let count = state.spec.attempts;
            let subtasks = (1..=count)
                .map(|k| Subtask {
                    key: format!("attempt-{k}"),
                    request: state.spec.request.clone(),
                    scope: state.spec.scope.clone(),
                    checks: state.spec.checks.iter().map(|check| check.command.clone()).collect(),
                    depends_on: Vec::new(),
                    budget_share: (100 / count) as u8,
                })
                .collect();
            journal.append(Event::PlanSubmitted { subtasks }).await?;
        }
        for index in 0..journal.state().work.subtasks.len() {
            let attempt = journal.state().work.subtasks[index].clone();
            if attempt.outcome.is_none() && self.run_child(journal, &attempt).await?.is_none() {
                return Ok(());
            }
        }
        let state = journal.state();
        let mut standings = Vec::new();
        for (index, attempt) in state.work.subtasks.iter().enumerate() {
            standings.push(self.standing(&state.spec.repo, &state.base_commit, index, attempt).await?);
        }
        let Some(best) = rank(&standings) else {
            let outcomes: Vec<String> = state
                .work
                .subtasks
                .iter()
                .map(|a| format!("{}: {}", a.plan.key, a.outcome.as_ref().map_or("not run", |o| o.detail.as_str())))
                .collect();
            let detail = format!("no attempt was verified ({})", outcomes.join("; "));
            return self.pause(journal, machine.worktree, StopReason::SubtaskStopped, detail).await;
        };
        let picked = state.work.subtasks[best].clone();
        let commit = picked
            .outcome
            .as_ref()
            .and_then(|o| o.commit.clone())
            .ok_or_else(|| EngineError::Plan(format!("{} was verified but names no commit", picked.plan.key)))?;
        if state.work.picked.is_none() {
            let others: Vec<String> = standings
                .iter()
                .zip(&state.work.subtasks)
                .filter(|(_, attempt)| attempt.plan.key != picked.plan.key)
                .map(|(standing, attempt)| match standing {
                    Some(standing) => format!("{}: {}", attempt.plan.key, standing.describe()),
                    None => format!("{}: not verified", attempt.plan.key),
                })
                .collect();
            let chosen = standings[best].as_ref().map(Standing::describe).unwrap_or_default();
            let reason = format!("verified, {chosen}; the others: {}", others.join("; "));
            journal.append(Event::AttemptPicked { key: picked.plan.key.clone(), reason }).await?;
        }
        let merged =
            self.merge_in(journal, machine.worktree, &[(format!("the result of {}", picked.plan.key), commit)]).await?;
        if !merged.is_empty() {
            return Err(EngineError::Plan(format!(
                "merging {} left conflicts: {}",
                picked.plan.key,
                merged.join(", ")
            )));
        }
        let summary = format!("{} of {} attempts picked", picked.plan.key, standings.len());
        if !self.verify(journal, machine, &summary).await? {
            // The attempt passed these checks on its own branch; here they did not.
            let detail = format!("the result of {} did not pass the checks on this task's branch", picked.plan.key);
            return self.pause(journal, machine.worktree, StopReason::ChecksFailed, detail).await;
        }
        Ok(())
    }

    /// How `attempt` stands; `None` unless it was verified.
    async fn standing(
        &self,
        repo: &std::path::Path,
        base: &str,
        index: usize,
        attempt: &SubtaskState,
    ) -> Result<Option<Standing>, EngineError> {
        let Some(outcome) = attempt.outcome.as_ref().filter(|o| o.verified) else { return Ok(None) };
        let Some(commit) = &outcome.commit else { return Ok(None) };
        let child =
            attempt.task.as_deref().map(TaskId::parse).transpose().map_err(|e| EngineError::Plan(e.to_string()))?;
        let open_findings = match child {
            Some(child) => {
                let state = self.store.load(&child).await?;
                state.work.findings.iter().filter(|f| f.status == FindingStatus::Open).count()
            }
            None => 0,
        };
        let changed_lines = Repo::open(repo)?.changed_lines(base, commit)?;
        Ok(Some(Standing { open_findings, changed_lines, spent: outcome.spent, index }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(index: usize, open_findings: usize, changed_lines: usize, micros: i64) -> Option<Standing> {
        Some(Standing { open_findings, changed_lines, spent: Credits::from_micros(micros), index })
    }

    #[test]
    fn verified_then_fewest_findings_then_smallest_change_then_cheapest_then_earliest() {
        assert_eq!(rank(&[None, None]), None);
        assert_eq!(rank(&[None, standing(1, 3, 900, 9)]), Some(1));
        assert_eq!(rank(&[standing(0, 1, 10, 1), standing(1, 0, 900, 9)]), Some(1));
        assert_eq!(rank(&[standing(0, 0, 30, 1), standing(1, 0, 20, 9)]), Some(1));
        assert_eq!(rank(&[standing(0, 0, 20, 5), standing(1, 0, 20, 4)]), Some(1));
        assert_eq!(rank(&[standing(0, 0, 20, 4), standing(1, 0, 20, 4)]), Some(0));
    }
}
