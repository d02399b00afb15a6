//! Resuming a task from wherever its journal ends: a first leg opened, what a crash interrupted
//! told (never redone), holds charged, answered decisions applied, and the work taken up again.

use baton_core::{Credits, DecisionKind, Effect, Event, LegRole, Status, StopReason};

use crate::journal::Journal;
use crate::{Acted, Engine, EngineError, Machine, instructions};

impl Engine {
    /// Continues from wherever the journal ends, then works.
    pub(crate) async fn resume(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let Machine { toolbox, worktree, environment, .. } = machine;
        let state = journal.state().clone();
        // A task with a plan starts with its captain, who opens its own leg.
        if state.work.leg == 0 && !state.spec.plan {
            // A subtask with several dependencies: the others' results join its branch first.
            let merges: Vec<(String, String)> = state
                .spec
                .merges
                .iter()
                .map(|commit| (format!("the dependency result {commit}"), commit.clone()))
                .collect();
            let conflicts = self.merge_in(journal, worktree, &merges).await?;
            let instructions = instructions(toolbox, &state.spec, LegRole::Build);
            let system = baton_agent::system_prompt(&instructions);
            let brief = baton_agent::brief(&state.spec)
                + &baton_agent::conflicts_brief(&conflicts)
                + &baton_agent::environment_brief(&environment.declared);
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
        for baton_core::ToolCall { id: call_id, name, .. } in state.work.pending_tools.clone() {
            let output = format!(
                "interrupted: baton stopped while this `{name}` call ran; it may or may not have taken effect. Check before repeating it."
            );
            journal.append(Event::tool_call_finished(call_id, output, true, Effect::None)).await?;
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
        if let Some(due) = state.work.handoff_in_flight.clone()
            && !self.hand_off(journal, machine, &self.tools(toolbox, &state.work), due, None).await?
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
        // One a pause stopped (the budget refused it, the reviewer's model failed) is resumed as
        // running: only a verification leads to a review, so the checks run again first.
        if journal.state().work.role == LegRole::Review
            && self.verify(journal, machine, "verified (the review was paused and started again)").await?
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
        if journal.state().spec.attempts > 1 {
            return self.best_of(journal, machine).await;
        }
        self.work(journal, machine).await
    }
}
