//! What the launcher tells the init process: everything about one command's sandbox.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable that carries the [`InitSpec`] as JSON to the init process.
pub const SPEC_VARIABLE: &str = "BATON_SANDBOX_SPEC";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSpec {
    /// The task's own directories, kept between its sandboxes: `hidden/` holds what replaces each
    /// hidden host path (so the task's `/root` is its home, not the host's).
    pub layer: PathBuf,
    /// The task worktree, mounted at `/workspace`.
    pub workspace: PathBuf,
    /// Mount the worktree read-only (for roles that read, never write).
    #[serde(default)]
    pub workspace_read_only: bool,
    /// Host paths mounted read-only at the same path (the repository's git metadata).
    pub read_only: Vec<PathBuf>,
    /// Host paths mounted writable at the same path (the git metadata, for baton's own git).
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// Host paths replaced by a directory of the task's own (baton's data, homes, /run).
    pub hidden: Vec<PathBuf>,
    /// A read-only layer beneath the task's own (an environment's snapshot): where its `hidden/`
    /// has a hidden path's replacement, the sandbox sees that path as the snapshot's files with
    /// the task's changes on top (an overlay whose upper layer is in `layer`).
    #[serde(default)]
    pub lower: Option<PathBuf>,
    /// Host directories shown writable at another path inside, after the hidden paths are
    /// replaced (caches an environment keeps across its builds, at `/root/.cache/pip`).
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Cgroup directories the command's processes are put in, limits already written.
    pub cgroups: Vec<PathBuf>,
    pub limits: Limits,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Inside the sandbox, e.g. `/workspace/src`.
    pub cwd: String,
    /// The host end of the egress proxy, when the task may reach the network at all.
    pub proxy_socket: Option<PathBuf>,
}

/// A host directory shown writable at `target` inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// Resource limits; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Address space per process, in bytes (also enforced for the whole tree by the memory cgroup).
    pub memory_bytes: Option<u64>,
    /// Processes and threads in the whole tree (pids cgroup).
    pub processes: Option<u64>,
    /// CPU seconds per process.
    pub cpu_seconds: Option<u64>,
    /// Share of the machine's processors for the whole tree, in thousandths of a core (cpu cgroup).
    #[serde(default)]
    pub cpu_millis: Option<u64>,
    /// Largest file a process may write, in bytes.
    pub file_bytes: Option<u64>,
    pub open_files: Option<u64>,
}
