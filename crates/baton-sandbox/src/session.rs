//! A sandbox that lives for a while (an agent's leg) and runs many commands in the same namespaces:
//! a dev server started in the background is reachable from the next command, and each command costs
//! a fork and exec instead of a new machine. pid 1 starts what the session asks for on a control
//! socket; closing the session ends pid 1 and, with it, everything in the sandbox.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::cgroup::Cgroup;
use crate::channel::{self, Reply, Request};
use crate::output::Capture;
use crate::{
    Attached, AttachedProcess, BackgroundProcess, LocalSandbox, RunOutcome, RunRequest, SPEC_VARIABLE, SandboxError,
    SandboxSession, Stopped,
};

/// How long a new session may take to be built.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished command's output may keep trickling in from processes that left its group.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);
/// Bytes of unread output a background process keeps; older bytes are dropped.
const BACKGROUND_BUFFER: usize = 1 << 20;

type Waiters = Arc<Mutex<HashMap<u64, Sender<Reply>>>>;

pub struct LocalSession {
    control: Arc<OwnedFd>,
    init: Child,
    waiters: Waiters,
    next_id: AtomicU64,
    env: Vec<(String, String)>,
    max_output_bytes: u64,
    runs: PathBuf,
    run: String,
    cgroup: Option<Cgroup>,
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession").field("run", &self.run).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |e| SandboxError::Setup(format!("{what}: {e}"))
}

impl LocalSandbox {
    /// Builds the sandbox once and keeps it for the commands of a session.
    pub fn start_session(&self) -> Result<LocalSession, SandboxError> {
        let (run, cgroup) = self.prepare_run()?;
        let spec = self.spec(cgroup.as_ref(), Vec::new(), Vec::new(), "/workspace".into());
        let spec_json = serde_json::to_string(&spec).map_err(|e| SandboxError::Setup(e.to_string()))?;
        let (ours, theirs) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .map_err(|e| io_error("creating the control socket")(e.into()))?;
        let log_path = self.state.join("runs").join(format!("{run}.init.log"));
        let log = std::fs::File::create(&log_path).map_err(io_error("creating the init log"))?;
        let log_too = log.try_clone().map_err(io_error("creating the init log"))?;
        let init = Command::new(&self.config.init_program)
            .args(&self.config.init_args)
            .env_clear()
            .env(SPEC_VARIABLE, spec_json)
            .stdin(Stdio::from(theirs))
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(|source| SandboxError::Start { program: self.config.init_program.clone(), source })?;

        let control = Arc::new(ours);
        let waiters: Waiters = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let (control, waiters) = (control.clone(), waiters.clone());
            std::thread::spawn(move || {
                while let Ok(Some((reply, _))) = channel::receive::<Reply>(control.as_fd()) {
                    let id = match &reply {
                        Reply::Ready => {
                            let _ = ready_tx.send(());
                            continue;
                        }
                        Reply::Started { id } | Reply::Failed { id, .. } | Reply::Exited { id, .. } => *id,
                    };
                    if let Some(waiter) = lock(&waiters).get(&id) {
                        let _ = waiter.send(reply);
                    }
                }
                // pid 1 is gone: every waiter learns it from its closed channel.
                lock(&waiters).clear();
            });
        }
        let mut session = LocalSession {
            control,
            init,
            waiters,
            next_id: AtomicU64::new(1),
            env: self.command_env(&[]),
            max_output_bytes: self.config.max_output_bytes,
            runs: self.state.join("runs"),
            run,
            cgroup,
        };
        if ready_rx.recv_timeout(READY_TIMEOUT).is_err() {
            let _ = session.init.kill();
            let _ = session.init.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let message =
                log.lines().find_map(|l| l.strip_prefix("baton sandbox: ")).unwrap_or("the sandbox did not start");
            return Err(SandboxError::Setup(message.to_owned()));
        }
        let _ = std::fs::remove_file(&log_path);
        Ok(session)
    }
}

/// A command started in the background of a session.
pub struct LocalBackground {
    id: u64,
    control: Arc<OwnedFd>,
    stdin: Option<std::io::PipeWriter>,
    unread: Arc<Mutex<Vec<u8>>>,
    exit: Arc<Mutex<Option<i32>>>,
}

impl std::fmt::Debug for LocalBackground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackground").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What a background process printed since the last look, and whether it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundOutput {
    pub output: Vec<u8>,
    /// The exit code once the process has ended.
    pub exit_code: Option<i32>,
}

impl BackgroundProcess for LocalBackground {
    fn read_new(&self) -> BackgroundOutput {
        let output = std::mem::take(&mut *lock(&self.unread));
        BackgroundOutput { output, exit_code: *lock(&self.exit) }
    }

