//! Handoffs between legs: the guards, the leaving leg's summarisation call, the ledger from the
//! journal and git, and the next leg's start.

use baton_agent::ContextBudget;
use baton_core::{
    Event, FileChange, Handoff, HandoffDue, Ledger, Message, ModelRequest, Part, Role, StopReason, TaskState, ToolSpec,
    Urgency, Usage,
};
use baton_git::Worktree;
use baton_model::{Billed, ModelError, StreamEvent};
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::{Admission, Engine, EngineError, Machine};

/// A leaving leg's narrative, or the fallback and why; what its calls used, and what the attempts
/// that failed may have cost.
pub(crate) struct Summary {
    narrative: String,
    error: Option<String>,
    usage: Option<Usage>,
    billed: Vec<Billed>,
}

/// The leg's transcript a summarisation request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transcript {
    /// As the leg's own prompts send it, old outputs elided.
    Elided,
    /// Cut to half the input room, for a prompt that may no longer fit.
    Shortened,
}

impl Transcript {
    fn for_urgency(urgency: Urgency) -> Transcript {
        match urgency {
            Urgency::Planned => Transcript::Elided,
            Urgency::Emergency => Transcript::Shortened,
        }
    }
}

impl Engine {
    /// Ends the leg with a handoff and starts the next leg from it. Returns false when a guard
    /// paused the task instead: too many handoffs, or legs that hand off without progress.
    pub(crate) async fn hand_off(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        tools: &[ToolSpec],
        due: HandoffDue,
        window: Option<u64>,
    ) -> Result<bool, EngineError> {
        let worktree = machine.worktree;
        // Committed first: changes made by commands count as progress as much as the file tools'.
        let leg = journal.state().work.leg;
        self.checkpoint(journal, worktree, format!("work in progress at the end of leg {leg}")).await?;
        let work = &journal.state().work;
        if work.handoffs >= self.config.max_handoffs {
            let detail = format!("the limit of {} handoffs is reached ({})", self.config.max_handoffs, due.reason);
            self.pause(journal, worktree, StopReason::BudgetExhausted, detail).await?;
            return Ok(false);
        }
        // Exploring is not looping: a leg that read lines or saw output no earlier leg had is progress.
        if !work.leg_progress && work.leg_new == 0 && work.idle_legs >= 1 {
            let detail = format!(
                "handoff loop: legs {} and {} each filled their context without changing a file, completing a plan step, running the checks or seeing anything earlier legs had not (leg {}: {} results, every one seen before)",
                work.leg - 1,
                work.leg,
                work.leg,
                work.leg_seen
            );
            self.pause(journal, worktree, StopReason::HandoffLoop, detail).await?;
            return Ok(false);
        }
        let mut intent = Vec::new();
        let emergency = due.urgency == Urgency::Emergency;
        if work.handoff_in_flight.is_none() {
            intent.push(Event::HandoffStarted { reason: due.reason.clone(), emergency, window });
        }
        // Held for the first attempt, the larger: a prompt refused as too long is not billed.
        let budget = self.budget(work);
        let first = self.summary_request(work, tools, &due.reason, Transcript::for_urgency(due.urgency), budget);
        let hold = self.call_hold(work.role, baton_model::input_bound(&first), budget);
        let key = format!("step {} handoff #{}", work.steps, journal.state().next_seq);
        if let Admission::Refused(refusal) = self.start_charged(journal, intent, &key, hold.clone()).await? {
            self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await?;
            return Ok(false);
        }
        let Summary { narrative, error: narrative_error, usage, billed } =
            self.summarise(journal.state(), tools, &due).await;
        let state = journal.state();
        let handoff = Handoff {
            from_leg: leg,
            step: state.work.steps,
            reason: due.reason,
            emergency,
            narrative,
            narrative_error,
            usage,
            ledger: self.ledger(state, worktree)?,
        };
        let (system, state_role) = (state.work.system.clone(), state.work.role);
        let mut charges = self.call_cost(state_role, &usage.unwrap_or_default());
        for attempt in billed {
            charges.extend(self.attempt_cost(state_role, attempt, &hold));
        }
        self.settle(journal, &key, charges)?;
        journal.defer(Event::HandoffWritten { handoff: Box::new(handoff.clone()) })?;
        let brief = baton_agent::handoff_brief(&journal.state().spec, &handoff, journal.state().work.idle_legs)
            + &baton_agent::messages_brief(&journal.state().work.messages)
            + &baton_agent::environment_brief(&machine.environment.declared);
        journal
            .append(Event::LegStarted {
                leg: leg + 1,
                model: self.chosen(state_role).name.to_string(),
                system,
                brief,
                role: state_role,
            })
            .await?;
        Ok(true)
    }

