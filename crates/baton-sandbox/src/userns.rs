//! The user namespace a sandbox runs in: root inside, an unprivileged id outside, so that nothing
//! in the sandbox is ever root of the host.
//!
//! - **root mode** (baton runs as root, as servers do): ids `0..65536` inside are
//!   [`SANDBOX_ID`]`..+65536` outside. Host files are not owned by any of those ids, so the
//!   directories baton binds in (the worktree, its home, the git metadata) are mounted *idmapped*:
//!   their host owner appears as root inside, and what root inside writes lands owned by their
//!   host owner.
//! - **rootless** (baton runs as an ordinary user): root inside is that user outside, the only id
//!   an unprivileged user may map; the worktree is the user's own already.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use rustix::process::Pid;
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::init::{InitResult, step};

/// The first host id of a root-mode sandbox: far above the ids Debian gives users and system
/// services, and outside the ranges systemd hands containers (`0x80000..0x6fffffff`).
pub const SANDBOX_ID: u32 = 0x7000_0000;
/// How many ids a root-mode sandbox has, so that package managers can switch users inside.
const ROOT_MODE_IDS: u32 = 65536;

/// How ids inside map to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// baton is root: a range of unprivileged host ids, idmapped binds.
    Root,
    /// baton is `uid`/`gid`: root inside is that user.
    Rootless { uid: u32, gid: u32 },
}

impl Mode {
    pub fn of_this_process() -> Mode {
        let uid = rustix::process::geteuid();
        if uid.is_root() {
            Mode::Root
        } else {
            Mode::Rootless { uid: uid.as_raw(), gid: rustix::process::getegid().as_raw() }
        }
    }

    fn maps(self) -> (String, String) {
        match self {
            Mode::Root => {
                let line = format!("0 {SANDBOX_ID} {ROOT_MODE_IDS}\n");
                (line.clone(), line)
            }
            Mode::Rootless { uid, gid } => (format!("0 {uid} 1\n"), format!("0 {gid} 1\n")),
        }
    }
}

/// A user namespace with its maps written, held open by a descriptor.
#[derive(Debug)]
pub struct UserNamespace {
    fd: OwnedFd,
    mode: Mode,
}

/// `mount_setattr(2)`'s argument; rustix has no wrapper for it.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Whether the sandbox may write through a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    Writable,
}

