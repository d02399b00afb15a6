//! Where a task's files live in baton's data directory:
//!
//! - `machines/<id>/`: the task's machine, on its own disk where baton has one (see
//!   [`TaskDisk`]): `worktree/` (the checkout of its branch), `layer/` (its persistent home,
//!   and what replaces the host's other hidden paths) and `clean/` (the clean machine of the last
//!   verification: a fresh checkout and a fresh home);
//! - `disks/<id>.img`: that disk;
//! - `sandboxes/<id>/`: baton's own files about its commands (their output, the proxy's socket).

use std::path::{Path, PathBuf};

use baton_core::TaskId;
use baton_sandbox::{SandboxError, TaskDisk};

#[derive(Debug, Clone)]
pub struct TaskLayout {
    machine: PathBuf,
    disk: PathBuf,
    sandbox_state: PathBuf,
}

impl TaskLayout {
    pub fn of(home: &Path, task: &TaskId) -> TaskLayout {
        TaskLayout {
            machine: home.join("machines").join(task.as_str()),
            disk: home.join("disks").join(format!("{}.img", task.as_str())),
            sandbox_state: home.join("sandboxes").join(task.as_str()),
        }
    }

    pub fn worktree(&self) -> PathBuf {
        self.machine.join("worktree")
    }

    /// What replaces the host's hidden paths in the task's sandboxes (see `LocalSandbox::with_layer`).
    pub fn layer(&self) -> PathBuf {
        self.machine.join("layer")
    }

    /// Where clean machines are built (see `clean.rs`).
    pub fn clean(&self) -> PathBuf {
        self.machine.join("clean")
    }

    pub fn sandbox_state(&self) -> &Path {
        &self.sandbox_state
    }

    /// Mounts the task's disk (see [`TaskDisk::attach`]); `create` is the size of a new one.
    pub fn attach_disk(&self, create: Option<u64>) -> Result<Option<TaskDisk>, SandboxError> {
        TaskDisk::attach(&self.disk, &self.machine, create)
    }

    /// Deletes the task's disk and machine directory (after its worktree was removed); the disk
    /// must not be attached.
    pub fn remove(&self) -> std::io::Result<()> {
        for result in [std::fs::remove_file(&self.disk), std::fs::remove_dir_all(&self.machine)] {
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
