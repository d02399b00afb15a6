//! The cgroup a command's whole process tree runs in: it caps processes (a fork bomb stops there;
//! rlimits cannot, since the sandbox runs as root) and memory, and reports the peak. Works with the
//! v1 hierarchy (`pids` and `memory` controllers) and with v2.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::spec::Limits;

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

#[derive(Debug)]
pub(crate) struct Cgroup {
    version: Version,
    /// v1: the pids and memory directories; v2: the one directory.
    dirs: Vec<PathBuf>,
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

impl Cgroup {
    pub(crate) fn create(name: &str, limits: &Limits) -> io::Result<Cgroup> {
        let root = Path::new(ROOT);
        let version = if root.join("pids").is_dir() { Version::V1 } else { Version::V2 };
        let cgroup = match version {
            Version::V1 => {
                let pids = root.join("pids/baton").join(name);
                let memory = root.join("memory/baton").join(name);
                fs::create_dir_all(&pids)?;
                fs::create_dir_all(&memory)?;
                Cgroup { version, dirs: vec![pids, memory] }
            }
            Version::V2 => {
                let parent = root.join("baton");
                fs::create_dir_all(&parent)?;
                // Controllers must be enabled on the way down; they may be already.
                let _ = write(root, "cgroup.subtree_control", "+pids +memory");
                let _ = write(&parent, "cgroup.subtree_control", "+pids +memory");
                let dir = parent.join(name);
                fs::create_dir_all(&dir)?;
                Cgroup { version, dirs: vec![dir] }
            }
        };
        if let Some(processes) = limits.processes {
            write(&cgroup.dirs[0], "pids.max", &processes.to_string())?;
        }
        if let Some(memory) = limits.memory_bytes {
            match version {
                Version::V1 => write(&cgroup.dirs[1], "memory.limit_in_bytes", &memory.to_string())?,
                Version::V2 => {
                    write(&cgroup.dirs[0], "memory.max", &memory.to_string())?;
                    let _ = write(&cgroup.dirs[0], "memory.swap.max", "0");
                }
            }
        }
        Ok(cgroup)
    }

    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[self.dirs.len() - 1]
    }

    pub(crate) fn peak_memory(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        fs::read_to_string(self.memory_dir().join(file)).ok()?.trim().parse().ok()
    }

    pub(crate) fn out_of_memory(&self) -> bool {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let text = fs::read_to_string(self.memory_dir().join(file)).unwrap_or_default();
        text.lines().any(|line| {
            line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).is_some_and(|n| n > 0)
        })
    }
}

impl Drop for Cgroup {
    /// Kills anything still in the group, then removes it.
    fn drop(&mut self) {
        for dir in &self.dirs {
            for _ in 0..100 {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = fs::remove_dir(dir);
        }
    }
}
