//! Where a task's commands run: an isolated machine of their own. Each command gets fresh user,
//! mount, pid, network, ipc, uts and cgroup namespaces: root inside is an unprivileged id outside;
//! the host's directories are read-only; the task has a home of its own that persists between its
//! commands (so `pip install --user` lasts for that task, and only for it); the worktree is at
//! `/workspace` with its git metadata read-only; no network; baton's data and the host's homes are
//! hidden; resource limits are enforced by cgroups and rlimits; dangerous system calls are refused
//! by seccomp; a wall-clock timeout and an output cap kill the whole process tree.
//!
//! The isolation is built by `baton-sandbox-init` (see `init.rs`), which the [`Sandbox`] starts for
//! every command. baton may run as root (servers) or as an ordinary user where the kernel allows
//! unprivileged user namespaces (see `userns.rs`).

mod cgroup;
mod channel;
mod disk;
mod init;
mod output;
mod proxy;
mod root;
mod seccomp;
mod session;
mod spec;
mod userns;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use disk::TaskDisk;
pub use init::{SETUP_FAILED, main as init_main};
pub use output::Captured;
pub use proxy::{EgressPolicy, EgressProxy, LISTEN_INSIDE, RefusedConnection, SOCKET_INSIDE};
pub use session::{BackgroundOutput, LocalBackground, LocalSession};
pub use spec::{InitSpec, Limits, Mount, SPEC_VARIABLE};

use crate::cgroup::Cgroup;
use crate::output::Capture;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot prepare the sandbox in {path}: {source}")]
    Prepare { path: PathBuf, source: std::io::Error },
    #[error("cannot start the sandbox init program {program}: {source}")]
    Start { program: PathBuf, source: std::io::Error },
    #[error("the sandbox could not be built: {0}")]
    Setup(String),
    #[error("the task's disk: {0}")]
    Disk(String),
    #[error("the command is empty")]
    EmptyCommand,
    #[error("baton cannot build sandboxes here: {0}")]
    Unsupported(String),
}

/// Where a task's commands run. [`LocalSandbox`] (Linux namespaces on this machine) is the backend
/// baton ships; the engine and the tools only see this trait.
pub trait Sandbox: Send + Sync + std::fmt::Debug {
    /// One command in a fresh machine, to its end, a timeout, or the output cap.
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError>;
    /// A machine that runs many commands, for one leg.
    fn session(&self) -> Result<Box<dyn SandboxSession>, SandboxError>;
    /// Connections the egress proxy refused since the last call, for the journal.
    fn take_refused_connections(&self) -> Vec<RefusedConnection>;
    /// Where the egress proxy listens (HTTP, one request per connection), for what baton reaches
    /// on the task's behalf under the task's policy; `None` for a task without network.
    fn egress_socket(&self) -> Option<PathBuf>;
}

/// One machine for many commands; dropping it ends everything in it.
pub trait SandboxSession: Send + Sync + std::fmt::Debug {
    /// A command to its end, a timeout, or the output cap.
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError>;
    /// A command that keeps running (a dev server, a long test run) while others run.
    fn spawn(&self, request: &RunRequest) -> Result<Box<dyn BackgroundProcess>, SandboxError>;
    /// A command whose standard input and output are the caller's to speak over (a tool server's
    /// protocol), the end of its standard error kept; no timeout or cap: the caller bounds each
    /// exchange. Killed when its [`AttachedProcess`] is dropped, and with the session.
    fn attach(&self, request: &RunRequest) -> Result<Attached, SandboxError>;
}

/// A command started with [`SandboxSession::attach`]: its pipes, and the process (killed when that
/// is dropped).
#[derive(Debug)]
pub struct Attached {
    pub stdin: std::io::PipeWriter,
    pub stdout: std::io::PipeReader,
    pub process: AttachedProcess,
}

/// An attached command's process: killed when dropped.
pub struct AttachedProcess {
    exit: std::sync::Arc<std::sync::Mutex<Option<i32>>>,
    /// The end of what it wrote to its standard error, at most [`ATTACHED_STDERR_BYTES`].
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    kill: Box<dyn Fn() + Send + Sync>,
}

