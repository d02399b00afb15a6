//! Committing the work in progress on the task branch, merging other branches' results into it, and
//! pausing with the work committed first.

use baton_core::{Event, StopReason};
use baton_git::{GitError, Worktree};

use crate::journal::Journal;
use crate::repository;
use crate::{Engine, EngineError};

/// Pushes of one checkpoint, and the pause before the n-th retry (n times this).
const PUSH_ATTEMPTS: u32 = 3;
const PUSH_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

impl Engine {
    /// Commits the work so far on the task branch, if there is anything new.
    pub(crate) async fn checkpoint(
        &self,
        journal: &mut Journal<'_>,
        worktree: &Worktree,
        evidence: String,
    ) -> Result<(), EngineError> {
        let message = format!("baton checkpoint: {evidence}");
        match worktree.commit_all(&message) {
            Ok(Some(commit)) => self.checkpointed(journal, commit, evidence).await,
            Ok(None) => Ok(()),
            // Nothing is committed while the agent keeps a repository in the worktree; it is told why.
            Err(refused @ GitError::EmbeddedRepositories(_)) => {
                journal.append(Event::Feedback { text: format!("baton did not commit your work: {refused}.") }).await
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Merges each `(what, commit)` into the task branch, journaled as a checkpoint. Returns what
    /// conflicted, `path (merging what)`: committed with git's markers, for a build leg to resolve.
    pub(crate) async fn merge_in(
        &self,
        journal: &mut Journal<'_>,
        worktree: &Worktree,
        merges: &[(String, String)],
    ) -> Result<Vec<String>, EngineError> {
        let mut conflicts = Vec::new();
        for (what, commit) in merges {
            for path in worktree.merge(commit, &format!("baton: merge {what}"))? {
                conflicts.push(format!("{path} (merging {what})"));
            }
        }
        let head = worktree.head()?;
        if !merges.is_empty() && journal.state().work.last_commit.as_ref() != Some(&head) {
            let names: Vec<&str> = merges.iter().map(|(what, _)| what.as_str()).collect();
            let evidence = format!("merged {}", names.join(", "));
            self.checkpointed(journal, head, evidence).await?;
        }
        Ok(conflicts)
    }

    /// Journals `commit` as the task's checkpoint and pushes it where the task says. A refused
    /// push is journaled and the task goes on: the next checkpoint pushes everything since.
    pub(crate) async fn checkpointed(
        &self,
        journal: &mut Journal<'_>,
        commit: String,
        evidence: String,
    ) -> Result<(), EngineError> {
        journal.append(Event::Checkpointed { commit: commit.clone(), evidence }).await?;
        let state = journal.state();
        let Some(remote) = state.spec.push.clone() else { return Ok(()) };
        let push = || repository::push(&self.config.home, &state.spec.repo, &remote, &commit, &state.branch);
        let mut pushed = push();
        // A push can fail for a moment (the remote packing its refs while others push): tried
        // again shortly, since the last checkpoint of a task has no next one to retry it.
        for attempt in 1..PUSH_ATTEMPTS {
            if pushed.is_ok() {
                break;
            }
            tokio::time::sleep(PUSH_PAUSE * attempt).await;
            pushed = push();
        }
        let error = pushed.err().map(|error| error.to_string());
        journal.append(Event::Pushed { commit, remote, error }).await
    }

    /// Pauses with the work committed first, so nothing waits only in the worktree.
    pub(crate) async fn pause(
        &self,
        journal: &mut Journal<'_>,
        worktree: &Worktree,
        reason: StopReason,
        detail: String,
    ) -> Result<(), EngineError> {
        self.checkpoint(journal, worktree, format!("work in progress before pausing ({reason})")).await?;
        // A pause for another reason (a model call whose failed attempts cost more than its hold)
        // names the overrun too: the resume is what lets the task act again.
        let detail = match &journal.state().money.overrun {
            Some(overrun) if reason != StopReason::BudgetExhausted => {
                format!("{detail}; and {overrun}, so the limits are checked again on resume")
            }
            _ => detail,
        };
        journal.append(Event::Paused { reason, detail }).await
    }
}
