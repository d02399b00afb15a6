//! The process that builds a sandbox and runs one command in it. It runs as root on the host, in two
//! stages of the same binary:
//!
//! 1. **setup** (on the host): joins the task's cgroups, unshares the mount, pid, network, ipc and uts
//!    namespaces, and assembles the root in a private mount namespace: the host root read-only under
//!    the task's writable overlay layer, sensitive host paths hidden under empty tmpfs, the worktree at
//!    `/workspace`, git metadata read-only, a minimal `/dev`. Then it starts stage 2 and waits.
//! 2. **pid 1** (the first process of the new pid namespace): mounts a `/proc` of that namespace,
//!    pivots into the new root, sets limits, drops capabilities, forbids new privileges, installs the
//!    seccomp filter, and runs the command, reaping every orphan until the command exits. When it
//!    exits, the kernel kills whatever is left in the namespace.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use crate::spec::{InitSpec, Limits, SPEC_VARIABLE};
use crate::{proxy, seccomp};

/// The argument that selects stage 2.
pub const STAGE_TWO: &str = "--pid1";

/// Exit status of the init process when the sandbox itself could not be built (not the command).
pub const SETUP_FAILED: i32 = 125;

/// Capabilities root keeps inside the sandbox: enough to install packages and own files, nothing that
/// reaches the kernel or other processes (no SYS_ADMIN, SYS_PTRACE, SYS_MODULE, NET_ADMIN, MKNOD,
/// SYS_CHROOT…).
fn kept_capabilities() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FOWNER
        | CapabilitySet::FSETID
        | CapabilitySet::KILL
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::AUDIT_WRITE
        | CapabilitySet::SETFCAP
}

type Step<T> = Result<T, String>;

fn step<T, E: std::fmt::Display>(what: impl FnOnce() -> String, result: Result<T, E>) -> Step<T> {
    result.map_err(|e| format!("{}: {e}", what()))
}

