//! Acting on an answer's tool calls: each journaled before and after, its hold and charge, the
//! harness-answered tools dispatched, the toolbox's for the rest.

use std::time::Instant;

use baton_core::{Answer, Effect, Event, LegRole, Secret, ToolCall};

use crate::gate::Gate;
use crate::journal::Journal;
use crate::{Acted, Admission, Engine, EngineError, Machine};

/// What a tool call produced, and the event it leads to, if any.
pub(crate) struct Outcome {
    output: String,
    is_error: bool,
    effect: Effect,
    then: Option<Event>,
}

impl Outcome {
    pub(crate) fn ok(output: String) -> Outcome {
        Outcome { output, is_error: false, effect: Effect::None, then: None }
    }

    pub(crate) fn error(output: String) -> Outcome {
        Outcome { output, is_error: true, effect: Effect::None, then: None }
    }
}

impl Engine {
    /// Runs one answer's tool calls, each journaled before and after; calls after a `finish` in the
    /// same answer are not run. A command's sandbox time is held before it starts: when the budget
    /// refuses it, the calls from there on stay unanswered (a resume runs them).
    pub(crate) async fn act(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        step: u32,
        calls: Vec<ToolCall>,
    ) -> Result<Acted, EngineError> {
        let worktree = machine.worktree;
        let mut finish = None;
        for ToolCall { id: call_id, name, arguments } in calls {
            let shell = baton_tools::shell_call(&name, &arguments);
            let answered = match self.decision_for(journal, &call_id, &name, &arguments, shell.as_ref()) {
                Gate::Open => None,
                Gate::Answered(answer) => Some(answer),
                Gate::Ask(decision) => {
                    // Nothing waits only in the worktree while a human thinks.
                    self.checkpoint(journal, worktree, format!("work in progress while waiting for {}", decision.id))
                        .await?;
                    journal.append(Event::DecisionRequested { decision }).await?;
                    return Ok(Acted::Waiting);
                }
            };
            let key = format!("step {step} {name} #{}", journal.state().next_seq);
            let denied = answered.as_ref().is_some_and(|answer| !answer.approved);
            // A plan's checks are probed on a clean machine: each is a check run, held at its limit.
            let probes = match name.as_str() {
                baton_agent::SUBMIT_PLAN if finish.is_none() && journal.state().work.role == LegRole::Captain => {
                    crate::plan::probes(&arguments)
                }
                _ => 0,
            };
            let held_secs = match &shell {
                Some(shell) if finish.is_none() && !denied => shell.busy.as_secs(),
                _ => crate::plan::CHECK_PROBE.as_secs() * probes,
            };
            let hold = self.config.rates.charges(held_secs, probes);
            let intent = vec![Event::ToolCallStarted {
                step,
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }];
            if let Admission::Refused(refusal) = self.start_charged(journal, intent, &key, hold).await? {
                return Ok(Acted::Refused(refusal));
            }
            let started = Instant::now();
            let outcome = if finish.is_some() {
                Outcome::error("not run: `finish` was called earlier in the same turn".to_owned())
            } else {
                self.run_call(journal, machine, &name, &arguments, answered)?
            };
            let output = baton_agent::fit_output(outcome.output, self.budget(&journal.state().work).max_result_bytes());
            let used_secs = sandbox_seconds(started.elapsed(), held_secs);
            self.settle(journal, &key, self.config.rates.charges(used_secs, probes))?;
            // Written with the next intent: if it is lost, the call is reported as interrupted.
            let effect = outcome.effect;
            if let Effect::Finish(summary) = &effect {
                finish = Some(summary.clone());
            }
            journal.defer(Event::tool_call_finished(call_id, output, outcome.is_error, effect))?;
            for refusal in machine.toolbox.take_refused_connections() {
                let (host, port) = (refusal.host, refusal.port);
                journal.defer(Event::ConnectionRefused { host, port, phase: baton_core::Phase::Agent })?;
            }
            if let Some(then) = outcome.then {
                let ends = match then {
                    Event::FindingsReported { .. } => Some(Acted::Reported),
                    Event::PlanSubmitted { .. } => Some(Acted::Planned),
                    _ => None,
                };
                journal.defer(then)?;
                if let Some(acted) = ends {
                    return Ok(acted);
                }
            }
        }
        Ok(finish.map_or(Acted::Done, Acted::Finish))
    }

