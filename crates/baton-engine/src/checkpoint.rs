//! Committing the work in progress on the task branch, and pausing with it committed first.

use baton_core::{Event, StopReason};
use baton_git::{GitError, Worktree};

use crate::journal::Journal;
use crate::{Engine, EngineError};

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
            Ok(Some(commit)) => journal.append(Event::Checkpointed { commit, evidence }).await,
            Ok(None) => Ok(()),
            // Nothing is committed while the agent keeps a repository in the worktree; it is told why.
            Err(refused @ GitError::EmbeddedRepositories(_)) => {
                journal.append(Event::Feedback { text: format!("baton did not commit your work: {refused}.") }).await
            }
            Err(other) => Err(other.into()),
        }
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
        journal.append(Event::Paused { reason, detail }).await
    }
}