/// `root` joined with an absolute host path.
fn inside(root: &Path, host_path: &Path) -> PathBuf {
    root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

fn read_spec() -> Step<InitSpec> {
    let text = std::env::var(SPEC_VARIABLE).map_err(|_| format!("{SPEC_VARIABLE} is not set"))?;
    serde_json::from_str(&text).map_err(|e| format!("{SPEC_VARIABLE} is not a valid spec: {e}"))
}

/// Runs the stage the arguments ask for and returns the process's exit code. The arguments the
/// program was started with are kept for stage 2 (a `baton` binary acting as the init needs its
/// subcommand again), with [`STAGE_TWO`] added.
pub fn main() -> i32 {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let stage_two = args.last().map(String::as_str) == Some(STAGE_TWO);
    if stage_two {
        args.pop();
    }
    let result = read_spec().and_then(|spec| if stage_two { pid_one(&spec) } else { setup(&spec, &args) });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("baton sandbox: {message}");
            SETUP_FAILED
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn setup(spec: &InitSpec, args: &[String]) -> Step<i32> {
    let pid = std::process::id().to_string();
    for cgroup in &spec.cgroups {
        step(|| format!("joining cgroup {}", cgroup.display()), std::fs::write(cgroup.join("cgroup.procs"), &pid))?;
    }
    let namespaces =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES, which breaks file descriptors shared
    // between threads; these flags do not include it, and this process is single-threaded.
    #[allow(unsafe_code)]
    let unshared = unsafe { rustix::thread::unshare_unsafe(namespaces) };
    step(|| "unsharing namespaces".to_owned(), unshared)?;
    step(
        || "making mounts private".to_owned(),
        rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
    )?;
    build_root(spec)?;

    let me = step(|| "finding the init program".to_owned(), std::env::current_exe())?;
    let status = step(|| "starting pid 1".to_owned(), Command::new(me).args(args).arg(STAGE_TWO).status())?;
    Ok(exit_code(status))
}

fn mkdirs(path: &Path) -> Step<()> {
    step(|| format!("creating {}", path.display()), std::fs::create_dir_all(path))
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Step<()> {
    let what = || format!("binding {} to {}", source.display(), target.display());
    step(what, rustix::mount::mount_bind_recursive(source, target))?;
    if read_only {
        let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        step(|| format!("making {} read-only", target.display()), rustix::mount::mount_remount(target, flags, ""))?;
    }
    Ok(())
}

fn tmpfs(target: &Path, mode: &str) -> Step<()> {
    let options = CString::new(format!("mode={mode}")).map_err(|e| e.to_string())?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    step(
        || format!("mounting tmpfs on {}", target.display()),
        rustix::mount::mount("tmpfs", target, "tmpfs", flags, options.as_c_str()),
    )
}

fn build_root(spec: &InitSpec) -> Step<()> {
    let root = &spec.root;
    let upper = spec.layer.join("upper");
    let work = spec.layer.join("work");
    for path in [&upper, &work, root] {
        let text = path.to_string_lossy();
        if text.contains([',', ':', '\\']) {
            return Err(format!("{text}: overlay paths may not contain , : or \\"));
        }
        mkdirs(path)?;
    }
    let options = CString::new(format!("lowerdir=/,upperdir={},workdir={}", upper.display(), work.display()))
        .map_err(|e| e.to_string())?;
    step(
        || "mounting the task's layer over the host root".to_owned(),
        rustix::mount::mount("overlay", root, "overlay", MountFlags::NOSUID, options.as_c_str()),
    )?;

    // Each hidden path becomes an empty directory of the task's own, which persists with its layer
    // (so `/root` is the task's home, not the host's).
    for hidden in &spec.hidden {
        let target = inside(root, hidden);
        if target.is_dir() {
            let replacement = inside(&spec.layer.join("hidden"), hidden);
            mkdirs(&replacement)?;
            bind(&replacement, &target, false)?;
        }
    }
    let tmp = root.join("tmp");
    mkdirs(&tmp)?;
    tmpfs(&tmp, "1777")?;

    let dev = root.join("dev");
    mkdirs(&dev)?;
    tmpfs(&dev, "0755")?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        step(|| format!("creating {}", target.display()), std::fs::File::create(&target))?;
        bind(&Path::new("/dev").join(node), &target, false)?;
    }
    mkdirs(&dev.join("shm"))?;
    tmpfs(&dev.join("shm"), "1777")?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step(|| format!("linking /dev/{link}"), std::os::unix::fs::symlink(target, dev.join(link)))?;
    }

    let workspace = root.join("workspace");
    mkdirs(&workspace)?;
    bind(&spec.workspace, &workspace, spec.workspace_read_only)?;
    // The worktree's `.git` file names the git metadata; neither may be changed from inside.
    let git_file = spec.workspace.join(".git");
    if git_file.is_file() {
        bind(&git_file, &workspace.join(".git"), true)?;
    }
    for path in &spec.read_only {
        let target = inside(root, path);
        if path.is_dir() {
            mkdirs(&target)?;
        } else {
            mkdirs(target.parent().unwrap_or(root))?;
            step(|| format!("creating {}", target.display()), std::fs::File::create(&target))?;
        }
        bind(path, &target, true)?;
    }
    if let Some(socket) = &spec.proxy_socket {
        let target = inside(root, Path::new(proxy::SOCKET_INSIDE));
        mkdirs(target.parent().unwrap_or(root))?;
        step(|| format!("creating {}", target.display()), std::fs::File::create(&target))?;
        bind(socket, &target, false)?;
    }
    mkdirs(&root.join("proc"))?;
    Ok(())
}

/// Brings up the loopback interface of the new network namespace, so that servers a command starts
/// on 127.0.0.1 are reachable, and so is the proxy relay.
fn loopback_up() -> Step<()> {
    use std::os::fd::AsRawFd;
    let socket = step(|| "opening a socket for the loopback".to_owned(), std::net::UdpSocket::bind("0.0.0.0:0"))?;
    // SAFETY: `ifreq` is plain old data, for which all-zero bytes are a valid value; both ioctls get
    // a pointer to it that lives across the call, on a socket descriptor that stays open.
    #[allow(unsafe_code)]
    let result = unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    step(|| "bringing up the loopback interface".to_owned(), result)
}

/// Relays connections to 127.0.0.1:3128 to the host's proxy through the mounted socket.
fn start_proxy_relay() -> Step<()> {
    let listener =
        step(|| format!("listening on {}", proxy::LISTEN_INSIDE), std::net::TcpListener::bind(proxy::LISTEN_INSIDE))?;
    std::thread::spawn(move || {
        for connection in listener.incoming().filter_map(Result::ok) {
            std::thread::spawn(move || {
                let Ok(upstream) = std::os::unix::net::UnixStream::connect(proxy::SOCKET_INSIDE) else { return };
                let (Ok(mut client_read), Ok(mut upstream_write)) = (connection.try_clone(), upstream.try_clone())
                else {
                    return;
                };
                let forward = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut upstream_write);
                    let _ = upstream_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut upstream_read, mut client_write) = (upstream, connection);
                let _ = std::io::copy(&mut upstream_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Write);
                let _ = forward.join();
            });
        }
    });
    Ok(())
}

