//! The sandbox's root filesystem, assembled in its own mount namespace: the host's top-level
//! directories read-only (no setuid, no devices), host paths baton hides replaced by directories of
//! the task's own (persistent, writable: the task's home), a fresh `/tmp`, a minimal `/dev` without
//! the host's terminal, the worktree at `/workspace` with its git metadata read-only, and a
//! `/proc` of the sandbox's pid namespace whose kernel knobs are read-only or masked.
//!
//! Root inside is an unprivileged id outside, so the host's own files are read-only to it anyway;
//! the read-only mounts say so to every process, and keep world-writable host directories out of
//! reach too.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::init::{InitResult, step};
use crate::proxy;
use crate::spec::InitSpec;
use crate::userns::{Access, UserNamespace, attach_detached, restrict_mount};

/// Where the root is assembled: a path of the host's that exists everywhere, covered only in the
/// sandbox's own mount namespace.
pub const ASSEMBLY: &str = "/tmp";

/// Host top-level directories the sandbox gets its own of.
const NOT_SHOWN: &[&str] = &["proc", "sys", "dev", "tmp"];

/// Files in `/proc` whose contents say too much about the host kernel, replaced by `/dev/null`.
const MASKED_FILES: &[&str] = &["kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats"];
/// Directories in `/proc` replaced by an empty read-only one.
const MASKED_DIRS: &[&str] = &["acpi", "scsi"];
/// Parts of `/proc` that change the host kernel when written: read-only.
const READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    File,
}

/// One host path shown in the sandbox: a detached copy of its mount, made before the root is
/// assembled over `/tmp` (see [`binds`]).
#[derive(Debug)]
pub struct Bind {
    source: Source,
    /// Absolute, inside the sandbox.
    target: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Source {
    Tree(OwnedFd),
    /// A hidden path's replacement over a snapshot's: an overlay of `lower` (read-only) and the
    /// task's layer, where `upper` and `work` (relative to it) hold the task's changes.
    Overlay {
        lower: OwnedFd,
        layer: OwnedFd,
        upper: PathBuf,
        work: PathBuf,
    },
}

/// Where an overlay's layers are attached while it is made, under the assembled root; detached
/// again once the overlay holds them.
const STAGE: &str = ".baton-stage";

/// `root` joined with an absolute path.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn mkdirs(path: &Path) -> InitResult<()> {
    step(|| format!("creating {}", path.display()), std::fs::create_dir_all(path))
}

/// Everything the spec binds into the sandbox, in mount order (a bind may land inside an earlier
/// one, like a toolchain inside the task's home), as detached copies. In root mode they are made
/// before entering the user namespace, with root's rights (root inside may not even walk to
/// them); rootless, in the sandbox's own mount namespace, where the user may copy mounts.
pub fn binds(spec: &InitSpec, userns: &UserNamespace) -> InitResult<Vec<Bind>> {
    let mut wanted: Vec<(PathBuf, PathBuf, Access)> = Vec::new();
    let mut binds = Vec::new();
    for hidden in &spec.hidden {
        // Resolved on the host: a hidden path that is a symlink would otherwise be followed inside,
        // where it may lead somewhere shown.
        let Ok(hidden) = std::fs::canonicalize(hidden) else { continue };
        // Under a directory the sandbox has its own of, there is nothing of the host's to hide.
        let shown = hidden.components().nth(1).is_some_and(|top| !NOT_SHOWN.iter().any(|n| top.as_os_str() == *n));
        if !(hidden.is_dir() && shown) {
            continue;
        }
        let relative = hidden.strip_prefix("/").unwrap_or(&hidden);
        let upper = Path::new("hidden").join(relative);
        mkdirs(&spec.layer.join(&upper))?;
        // An empty directory of the snapshot adds nothing: no overlay for it.
        let holds_files = |dir: &PathBuf| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        let lower = spec.lower.as_ref().map(|lower| lower.join(&upper)).filter(holds_files);
        match lower {
            Some(lower) => {
                let work = Path::new("work").join(relative);
                mkdirs(&spec.layer.join(&work))?;
                let source = Source::Overlay {
                    lower: userns.detach(&lower, Access::ReadOnly)?,
                    layer: userns.detach(&spec.layer, Access::Writable)?,
                    upper,
                    work,
                };
                binds.push(Bind { source, target: hidden, kind: Kind::Directory });
            }
            None => wanted.push((spec.layer.join(upper), hidden, Access::Writable)),
        }
    }
    for mount in &spec.mounts {
        wanted.push((mount.source.clone(), mount.target.clone(), Access::Writable));
    }
    for path in &spec.read_only {
        wanted.push((path.clone(), path.clone(), Access::ReadOnly));
    }
    for path in &spec.writable {
        wanted.push((path.clone(), path.clone(), Access::Writable));
    }
    let workspace = PathBuf::from("/workspace");
    let access = if spec.workspace_read_only { Access::ReadOnly } else { Access::Writable };
    wanted.push((spec.workspace.clone(), workspace.clone(), access));
    // The worktree's `.git` file names the git metadata; neither may be changed from inside.
    let git_file = spec.workspace.join(".git");
    if git_file.is_file() {
        wanted.push((git_file, workspace.join(".git"), Access::ReadOnly));
    }
    if let Some(socket) = &spec.proxy_socket {
        wanted.push((socket.clone(), PathBuf::from(proxy::SOCKET_INSIDE), Access::Writable));
    }
    for (source, target, access) in wanted {
        let kind = if source.is_dir() { Kind::Directory } else { Kind::File };
        binds.push(Bind { source: Source::Tree(userns.detach(&source, access)?), target, kind });
    }
    Ok(binds)
}

