//! A task's machine: its disk, worktree (with baton's git confined), environment, the toolbox with
//! the agent's sandbox session, and the clean machines its checks run on.

use std::sync::Arc;

use baton_core::{DecisionKind, RepoSource, Secret, TaskId, TaskState};
use baton_git::Worktree;
use baton_sandbox::LocalSandbox;
use baton_tools::{Toolbox, Workspace};

use crate::clean::CleanMachines;
use crate::environment::TaskEnvironment;
use crate::repository;
use crate::services::WithServices;
use crate::{Caches, Engine, EngineError, Resolved, SandboxedGit, Snapshots, TaskLayout};

/// What a task's legs work with: its worktree, its tools (with the session sandbox) and the clean
/// machines its checks and probes run in.
#[derive(Clone, Copy)]
pub(crate) struct Machine<'a> {
    pub(crate) toolbox: &'a Toolbox,
    pub(crate) clean: &'a CleanMachines,
    pub(crate) worktree: &'a Worktree,
    /// The environment the task's machines are built on (as its base commit declares it).
    pub(crate) environment: &'a TaskEnvironment,
    /// Where snapshots are found and built (the candidate's environment may differ).
    pub(crate) snapshots: &'a Snapshots,
}

impl Engine {
    /// The task's disk, worktree, environment, tools (with a sandbox) and its clean machines.
    pub(crate) fn prepare(&self, state: &TaskState, snapshots: &Snapshots) -> Result<Prepared, EngineError> {
        if let Some(earlier) = &state.spec.continues {
            // The branch stays checked out in the earlier task's worktree until its machine goes;
            // that task has ended, so nothing runs there.
            let earlier = TaskId::parse(&earlier.task).map_err(|e| EngineError::Plan(e.to_string()))?;
            discard_machine(&self.config.home, &earlier, &state.spec.repo)?;
        }
        let layout = TaskLayout::of(&self.config.home, &state.id);
        let disk = layout.attach_disk(self.config.sandbox.disk_bytes)?;
        let repo = repository::for_task(&self.config.home, state)?;
        let start = state.work.last_commit.as_ref().unwrap_or(&state.base_commit);
        let worktree = repo.ensure_worktree(&state.branch, &layout.worktree(), start)?;
        let git_dirs = vec![worktree.common_dir()?];
        let git_state = layout.sandbox_state().join("git");
        let git = SandboxedGit::new(&self.config.sandbox, &git_state, worktree.path(), git_dirs[0].clone())?;
        let worktree = worktree.confined(Arc::new(git));
        // From the base commit, as the user handed the repository over: the agent's own edits to
        // it decide only the machine its work is checked on, where the review sees them.
        let own = &self.config.own_credentials;
        let resolved = Resolved::read(&worktree, &state.base_commit, state.spec.environment.as_deref(), own)?;
        let source = resolved.source(&worktree, &git_dirs[0], &state.base_commit);
        let environment = TaskEnvironment::prepare(snapshots, &resolved, source, Caches::Kept)?;
        let sandbox = || {
            LocalSandbox::new(self.config.sandbox.clone(), layout.sandbox_state(), worktree.path(), git_dirs.clone())
                .map(|sandbox| sandbox.with_layer(layout.layer()).with_lower(environment.lower.clone()))
        };
        // Credentials a human granted: the journal keeps their names, the environment their values
        // (none that has become one of baton's own since).
        let granted = state.work.decisions.iter().filter_map(|(decision, answer)| match (&decision.kind, answer) {
            (DecisionKind::Credential { name }, Some(answer)) if answer.approved && !own.contains(name) => {
                std::env::var(name).ok().map(|value| Secret { name: name.clone(), value })
            }
            _ => None,
        });
        let serviced = WithServices::new(sandbox()?, environment.declared.startup.clone());
        // The variables the repository's MCP servers are handed, from baton's environment.
        let served = &environment.declared.mcp;
        let wanted: std::collections::BTreeSet<&String> =
            served.values().flat_map(|server| server.transport.variables()).collect();
        let handed = wanted
            .into_iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| Secret { name: name.clone(), value }));
        let toolbox = Toolbox::new(Workspace::open(worktree.path())?)
            .with_sandbox(Box::new(serviced), granted.collect())
            .with_reader(Box::new(sandbox()?.reading_only()))
            .with_tool_servers(served.clone(), handed.collect());
        let clean = CleanMachines::new(self.config.sandbox.clone(), &layout, git_dirs[0].clone());
        Ok(Prepared { worktree, toolbox, clean, environment, _disk: disk })
    }
}

/// A task's machine while the engine works on it.
pub(crate) struct Prepared {
    pub(crate) worktree: Worktree,
    pub(crate) toolbox: Toolbox,
    pub(crate) clean: CleanMachines,
    pub(crate) environment: TaskEnvironment,
    /// Last: fields drop in order, and the disk is unmounted only after everything on it is done.
    _disk: Option<baton_sandbox::TaskDisk>,
}

/// Takes a task's machine down once the task is over: its worktree (the branch is kept) and its
/// disk and layers. Nothing must be running on it.
pub fn discard(home: &std::path::Path, state: &TaskState) -> Result<(), EngineError> {
    discard_machine(home, &state.id, &state.spec.repo)
}

/// [`discard`] for task `id` on `repo`; nothing to do for a machine already gone.
fn discard_machine(home: &std::path::Path, id: &TaskId, repo: &RepoSource) -> Result<(), EngineError> {
    let layout = TaskLayout::of(home, id);
    let disk = layout.attach_disk(None)?;
    let worktree = layout.worktree();
    if worktree.exists() {
        repository::repository(home, repo)?.remove_worktree(&worktree)?;
    }
    drop(disk);
    layout.remove().map_err(EngineError::Teardown)
}