/// Session mode: start the commands the host asks for on the control socket (this process's stdin),
/// report when each ends, and reap every orphan. Ends when the host closes the socket, which ends
/// the sandbox.
fn serve_session() -> Step<i32> {
    use std::collections::HashMap;
    use std::os::fd::AsFd;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Stdio;
    use std::sync::{Arc, Condvar, Mutex};

    use crate::channel::{self, Reply, Request};

    let control =
        Arc::new(step(|| "taking the control socket".to_owned(), std::io::stdin().as_fd().try_clone_to_owned())?);
    // Started commands by pid; the lock is held from spawn to insert, so a reaped pid is always found.
    let tracked: Arc<Mutex<HashMap<i32, u64>>> = Arc::default();
    // Counts starts, so that an idle reaper wakes for the next command.
    let started: Arc<(Mutex<u64>, Condvar)> = Arc::default();
    let reply = |control: &std::os::fd::OwnedFd, message: &Reply| {
        let _ = channel::send(control.as_fd(), message, &[]);
    };
    reply(&control, &Reply::Ready);

    {
        let (control, tracked, started) = (control.clone(), tracked.clone(), started.clone());
        std::thread::spawn(move || {
            loop {
                match channel::receive::<Request>(control.as_fd()) {
                    Ok(Some((Request::Exec { id, argv, env, cwd }, fds))) => {
                        let mut fds = fds.into_iter();
                        let (Some(stdin), Some(stdout), Some(stderr), Some((program, args))) =
                            (fds.next(), fds.next(), fds.next(), argv.split_first())
                        else {
                            reply(
                                &control,
                                &Reply::Failed {
                                    id,
                                    message: "a command needs a program and three descriptors".into(),
                                },
                            );
                            continue;
                        };
                        let mut tracked = tracked.lock().unwrap_or_else(|e| e.into_inner());
                        let spawned = Command::new(program)
                            .args(args)
                            .env_clear()
                            .envs(env)
                            .current_dir(&cwd)
                            .stdin(Stdio::from(stdin))
                            .stdout(Stdio::from(stdout))
                            .stderr(Stdio::from(stderr))
                            .process_group(0)
                            .spawn();
                        match spawned {
                            Ok(child) => {
                                tracked.insert(child.id() as i32, id);
                                reply(&control, &Reply::Started { id });
                                let (count, wake) = &*started;
                                *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                                wake.notify_all();
                            }
                            Err(e) => reply(
                                &control,
                                &Reply::Failed { id, message: format!("cannot start `{program}`: {e}") },
                            ),
                        }
                    }
                    Ok(Some((Request::Kill { id }, _))) => {
                        let tracked = tracked.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(pid) = tracked
                            .iter()
                            .find(|(_, v)| **v == id)
                            .and_then(|(pid, _)| rustix::process::Pid::from_raw(*pid))
                        {
                            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                        }
                    }
                    // The host is gone: ending pid 1 ends everything in the sandbox.
                    Ok(None) | Err(_) => std::process::exit(0),
                }
            }
        });
    }

    loop {
        let seen = *started.0.lock().unwrap_or_else(|e| e.into_inner());
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let raw = std::process::ExitStatus::from_raw(status.as_raw());
                let code = raw.code().unwrap_or_else(|| 128 + raw.signal().unwrap_or(0));
                let id = tracked.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid.as_raw_nonzero().get());
                if let Some(id) = id {
                    // What the command left running in its group goes with it, and so the host sees
                    // the end of its output.
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                    reply(&control, &Reply::Exited { id, code });
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::CHILD) => {
                let (count, wake) = &*started;
                let guard = count.lock().unwrap_or_else(|e| e.into_inner());
                let _ = wake.wait_timeout_while(guard, Duration::from_secs(1), |n| *n == seen);
            }
            Err(e) => return Err(format!("waiting for commands: {e}")),
        }
    }
}