/// Mounts the overlay of `lower` and the task's `layer` at `target`. Made inside the sandbox's
/// user namespace, so its changes are root's inside; `userxattr` keeps overlay's own records in
/// attributes such a root may write.
fn overlay(root: &Path, lower: &OwnedFd, layer: &OwnedFd, upper: &Path, work: &Path, target: &Path) -> InitResult<()> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, UnmountFlags};
    let stage = root.join(STAGE);
    let (lower_at, layer_at) = (stage.join("lower"), stage.join("layer"));
    mkdirs(&lower_at)?;
    mkdirs(&layer_at)?;
    attach_detached(lower, &lower_at)?;
    attach_detached(layer, &layer_at)?;
    let what = || format!("mounting the environment's layer at {}", target.display());
    let fs = step(what, rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC))?;
    // Set one by one, never parsed from one string: a path with a comma stays one path.
    for (key, value) in [("lowerdir", lower_at), ("upperdir", layer_at.join(upper)), ("workdir", layer_at.join(work))] {
        step(what, rustix::mount::fsconfig_set_string(&fs, key, &value))?;
    }
    step(what, rustix::mount::fsconfig_set_flag(&fs, "userxattr"))?;
    step(what, rustix::mount::fsconfig_create(&fs))?;
    let attributes = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    let mount = step(what, rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attributes))?;
    attach_detached(&mount, target)?;
    // The overlay keeps its layers; their staging mounts would only show the task's raw upper layer.
    for staged in [stage.join("lower"), stage.join("layer")] {
        step(|| format!("detaching {}", staged.display()), rustix::mount::unmount(&staged, UnmountFlags::DETACH))?;
        step(|| format!("removing {}", staged.display()), std::fs::remove_dir(&staged))?;
    }
    Ok(())
}

/// A tmpfs of `mode`, at most `size` bytes where given (it is memory: without a cap, and without a
/// memory cgroup, filling it would take the host's memory).
fn tmpfs(target: &Path, mode: &str, size: Option<u64>) -> InitResult<()> {
    let size = size.map(|bytes| format!(",size={bytes}")).unwrap_or_default();
    let options = CString::new(format!("mode={mode}{size}")).map_err(|e| e.to_string())?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    step(
        || format!("mounting tmpfs on {}", target.display()),
        rustix::mount::mount("tmpfs", target, "tmpfs", flags, options.as_c_str()),
    )
}

/// Shows the host path `source` at `target`, recursively, restricted to `access`.
fn bind_host(source: &Path, target: &Path, access: Access) -> InitResult<()> {
    step(
        || format!("binding {} to {}", source.display(), target.display()),
        rustix::mount::mount_bind_recursive(source, target),
    )?;
    restrict_mount(target, access)
}

