//! What stands between a tool call and its running: a question for a human, a plan to approve, a
//! credential to grant, a command the approval policy flags.

use baton_core::{Answer, Decision, DecisionKind};

use crate::Engine;
use crate::journal::Journal;

/// What stands between a tool call and its running.
pub(crate) enum Gate {
    Open,
    Answered(Answer),
    Ask(Decision),
}

impl Engine {
    /// Whether a call needs a human first: `ask_human` always, a command when the approval policy
    /// says so. A call whose decision is answered goes on with the answer.
    pub(crate) fn decision_for(
        &self,
        journal: &Journal<'_>,
        call_id: &str,
        name: &str,
        arguments: &str,
        shell: Option<&baton_tools::ShellCall>,
    ) -> Gate {
        let work = &journal.state().work;
        if let Some((_, answer)) = work.decisions.iter().find(|(d, _)| d.call_id.as_deref() == Some(call_id)) {
            return answer.clone().map_or(Gate::Open, Gate::Answered);
        }
        let id = format!("d{}", work.decisions.len() + 1);
        let call_id = Some(call_id.to_owned());
        if name == baton_agent::ASK_HUMAN {
            // Malformed arguments are answered as an error by the tool path, without a human.
            return match baton_agent::ask_human_args(arguments) {
                Ok((question, options, why)) => {
                    Gate::Ask(Decision { id, kind: DecisionKind::Ask, question, options, why, call_id })
                }
                Err(_) => Gate::Open,
            };
        }
        if name == baton_agent::REQUEST_CREDENTIAL {
            return match baton_agent::request_credential_args(arguments, &self.config.own_credentials) {
                Ok((credential, why)) => Gate::Ask(Decision {
                    id,
                    question: format!("Give the agent the credential `{credential}`?"),
                    kind: DecisionKind::Credential { name: credential },
                    options: vec!["approve".to_owned(), "deny".to_owned()],
                    why,
                    call_id,
                }),
                Err(_) => Gate::Open,
            };
        }
        if name == baton_agent::SUBMIT_PLAN && journal.state().spec.approve_plan {
            // Only a plan that could be accepted is put to a human.
            return match baton_agent::parse_plan(arguments) {
                Ok(plan) => {
                    let listed: Vec<String> = plan
                        .iter()
                        .map(|s| {
                            let after = if s.depends_on.is_empty() {
                                String::new()
                            } else {
                                format!(" (after {})", s.depends_on.join(", "))
                            };
                            format!("{}{after}: {} [checks: {}]", s.key, s.request, s.checks.join("; "))
                        })
                        .collect();
                    Gate::Ask(Decision {
                        id,
                        kind: DecisionKind::PlanApproval,
                        question: format!("Approve this plan? {}", listed.join(" | ")),
                        options: vec!["approve".to_owned(), "deny with what to change".to_owned()],
                        why: "the task was started with --approve-plan".to_owned(),
                        call_id,
                    })
                }
                Err(_) => Gate::Open,
            };
        }
        let Some(command) = shell.map(|shell| shell.command.clone()) else {
            return Gate::Open;
        };
        match self.config.approval.needs_approval(&command) {
            Some(rule) => Gate::Ask(Decision {
                id,
                question: format!("May the agent run `{command}`?"),
                kind: DecisionKind::Destructive { rule: rule.to_owned(), command },
                options: vec!["approve".to_owned(), "deny".to_owned()],
                why: format!("it matches the approval rule \"{rule}\""),
                call_id,
            }),
            None => Gate::Open,
        }
    }
}
