//! Environments' snapshots: what `initialize` leaves in a machine's home, built once per key (see
//! [`Environment::snapshot_key`]) and mounted read-only beneath every task on that environment.
//!
//! In baton's data directory, `environments/`:
//! - `snapshots/<key>/`: `layer/` (the snapshot) and `manifest.json` (what built it, and how);
//! - `building/`: builds in progress, renamed into `snapshots/` when complete, so a snapshot that
//!   exists is whole;
//! - `caches/<repository>/<directory>/`: the declared cache directories, kept between builds of
//!   one repository's environments;
//! - `locks/<key>`: held while a key is built, so two tasks never build the same one twice;
//! - `retired/<key>.<ms>`: snapshots a rebuild replaced, which a running task may still stand on.
//!
//! A build's machine has no worktree: its `/workspace` holds only the declared `inputs`, checked
//! out of the commit, so the snapshot depends on nothing else of the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_core::{Environment, Input, Phase, Secret};
use baton_git::{Export, Worktree};
use baton_sandbox::{LocalSandbox, Mount, RunOutcome, RunRequest, Sandbox, SandboxConfig, SandboxError};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// How long one `initialize` command may take.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Output of a setup step kept in its report.
pub(crate) const STEP_OUTPUT: usize = 2048;
/// Where the inputs' checkout keeps its index, inside the build's machine.
const INDEX: &str = "/tmp/baton-inputs-index";

/// A snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub environment: Environment,
    pub inputs: Vec<Input>,
    /// The repository and commit it was built from.
    pub repository: PathBuf,
    pub commit: String,
    pub built_at_ms: u64,
    pub build_ms: u64,
    /// The snapshot's size on disk.
    pub bytes: u64,
    pub steps: Vec<SetupStep>,
}

/// One command of a machine's setup, as it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStep {
    pub phase: Phase,
    pub command: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// The end of its output, secrets redacted.
    pub output: String,
    /// Connections the egress policy refused it: host and port.
    pub refused: Vec<(String, u16)>,
}

/// A setup that did not complete: every step up to the one that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupFailure {
    pub steps: Vec<SetupStep>,
    /// Why, when it was not a command's exit (a secret that is not set, a sandbox that failed).
    pub reason: Option<String>,
}

impl std::fmt::Display for SetupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the environment's setup failed:")?;
        for step in &self.steps {
            let verdict = if step.exit_code == 0 { "ok".to_owned() } else { format!("exit code {}", step.exit_code) };
            writeln!(f, "- {} `{}`: {verdict} ({:.1} s)", step.phase, step.command, step.duration_ms as f64 / 1000.0)?;
            if !step.refused.is_empty() {
                let refused: Vec<String> = step.refused.iter().map(|(host, port)| format!("{host}:{port}")).collect();
                writeln!(f, "  refused by the network policy: {}", refused.join(", "))?;
            }
            if !step.output.trim().is_empty() {
                writeln!(f, "  output:\n{}", indent(step.output.trim_end()))?;
            }
        }
        if let Some(reason) = &self.reason {
            writeln!(f, "- {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SetupFailure {}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
}

pub(crate) fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A built snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub manifest: Manifest,
    /// What sandboxes mount beneath their layer (see `LocalSandbox::with_lower`).
    pub layer: PathBuf,
}

/// Whether [`Snapshots::ensure`] found the snapshot or built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Reused,
    Built,
}

/// Whether a build may use the repository's kept caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caches {
    Kept,
    /// From nothing: an empty cache of the build's own (a proof that nothing is missing).
    Fresh,
}

/// What a snapshot is built from: the declaration and its inputs as one commit has them.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub environment: &'a Environment,
    pub inputs: &'a [Input],
    pub worktree: &'a Worktree,
    /// The repository's git directory, read in the build's machine for the inputs' checkout.
    pub git_dir: &'a Path,
    pub commit: &'a str,
}

impl Source<'_> {
    pub fn key(&self) -> String {
        self.environment.snapshot_key(self.inputs)
    }
}

/// The snapshots of one data directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    config: SandboxConfig,
}

impl Snapshots {
    pub fn new(home: &Path, config: SandboxConfig) -> Snapshots {
        Snapshots { root: home.join("environments"), config }
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join("snapshots").join(key)
    }

    /// The snapshot of `key`, if one was built.
    pub fn find(&self, key: &str) -> Option<Snapshot> {
        let dir = self.dir(key);
        let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
        let manifest = serde_json::from_str(&text).ok()?;
        Some(Snapshot { manifest, layer: dir.join("layer") })
    }

