//! Charged actions: each reserves its worst case before it starts (against the task's credit limit
//! here, against the account's policy in the store's transaction) and is settled at what it cost.
//! One that cost more than it held is journaled as an overrun, and nothing more starts until the
//! task has paused and resumed.

use baton_agent::ContextBudget;
use baton_core::{Charge, Event, LegRole, Refusal, Usage, total};
use baton_model::Billed;

use crate::journal::Journal;
use crate::{Admission, Engine, EngineError};

impl Engine {
    /// Journals `intent` with a hold of `hold` under `key` (when it holds anything), after the
    /// task's credit limit and the account's policy admit it. When either refuses, or an overrun
    /// waits for the task to pause, nothing of the intent is written.
    pub(crate) async fn start_charged(
        &self,
        journal: &mut Journal<'_>,
        mut intent: Vec<Event>,
        key: &str,
        hold: Vec<Charge>,
    ) -> Result<Admission, EngineError> {
        let state = journal.state();
        if let Some(overrun) = &state.money.overrun {
            let spent = state.money.spent_in_all();
            return Ok(Admission::Refused(Refusal::Overrun { overrun: overrun.clone(), spent }));
        }
        if !hold.is_empty() {
            if let Some(limit) = state.spec.budget.credits {
                let (spent, reserved, needed) = (state.money.spent_in_all(), state.money.held_total(), total(&hold));
                if spent.micros() + reserved.micros() + needed.micros() > limit.micros() {
                    return Ok(Admission::Refused(Refusal::TaskBudget { limit, spent, reserved, needed }));
                }
            }
            intent.push(Event::Reserved { key: key.to_owned(), charges: hold });
        }
        journal.try_append(intent).await
    }

    /// Defers the settlement of `key` at `charges`, if `key` is held, and an overrun when they
    /// come to more than the hold.
    pub(crate) fn settle(&self, journal: &mut Journal<'_>, key: &str, charges: Vec<Charge>) -> Result<(), EngineError> {
        let Some(held) = journal.state().money.held.get(key).map(|held| total(held)) else { return Ok(()) };
        let charged = total(&charges);
        journal.defer(Event::Settled { key: key.to_owned(), charges })?;
        if charged > held {
            journal.defer(Event::Overran { key: key.to_owned(), held, charged })?;
        }
        Ok(())
    }

    /// The most a model call whose prompt is at most `input` tokens can cost (nothing when the
    /// model has no price).
    pub(crate) fn call_hold(&self, role: LegRole, input: u64, budget: ContextBudget) -> Vec<Charge> {
        self.chosen(role).price.map(|price| price.worst_case(input, budget.max_output())).unwrap_or_default()
    }

    /// What a model call that used `usage` costs.
    pub(crate) fn call_cost(&self, role: LegRole, usage: &Usage) -> Vec<Charge> {
        self.chosen(role).price.map(|price| price.charges(usage)).unwrap_or_default()
    }

    /// What a failed attempt of a call held at `hold` costs: its reported usage, or its hold when
    /// the provider said nothing.
    pub(crate) fn attempt_cost(&self, role: LegRole, billed: Billed, hold: &[Charge]) -> Vec<Charge> {
        match billed {
            Billed::Nothing => Vec::new(),
            Billed::Reported(usage) => self.call_cost(role, &usage),
            Billed::Unknown => hold.to_vec(),
        }
    }
}
