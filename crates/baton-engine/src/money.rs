//! Charged actions: each reserves its worst case before it starts (against the task's credit limit
//! here, against the account's policy in the store's transaction) and is settled at what it cost.

use baton_agent::ContextBudget;
use baton_core::{Charge, Event, LegRole, Refusal, Usage, total};

use crate::journal::Journal;
use crate::{Admission, Engine, EngineError};

impl Engine {
    /// Journals `intent` with a hold of `hold` under `key` (when it holds anything), after the
    /// task's credit limit and the account's policy admit it. When either refuses, nothing of the
    /// intent is written.
    pub(crate) async fn start_charged(
        &self,
        journal: &mut Journal<'_>,
        mut intent: Vec<Event>,
        key: &str,
        hold: Vec<Charge>,
    ) -> Result<Admission, EngineError> {
        if !hold.is_empty() {
            let state = journal.state();
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

    /// Defers the settlement of `key` at `charges`, if `key` is held.
    pub(crate) fn settle(&self, journal: &mut Journal<'_>, key: &str, charges: Vec<Charge>) -> Result<(), EngineError> {
        if journal.state().money.held.contains_key(key) {
            journal.defer(Event::Settled { key: key.to_owned(), charges })?;
        }
        Ok(())
    }

    /// The most a model call with a prompt of `tokens` can cost (nothing when the model has no price).
    pub(crate) fn call_hold(&self, role: LegRole, tokens: u64, budget: ContextBudget) -> Vec<Charge> {
        self.chosen(role).price.map(|price| price.worst_case(tokens, budget.max_output())).unwrap_or_default()
    }

    /// What a model call that used `usage` costs.
    pub(crate) fn call_cost(&self, role: LegRole, usage: &Usage) -> Vec<Charge> {
        self.chosen(role).price.map(|price| price.charges(usage)).unwrap_or_default()
    }
}
