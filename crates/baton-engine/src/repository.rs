//! The git repository a task works in — the user's own, or the mirror of its remote in baton's
//! data directory — and pushing its branch where the task says.
//!
//! - `mirrors/<key>.git`: a remote's bare mirror (its branches under `refs/remotes/origin/`, the
//!   task branches as its own);
//! - `pushes/<key>.git`: the git directory a push to that remote runs in;
//! - `git-credentials`: the credential store (git's `store` format), when the owner made one.

use std::path::{Path, PathBuf};

use baton_core::{RemoteUrl, RepoSource, TaskState};
use baton_git::{GitError, Mirror, Remotes, Repo};

use crate::EngineError;

/// Where a remote's things live in the data directory `home`.
fn beneath(home: &Path, kind: &str, url: &RemoteUrl) -> PathBuf {
    home.join(kind).join(format!("{}.git", url.key()))
}

fn mirror(home: &Path, url: &RemoteUrl) -> Mirror {
    Mirror::at(&beneath(home, "mirrors", url), url.as_str())
}

/// The credentials baton offers remotes: its environment's token, then the store in `home`.
pub fn remotes(home: &Path) -> Remotes {
    Remotes::new(&home.join("git-credentials"))
}

/// The repository of `source` as it is now: a remote's mirror is fetched only when there is none
/// yet (a fresh data directory).
pub fn repository(home: &Path, source: &RepoSource) -> Result<Repo, GitError> {
    match source {
        RepoSource::Local(path) => Repo::open(path),
        RepoSource::Remote(url) => {
            let mirror = mirror(home, url);
            mirror.repo().or_else(|_| mirror.fetch(&remotes(home)))
        }
    }
}

/// The repository of `source` with the remote's newest commits fetched, and the commit `base`
/// names there (for a remote: its branch of that name, `HEAD` its default one).
pub fn fetched_base(home: &Path, source: &RepoSource, base: &str) -> Result<(Repo, String), GitError> {
    match source {
        RepoSource::Local(path) => {
            let repo = Repo::open(path)?;
            let commit = repo.resolve_commit(base)?;
            Ok((repo, commit))
        }
        RepoSource::Remote(url) => {
            let mirror = mirror(home, url);
            let repo = mirror.fetch(&remotes(home))?;
            Ok((repo, mirror.resolve(base)?))
        }
    }
}

/// The repository a task's worktree comes from, holding every commit the task needs: its base and
/// its last checkpoint, fetched from the remote when the mirror lacks them (another machine made
/// them, or the mirror was made afresh).
pub(crate) fn for_task(home: &Path, state: &TaskState) -> Result<Repo, EngineError> {
    let RepoSource::Remote(url) = &state.spec.repo else { return Ok(repository(home, &state.spec.repo)?) };
    let mirror = mirror(home, url);
    let needed = std::iter::once(&state.base_commit).chain(&state.work.last_commit);
    let missing: Vec<&String> = needed.filter(|commit| !mirror.has(commit)).collect();
    if missing.is_empty() {
        return Ok(mirror.repo()?);
    }
    let repo = mirror.fetch(&remotes(home))?;
    if let Some(commit) = missing.into_iter().find(|commit| !mirror.has(commit)) {
        return Err(EngineError::Remote(format!(
            "commit {commit} of task {} is neither in the mirror of {url} nor on the remote (was its last push refused?)",
            state.id
        )));
    }
    Ok(repo)
}

/// Pushes `commit`, a commit of the repository of `source`, to `branch` on `url`. The objects are
/// found from the repository itself (the user's, or the mirror's known path), never from what
/// the task's worktree says its git directory is.
pub(crate) fn push(
    home: &Path,
    source: &RepoSource,
    url: &RemoteUrl,
    commit: &str,
    branch: &str,
) -> Result<(), GitError> {
    let objects = match source {
        RepoSource::Local(path) => Repo::open(path)?.common_dir()?,
        RepoSource::Remote(remote) => beneath(home, "mirrors", remote),
    };
    remotes(home).push(&objects, &beneath(home, "pushes", url), url.as_str(), commit, branch)
}
