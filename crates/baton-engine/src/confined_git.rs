//! baton's own git over a task's worktree, run in a sandbox (see `baton_git::Confinement`): the
//! tree is the agent's, so git, and anything a setting baton missed might make it start, gets no
//! more of the host than the agent's commands do. The repository's git directory is writable
//! there; the worktree only for the calls that check files out; the home is an empty one of
//! baton's, not the task's (a `~/.config/git/ignore` the agent wrote would otherwise decide what
//! a checkpoint commits). Each kind of access has a session of its own, started at its first call,
//! so a git call costs a fork and exec in it, not a new machine.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use baton_git::{Confinement, WorktreeAccess};
use baton_sandbox::{LocalSandbox, LocalSession, SandboxConfig, SandboxError};

#[derive(Debug)]
pub struct SandboxedGit {
    reading: Lazy,
    writing: Lazy,
}

/// A sandbox and, once a call needed it, its session.
#[derive(Debug)]
struct Lazy {
    sandbox: LocalSandbox,
    session: Mutex<Option<LocalSession>>,
}

impl Lazy {
    fn output(&self, argv: &[String], env: &[(String, String)]) -> Result<Output, SandboxError> {
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let session = match &mut *slot {
            Some(session) => session,
            None => slot.insert(self.sandbox.start_session()?),
        };
        let output = session.output(argv, env);
        if output.is_err() {
            // A session that failed once (its pid 1 gone) is not used again.
            *slot = None;
        }
        output
    }
}

impl SandboxedGit {
    /// `state` is a directory of baton's for the sandbox's own files.
    pub fn new(config: &SandboxConfig, state: &Path, worktree: &Path, git_dir: PathBuf) -> Result<Self, SandboxError> {
        let config = SandboxConfig { network: None, ..config.clone() };
        let lazy = |sandbox: LocalSandbox| Lazy { sandbox, session: Mutex::new(None) };
        let sandbox = || {
            LocalSandbox::new(config.clone(), state, worktree, Vec::new())
                .map(|sandbox| sandbox.with_writable(vec![git_dir.clone()]))
        };
        Ok(SandboxedGit { reading: lazy(sandbox()?.reading_only()), writing: lazy(sandbox()?) })
    }
}

impl Confinement for SandboxedGit {
    fn output(&self, argv: &[String], env: &[(String, String)], access: WorktreeAccess) -> std::io::Result<Output> {
        let lazy = match access {
            WorktreeAccess::ReadOnly => &self.reading,
            WorktreeAccess::Writable => &self.writing,
        };
        lazy.output(argv, env).map_err(std::io::Error::other)
    }
}