/// How much of an attached command's standard error is kept: only its end, in memory, so a
/// command that writes without end fills neither memory nor the host's disk.
pub const ATTACHED_STDERR_BYTES: usize = 16 * 1024;

impl AttachedProcess {
    pub(crate) fn new(
        exit: std::sync::Arc<std::sync::Mutex<Option<i32>>>,
        stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        kill: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        AttachedProcess { exit, stderr, kill }
    }

    /// Its exit code, once it has ended.
    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The end of what it has written to its standard error so far.
    pub fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Kills it and everything in its process group.
    pub fn stop(&self) {
        (self.kill)();
    }
}

impl Drop for AttachedProcess {
    fn drop(&mut self) {
        (self.kill)();
    }
}

impl std::fmt::Debug for AttachedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedProcess").field("exit_code", &self.exit_code()).finish_non_exhaustive()
    }
}

/// A command started with [`SandboxSession::spawn`].
pub trait BackgroundProcess: Send + std::fmt::Debug {
    /// Output since the last call, and the exit code once it has ended.
    fn read_new(&self) -> BackgroundOutput;
    /// Sends bytes to its standard input.
    fn write(&mut self, input: &[u8]) -> Result<(), SandboxError>;
    /// Closes its standard input (it sees end of file).
    fn close_input(&mut self);
    /// Kills it and everything in its process group.
    fn stop(&self);
}

/// Settings shared by every sandbox of a baton process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The program that builds sandboxes (`baton-sandbox-init`, or `baton` itself), and the arguments
    /// that make it act as the init.
    pub init_program: PathBuf,
    pub init_args: Vec<String>,
    /// Host paths the sandbox never sees; each is replaced by a directory of the task's own layer.
    pub hidden: Vec<PathBuf>,
    /// Host toolchains shown read-only at their own paths, even under a hidden path (the user's
    /// rustup toolchains live in the hidden home), with directories to add to `PATH`.
    pub toolchains: Vec<PathBuf>,
    pub extra_path: Vec<PathBuf>,
    pub limits: Limits,
    /// Output beyond this many bytes stops the command.
    pub max_output_bytes: u64,
    /// `None`: no network at all. Otherwise the hosts the task's commands may reach through the proxy.
    pub network: Option<EgressPolicy>,
    /// The size of each task's own disk (its worktree and home, see [`TaskDisk`]); `None`: tasks
    /// write to the host's filesystem. Root only.
    pub disk_bytes: Option<u64>,
}

impl SandboxConfig {
    /// Where `baton-sandbox-init` is: `$BATON_SANDBOX_INIT`, else beside the running program or one
    /// directory up (where cargo puts binaries relative to test executables).
    pub fn locate_init() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("BATON_SANDBOX_INIT") {
            return Some(PathBuf::from(path));
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [dir.join("baton-sandbox-init"), dir.parent()?.join("baton-sandbox-init")].into_iter().find(|p| p.is_file())
    }

    /// Hides baton's data directory, the host's homes and runtime directories; shows the Rust
    /// toolchains of the user's home (`$HOME`).
    pub fn new(init_program: PathBuf, data_dir: &Path) -> SandboxConfig {
        SandboxConfig::for_home(init_program, data_dir, std::env::var_os("HOME").map(PathBuf::from))
    }

    /// As [`SandboxConfig::new`], for the user whose home is `home`.
    pub fn for_home(init_program: PathBuf, data_dir: &Path, home: Option<PathBuf>) -> SandboxConfig {
        let mut hidden: Vec<PathBuf> =
            ["/root", "/home", "/run", "/var/tmp", "/mnt", "/media", "/srv"].iter().map(PathBuf::from).collect();
        hidden.push(data_dir.to_owned());
        let mut toolchains = Vec::new();
        let mut extra_path = Vec::new();
        if let Some(home) = home {
            // rustup's toolchains and proxies, not ~/.cargo as a whole: it holds registry credentials.
            for (dir, bin) in [(home.join(".rustup"), None), (home.join(".cargo/bin"), Some(home.join(".cargo/bin")))] {
                if dir.is_dir() {
                    toolchains.push(dir);
                    extra_path.extend(bin);
                }
            }
            hidden.push(home);
        }
        SandboxConfig {
            init_program,
            init_args: Vec::new(),
            hidden,
            toolchains,
            extra_path,
            limits: Limits {
                memory_bytes: Some(4 << 30),
                processes: Some(512),
                cpu_seconds: None,
                cpu_millis: Some(default_cpu_millis()),
                file_bytes: Some(8 << 30),
                open_files: Some(4096),
            },
            max_output_bytes: 64 << 20,
            network: None,
            disk_bytes: Some(DEFAULT_DISK_BYTES),
        }
    }
}

