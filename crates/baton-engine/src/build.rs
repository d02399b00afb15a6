//! The build leg's loop: limits (steps, time window, credits), handoffs when the context fills,
//! model calls, tool calls, periodic checkpoints, and stuck detection.

use baton_core::{Credits, Decision, DecisionKind, Event, FinishReason, HandoffDue, Refusal, StopReason, Urgency};
use baton_model::ModelError;

use crate::journal::{self, Journal};
use crate::{Acted, Called, Engine, EngineError, Machine};

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

/// What the agent is told when its answer stopped at the output limit.
fn cut_off(limit: u32) -> String {
    format!(
        "baton: your last answer was cut off at the output limit of {limit} tokens, so its last tool call may be incomplete. Make smaller calls: write a large file in parts (write_file for the first part, then edit_file or apply_patch), and keep text between calls short."
    )
}

impl Engine {
    /// The leg's loop: call the model, run its tool calls, verify on `finish`.
    pub(crate) async fn work(&self, journal: &mut Journal<'_>, machine: Machine<'_>) -> Result<(), EngineError> {
        let Machine { toolbox, worktree, .. } = machine;
        // The tools do not change during a leg; built once per leg, not per step.
        let mut tools = (journal.state().work.leg, self.tools(toolbox, &journal.state().work));
        loop {
            if tools.0 != journal.state().work.leg {
                tools = (journal.state().work.leg, self.tools(toolbox, &journal.state().work));
            }
            let tools = &tools.1;
            if self.stop.is_cancelled() {
                return self.checkpoint(journal, worktree, "work in progress before baton stopped".into()).await;
            }
            let (task, delivered) = (journal.state().id.clone(), journal.state().work.messages_delivered);
            for follow_up in self.store.follow_ups(&task, delivered).await? {
                journal.append(Event::MessageReceived { number: follow_up.number, text: follow_up.text }).await?;
            }
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
                let spent =
                    Credits::from_micros(state.money.spent_in_all().micros() + state.money.held_total().micros());
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
            let request = self.request(
                work.role,
                work.system.clone(),
                baton_agent::elide(&work.transcript, budget),
                tools,
                budget,
            );
            let estimate = self.estimate(&request, work.role);
            if let Some(due) = budget.handoff_due(estimate, work.plan_step_completed) {
                if !self.hand_off(journal, machine, tools, due, None).await? {
                    return Ok(());
                }
                continue;
            }
            let response = match self.call_model(journal, &request, step, estimate, budget).await? {
                Called::Answered(response) => response,
                Called::Refused(Refusal::TaskBudget { limit, spent, reserved, needed })
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
                Called::Refused(refusal) => {
                    return self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await;
                }
                Called::Failed(error) => {
                    if let ModelError::ContextOverflow { .. } = error {
                        // What the provider says its window is, or else at most what it refused.
                        let window = error.stated_window().unwrap_or(estimate);
                        let reason = format!(
                            "the provider refused a prompt baton estimated at {estimate} tokens as too long for the model's context ({window} tokens)"
                        );
                        let due = HandoffDue { reason, urgency: Urgency::Emergency };
                        if !self.hand_off(journal, machine, tools, due, Some(window)).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    let detail = format!("the model call failed: {error}");
                    return self.pause(journal, worktree, StopReason::ModelError, detail).await;
                }
            };
            let calls = response.owned_tool_calls();
            let cut = response.finish == FinishReason::MaxTokens;
            // Written with the first tool call's intent (or whatever comes next): if it is lost, the
            // model is asked again, and the lost call is charged its hold.
            journal.defer(Event::ModelCallFinished { step, response })?;
            if calls.is_empty() {
                let text = "You answered without calling a tool. Keep working with the tools, or call `finish` when the task is done.";
                journal.append(Event::Feedback { text: text.into() }).await?;
            }
            match self.act(journal, machine, step, calls).await? {
                // Only review and captain legs report or plan, and they do not get here.
                Acted::Done | Acted::Reported | Acted::Planned if cut => {
                    // Otherwise a model that always overflows its output repeats the same cut call.
                    journal.append(Event::Feedback { text: cut_off(self.config.max_output_tokens) }).await?;
                }
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
}