    /// Every snapshot built, newest first.
    pub fn list(&self) -> Result<Vec<Manifest>, EngineError> {
        let mut manifests: Vec<Manifest> = match std::fs::read_dir(self.root.join("snapshots")) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|entry| self.find(&entry.file_name().to_string_lossy()))
                .map(|snapshot| snapshot.manifest)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.io(&self.root, e)),
        };
        manifests.sort_by_key(|manifest| std::cmp::Reverse(manifest.built_at_ms));
        Ok(manifests)
    }

    /// When the snapshot was last mounted for a task (its directory's time, touched at each use).
    pub fn last_used_ms(&self, key: &str) -> Option<u64> {
        let modified = std::fs::metadata(self.dir(key).join("used")).and_then(|m| m.modified()).ok()?;
        modified.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
    }

    fn touch(&self, key: &str) -> Result<(), EngineError> {
        let used = self.dir(key).join("used");
        std::fs::write(&used, now_ms().to_string()).map_err(|e| self.io(&used, e))
    }

    fn io(&self, path: &Path, source: std::io::Error) -> EngineError {
        EngineError::Environments(format!("{}: {source}", path.display()))
    }

    /// The snapshot of `source`: the one built before, or a new one. A build of the same key by
    /// another task is waited for, not repeated. A setup that fails is [`EngineError::Setup`].
    pub fn ensure(&self, source: &Source<'_>, caches: Caches) -> Result<(Snapshot, Provenance), EngineError> {
        let key = source.key();
        let _lock = self.lock(&key)?;
        if let Some(snapshot) = self.find(&key) {
            self.touch(&key)?;
            return Ok((snapshot, Provenance::Reused));
        }
        Ok((self.build_locked(source, caches)?, Provenance::Built))
    }

    /// Builds `source`'s snapshot again, replacing the one there was.
    pub fn rebuild(&self, source: &Source<'_>, caches: Caches) -> Result<Snapshot, EngineError> {
        let key = source.key();
        let _lock = self.lock(&key)?;
        self.build_locked(source, caches)
    }

    /// baton's files about a build's commands. Short: the proxy's socket is there, and a socket's
    /// path has at most 107 bytes.
    fn build_state(&self, building: &Path) -> PathBuf {
        self.root.join("s").join(building.file_name().unwrap_or_default())
    }

    fn lock(&self, key: &str) -> Result<std::fs::File, EngineError> {
        let locks = self.root.join("locks");
        std::fs::create_dir_all(&locks).map_err(|e| self.io(&locks, e))?;
        let path = locks.join(key);
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path);
        let file = file.map_err(|e| self.io(&path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| self.io(&path, e.into()))?;
        Ok(file)
    }

    fn build_locked(&self, source: &Source<'_>, caches: Caches) -> Result<Snapshot, EngineError> {
        let key = source.key();
        let building = self.root.join("building").join(format!("{}-{}", &key[..16], std::process::id()));
        let started = Instant::now();
        let steps = match self.run_initialize(source, &building, caches) {
            Ok(steps) => steps,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&building);
                let _ = std::fs::remove_dir_all(self.build_state(&building));
                return Err(error);
            }
        };
        for path in [building.join("workspace"), building.join("caches"), self.build_state(&building)] {
            match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(self.io(&path, e)),
                _ => {}
            }
        }
        let layer = building.join("layer");
        let manifest = Manifest {
            key: key.clone(),
            environment: source.environment.clone(),
            inputs: source.inputs.to_vec(),
            repository: source.worktree.path().to_owned(),
            commit: source.commit.to_owned(),
            built_at_ms: now_ms(),
            build_ms: started.elapsed().as_millis() as u64,
            bytes: disk_usage(&layer),
            steps,
        };
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| EngineError::Environments(e.to_string()))?;
        let manifest_file = building.join("manifest.json");
        std::fs::write(&manifest_file, text).map_err(|e| self.io(&manifest_file, e))?;
        let dir = self.dir(&key);
        // A running task may stand on the snapshot being replaced: it is retired, not deleted
        // under it, and collected once nothing unfinished uses its key.
        if dir.exists() {
            let retired = self.root.join("retired");
            std::fs::create_dir_all(&retired).map_err(|e| self.io(&retired, e))?;
            let to = retired.join(format!("{key}.{}", now_ms()));
            std::fs::rename(&dir, &to).map_err(|e| self.io(&to, e))?;
        }
        std::fs::create_dir_all(self.root.join("snapshots")).map_err(|e| self.io(&self.root, e))?;
        std::fs::rename(&building, &dir).map_err(|e| self.io(&dir, e))?;
        self.touch(&key)?;
        Ok(Snapshot { manifest, layer: dir.join("layer") })
    }

    /// Checks the inputs out and runs `initialize`, in a machine whose layer is `building/layer`.
    fn run_initialize(
        &self,
        source: &Source<'_>,
        building: &Path,
        caches: Caches,
    ) -> Result<Vec<SetupStep>, EngineError> {
        let _ = std::fs::remove_dir_all(building);
        let workspace = building.join("workspace");
        std::fs::create_dir_all(&workspace).map_err(|e| self.io(&workspace, e))?;
        // A repository's caches are its own: another's initialize never sees what this one left.
        let kept = match caches {
            Caches::Kept => self.root.join("caches").join(digest(&source.worktree.common_dir()?.to_string_lossy())),
            Caches::Fresh => building.join("caches"),
        };
        let mut mounts = Vec::new();
        for path in &source.environment.cache {
            let dir = kept.join(digest(path));
            std::fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
            mounts.push(Mount { source: dir, target: PathBuf::from(path) });
        }
        let state = self.build_state(building);
        let _ = std::fs::remove_dir_all(&state);
        let sandbox = LocalSandbox::new(self.config.clone(), &state, &workspace, vec![source.git_dir.to_owned()])?
            .with_layer(building.join("layer"))
            .with_mounts(mounts);
        let mut steps = Vec::new();
        let present: Vec<String> =
            source.inputs.iter().filter(|input| !input.object.is_empty()).map(|input| input.path.clone()).collect();
        if !present.is_empty() {
            let (argv, env) = source.worktree.export_command(
                source.git_dir,
                source.commit,
                Export::Only(&present),
                "/workspace",
                INDEX,
            );
            let request = RunRequest { argv, env, ..RunRequest::shell("", INITIALIZE_TIMEOUT) };
            let run = |request: &RunRequest| sandbox.run(request);
            let step = run_step(&sandbox, run, Phase::Initialize, "checking out the inputs", request, &[])?;
            let failed = step.exit_code != 0;
            steps.push(step);
            if failed {
                return Err(EngineError::Setup(SetupFailure { steps, reason: None }));
            }
        }
        let mut secrets = Vec::new();
        for name in &source.environment.secrets {
            match std::env::var(name) {
                Ok(value) => secrets.push(Secret { name: name.clone(), value }),
                Err(_) => {
                    let reason = format!("the secret {name} that initialize needs is not set in baton's environment");
                    return Err(EngineError::Setup(SetupFailure { steps, reason: Some(reason) }));
                }
            }
        }
        let env: Vec<(String, String)> = secrets.iter().map(|s| (s.name.clone(), s.value.clone())).collect();
        for command in &source.environment.initialize {
            let request = RunRequest { env: env.clone(), ..RunRequest::shell(command, INITIALIZE_TIMEOUT) };
            let run = |request: &RunRequest| sandbox.run(request);
            let step = run_step(&sandbox, run, Phase::Initialize, command, request, &secrets)?;
            let failed = step.exit_code != 0;
            steps.push(step);
            if failed {
                return Err(EngineError::Setup(SetupFailure { steps, reason: None }));
            }
        }
        Ok(steps)
    }

    /// Deletes snapshots nobody used for `unused_for` that no key in `keep` names, and returns them;
    /// and retired ones replaced that long ago whose key `keep` does not name.
    pub fn collect(&self, unused_for: Duration, keep: &BTreeSet<String>) -> Result<Vec<Manifest>, EngineError> {
        let now = now_ms();
        let mut removed = Vec::new();
        for manifest in self.list()? {
            let used = self.last_used_ms(&manifest.key).unwrap_or(manifest.built_at_ms);
            if keep.contains(&manifest.key) || now.saturating_sub(used) < unused_for.as_millis() as u64 {
                continue;
            }
            let _lock = self.lock(&manifest.key)?;
            let dir = self.dir(&manifest.key);
            std::fs::remove_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
            removed.push(manifest);
        }
        let retired = std::fs::read_dir(self.root.join("retired")).into_iter().flatten().filter_map(Result::ok);
        for entry in retired {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, at)) = name.split_once('.') else { continue };
            let at: u64 = at.parse().unwrap_or(0);
            if !keep.contains(key) && now.saturating_sub(at) >= unused_for.as_millis() as u64 {
                std::fs::remove_dir_all(entry.path()).map_err(|e| self.io(&entry.path(), e))?;
            }
        }
        Ok(removed)
    }
}