/// Room for a large repository, its dependencies and its build output.
pub const DEFAULT_DISK_BYTES: u64 = 16 << 30;

/// Half of the machine's processors (at least one): a runaway task leaves the rest to baton and to
/// other tasks.
fn default_cpu_millis() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    (cores / 2).max(1) * 1000
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Inside the sandbox; `/workspace` by default.
    pub cwd: String,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    /// Receives the output as it arrives, for a live view.
    pub stream: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

impl RunRequest {
    /// `bash -c command` in `/workspace`.
    pub fn shell(command: &str, timeout: Duration) -> RunRequest {
        RunRequest {
            argv: vec!["/bin/bash".into(), "-c".into(), command.into()],
            env: Vec::new(),
            cwd: "/workspace".into(),
            stdin: Vec::new(),
            timeout,
            stream: None,
        }
    }
}

/// Why baton stopped a command before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Timeout,
    OutputLimit,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The command's exit code, or 128 + the signal that ended it.
    pub exit_code: i32,
    pub stopped: Option<Stopped>,
    /// The memory cgroup ran out and killed a process.
    pub out_of_memory: bool,
    pub output: Captured,
    /// The whole output, up to the cap, for a caller that wants more than `output`; the caller
    /// deletes it (baton's tools and checks do so unread).
    pub output_file: PathBuf,
    pub duration: Duration,
    pub peak_memory_bytes: Option<u64>,
    /// How long the cpu cgroup held the command back at its share, where there is one (in a
    /// session: the whole session, while the command ran).
    pub cpu_throttled: Option<Duration>,
}

/// A task's sandbox: its writable layer and its worktree.
#[derive(Debug)]
pub struct LocalSandbox {
    config: SandboxConfig,
    /// baton's own files about the task's commands: their output, the proxy's socket.
    state: PathBuf,
    /// The task's home and what replaces other hidden paths, kept between its commands.
    layer: PathBuf,
    workspace: PathBuf,
    read_only: Vec<PathBuf>,
    writable: Vec<PathBuf>,
    /// An environment's snapshot beneath the layer (see [`InitSpec::lower`]).
    lower: Option<PathBuf>,
    mounts: Vec<Mount>,
    proxy: Option<EgressProxy>,
    /// Commands see the worktree read-only.
    workspace_read_only: bool,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Environment every command starts from; the request's variables are added on top.
fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
    ]
}

impl LocalSandbox {
    /// `state` is the task's own directory (it keeps the writable layer between commands, unless
    /// [`LocalSandbox::with_layer`] puts it elsewhere); `read_only` are host paths shown read-only,
    /// like the repository's git directory.
    /// Fails at once, with the reason, where sandboxes cannot be built (a kernel setting refuses an
    /// ordinary user its user namespaces).
    pub fn new(
        config: SandboxConfig,
        state: &Path,
        workspace: &Path,
        read_only: Vec<PathBuf>,
    ) -> Result<LocalSandbox, SandboxError> {
        if !rustix::process::geteuid().is_root()
            && let Some(setting) = userns::refused_by_setting()
        {
            return Err(SandboxError::Unsupported(setting));
        }
        let runs = state.join("runs");
        std::fs::create_dir_all(&runs).map_err(|source| SandboxError::Prepare { path: runs, source })?;
        let proxy = match &config.network {
            Some(policy) => {
                let socket = state.join("proxy.sock");
                Some(
                    EgressProxy::start(&socket, policy.clone())
                        .map_err(|source| SandboxError::Prepare { path: socket, source })?,
                )
            }
            None => None,
        };
        Ok(LocalSandbox {
            config,
            state: state.to_owned(),
            layer: state.join("layer"),
            workspace: workspace.to_owned(),
            read_only,
            writable: Vec::new(),
            lower: None,
            mounts: Vec::new(),
            proxy,
            workspace_read_only: false,
        })
    }

