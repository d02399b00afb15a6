//! One model call of a leg: which model a role uses, the tools it is offered, the request with its
//! context budget and estimate, and the step of a leg that only reads (captain, reviewer).

use baton_agent::ContextBudget;
use baton_core::{Event, HandoffDue, LegRole, Message, ModelRequest, ModelResponse, Part, PromptSize, ToolSpec};
use baton_model::{Billed, StreamEvent};
use baton_tools::Toolbox;
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::{Acted, Admission, Called, Chosen, Engine, EngineError, Machine};

/// How the harness tells a reading leg that its context is nearly full.
const WRAP_UP: &str = "baton: your context is nearly full";

fn is_wrap_up(part: &Part) -> bool {
    matches!(part, Part::Text { text } if text.starts_with(WRAP_UP))
}

impl Engine {
    pub(crate) fn chosen(&self, role: LegRole) -> Chosen<'_> {
        match self.roles.get(&role) {
            Some(model) => Chosen { name: &model.name, client: model.client.as_ref(), price: model.price },
            None => Chosen { name: &self.config.model, client: self.model.as_ref(), price: self.config.price },
        }
    }

    /// A request's input tokens, as the role's provider counts them.
    pub(crate) fn estimate(&self, request: &ModelRequest, role: LegRole) -> u64 {
        self.estimator.estimate(request, self.chosen(role).name.provider)
    }

    /// The leg's tools: the toolbox's, and `recall` and `ask_human`, which the engine answers.
    pub(crate) fn tools(&self, toolbox: &Toolbox, work: &baton_core::Work) -> Vec<ToolSpec> {
        let harness = [
            baton_agent::recall_spec(),
            baton_agent::ask_human_spec(),
            baton_agent::request_credential_spec(),
            baton_agent::report_findings_spec(),
            baton_agent::submit_plan_spec(),
            baton_agent::resolve_finding_spec(),
        ];
        // The repository's MCP servers run where the role's commands run.
        let (served, _) = match work.role {
            LegRole::Build => toolbox.served_specs(),
            LegRole::Captain | LegRole::Review => toolbox.served_specs_reading(),
        };
        let served = served.into_iter().filter(|(_, reach)| baton_agent::may_call_served(work.role, *reach));
        toolbox
            .specs()
            .into_iter()
            .chain(harness)
            .filter(|tool| baton_agent::may_call(work.role, &tool.name))
            // Findings are resolved only once a review reported some.
            .filter(|tool| tool.name != baton_agent::RESOLVE_FINDING || !work.findings.is_empty())
            .chain(served.map(|(tool, _)| tool))
            .collect()
    }

    /// The room a leg has: the configured window, or the smaller one a provider's refusal taught.
    pub(crate) fn budget(&self, work: &baton_core::Work) -> ContextBudget {
        let window = work.learned_window.map_or(self.config.context_window, |w| w.min(self.config.context_window));
        ContextBudget::new(window, u64::from(self.config.max_output_tokens))
    }

    pub(crate) fn request(
        &self,
        role: LegRole,
        system: String,
        messages: Vec<Message>,
        tools: &[ToolSpec],
        budget: ContextBudget,
    ) -> ModelRequest {
        ModelRequest {
            model: self.chosen(role).name.model.clone(),
            system,
            // Everything but the newest turn stays the same for the next call.
            stable_prefix: messages.len().saturating_sub(1),
            messages,
            tools: tools.to_vec(),
            max_output_tokens: budget.max_output() as u32,
        }
    }

    /// One step of a leg that reads and reports (captain, reviewer): a model call, then its tool
    /// calls; an answer without one is told `nudge`, and so is a leg near the end of its context.
    pub(crate) async fn reading_step(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        tools: &[ToolSpec],
        nudge: &str,
    ) -> Result<Called<Acted>, EngineError> {
        let work = &journal.state().work;
        let step = work.steps + 1;
        let budget = self.budget(work);
        let request =
            self.request(work.role, work.system.clone(), baton_agent::elide(&work.transcript, budget), tools, budget);
        let estimate = self.estimate(&request, work.role);
        // A leg that only reads cannot hand off: near the end of its context it is told to give
        // its answer now, once per step it spends past the threshold reading more.
        if let Some(HandoffDue { reason, .. }) = budget.handoff_due(estimate, false)
            && !work.transcript.last().is_some_and(|message| message.parts.iter().any(is_wrap_up))
        {
            let text =
                format!("{WRAP_UP} ({reason}), and a leg that only reads cannot hand off. {nudge} Read nothing more.");
            journal.append(Event::Feedback { text }).await?;
            return Ok(Called::Answered(Acted::Done));
        }
        let response = match self.call_model(journal, &request, step, estimate, budget).await? {
            Called::Answered(response) => response,
            Called::Refused(refusal) => return Ok(Called::Refused(refusal)),
            Called::Failed(error) => return Ok(Called::Failed(error)),
        };
        let calls = response.owned_tool_calls();
        journal.defer(Event::ModelCallFinished { step, response })?;
        if calls.is_empty() {
            journal.append(Event::Feedback { text: nudge.to_owned() }).await?;
            return Ok(Called::Answered(Acted::Done));
        }
        self.act(journal, machine, step, calls).await.map(Called::Answered)
    }

    /// One model call, journaled and charged: held at its worst case before (every input token a
    /// tokenizer could count, every output token allowed), settled after at what the provider
    /// reported, with every failed attempt it may have billed. The answer is not journaled yet: the
    /// caller defers it with what comes next.
    pub(crate) async fn call_model(
        &self,
        journal: &mut Journal<'_>,
        request: &ModelRequest,
        step: u32,
        estimate: u64,
        budget: ContextBudget,
    ) -> Result<Called<ModelResponse>, EngineError> {
        let prompt = PromptSize { tokens: estimate, room: budget.input_limit() };
        let key = format!("step {step} model call #{}", journal.state().next_seq);
        let intent = vec![Event::ModelCallStarted { step, prompt: Some(prompt) }];
        let role = journal.state().work.role;
        let hold = self.call_hold(role, baton_model::input_bound(request), budget);
        if let Admission::Refused(refusal) = self.start_charged(journal, intent, &key, hold.clone()).await? {
            return Ok(Called::Refused(refusal));
        }
        let mut failed = Vec::new();
        let mut sink = |event| {
            if let StreamEvent::AttemptFailed { attempt, error, billed } = event {
                failed.push((attempt, error, billed));
            }
        };
        let result = self.chosen(role).client.complete(request, &mut sink, &CancellationToken::new()).await;
        let mut charges = Vec::new();
        for (attempt, error, billed) in failed {
            charges.extend(self.attempt_cost(role, billed, &hold));
            let usage = match billed {
                Billed::Nothing => continue,
                Billed::Reported(usage) => Some(usage),
                Billed::Unknown => None,
            };
            journal.defer(Event::ModelAttemptBilled { step, attempt, error, usage })?;
        }
        match result {
            Ok(response) => {
                charges.extend(self.call_cost(role, &response.usage));
                self.settle(journal, &key, charges)?;
                Ok(Called::Answered(journal.state().work.with_unique_call_ids(response)))
            }
            Err(error) => {
                self.settle(journal, &key, charges)?;
                journal.append(Event::ModelCallFailed { step, error: error.to_string() }).await?;
                Ok(Called::Failed(error))
            }
        }
    }
}
