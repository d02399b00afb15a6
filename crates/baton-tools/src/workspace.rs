//! A task's worktree as the tools see it: every path is relative to `/workspace`, and every file is
//! opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from a descriptor of the root, so
//! the kernel itself refuses `..`, absolute symlinks, symlinks that lead out and `/proc/self/root`
//! tricks, even if something in the sandbox swaps a path for a symlink between two calls.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::ToolError;

/// Where the workspace appears to the agent.
pub const MOUNT: &str = "/workspace";

/// Files larger than this are not read whole into a tool result.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: OwnedFd,
}

/// Distinguishes temporary files of concurrent writes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What opening a file's parent does with a directory on the way that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Makes it: the file is being written.
    Create,
    /// Fails, naming it.
    Refuse,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

impl Workspace {
    pub fn open(root: &Path) -> Result<Workspace, ToolError> {
        let dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ToolError::new(format!("cannot open the workspace {}: {e}", root.display())))?;
        Ok(Workspace { root: root.to_owned(), dir })
    }

    /// A second handle on the same worktree (the same directory, whatever its path now names).
    pub fn try_clone(&self) -> Result<Workspace, ToolError> {
        let dir = self
            .dir
            .try_clone()
            .map_err(|e| ToolError::new(format!("cannot open the workspace {} again: {e}", self.root.display())))?;
        Ok(Workspace { root: self.root.clone(), dir })
    }

    /// The worktree on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path as the agent wrote it, made relative to the workspace: `src/a.rs`, `./src/a.rs` and
    /// `/workspace/src/a.rs` are the same file. `..` may not climb above the root; the empty path and
    /// `.` are the root itself.
    pub fn relative(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.contains('\0') {
            return Err(ToolError::new(format!("the path {path:?} contains a NUL byte")));
        }
        let inside = match Path::new(path).strip_prefix(MOUNT) {
            Ok(rest) => rest,
            Err(_) if Path::new(path).is_absolute() => {
                return Err(ToolError::new(format!(
                    "`{path}` is outside the workspace; use a path relative to {MOUNT}, like `src/main.rs`"
                )));
            }
            Err(_) => Path::new(path),
        };
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in inside.components() {
            match component {
                Component::Normal(part) => parts.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(ToolError::new(format!("`{path}` climbs out of the workspace with `..`")));
                    }
                }
                Component::Prefix(_) => return Err(ToolError::new(format!("`{path}` is not a workspace path"))),
            }
        }
        Ok(parts.iter().collect())
    }

    /// How a path is shown back to the agent.
    pub fn display(relative: &Path) -> String {
        if relative.as_os_str().is_empty() { ".".to_owned() } else { relative.to_string_lossy().into_owned() }
    }

    fn explain(relative: &Path, errno: Errno) -> ToolError {
        let shown = Workspace::display(relative);
        ToolError::new(match errno {
            Errno::XDEV | Errno::LOOP => format!("`{shown}` leads outside the workspace through a symlink"),
            Errno::NOENT => format!("`{shown}` does not exist"),
            Errno::ISDIR => format!("`{shown}` is a directory"),
            Errno::NOTDIR => format!("a parent of `{shown}` is not a directory"),
            Errno::ACCESS | Errno::PERM => format!("`{shown}` is not accessible"),
            Errno::NAMETOOLONG => format!("`{shown}` is too long a path"),
            other => format!("`{shown}`: {other}"),
        })
    }

    /// Opens `relative` beneath the root.
    fn open_beneath(&self, relative: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, ToolError> {
        let target = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
        rustix::fs::openat2(&self.dir, target, flags | OFlags::CLOEXEC, mode, resolve_flags())
            .map_err(|e| Workspace::explain(relative, e))
    }

    pub fn file_type(&self, relative: &Path) -> Result<FileType, ToolError> {
        let fd = self.open_beneath(relative, OFlags::PATH, Mode::empty())?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| Workspace::explain(relative, e))?;
        Ok(FileType::from_raw_mode(stat.st_mode))
    }

    /// Opens a directory for listing.
    pub fn open_dir(&self, relative: &Path) -> Result<OwnedFd, ToolError> {
        self.open_beneath(relative, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
    }

    /// The bytes of a regular file. Opened without blocking, so a FIFO is refused, not waited on.
    pub fn read(&self, relative: &Path) -> Result<Vec<u8>, ToolError> {
        let fd = self.open_beneath(relative, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| Workspace::explain(relative, e))?;
        let shown = Workspace::display(relative);
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(ToolError::new(format!("`{shown}` is a directory; use list_dir"))),
            _ => return Err(ToolError::new(format!("`{shown}` is not a regular file"))),
        }
        if stat.st_size as u64 > MAX_FILE_BYTES {
            return Err(ToolError::new(format!(
                "`{shown}` is {} bytes, more than the {MAX_FILE_BYTES} a tool reads; use shell with head, tail or grep",
                stat.st_size
            )));
        }
        let mut bytes = Vec::with_capacity(stat.st_size as usize);
        std::fs::File::from(fd)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ToolError::new(format!("cannot read `{shown}`: {e}")))?;
        Ok(bytes)
    }

    /// The start of a file the harness reads for itself (an instruction file): a regular file
    /// reached with no symlink anywhere on its path, at most `cap` bytes of it, never blocking.
    /// `None` when there is no such file.
    pub fn read_own(&self, relative: &Path, cap: u64) -> Option<String> {
        let target = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat2(&self.dir, target, flags, Mode::empty(), resolve_flags() | ResolveFlags::NO_SYMLINKS)
                .ok()?;
        let stat = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return None;
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd).take(cap).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Refuses writes to the repository metadata, which the agent must not rewrite.
    fn ensure_writable(relative: &Path) -> Result<(), ToolError> {
        if relative.components().next() == Some(Component::Normal(".git".as_ref())) {
            return Err(ToolError::new(format!(
                "`{}` is git metadata, which is read-only; baton commits the work itself",
                Workspace::display(relative)
            )));
        }
        Ok(())
    }

    /// Opens the parent directory of `relative`, doing with directories not there what `missing`
    /// says, and returns it with the file's name in it.
    fn parent_dir(&self, relative: &Path, missing: Missing) -> Result<(OwnedFd, std::ffi::OsString), ToolError> {
        let name = relative
            .file_name()
            .ok_or_else(|| ToolError::new("the path names the workspace itself, not a file".to_owned()))?
            .to_owned();
        let mut dir = self.open_beneath(Path::new(""), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let mut walked = PathBuf::new();
        for part in relative.parent().into_iter().flat_map(Path::components) {
            walked.push(part);
            if missing == Missing::Create {
                match rustix::fs::mkdirat(&dir, part.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Workspace::explain(&walked, e)),
                }
            }
            dir = rustix::fs::openat2(
                &dir,
                part.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            )
            .map_err(|e| Workspace::explain(&walked, e))?;
        }
        Ok((dir, name))
    }

    /// Replaces (or creates) a file with `bytes`, atomically: a reader sees the old or the new file,
    /// never a mix. An existing file keeps its permissions.
    pub fn write(&self, relative: &Path, bytes: &[u8]) -> Result<(), ToolError> {
        Workspace::ensure_writable(relative)?;
        let shown = Workspace::display(relative);
        let (dir, name) = self.parent_dir(relative, Missing::Create)?;
        let mode = match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(ToolError::new(format!("`{shown}` is a directory")));
            }
            Ok(stat) => Mode::from_raw_mode(stat.st_mode & 0o7777),
            Err(_) => Mode::from_raw_mode(0o644),
        };
        let temp = format!(".baton-write-{}-{}", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
        let fd = rustix::fs::openat(
            &dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| ToolError::new(format!("cannot write `{shown}`: {e}")))?;
        let written = std::fs::File::from(fd).write_all(bytes).and_then(|()| {
            rustix::fs::renameat(&dir, temp.as_str(), &dir, name.as_os_str()).map_err(std::io::Error::from)
        });
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            return Err(ToolError::new(format!("cannot write `{shown}`: {e}")));
        }
        Ok(())
    }

    /// Removes a file (not a directory).
    pub fn remove(&self, relative: &Path) -> Result<(), ToolError> {
        Workspace::ensure_writable(relative)?;
        let (dir, name) = self.parent_dir(relative, Missing::Refuse)?;
        rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::empty()).map_err(|e| Workspace::explain(relative, e))
    }
}
