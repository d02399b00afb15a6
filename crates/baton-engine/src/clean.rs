//! Clean machines: a fresh checkout of one commit in a sandbox with a home of its own, where the
//! acceptance checks run and the captain's probes are tried. Nothing of the agent's machine is
//! there: not its home (a `sitecustomize.py`, a shim on its `PATH`), not the files git does not
//! commit (an ignored `conftest.py`), not its processes. So the commit marked verified is the tree
//! that was checked.

use std::path::PathBuf;
use std::time::Duration;

use baton_git::{Export, Worktree};
use baton_sandbox::{LocalSandbox, RunRequest, Sandbox, SandboxConfig};

use crate::{EngineError, TaskLayout};

/// Where the checkout's own index lives, inside the clean machine (its `/tmp` is its own).
const INDEX: &str = "/tmp/baton-checkout-index";
/// How long a checkout may take.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub(crate) struct CleanMachines {
    config: SandboxConfig,
    /// Where the machine's checkout and home are made.
    root: PathBuf,
    /// baton's own files about its commands.
    state: PathBuf,
    git_dir: PathBuf,
}

impl CleanMachines {
    pub(crate) fn new(config: SandboxConfig, layout: &TaskLayout, git_dir: PathBuf) -> CleanMachines {
        CleanMachines::at(config, layout.clean(), layout.sandbox_state().join("clean"), git_dir)
    }

    /// Clean machines made in `root`, with baton's files about their commands in `state`.
    pub(crate) fn at(config: SandboxConfig, root: PathBuf, state: PathBuf, git_dir: PathBuf) -> CleanMachines {
        CleanMachines { config, root, state, git_dir }
    }

    /// A machine whose `/workspace` is a fresh checkout of `commit` (made inside it, by git reading
    /// the repository read-only), with an empty home over the environment's snapshot `lower`. The
    /// previous clean machine's files go first. `commit` is the worktree's head: git in the machine
    /// sees the checkout as that commit.
    pub(crate) fn build(
        &self,
        worktree: &Worktree,
        commit: &str,
        lower: Option<PathBuf>,
    ) -> Result<LocalSandbox, EngineError> {
        let root = &self.root;
        let prepare = |source| EngineError::Clean(format!("cannot prepare {}: {source}", root.display()));
        match std::fs::remove_dir_all(root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(prepare(e)),
            _ => {}
        }
        for dir in [root.join("workspace"), root.join("layer")] {
            std::fs::create_dir_all(dir).map_err(prepare)?;
        }
        let sandbox =
            LocalSandbox::new(self.config.clone(), &self.state, &root.join("workspace"), vec![self.git_dir.clone()])?
                .with_layer(root.join("layer"))
                .with_lower(lower);
        let (argv, env) = worktree.export_command(&self.git_dir, commit, Export::All, "/workspace", INDEX);
        let request = RunRequest { argv, env, ..RunRequest::shell("", CHECKOUT_TIMEOUT) };
        let outcome = sandbox.run(&request)?;
        let _ = std::fs::remove_file(&outcome.output_file);
        if outcome.exit_code != 0 || outcome.stopped.is_some() {
            let said = outcome.output.text();
            return Err(EngineError::Clean(format!(
                "checking out {commit} failed (exit code {}): {}",
                outcome.exit_code,
                said.trim()
            )));
        }
        // Checks may ask git about the tree: the checkout reads as the agent's worktree does, with
        // the branch's head (the commit just checked out) and its index. Read-only, like there.
        let git_file = root.join("workspace/.git");
        let git_dir = worktree.git_dir()?;
        // Created, never opened: nothing at that path (git refuses to check out a `.git`) is followed.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&git_file).map_err(prepare)?;
        std::io::Write::write_all(&mut file, format!("gitdir: {}\n", git_dir.display()).as_bytes()).map_err(prepare)?;
        Ok(sandbox)
    }
}