/// Runs one setup command to its end with `run` and reports it, with what the network policy
/// refused `machine` meanwhile; a step whose machine could not be built at all is an error of the
/// engine's.
pub(crate) fn run_step(
    machine: &dyn Sandbox,
    run: impl FnOnce(&RunRequest) -> Result<RunOutcome, SandboxError>,
    phase: Phase,
    command: &str,
    request: RunRequest,
    secrets: &[Secret],
) -> Result<SetupStep, EngineError> {
    let started = Instant::now();
    let outcome = run(&request)?;
    let _ = std::fs::remove_file(&outcome.output_file);
    let mut output = baton_core::redact(&tail(&outcome.output.text(), STEP_OUTPUT), secrets);
    if let Some(stopped) = outcome.stopped {
        output.push_str(&format!("\n[stopped: {stopped:?}]"));
    }
    let exit_code = if outcome.stopped.is_some() && outcome.exit_code == 0 { -1 } else { outcome.exit_code };
    let refused = machine.take_refused_connections().into_iter().map(|r| (r.host, r.port)).collect();
    Ok(SetupStep {
        phase,
        command: command.to_owned(),
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        output,
        refused,
    })
}

/// A short, path-safe name for `text`.
fn digest(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().take(12).map(|byte| format!("{byte:02x}")).collect()
}

/// Bytes of the files under `dir`, not following symlinks.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            }
        }
    }
    total
}
