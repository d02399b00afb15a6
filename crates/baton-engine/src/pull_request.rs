//! A task's pull request: opened as a draft on its remote's forge when the task is verified, and
//! brought up to date by every later verified end on its branch (a follow-up continues the branch,
//! and finds the pull request open from it).

use baton_core::{Event, FindingStatus, PullRequestRef, TaskState};
use baton_forge::{Check, Finding, Forges, Report};

use crate::EngineError;
use crate::journal::Journal;

/// What publishing a task's pull request came to, to be journaled: the pull request opened or
/// updated, and the follow-ups it had not answered answered by a comment naming the commit.
pub async fn publish_event(forges: &Forges, state: &TaskState, summary: &str) -> Option<Event> {
    let (forge, base, report, branch) = prepare(forges, state, summary)?;
    let pending = unanswered(state);
    let commit = report.commit.clone();
    let pull = match forge.publish(&branch, base.as_deref(), &report).await {
        Ok(pull) => pull,
        Err(error) => return Some(Event::PullRequestFailed { commit, error: error.to_string() }),
    };
    let (answered, reply_error) = match pending.is_empty() {
        true => (Vec::new(), None),
        false => match forge.reply(pull.number, &baton_forge::reply(&commit, &pending, &report.summary)).await {
            Ok(()) => (pending, None),
            Err(error) => (Vec::new(), Some(error.to_string())),
        },
    };
    let pull_request =
        PullRequestRef { number: pull.number, url: pull.url, state: pull.state, draft: pull.draft, commit };
    Some(Event::PullRequestPublished { pull_request, answered, reply_error })
}

/// The task's follow-ups its pull request has not answered: a continuing task's request (a
/// follow-up to the task before it), then the messages it received.
fn unanswered(state: &TaskState) -> Vec<String> {
    let request = state.spec.continues.as_ref().map(|_| state.spec.request.clone());
    request.into_iter().chain(state.work.messages.iter().cloned()).skip(state.work.follow_ups_answered).collect()
}

/// The forge, base branch, report and head branch of the task's pull request; `None` for a task
/// that has none: not pushed anywhere, a subtask or attempt, nothing committed, or a remote whose
/// forge baton does not know.
fn prepare(
    forges: &Forges,
    state: &TaskState,
    summary: &str,
) -> Option<(baton_forge::Forge, Option<String>, Report, String)> {
    let remote = state.spec.push.as_ref()?;
    if state.spec.parent.is_some() {
        return None;
    }
    let commit = state.work.last_commit.clone()?;
    let forge = forges.for_remote(remote.as_str())?;
    let checks = state.work.last_checks.iter().map(|check| Check {
        command: state.spec.checks.iter().find(|c| c.name == check.name).map_or(&check.name, |c| &c.command).clone(),
        passed: check.passed,
        exit_code: check.exit_code,
        duration_ms: check.duration_ms,
    });
    let findings = state.spec.review.then(|| {
        let findings = state.work.findings.iter().filter(|f| f.status != FindingStatus::Irrelevant);
        findings
            .map(|f| Finding {
                id: f.id.clone(),
                severity: format!("{:?}", f.severity),
                title: f.title.clone(),
                status: f.status.as_str().to_owned(),
                commit: f.commit.clone(),
            })
            .collect()
    });
    let report = Report {
        task: state.id.to_string(),
        request: state.spec.request.clone(),
        summary: summary.to_owned(),
        commit,
        checks: checks.collect(),
        findings,
        cost: format!("{} credits", state.money.spent_in_all()),
        link: forges.link(state.id.as_str()),
    };
    Some((forge, base_branch(&state.spec.base_ref), report, state.branch.clone()))
}

/// The branch a pull request goes into: the one the task started from, or the repository's
/// default when it started from `HEAD` or a commit.
fn base_branch(base_ref: &str) -> Option<String> {
    let name = base_ref.strip_prefix("refs/heads/").or_else(|| base_ref.strip_prefix("origin/")).unwrap_or(base_ref);
    let commit_like = name.len() >= 7 && name.chars().all(|c| c.is_ascii_hexdigit());
    (name != "HEAD" && !commit_like).then(|| name.to_owned())
}

impl crate::Engine {
    /// Opens or updates the task's pull request, when it has one, with what it did: journaled
    /// either way; a forge that refuses never stops the task.
    pub(crate) async fn publish_pull_request(
        &self,
        journal: &mut Journal<'_>,
        summary: &str,
    ) -> Result<(), EngineError> {
        let state = journal.state();
        if state.work.pushed != state.work.last_commit {
            if let (Some(_), Some(commit)) = (&state.spec.push, &state.work.last_commit) {
                let error = "the branch is not pushed up to this commit, so its pull request would not show it".into();
                return journal.append(Event::PullRequestFailed { commit: commit.clone(), error }).await;
            }
            return Ok(());
        }
        match publish_event(&self.config.forges, state, summary).await {
            Some(event) => journal.append(event).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_goes_into_the_branch_the_task_started_from() {
        assert_eq!(base_branch("main"), Some("main".into()));
        assert_eq!(base_branch("refs/heads/release/2"), Some("release/2".into()));
        assert_eq!(base_branch("origin/dev"), Some("dev".into()));
        assert_eq!(base_branch("HEAD"), None);
        assert_eq!(base_branch("0123abcd"), None);
    }
}