    /// The leaving leg's narrative from a summarisation call, or why there is none. A prompt the
    /// provider refuses as too long is shortened and asked once more.
    pub(crate) async fn summarise(&self, state: &TaskState, tools: &[ToolSpec], due: &HandoffDue) -> Summary {
        let work = &state.work;
        let budget = self.budget(work);
        let mut used: Option<Usage> = None;
        let mut failure = String::new();
        // What failed attempts may have cost, for the caller to charge.
        let mut billed = Vec::new();
        for transcript in [Transcript::for_urgency(due.urgency), Transcript::Shortened] {
            let request = self.summary_request(work, tools, &due.reason, transcript, budget);
            let mut sink = |event| {
                if let StreamEvent::AttemptFailed { billed: attempt, .. } = event {
                    billed.push(attempt);
                }
            };
            match self.chosen(work.role).client.complete(&request, &mut sink, &CancellationToken::new()).await {
                Ok(response) => {
                    *used.get_or_insert_with(Usage::default) += response.usage;
                    let text = response.text();
                    if !text.trim().is_empty() {
                        return Summary { narrative: text, error: None, usage: used, billed };
                    }
                    failure = "the summary came back empty".to_owned();
                    break;
                }
                Err(error @ ModelError::ContextOverflow { .. }) if transcript == Transcript::Elided => {
                    failure = error.to_string()
                }
                Err(error) => {
                    failure = error.to_string();
                    break;
                }
            }
        }
        Summary {
            narrative: baton_agent::fallback_narrative(&work.transcript),
            error: Some(failure),
            usage: used,
            billed,
        }
    }

    /// The summarisation request: the leg's prompt, its `transcript` elided or shortened, with the
    /// handoff request appended.
    fn summary_request(
        &self,
        work: &baton_core::Work,
        tools: &[ToolSpec],
        reason: &str,
        transcript: Transcript,
        budget: ContextBudget,
    ) -> ModelRequest {
        let (role, system) = (work.role, work.system.as_str());
        let messages = match transcript {
            Transcript::Shortened => {
                let target = budget.emergency_target();
                baton_agent::shorten(&work.transcript, |messages| {
                    let request = self.request(role, system.to_owned(), messages.to_vec(), tools, budget);
                    self.estimate(&request, role) <= target
                })
            }
            Transcript::Elided => baton_agent::elide(&work.transcript, budget),
        };
        let mut request = self.request(role, system.to_owned(), messages, tools, budget);
        let ask = Part::Text { text: baton_agent::handoff_request(reason) };
        match request.messages.last_mut() {
            Some(Message { role: Role::User, parts }) => parts.push(ask),
            _ => request.messages.push(Message { role: Role::User, parts: vec![ask] }),
        }
        request
    }

    /// The ledger as it stands: the journal's facts and the branch's diffstat since the base.
    pub(crate) fn ledger(&self, state: &TaskState, worktree: &Worktree) -> Result<Ledger, EngineError> {
        let files_changed = worktree
            .diffstat(&state.base_commit)?
            .into_iter()
            .map(|stat| FileChange { path: stat.path, added: stat.added, removed: stat.removed })
            .collect();
        Ok(Ledger {
            plan: state.work.plan.clone(),
            files_changed,
            files_read: state.work.files_read.clone(),
            checks: state.work.last_checks.clone(),
            open_questions: state.question.iter().cloned().collect(),
            branch: state.branch.clone(),
            head: worktree.head()?,
        })
    }
}