    /// Answers one tool call: the harness's own tools here, the rest by the toolbox.
    pub(crate) fn run_call(
        &self,
        journal: &Journal<'_>,
        machine: Machine<'_>,
        name: &str,
        arguments: &str,
        answered: Option<Answer>,
    ) -> Result<Outcome, EngineError> {
        let Machine { toolbox, clean, worktree, environment, .. } = machine;
        let work = &journal.state().work;
        // Offered or not, a tool runs only for the roles the registry grants it to.
        let allowed = match toolbox.served_reach(name) {
            Some(reach) => baton_agent::may_call_served(work.role, reach),
            None => baton_agent::may_call(work.role, name),
        };
        if !allowed {
            let role = work.role;
            let tools = baton_agent::tools_of(role).collect::<Vec<_>>().join(", ");
            return Ok(Outcome::error(format!("a {role} leg has no tool `{name}`; its tools are: {tools}")));
        }
        Ok(match name {
            baton_agent::ASK_HUMAN => {
                let answer = answered.map_or_else(String::new, |a| a.answer);
                Outcome::ok(format!("The human answered: {answer}"))
            }
            _ if answered.as_ref().is_some_and(|a| !a.approved) => {
                let answer = answered.map(|a| a.answer).unwrap_or_default();
                let reason = if answer.is_empty() { String::new() } else { format!(": {answer}") };
                if name == baton_agent::SUBMIT_PLAN {
                    Outcome::error(format!("plan refused by a human{reason}. Change it and submit it again."))
                } else if name == baton_agent::REQUEST_CREDENTIAL {
                    Outcome::error(format!("a human refused the credential{reason}. Do without it, or ask_human."))
                } else {
                    Outcome::error(format!(
                        "not run: a human denied this command{reason}. Find another way, or ask_human."
                    ))
                }
            }
            baton_agent::REQUEST_CREDENTIAL => {
                match baton_agent::request_credential_args(arguments, &self.config.own_credentials) {
                    Ok((credential, _)) => match std::env::var(&credential) {
                        Ok(value) => {
                            toolbox.grant(Secret { name: credential.clone(), value });
                            Outcome::ok(format!(
                                "`{credential}` is set in the environment of your shell commands from now on (its value is never shown)"
                            ))
                        }
                        Err(_) => Outcome::error(format!(
                            "approved, but `{credential}` is not set where baton runs; ask_human for another way"
                        )),
                    },
                    Err(error) => Outcome::error(error),
                }
            }
            baton_agent::RECALL => match baton_agent::recall(&work.transcript, arguments) {
                Ok(output) => Outcome::ok(output),
                Err(error) => Outcome::error(error),
            },
            baton_agent::REPORT_FINDINGS => {
                match baton_agent::parse_findings(arguments, work.findings.len() + 1, work.review_rounds + 1) {
                    Ok(findings) => Outcome {
                        then: Some(Event::FindingsReported {
                            round: work.review_rounds + 1,
                            reviewed: worktree.head()?,
                            findings: findings.clone(),
                        }),
                        ..Outcome::ok(format!("{} findings recorded; the review is over", findings.len()))
                    },
                    Err(error) => Outcome::error(error),
                }
            }
            baton_agent::SUBMIT_PLAN => match baton_agent::parse_plan(arguments) {
                Ok(plan) => {
                    match self
                        .plan_problems(journal.state(), &plan, clean, worktree, toolbox, environment.lower.clone())
                        .as_slice()
                    {
                        [] => Outcome {
                            then: Some(Event::PlanSubmitted { subtasks: plan.clone() }),
                            ..Outcome::ok(format!("plan accepted: {} subtasks; baton runs them now", plan.len()))
                        },
                        problems => Outcome::error(format!("plan refused: {}", problems.join("; "))),
                    }
                }
                Err(error) => Outcome::error(format!("plan refused: {error}")),
            },
            baton_agent::RESOLVE_FINDING => match baton_agent::parse_resolution(arguments, &work.findings) {
                Ok((id, status, note)) => Outcome {
                    output: format!("{id} marked {status:?}"),
                    then: Some(Event::FindingUpdated { id, status, note, by: "build".to_owned() }),
                    ..Outcome::ok(String::new())
                },
                Err(error) => Outcome::error(error),
            },
            _ => {
                // Roles that only read run their commands where the worktree is read-only.
                let result = match work.role {
                    LegRole::Build => toolbox.call(name, arguments),
                    LegRole::Captain | LegRole::Review => toolbox.call_reading(name, arguments),
                };
                Outcome { output: result.output, is_error: result.is_error, effect: result.effect, then: None }
            }
        })
    }
}

/// The sandbox seconds an action is charged: at least one, at most the `limit` it was held at. The
/// sandbox is stopped at its limit; what stopping it takes past that is baton's time, not the task's,
/// and must not make an action cost more than it held.
pub(crate) fn sandbox_seconds(elapsed: std::time::Duration, limit: u64) -> u64 {
    elapsed.as_secs().clamp(1, limit.max(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::sandbox_seconds;

    #[test]
    fn a_command_is_charged_at_least_a_second_and_never_more_than_it_held() {
        assert_eq!(sandbox_seconds(Duration::from_millis(200), 600), 1);
        assert_eq!(sandbox_seconds(Duration::from_millis(3_900), 600), 3);
        // Stopping a command at its 2 s limit took baton until 3.7 s: the task pays for 2.
        assert_eq!(sandbox_seconds(Duration::from_millis(3_700), 2), 2);
    }
}