    /// The environment a command starts with: the base variables, the proxy's if there is one, and
    /// the request's on top.
    fn command_env(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = base_env();
        if !self.config.extra_path.is_empty() {
            let extra: Vec<String> = self.config.extra_path.iter().map(|p| p.display().to_string()).collect();
            if let Some((_, path)) = env.iter_mut().find(|(name, _)| name == "PATH") {
                *path = format!("{}:{path}", extra.join(":"));
            }
            if let Some(rustup) = self.config.toolchains.iter().find(|p| p.ends_with(".rustup")) {
                env.push(("RUSTUP_HOME".into(), rustup.display().to_string()));
            }
        }
        if self.proxy.is_some() {
            let url = format!("http://{LISTEN_INSIDE}");
            for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
                env.push((name.into(), url.clone()));
            }
            env.push(("NO_PROXY".into(), "localhost,127.0.0.1,::1".into()));
            env.push(("no_proxy".into(), "localhost,127.0.0.1,::1".into()));
        }
        env.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
        env.extend(extra.iter().cloned());
        env
    }

    /// What the init program needs to build this sandbox in `root`; an empty `argv` asks for a
    /// session.
    fn spec(&self, cgroup: Option<&Cgroup>, argv: Vec<String>, env: Vec<(String, String)>, cwd: String) -> InitSpec {
        InitSpec {
            layer: self.layer.clone(),
            workspace: self.workspace.clone(),
            workspace_read_only: self.workspace_read_only,
            read_only: self.config.toolchains.iter().chain(&self.read_only).cloned().collect(),
            writable: self.writable.clone(),
            hidden: self.config.hidden.clone(),
            lower: self.lower.clone(),
            mounts: self.mounts.clone(),
            cgroups: cgroup.map(|c| c.dirs().to_vec()).unwrap_or_default(),
            limits: self.config.limits,
            argv,
            env,
            cwd,
            proxy_socket: self.proxy.as_ref().map(|p| p.socket().to_owned()),
        }
    }

    /// The same sandbox with its writable layer (the task's home) in `layer`, such as the task's
    /// disk.
    pub fn with_layer(self, layer: PathBuf) -> LocalSandbox {
        LocalSandbox { layer, ..self }
    }

    /// The same sandbox over an environment's snapshot: `lower` is read-only, and what the
    /// sandbox changes lands in its own layer.
    pub fn with_lower(self, lower: Option<PathBuf>) -> LocalSandbox {
        LocalSandbox { lower, ..self }
    }

    /// The same sandbox with host directories shown writable at other paths.
    pub fn with_mounts(self, mounts: Vec<Mount>) -> LocalSandbox {
        LocalSandbox { mounts, ..self }
    }

    /// The same sandbox with `paths` shown writable at their own paths.
    pub fn with_writable(self, paths: Vec<PathBuf>) -> LocalSandbox {
        LocalSandbox { writable: paths, ..self }
    }

    /// The same sandbox with the worktree mounted read-only: for a role that reads, never writes.
    pub fn reading_only(self) -> LocalSandbox {
        LocalSandbox { workspace_read_only: true, ..self }
    }

    /// A name for one run or session, and its cgroup. Root always has one; an ordinary user has
    /// one where the cgroup tree is delegated to it, and otherwise only the rlimits.
    fn prepare_run(&self) -> Result<(String, Option<Cgroup>), SandboxError> {
        let run = format!("{}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
        let cgroup = Cgroup::create(&format!("baton-{run}"), &self.config.limits);
        let cgroup = if rustix::process::geteuid().is_root() {
            Some(cgroup.map_err(|source| SandboxError::Prepare { path: PathBuf::from("/sys/fs/cgroup"), source })?)
        } else {
            cgroup.ok()
        };
        Ok((run, cgroup))
    }
}