    fn write(&mut self, input: &[u8]) -> Result<(), SandboxError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| SandboxError::Setup("standard input is closed".into()))?;
        stdin.write_all(input).map_err(io_error("writing to the process"))
    }

    fn close_input(&mut self) {
        self.stdin = None;
    }

    fn stop(&self) {
        let _ = channel::send(self.control.as_fd(), &Request::Kill { id: self.id }, &[]);
    }
}

impl LocalSession {
    /// Sends `argv` to pid 1 with `fds` as its stdin, stdout and stderr; returns its id and the
    /// channel its replies arrive on, once it has started.
    fn exec(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        cwd: &str,
        fds: [BorrowedFd<'_>; 3],
    ) -> Result<(u64, Receiver<Reply>), SandboxError> {
        if argv.is_empty() {
            return Err(SandboxError::EmptyCommand);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.waiters).insert(id, tx);
        let mut env = self.env.clone();
        env.retain(|(name, _)| !extra_env.iter().any(|(n, _)| n == name));
        env.extend(extra_env.iter().cloned());
        let exec = Request::Exec { id, argv: argv.to_vec(), env, cwd: cwd.to_owned() };
        let sent =
            channel::send(self.control.as_fd(), &exec, &fds).map_err(io_error("sending the command to the sandbox"));
        let started = sent.and_then(|()| match rx.recv() {
            Ok(Reply::Started { .. }) => Ok(()),
            Ok(Reply::Failed { message, .. }) => Err(SandboxError::Setup(message)),
            _ => Err(SandboxError::Setup("the sandbox ended".into())),
        });
        match started {
            Ok(()) => Ok((id, rx)),
            Err(error) => {
                lock(&self.waiters).remove(&id);
                Err(error)
            }
        }
    }

    /// Starts a command; returns its id, the channel its replies arrive on, the write end of its
    /// stdin and the read end of its output.
    fn start(
        &self,
        request: &RunRequest,
    ) -> Result<(u64, Receiver<Reply>, std::io::PipeWriter, std::io::PipeReader), SandboxError> {
        let (stdin_read, stdin_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let (output_read, output_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let fds = [stdin_read.as_fd(), output_write.as_fd(), output_write.as_fd()];
        let (id, rx) = self.exec(&request.argv, &request.env, &request.cwd, fds)?;
        // pid 1 has its own copies now; ours must close so the pipes see their ends.
        drop((stdin_read, output_write));
        Ok((id, rx, stdin_write, output_read))
    }

    /// Runs a command in `/workspace` to its end, with no input, and returns its standard output
    /// and error apart and whole: for baton's own work over the task's files (its git), whose
    /// output is parsed. No timeout or output cap: the caller trusts the program, not the files.
    pub fn output(&self, argv: &[String], env: &[(String, String)]) -> Result<std::process::Output, SandboxError> {
        use std::io::Read;
        let null = std::fs::File::open("/dev/null").map_err(io_error("opening /dev/null"))?;
        let (mut stdout_read, stdout_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let (mut stderr_read, stderr_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let fds = [null.as_fd(), stdout_write.as_fd(), stderr_write.as_fd()];
        let (id, replies) = self.exec(argv, env, "/workspace", fds)?;
        drop((stdout_write, stderr_write));
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr_read.read_to_end(&mut bytes);
            bytes
        });
        let mut stdout = Vec::new();
        let read = stdout_read.read_to_end(&mut stdout);
        let stderr = stderr.join().unwrap_or_default();
        let exited = loop {
            match replies.recv() {
                Ok(Reply::Exited { code, .. }) => break Ok(code),
                Ok(_) => {}
                Err(_) => break Err(SandboxError::Setup("the sandbox ended".into())),
            }
        };
        lock(&self.waiters).remove(&id);
        read.map_err(io_error("reading the command's output"))?;
        use std::os::unix::process::ExitStatusExt;
        // A wait status: the exit code in the second byte (a signal shows as 128 + its number).
        let status = std::process::ExitStatus::from_raw((exited? & 0xff) << 8);
        Ok(std::process::Output { status, stdout, stderr })
    }
}

impl SandboxSession for LocalSession {
    /// Runs a command to its end, a timeout or the output cap, like [`Sandbox::run`] but in this
    /// session's sandbox.
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError> {
        let start = Instant::now();
        // The session's cgroup counts for everything in it; the command is told what changed while
        // it ran (a background process may share the blame).
        let before = self.cgroup.as_ref().map(|c| (c.oom_kills(), c.cpu_throttled()));
        let (id, replies, mut stdin, output) = self.start(request)?;
        let input = request.stdin.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output_file = self.runs.join(format!("session-{}-{id}.out", std::process::id()));
        let spool = std::fs::File::create(&output_file).map_err(io_error("creating the output file"))?;
        let capture = Capture::start(output, self.max_output_bytes, spool, request.stream.clone());
        let over_limit = capture.over_limit_flag();
        let deadline = start + request.timeout;
        let mut stopped = None;
        let exit_code = loop {
            match replies.recv_timeout(Duration::from_millis(5)) {
                Ok(Reply::Exited { code, .. }) => break code,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(SandboxError::Setup("the sandbox ended".into()));
                }
            }
            if stopped.is_none() {
                stopped = if over_limit.load(Ordering::Relaxed) {
                    Some(Stopped::OutputLimit)
                } else if Instant::now() >= deadline {
                    Some(Stopped::Timeout)
                } else {
                    None
                };
                if stopped.is_some() {
                    let _ = channel::send(self.control.as_fd(), &Request::Kill { id }, &[]);
                }
            }
        };
        lock(&self.waiters).remove(&id);
        let after = self.cgroup.as_ref().map(|c| (c.oom_kills(), c.cpu_throttled()));
        let (out_of_memory, cpu_throttled) = match (before, after) {
            (Some((kills_before, throttled_before)), Some((kills_after, throttled_after))) => (
                kills_after > kills_before,
                throttled_after.zip(throttled_before).map(|(after, before)| after.saturating_sub(before)),
            ),
            _ => (false, None),
        };
        Ok(RunOutcome {
            exit_code,
            stopped,
            out_of_memory,
            output: capture.finish_within(OUTPUT_GRACE),
            output_file,
            duration: start.elapsed(),
            peak_memory_bytes: None,
            cpu_throttled,
        })
    }

    /// Starts a command in the background: a dev server, a long test run. It shares this session's
    /// network, so later commands reach what it serves on 127.0.0.1.
    fn spawn(&self, request: &RunRequest) -> Result<Box<dyn BackgroundProcess>, SandboxError> {
        let (id, replies, stdin, mut output) = self.start(request)?;
        let unread: Arc<Mutex<Vec<u8>>> = Arc::default();
        let exit = self.watch_exit(id, replies);
        {
            let unread = unread.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = std::io::Read::read(&mut output, &mut buffer) {
                    let mut unread = lock(&unread);
                    unread.extend_from_slice(&buffer[..read]);
                    let excess = unread.len().saturating_sub(BACKGROUND_BUFFER);
                    unread.drain(..excess);
                }
            });
        }
        Ok(Box::new(LocalBackground { id, control: self.control.clone(), stdin: Some(stdin), unread, exit }))
    }

