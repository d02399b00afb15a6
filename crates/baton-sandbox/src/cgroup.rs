//! The cgroup a command's whole process tree runs in: it caps processes, memory and the share of
//! the processors, and reports the peak memory and how long the tree was held back at its share.
//! Works with the v1 hierarchy (`pids`, `memory` and `cpu` controllers) and with v2. Everything it
//! writes is under its own `baton` directory: nothing changes for the rest of the host.

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
    /// v1: the pids, memory and cpu directories; v2: the one directory.
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
                let dirs: Vec<PathBuf> =
                    ["pids", "memory", "cpu"].iter().map(|c| root.join(c).join("baton").join(name)).collect();
                for dir in &dirs {
                    fs::create_dir_all(dir)?;
                }
                Cgroup { version, dirs }
            }
            Version::V2 => {
                let parent = root.join("baton");
                fs::create_dir_all(&parent)?;
                // The host enables controllers for baton's directory; baton enables them below it.
                write(&parent, "cgroup.subtree_control", "+pids +memory +cpu")?;
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
        if let Some(millis) = limits.cpu_millis {
            const PERIOD_MICROS: u64 = 100_000;
            let quota = (millis * PERIOD_MICROS / 1000).max(1000);
            match version {
                Version::V1 => {
                    write(&cgroup.dirs[2], "cpu.cfs_period_us", &PERIOD_MICROS.to_string())?;
                    write(&cgroup.dirs[2], "cpu.cfs_quota_us", &quota.to_string())?;
                }
                Version::V2 => write(&cgroup.dirs[0], "cpu.max", &format!("{quota} {PERIOD_MICROS}"))?,
            }
        }
        Ok(cgroup)
    }

    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[if self.version == Version::V1 { 1 } else { 0 }]
    }

    /// How long the tree waited at its cpu share.
    pub(crate) fn cpu_throttled(&self) -> Option<std::time::Duration> {
        let (dir, field, nanos_per_unit) = match self.version {
            Version::V1 => (&self.dirs[2], "throttled_time ", 1),
            Version::V2 => (&self.dirs[0], "throttled_usec ", 1000),
        };
        let text = fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let value: u64 = text.lines().find_map(|line| line.strip_prefix(field))?.trim().parse().ok()?;
        Some(std::time::Duration::from_nanos(value * nanos_per_unit))
    }

    pub(crate) fn peak_memory(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        fs::read_to_string(self.memory_dir().join(file)).ok()?.trim().parse().ok()
    }

    /// How many processes the memory cgroup killed so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let text = fs::read_to_string(self.memory_dir().join(file)).unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok()).unwrap_or(0)
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
