//! Charged actions: each reserves its worst case before it starts (against the task's credit limit
//! here, against the account's policy in the store's transaction) and is settled at what it cost.

use baton_agent::ContextBudget;
use baton_core::{Charge, Event, Refusal, Usage, total};

use crate::journal::Journal;
use crate::{Engine, EngineError};

impl Engine {
    /// Journals `intent` with a hold of the worst case of a call with a prompt of `tokens` (when the
    /// model has a price), after the task's credit limit and the account's policy admit it. When
    /// either refuses, nothing of the intent is written.
    pub(crate) async fn start_charged(
        &self,
        journal: &mut Journal<'_>,
        mut intent: Vec<Event>,
        key: &str,
        tokens: u64,
        budget: ContextBudget,
    ) -> Result<Result<(), Refusal>, EngineError> {
        if let Some(price) = self.config.price {
            let charges: Vec<Charge> = price.worst_case(tokens, budget.max_output());
            let state = journal.state();
            if let Some(limit) = state.spec.budget.credits {
                let (spent, reserved, needed) = (state.money.spent, state.money.held_total(), total(&charges));
                if spent.micros() + reserved.micros() + needed.micros() > limit.micros() {
                    return Ok(Err(Refusal::TaskBudget { limit, spent, reserved, needed }));
                }
            }
            intent.push(Event::Reserved { key: key.to_owned(), charges });
        }
        journal.try_append(intent).await
    }

    /// Defers the settlement of `key` at what `usage` cost, if `key` is held.
    pub(crate) fn settle(&self, journal: &mut Journal<'_>, key: &str, usage: &Usage) -> Result<(), EngineError> {
        match self.config.price {
            Some(price) if journal.state().money.held.contains_key(key) => {
                journal.defer(Event::Settled { key: key.to_owned(), charges: price.charges(usage) })
            }
            _ => Ok(()),
        }
    }
}
