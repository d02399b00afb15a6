//! Committing the work in progress on the task branch, merging other branches' results into it, and
//! pausing with the work committed first.

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
            journal.append(Event::Checkpointed { commit: head, evidence }).await?;
        }
        Ok(conflicts)
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
