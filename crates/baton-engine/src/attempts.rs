//! Best of N: the request tried `spec.attempts` times from the same base, each attempt a child task
//! with an equal share of the parent's limits, one after another. The best verified attempt (see
//! [`rank`]), or the one a human picks when the task asks for that, is merged into the parent's
//! branch and verified there; its result is the task's.

use baton_core::{
    Credits, Decision, DecisionKind, Event, Pick, StopReason, Subtask, SubtaskState, TaskId, TaskState, Work,
};

use crate::journal::Journal;
use crate::{Children, Engine, EngineError, Machine};

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
    /// Whether the task is a best-of-N one whose attempts, queued as tasks of their own, are not
    /// all over: then it has nothing to do.
    pub(crate) async fn awaits_children(&self, state: &TaskState) -> Result<bool, EngineError> {
        if self.children != Children::Queued || state.spec.attempts < 2 {
            return Ok(false);
        }
        for attempt in state.work.subtasks.iter().filter(|attempt| attempt.outcome.is_none()) {
            let Some(child) = &attempt.task else { return Ok(false) };
            let child = TaskId::parse(child).map_err(|e| EngineError::Plan(e.to_string()))?;
            if !self.store.load(&child).await?.status().is_active() {
                return Ok(false);
            }
        }
        Ok(state.work.subtasks.iter().any(|attempt| attempt.outcome.is_none()))
    }

    /// The life of a task with attempts: run each, pick the best, make it the task's result.
    pub(crate) async fn best_of(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let state = journal.state();
        if state.work.subtasks.is_empty() {
            let count = state.spec.attempts;
            let subtasks = (1..=count)
                .map(|k| Subtask {
                    key: format!("attempt-{k}"),
                    request: format!(
                        "{}\n\n(Attempt {k} of {count}: the same request is worked {count} times independently, and the best result is kept.)",
                        state.spec.request.trim_end()
                    ),
                    scope: state.spec.scope.clone(),
                    checks: state.spec.checks.iter().map(|check| check.command.clone()).collect(),
                    depends_on: Vec::new(),
                    budget_share: (100 / count) as u8,
                })
                .collect();
            journal.append(Event::PlanSubmitted { subtasks }).await?;
        }
        let mut running = 0;
        for index in 0..journal.state().work.subtasks.len() {
            let attempt = journal.state().work.subtasks[index].clone();
            if attempt.outcome.is_some() {
                continue;
            }
            match self.children {
                Children::Inline => {
                    if self.run_child(journal, &attempt).await?.is_none() {
                        return Ok(());
                    }
                }
                Children::Queued => {
                    let child = self.child_of(journal, &attempt).await?;
                    let end = self.store.load(&child).await?;
                    if end.status().is_active() {
                        running += 1;
                    } else {
                        self.child_stopped(journal, &attempt.plan.key, &end).await?;
                    }
                }
            }
        }
        if running > 0 {
            // The scheduler runs the attempts and takes this task up again as they end.
            return journal.flush().await;
        }
        let state = journal.state();
        let standings: Vec<Option<Standing>> =
            state.work.subtasks.iter().enumerate().map(|(index, attempt)| standing(index, attempt)).collect();
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
        if state.work.picked.is_none() {
            let rule_picks = state.work.subtasks[best].plan.key.clone();
            let (key, reason) = match state.spec.pick {
                Pick::Rule => {
                    let others = standings_of(&state.work.subtasks, &standings, |key| key != rule_picks);
                    let chosen = standings[best].as_ref().map(Standing::describe).unwrap_or_default();
                    (rule_picks, format!("verified, {chosen}; the others: {others}"))
                }
                Pick::Human => match human_pick(&state.work) {
                    Some(key) => {
                        let all = standings_of(&state.work.subtasks, &standings, |_| true);
                        (key, format!("picked by a human (baton's rule picks {rule_picks}); {all}"))
                    }
                    None => {
                        let decision = pick_decision(&state.work, &standings, &rule_picks);
                        return journal.append(Event::DecisionRequested { decision }).await;
                    }
                },
            };
            journal.append(Event::AttemptPicked { key, reason }).await?;
        }
        let state = journal.state();
        let picked = state
            .work
            .subtasks
            .iter()
            .find(|attempt| Some(&attempt.plan.key) == state.work.picked.as_ref())
            .cloned()
            .ok_or_else(|| {
                EngineError::Plan(format!("the picked attempt {:?} is not one of the task's", state.work.picked))
            })?;
        let commit = picked
            .outcome
            .as_ref()
            .and_then(|o| o.commit.clone())
            .ok_or_else(|| EngineError::Plan(format!("{} was verified but names no commit", picked.plan.key)))?;
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
}

/// How `attempt` stands; `None` unless it was verified with a commit.
fn standing(index: usize, attempt: &SubtaskState) -> Option<Standing> {
    let outcome = attempt.outcome.as_ref().filter(|o| o.verified && o.commit.is_some())?;
    Some(Standing {
        open_findings: outcome.open_findings as usize,
        changed_lines: outcome.diff.map_or(0, |diff| diff.lines()) as usize,
        spent: outcome.spent,
        index,
    })
}

/// `attempt-1: verified, …; attempt-2: not verified`, for the attempts whose key `shown` admits.
fn standings_of(attempts: &[SubtaskState], standings: &[Option<Standing>], shown: impl Fn(&str) -> bool) -> String {
    let described: Vec<String> = attempts
        .iter()
        .zip(standings)
        .filter(|(attempt, _)| shown(&attempt.plan.key))
        .map(|(attempt, standing)| match standing {
            Some(standing) => format!("{}: verified, {}", attempt.plan.key, standing.describe()),
            None => format!("{}: not verified", attempt.plan.key),
        })
        .collect();
    described.join("; ")
}

/// The attempt a human picked: the answer to the latest pick decision, when it names one of the
/// attempts it offered. A pick that names none (or was denied) is asked again.
fn human_pick(work: &Work) -> Option<String> {
    let (decision, answer) = work.decisions.iter().rev().find(|(d, _)| matches!(d.kind, DecisionKind::Pick { .. }))?;
    let answer = answer.as_ref().filter(|answer| answer.approved)?;
    decision.options.iter().find(|option| **option == answer.answer.trim()).cloned()
}

/// The question that asks a human to pick: the verified attempts, the rule's pick first.
fn pick_decision(work: &Work, standings: &[Option<Standing>], rule_picks: &str) -> Decision {
    let mut verified: Vec<(&Standing, String)> = standings
        .iter()
        .zip(&work.subtasks)
        .filter_map(|(standing, attempt)| Some((standing.as_ref()?, attempt.plan.key.clone())))
        .collect();
    verified.sort();
    Decision {
        id: format!("d{}", work.decisions.len() + 1),
        kind: DecisionKind::Pick { recommended: rule_picks.to_owned() },
        question: format!(
            "Which attempt becomes the task's result? {} (baton's rule picks {rule_picks})",
            standings_of(&work.subtasks, standings, |_| true)
        ),
        options: verified.into_iter().map(|(_, key)| key).collect(),
        why: "the task was started with --pick human".to_owned(),
        call_id: None,
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