/// Sets `attributes` on the mount at `fd` (and every mount below it).
fn set_mount_attributes(fd: BorrowedFd<'_>, attributes: u64, userns: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: attributes,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    // SAFETY: the kernel reads `size_of::<MountAttr>()` bytes from a live, properly laid out
    // `mount_attr`, and the path is a NUL-terminated empty string.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Makes the mount at `target` and everything below it read-only (or not), without setuid and
/// device files.
pub fn restrict_mount(target: &Path, access: Access) -> InitResult<()> {
    let fd = step(
        || format!("opening the mount {}", target.display()),
        rustix::fs::open(target, rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()),
    )?;
    step(|| format!("restricting {}", target.display()), set_mount_attributes(fd.as_fd(), flags(access), None))
}

fn flags(access: Access) -> u64 {
    let base = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    match access {
        Access::ReadOnly => base | MOUNT_ATTR_RDONLY,
        Access::Writable => base,
    }
}

impl UserNamespace {
    /// Creates the namespace. Rootless, this process moves into it and maps its own ids (the one
    /// map an ordinary user may write); as root, the namespace is made by a short-lived child, so
    /// that this process can still copy mounts with root's rights and idmap them to it before it
    /// enters (see [`UserNamespace::enter`]).
    pub fn create(mode: Mode) -> InitResult<UserNamespace> {
        match mode {
            Mode::Rootless { .. } => UserNamespace::create_here(mode),
            Mode::Root => UserNamespace::create_in_child(mode),
        }
    }

    fn create_here(mode: Mode) -> InitResult<UserNamespace> {
        step(|| "creating the user namespace".to_owned(), crate::init::unshare(UnshareFlags::NEWUSER))
            .map_err(|_| unavailable())?;
        UserNamespace::write_maps(Path::new("/proc/self"), mode)
    }

    /// A process cannot map ids of a namespace it has entered unless they are its own, so root's
    /// namespace is made by a child and mapped from here.
    fn create_in_child(mode: Mode) -> InitResult<UserNamespace> {
        let (ready_read, ready_write) = step(|| "creating a pipe".to_owned(), rustix::pipe::pipe())?;
        let (done_read, done_write) = step(|| "creating a pipe".to_owned(), rustix::pipe::pipe())?;
        // SAFETY: this process is single-threaded (the init runs before any thread is started), so
        // the child may do anything; it only makes raw system calls and leaves with `_exit`.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("forking: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // Only the parent's ends keep the pipes open, so that the read below sees its close.
            drop((ready_read, done_write));
            let code = match crate::init::unshare(UnshareFlags::NEWUSER) {
                Ok(()) => {
                    let _ = rustix::io::write(&ready_write, b"u");
                    let _ = rustix::io::read(&done_read, &mut [0u8; 1]);
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: ends the child without running anything of the parent's.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(code)
            };
        }
        drop((ready_write, done_read));
        let child = Pid::from_raw(pid).ok_or("fork returned no pid")?;
        let result = UserNamespace::map(child, mode, &ready_read);
        drop(done_write);
        let _ = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty());
        result
    }

    fn map(child: Pid, mode: Mode, ready: &OwnedFd) -> InitResult<UserNamespace> {
        let mut byte = [0u8; 1];
        if rustix::io::read(ready, &mut byte).unwrap_or(0) != 1 {
            return Err(unavailable());
        }
        UserNamespace::write_maps(&Path::new("/proc").join(child.as_raw_nonzero().to_string()), mode)
    }

    /// Writes the maps of the namespace of the process at `proc` and opens it.
    fn write_maps(proc: &Path, mode: Mode) -> InitResult<UserNamespace> {
        let (uid_map, gid_map) = mode.maps();
        let write = |file: &str, text: &str| {
            step(|| format!("writing the sandbox's {file}"), std::fs::write(proc.join(file), text))
        };
        write("uid_map", &uid_map)?;
        // An unprivileged user may map its group only once it gave up changing groups.
        if matches!(mode, Mode::Rootless { .. }) {
            write("setgroups", "deny")?;
        }
        write("gid_map", &gid_map)?;
        let fd = step(
            || "opening the user namespace".to_owned(),
            rustix::fs::open(
                proc.join("ns/user"),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ),
        )?;
        Ok(UserNamespace { fd, mode })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A copy of the mount tree at `path`, detached, to be attached inside the sandbox with
    /// [`attach_detached`]. In root mode it is idmapped, so that its host owners are the same ids
    /// inside: root inside writes as the host owner, and reads what the agent made (files of the
    /// host's root, mode 0600 maybe) where the copy is read-only.
    pub fn detach(&self, path: &Path, access: Access) -> InitResult<OwnedFd> {
        let tree = step(
            || format!("copying the mount of {}", path.display()),
            rustix::mount::open_tree(
                rustix::fs::CWD,
                path,
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE,
            ),
        )?;
        let (attributes, userns) = match self.mode {
            Mode::Root => (flags(access) | MOUNT_ATTR_IDMAP, Some(self.fd.as_fd())),
            Mode::Rootless { .. } => (flags(access), None),
        };
        step(
            || format!("mapping the owner of {}", path.display()),
            set_mount_attributes(tree.as_fd(), attributes, userns),
        )?;
        Ok(tree)
    }

    /// Moves this process into the namespace (rootless, it is there already) as root, with no
    /// supplementary groups.
    pub fn enter(&self) -> InitResult<()> {
        if self.mode == Mode::Root {
            step(
                || "entering the user namespace".to_owned(),
                rustix::thread::move_into_link_name_space(self.fd.as_fd(), Some(LinkNameSpaceType::User)),
            )?;
        }
        let root = || (rustix::process::Gid::ROOT, rustix::process::Uid::ROOT);
        step(|| "becoming root inside".to_owned(), rustix::thread::set_thread_res_gid(root().0, root().0, root().0))?;
        if self.mode == Mode::Root {
            step(|| "dropping the host's groups".to_owned(), rustix::thread::set_thread_groups(&[]))?;
        }
        step(|| "becoming root inside".to_owned(), rustix::thread::set_thread_res_uid(root().1, root().1, root().1))
    }
}

/// Attaches a tree made by [`UserNamespace::detach`] at `target`.
pub fn attach_detached(tree: &OwnedFd, target: &Path) -> InitResult<()> {
    step(
        || format!("mounting at {}", target.display()),
        rustix::mount::move_mount(tree.as_fd(), "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH),
    )
}

/// The kernel setting that forbids an unprivileged user its user namespaces, if one does.
pub fn refused_by_setting() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).map(|t| t.trim().to_owned()).ok();
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("this kernel refuses unprivileged user namespaces: set kernel.unprivileged_userns_clone=1 (sysctl), or run baton as root".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("AppArmor refuses unprivileged user namespaces: set kernel.apparmor_restrict_unprivileged_userns=0 (sysctl), or run baton as root".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled: set user.max_user_namespaces to a positive number (sysctl)".into());
    }
    None
}

/// Why a user namespace could not be made.
fn unavailable() -> String {
    refused_by_setting().unwrap_or_else(|| {
        "this kernel refused to create a user namespace (is baton itself in a container that forbids them?)".into()
    })
}