/// Assembles the root at [`ASSEMBLY`], in the sandbox's mount namespace. The memory-backed
/// directories the sandbox writes (`/tmp`, `/dev/shm`) hold at most half of `memory_bytes` each:
/// filling one is "no space left", not the memory cgroup killing whatever allocates next.
pub fn build(binds: &[Bind], memory_bytes: Option<u64>) -> InitResult<()> {
    let memory_bytes = memory_bytes.map(|bytes| bytes / 2);
    let root = Path::new(ASSEMBLY);
    tmpfs(root, "0755", Some(1 << 20))?;
    let entries = step(|| "listing /".to_owned(), std::fs::read_dir("/"))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if NOT_SHOWN.iter().any(|n| name == *n) {
            continue;
        }
        let (host, target) = (Path::new("/").join(&name), root.join(&name));
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            let link = step(|| format!("reading {}", host.display()), std::fs::read_link(&host))?;
            step(|| format!("linking {}", target.display()), std::os::unix::fs::symlink(link, &target))?;
        } else if kind.is_dir() {
            mkdirs(&target)?;
            bind_host(&host, &target, Access::ReadOnly)?;
        }
    }
    mkdirs(&root.join("tmp"))?;
    tmpfs(&root.join("tmp"), "1777", memory_bytes)?;
    build_dev(&root.join("dev"), memory_bytes)?;
    mkdirs(&root.join("proc"))?;
    mkdirs(&root.join("workspace"))?;
    for bind in binds {
        let target = inside(root, &bind.target);
        match bind.kind {
            Kind::Directory => mkdirs(&target)?,
            Kind::File if !target.exists() => {
                mkdirs(target.parent().unwrap_or(root))?;
                step(|| format!("creating {}", target.display()), std::fs::File::create(&target))?;
            }
            Kind::File => {}
        }
        match &bind.source {
            Source::Tree(tree) => attach_detached(tree, &target)?,
            Source::Overlay { lower, layer, upper, work } => overlay(root, lower, layer, upper, work, &target)?,
        }
    }
    if root.join(STAGE).exists() {
        step(|| "removing the staging directory".to_owned(), std::fs::remove_dir(root.join(STAGE)))?;
    }
    // Where pid 1 puts the host's root while it pivots; then `/` itself is read-only.
    mkdirs(&root.join(OLD_ROOT))?;
    let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    step(|| "making / read-only".to_owned(), rustix::mount::mount_remount(root, flags, ""))
}

/// Beneath the new root, where pid 1 moves the host's root before detaching it.
pub const OLD_ROOT: &str = ".baton-old-root";

/// A `/dev` with the harmless devices only: no terminal of the host's.
fn build_dev(dev: &Path, memory_bytes: Option<u64>) -> InitResult<()> {
    mkdirs(dev)?;
    tmpfs(dev, "0755", Some(1 << 20))?;
    for node in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(node);
        step(|| format!("creating {}", target.display()), std::fs::File::create(&target))?;
        let source = Path::new("/dev").join(node);
        step(|| format!("binding {}", source.display()), rustix::mount::mount_bind(&source, &target))?;
    }
    mkdirs(&dev.join("shm"))?;
    tmpfs(&dev.join("shm"), "1777", memory_bytes)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step(|| format!("linking /dev/{link}"), std::os::unix::fs::symlink(target, dev.join(link)))?;
    }
    Ok(())
}

/// Mounts the pid namespace's `/proc` under `root`, with what runc and Docker keep from a
/// container read-only or masked. Called by pid 1, the first process of that namespace.
pub fn mount_proc(root: &Path) -> InitResult<()> {
    let proc = root.join("proc");
    step(
        || "mounting /proc".to_owned(),
        rustix::mount::mount("proc", &proc, "proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None),
    )?;
    for name in READ_ONLY {
        let path = proc.join(name);
        if path.exists() {
            step(|| format!("binding {}", path.display()), rustix::mount::mount_bind(&path, &path))?;
            restrict_mount(&path, Access::ReadOnly)?;
        }
    }
    let null = root.join("dev/null");
    for name in MASKED_FILES {
        let path = proc.join(name);
        if path.exists() {
            step(|| format!("masking {}", path.display()), rustix::mount::mount_bind(&null, &path))?;
        }
    }
    for name in MASKED_DIRS {
        let path = proc.join(name);
        if path.is_dir() {
            let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            step(
                || format!("masking {}", path.display()),
                rustix::mount::mount("tmpfs", &path, "tmpfs", flags, c"mode=0555"),
            )?;
        }
    }
    Ok(())
}