impl Sandbox for LocalSandbox {
    fn take_refused_connections(&self) -> Vec<RefusedConnection> {
        self.proxy.as_ref().map(EgressProxy::take_refused).unwrap_or_default()
    }

    fn egress_socket(&self) -> Option<PathBuf> {
        self.proxy.as_ref().map(|proxy| proxy.socket().to_owned())
    }

    /// Runs one command to its end, a timeout, or the output cap.
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError> {
        if request.argv.is_empty() {
            return Err(SandboxError::EmptyCommand);
        }
        let (run, cgroup) = self.prepare_run()?;
        let prepare = |path: &Path, source| SandboxError::Prepare { path: path.to_owned(), source };

        let spec =
            self.spec(cgroup.as_ref(), request.argv.clone(), self.command_env(&request.env), request.cwd.clone());
        let spec_json = serde_json::to_string(&spec).map_err(|e| SandboxError::Setup(e.to_string()))?;

        let runs = self.state.join("runs");
        let (reader, writer) = std::io::pipe().map_err(|e| prepare(&runs, e))?;
        let writer_too = writer.try_clone().map_err(|e| prepare(&runs, e))?;
        let start = Instant::now();
        let mut child = Command::new(&self.config.init_program)
            .args(&self.config.init_args)
            .env_clear()
            .env(SPEC_VARIABLE, spec_json)
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(writer_too)
            .spawn()
            .map_err(|source| SandboxError::Start { program: self.config.init_program.clone(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            let input = request.stdin.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let output_file = self.state.join("runs").join(format!("{run}.out"));
        let spool = std::fs::File::create(&output_file).map_err(|e| prepare(&output_file, e))?;
        let capture = Capture::start(reader, self.config.max_output_bytes, spool, request.stream.clone());

        // A watchdog stops the command on timeout or too much output; this thread just waits, so
        // a quick command costs no polling delay.
        let deadline = start + request.timeout;
        let finished = Arc::new(AtomicBool::new(false));
        let pid = rustix::process::Pid::from_child(&child);
        let watchdog = {
            let finished = finished.clone();
            let over_limit = capture.over_limit_flag();
            std::thread::spawn(move || {
                while !finished.load(Ordering::Acquire) {
                    let stop = if over_limit.load(Ordering::Relaxed) {
                        Some(Stopped::OutputLimit)
                    } else if Instant::now() >= deadline {
                        Some(Stopped::Timeout)
                    } else {
                        None
                    };
                    if let Some(stop) = stop {
                        // pid 1 dies with its parent, and the kernel then ends the whole namespace.
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        return Some(stop);
                    }
                    std::thread::park_timeout(Duration::from_millis(5));
                }
                None
            })
        };
        let status =
            child.wait().map_err(|source| SandboxError::Start { program: self.config.init_program.clone(), source })?;
        finished.store(true, Ordering::Release);
        watchdog.thread().unpark();
        let stopped = watchdog.join().unwrap_or(None);
        let duration = start.elapsed();
        let output = capture.finish();
        let peak_memory_bytes = cgroup.as_ref().and_then(Cgroup::peak_memory);
        let out_of_memory = cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        let cpu_throttled = cgroup.as_ref().and_then(Cgroup::cpu_throttled);
        drop(cgroup);

        use std::os::unix::process::ExitStatusExt;
        let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        if exit_code == SETUP_FAILED && stopped.is_none() {
            let text = String::from_utf8_lossy(&output.head);
            if let Some(message) = text.lines().find_map(|l| l.strip_prefix("baton sandbox: ")) {
                let _ = std::fs::remove_file(&output_file);
                return Err(SandboxError::Setup(message.to_owned()));
            }
        }
        Ok(RunOutcome {
            exit_code,
            stopped,
            out_of_memory,
            output,
            output_file,
            duration,
            peak_memory_bytes,
            cpu_throttled,
        })
    }

    fn session(&self) -> Result<Box<dyn SandboxSession>, SandboxError> {
        Ok(Box::new(self.start_session()?))
    }
}