    fn attach(&self, request: &RunRequest) -> Result<Attached, SandboxError> {
        let (stdin_read, stdin) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let (stdout, stdout_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let (mut stderr_read, stderr_write) = std::io::pipe().map_err(io_error("creating pipes"))?;
        let fds = [stdin_read.as_fd(), stdout_write.as_fd(), stderr_write.as_fd()];
        let (id, replies) = self.exec(&request.argv, &request.env, &request.cwd, fds)?;
        // pid 1 has its own copies now; ours must close so the pipes see their ends.
        drop((stdin_read, stdout_write, stderr_write));
        let stderr: Arc<Mutex<Vec<u8>>> = Arc::default();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0; 8 * 1024];
                while let Ok(read @ 1..) = std::io::Read::read(&mut stderr_read, &mut buffer) {
                    let mut kept = lock(&stderr);
                    kept.extend_from_slice(&buffer[..read]);
                    let excess = kept.len().saturating_sub(crate::ATTACHED_STDERR_BYTES);
                    kept.drain(..excess);
                }
            });
        }
        let exit = self.watch_exit(id, replies);
        let control = self.control.clone();
        let kill = move || {
            let _ = channel::send(control.as_fd(), &Request::Kill { id }, &[]);
        };
        Ok(Attached { stdin, stdout, process: AttachedProcess::new(exit, stderr, Box::new(kill)) })
    }
}

impl LocalSession {
    /// The exit code of command `id` once `replies` tell it, from a thread of its own.
    fn watch_exit(&self, id: u64, replies: Receiver<Reply>) -> Arc<Mutex<Option<i32>>> {
        let exit: Arc<Mutex<Option<i32>>> = Arc::default();
        let (seen, waiters) = (exit.clone(), self.waiters.clone());
        std::thread::spawn(move || {
            while let Ok(reply) = replies.recv() {
                if let Reply::Exited { code, .. } = reply {
                    *lock(&seen) = Some(code);
                    break;
                }
            }
            lock(&waiters).remove(&id);
        });
        exit
    }
}

impl Drop for LocalSession {
    /// Closing the control socket ends pid 1, and the kernel ends everything else in the sandbox.
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(self.control.as_fd(), rustix::net::Shutdown::Both);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.init.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.init.kill();
        let _ = self.init.wait();
    }
}
