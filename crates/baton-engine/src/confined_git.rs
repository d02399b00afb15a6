//! baton's own git over a task's worktree, run in a sandbox (see `baton_git::Confinement`): the
//! tree is the agent's, so git, and anything a setting baton missed might make it start, gets no
//! more of the host than the agent's commands do. The repository's git directory is writable
//! there; the worktree only for the calls that check files out; the home is an empty one of
//! baton's, not the task's (a `~/.config/git/ignore` the agent wrote would otherwise decide what
//! a checkpoint commits).

use std::path::{Path, PathBuf};

use baton_git::{Confinement, WorktreeAccess};
use baton_sandbox::{LocalSandbox, SandboxConfig, SandboxError};

#[derive(Debug)]
pub struct SandboxedGit {
    reading: LocalSandbox,
    writing: LocalSandbox,
}

impl SandboxedGit {
    /// `state` is a directory of baton's for the sandbox's own files.
    pub fn new(config: &SandboxConfig, state: &Path, worktree: &Path, git_dir: PathBuf) -> Result<Self, SandboxError> {
        let config = SandboxConfig { network: None, ..config.clone() };
        let sandbox = || {
            LocalSandbox::new(config.clone(), state, worktree, Vec::new())
                .map(|sandbox| sandbox.with_writable(vec![git_dir.clone()]))
        };
        Ok(SandboxedGit { reading: sandbox()?.reading_only(), writing: sandbox()? })
    }
}

impl Confinement for SandboxedGit {
    fn command(
        &self,
        argv: Vec<String>,
        env: &[(String, String)],
        access: WorktreeAccess,
    ) -> std::io::Result<std::process::Command> {
        let sandbox = match access {
            WorktreeAccess::ReadOnly => &self.reading,
            WorktreeAccess::Writable => &self.writing,
        };
        sandbox.command(argv, env).map_err(std::io::Error::other)
    }
}
