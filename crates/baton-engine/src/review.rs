//! Review: after the checks pass, a reviewer leg reads the change (all of it in the first round,
//! only what came after the last review later) and reports findings; actionable ones go back to a
//! build leg, which resolves them, and the loop repeats, bounded.

use baton_core::{Event, Finding, FindingStatus, LegRole, Status, StopReason};

use baton_tools::Toolbox;

use crate::journal::Journal;
use crate::{Acted, Called, Engine, EngineError, Machine, instructions};

/// Review rounds per task; after the last one the task is done with what is still open listed.
const REVIEW_ROUNDS: u32 = 3;
/// Model steps a reviewer may take to report.
const REVIEW_STEPS: u32 = 20;

impl Engine {
    /// Reviews the verified change. Returns true when the task has ended (done, or paused by the
    /// budget or a reviewer's model that failed); false when a build leg now addresses the findings.
    pub(crate) async fn review(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        summary: &str,
    ) -> Result<bool, EngineError> {
        let Machine { toolbox, worktree, environment, .. } = machine;
        let state = journal.state();
        // A planned task's subtasks, and each attempt, were reviewed on their own.
        if !state.spec.review || state.spec.plan || state.spec.attempts > 1 || state.work.review_rounds >= REVIEW_ROUNDS
        {
            return self.done(journal, toolbox, summary).await;
        }
        let from = state.work.reviewed.clone().unwrap_or_else(|| state.base_commit.clone());
        let diff = worktree.diff(&from)?;
        if diff.trim().is_empty() {
            return self.done(journal, toolbox, summary).await;
        }
        if state.status() != Status::Reviewing {
            journal.append(Event::ReviewStarted).await?;
        }
        let state = journal.state();
        let round = state.work.review_rounds + 1;
        let mut brief =
            baton_agent::review_brief(&state.spec, round, &diff, &state.work.last_checks, &state.work.findings)
                + &baton_agent::messages_brief(&state.work.messages);
        // The checks ran on the environment the agent's commit declares: a change to it changes
        // what judged the work, so the reviewer is told to read it.
        if let Some(checked_on) = state.work.last_checks.last().map(|check| &check.environment)
            && *checked_on != environment.hash
        {
            brief.push_str(&format!(
                "\n\n## The environment changed\nThe agent's commit changes the environment ({}): the checks ran on \
                 environment {} instead of the task's {}. Read that change in the diff: what it runs before the checks \
                 could decide whether they pass.\n",
                baton_core::ENVIRONMENT_FILE,
                &checked_on[..checked_on.len().min(12)],
                environment.short_hash()
            ));
        }
        let leg = Event::LegStarted {
            leg: state.work.leg + 1,
            model: self.chosen(LegRole::Review).name.to_string(),
            system: baton_agent::review_system(&instructions(toolbox, &state.spec, LegRole::Review)),
            brief,
            role: LegRole::Review,
        };
        journal.append(leg).await?;
        let tools = self.tools(toolbox, &journal.state().work);
        for _ in 0..REVIEW_STEPS {
            let nudge = "Report what you found with `report_findings` (an empty list if the change is clean).";
            match self.reading_step(journal, machine, &tools, nudge).await? {
                Called::Answered(Acted::Reported) => break,
                Called::Answered(Acted::Refused(refusal)) | Called::Refused(refusal) => {
                    self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await?;
                    return Ok(true);
                }
                // The task asked for a review: without one it is not done. `resume` reviews again.
                Called::Failed(error) => {
                    let detail = format!("the reviewer's model call failed: {error}");
                    self.pause(journal, worktree, StopReason::ModelError, detail).await?;
                    return Ok(true);
                }
                Called::Answered(Acted::Done | Acted::Finish(_) | Acted::Waiting | Acted::Planned) => {}
            }
        }
        let state = journal.state();
        if state.work.review_rounds < round {
            let note = format!("{summary}\n\n(The reviewer reported nothing in {REVIEW_STEPS} steps.)");
            return self.done(journal, toolbox, &note).await;
        }
        let actionable: Vec<Finding> = state.work.findings.iter().filter(|f| f.is_actionable()).cloned().collect();
        if actionable.is_empty() {
            return self.done(journal, toolbox, summary).await;
        }
        let detail = format!("review round {round} found {} findings to address", actionable.len());
        journal.append(Event::Resumed { detail }).await?;
        let state = journal.state();
        let instructions = instructions(toolbox, &state.spec, LegRole::Build);
        let leg = Event::LegStarted {
            leg: state.work.leg + 1,
            model: self.chosen(LegRole::Build).name.to_string(),
            system: baton_agent::system_prompt(&instructions),
            brief: baton_agent::findings_brief(&state.spec, &actionable),
            role: LegRole::Build,
        };
        journal.append(leg).await?;
        Ok(false)
    }

    /// Ends the task as verified, naming the findings still open — unless the user sent a
    /// follow-up the agent has not seen: then a build leg opens for it (and this is `false`).
    async fn done(&self, journal: &mut Journal<'_>, toolbox: &Toolbox, summary: &str) -> Result<bool, EngineError> {
        let state = journal.state();
        if !self.store.follow_ups(&state.id, state.work.messages_delivered).await?.is_empty() {
            let detail = "a follow-up from the user arrived before the end".to_owned();
            journal.append(Event::Resumed { detail }).await?;
            let state = journal.state();
            let leg = Event::LegStarted {
                leg: state.work.leg + 1,
                model: self.chosen(LegRole::Build).name.to_string(),
                system: baton_agent::system_prompt(&instructions(toolbox, &state.spec, LegRole::Build)),
                brief: baton_agent::follow_up_brief(&state.spec, summary),
                role: LegRole::Build,
            };
            journal.append(leg).await?;
            return Ok(false);
        }
        let open: Vec<&str> = journal
            .state()
            .work
            .findings
            .iter()
            .filter(|f| f.status == FindingStatus::Open)
            .map(|f| f.id.as_str())
            .collect();
        let detail = match open.as_slice() {
            [] => summary.to_owned(),
            ids => format!("{summary}\n\nStill open after review: {}.", ids.join(", ")),
        };
        self.publish_pull_request(journal, summary).await?;
        journal.append(Event::Finished { reason: StopReason::Verified, detail }).await?;
        Ok(true)
    }
}
