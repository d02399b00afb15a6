//! The process that builds a sandbox and runs one command in it, as the user baton runs as:
//!
//! 1. **setup**: starts a session of its own (no controlling terminal), joins the task's cgroups,
//!    creates the sandbox's user namespace (see `userns.rs`), takes copies of what the sandbox
//!    mounts while it still has the host user's rights, enters the namespace as root inside,
//!    unshares the mount, pid, network, ipc, uts and cgroup namespaces, and assembles the root
//!    (see `root.rs`). Then it forks pid 1 and waits for it.
//! 2. **pid 1** (the first process of the new pid namespace): mounts a `/proc` of that namespace
//!    with the kernel's knobs read-only or masked, pivots into the new root, sets limits, drops
//!    capabilities, forbids new privileges, installs the seccomp filter, and runs the command,
//!    reaping every orphan until the command exits. When it exits, the kernel kills whatever is
//!    left in the namespace.

use std::process::Command;
use std::time::Duration;

use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use crate::root::{self, ASSEMBLY, OLD_ROOT};
use crate::spec::{InitSpec, Limits, SPEC_VARIABLE};
use crate::userns::{Mode, UserNamespace};
use crate::{proxy, seccomp};

/// Exit status of the init process when the sandbox itself could not be built (not the command).
pub const SETUP_FAILED: i32 = 125;

/// Capabilities root keeps inside the sandbox's user namespace (they mean nothing outside it):
/// enough to own files and switch users, nothing that reaches the kernel or other processes, and
/// neither `FSETID` nor `SETFCAP`, which would let a file carry privileges out to the host.
fn kept_capabilities() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FOWNER
        | CapabilitySet::KILL
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::AUDIT_WRITE
}

/// A stage of building the sandbox; the error says what failed, for the one line the host reads.
pub(crate) type InitResult<T> = Result<T, String>;

pub(crate) fn step<T, E: std::fmt::Display>(what: impl FnOnce() -> String, result: Result<T, E>) -> InitResult<T> {
    result.map_err(|e| format!("{}: {e}", what()))
}

pub(crate) fn unshare(flags: UnshareFlags) -> rustix::io::Result<()> {
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES, which breaks file descriptors shared
    // between threads; no caller passes it.
    #[allow(unsafe_code)]
    unsafe {
        rustix::thread::unshare_unsafe(flags)
    }
}

fn read_spec() -> InitResult<InitSpec> {
    let text = std::env::var(SPEC_VARIABLE).map_err(|_| format!("{SPEC_VARIABLE} is not set"))?;
    serde_json::from_str(&text).map_err(|e| format!("{SPEC_VARIABLE} is not a valid spec: {e}"))
}

/// Builds the sandbox the spec in the environment describes, runs its command, and returns the
/// process's exit code.
pub fn main() -> i32 {
    match read_spec().and_then(|spec| setup(&spec)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("baton sandbox: {message}");
            SETUP_FAILED
        }
    }
}

fn setup(spec: &InitSpec) -> InitResult<i32> {
    let parent = rustix::process::getppid();
    step(|| "starting a session without a terminal".to_owned(), rustix::process::setsid())?;
    let pid = std::process::id().to_string();
    for cgroup in &spec.cgroups {
        step(|| format!("joining cgroup {}", cgroup.display()), std::fs::write(cgroup.join("cgroup.procs"), &pid))?;
    }
    let userns = UserNamespace::create(Mode::of_this_process())?;
    let copied_as_root = match userns.mode() {
        Mode::Root => Some(root::binds(spec, &userns)?),
        Mode::Rootless { .. } => None,
    };
    userns.enter()?;
    // A command run to its end dies with the process that started it, whose watchdog would have
    // stopped it (pid 1 dies with this process in turn). That process waits in `run` on the thread
    // that spawned this one, so the signal cannot come from a thread ending early. Armed once the
    // credentials are final: changing them disarms it. A session needs none: it ends when its
    // control socket closes, as it does when baton dies.
    if !spec.argv.is_empty() {
        step(
            || "arming the parent-death signal".to_owned(),
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)),
        )?;
        if rustix::process::getppid() != parent {
            return Err("the process that started the sandbox is gone".to_owned());
        }
    }
    let namespaces = UnshareFlags::NEWNS
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWNET
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWCGROUP;
    step(|| "unsharing namespaces".to_owned(), unshare(namespaces))?;
    step(
        || "making mounts private".to_owned(),
        rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
    )?;
    let binds = match copied_as_root {
        Some(binds) => binds,
        None => root::binds(spec, &userns)?,
    };
    root::build(&binds, spec.limits.memory_bytes)?;

    // SAFETY: this process is single-threaded, so the child may run any code: it becomes pid 1
    // and leaves through `exit`, never returning into this function.
    #[allow(unsafe_code)]
    let child = unsafe { libc::fork() };
    match child {
        -1 => Err(format!("starting pid 1: {}", std::io::Error::last_os_error())),
        0 => {
            let code = pid_one(spec).unwrap_or_else(|message| {
                eprintln!("baton sandbox: {message}");
                SETUP_FAILED
            });
            std::process::exit(code)
        }
        pid => {
            let pid = rustix::process::Pid::from_raw(pid).ok_or("fork returned no pid")?;
            let status = step(
                || "waiting for pid 1".to_owned(),
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()),
            )?;
            let status = status.map(|(_, status)| status).ok_or("pid 1 vanished")?;
            Ok(status.exit_status().unwrap_or_else(|| 128 + status.terminating_signal().unwrap_or(0)))
        }
    }
}

/// Brings up the loopback interface of the new network namespace, so that servers a command starts
/// on 127.0.0.1 are reachable, and so is the proxy relay.
fn loopback_up() -> InitResult<()> {
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
fn start_proxy_relay() -> InitResult<()> {
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
fn serve_session() -> InitResult<i32> {
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

fn set_limits(limits: &Limits) -> InitResult<()> {
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
    // Counted per user namespace, so it stops a fork bomb where there is no pids cgroup.
    set(Resource::Nproc, limits.processes)?;
    set(Resource::Core, Some(0))
}

fn drop_privileges() -> InitResult<()> {
    let keep = kept_capabilities();
    for capability in CapabilitySet::all().difference(keep).iter() {
        // Capabilities this kernel does not know cannot be held either.
        let _ = rustix::thread::remove_capability_from_bounding_set(capability);
    }
    let sets = CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() };
    step(|| "dropping capabilities".to_owned(), rustix::thread::set_capabilities(None, sets))?;
    step(|| "forbidding new privileges".to_owned(), rustix::thread::set_no_new_privs(true))
}

fn pid_one(spec: &InitSpec) -> InitResult<i32> {
    // If setup dies (killed on timeout), so does the whole sandbox.
    step(
        || "arming the parent-death signal".to_owned(),
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)),
    )?;
    let root = std::path::Path::new(ASSEMBLY);
    root::mount_proc(root)?;
    step(|| "setting the hostname".to_owned(), rustix::system::sethostname(b"sandbox"))?;
    loopback_up()?;
    step(|| "pivoting into the sandbox root".to_owned(), rustix::process::pivot_root(root, root.join(OLD_ROOT)))?;
    step(|| "entering /".to_owned(), std::env::set_current_dir("/"))?;
    let old = std::path::Path::new("/").join(OLD_ROOT);
    step(|| "detaching the host root".to_owned(), rustix::mount::unmount(&old, UnmountFlags::DETACH))?;

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