fn set_limits(limits: &Limits) -> Step<()> {
    let set = |resource, value: Option<u64>| match value {
        Some(value) => step(
            || format!("setting {resource:?}"),
            rustix::process::setrlimit(resource, Rlimit { current: Some(value), maximum: Some(value) }),
        ),
        None => Ok(()),
    };
    set(Resource::As, limits.memory_bytes)?;
    set(Resource::Cpu, limits.cpu_seconds)?;
    set(Resource::Fsize, limits.file_bytes)?;
    set(Resource::Nofile, limits.open_files)?;
    set(Resource::Core, Some(0))
}

fn drop_privileges() -> Step<()> {
    let keep = kept_capabilities();
    for capability in CapabilitySet::all().difference(keep).iter() {
        // Capabilities this kernel does not know cannot be held either.
        let _ = rustix::thread::remove_capability_from_bounding_set(capability);
    }
    let sets = CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() };
    step(|| "dropping capabilities".to_owned(), rustix::thread::set_capabilities(None, sets))?;
    step(|| "forbidding new privileges".to_owned(), rustix::thread::set_no_new_privs(true))
}

fn pid_one(spec: &InitSpec) -> Step<i32> {
    // If setup dies (killed on timeout), so does the whole sandbox.
    step(
        || "arming the parent-death signal".to_owned(),
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)),
    )?;
    let root = &spec.root;
    step(
        || "mounting /proc".to_owned(),
        rustix::mount::mount(
            "proc",
            root.join("proc"),
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        ),
    )?;
    step(|| "setting the hostname".to_owned(), rustix::system::sethostname(b"sandbox"))?;
    loopback_up()?;
    let old = root.join(".baton-old-root");
    mkdirs(&old)?;
    step(|| "pivoting into the sandbox root".to_owned(), rustix::process::pivot_root(root, &old))?;
    step(|| "entering /".to_owned(), std::env::set_current_dir("/"))?;
    step(|| "detaching the host root".to_owned(), rustix::mount::unmount("/.baton-old-root", UnmountFlags::DETACH))?;
    let _ = std::fs::remove_dir("/.baton-old-root");

    if spec.proxy_socket.is_some() {
        start_proxy_relay()?;
    }
    set_limits(&spec.limits)?;
    drop_privileges()?;
    seccomp::install()?;

    if spec.argv.is_empty() {
        return serve_session();
    }
    let (program, args) = spec.argv.split_first().ok_or("no command to run")?;
    let mut child = step(
        || format!("starting `{program}`"),
        Command::new(program).args(args).env_clear().envs(spec.env.iter().cloned()).current_dir(&spec.cwd).spawn(),
    )?;
    let command = rustix::process::Pid::from_child(&child);
    // As pid 1, reap every orphan; return when the command itself exits.
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == command => {
                let _ = child.try_wait();
                return Ok(status.exit_status().unwrap_or_else(|| 128 + status.terminating_signal().unwrap_or(0)));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for `{program}`: {e}")),
        }
    }
}
