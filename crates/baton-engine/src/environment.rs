//! A task's environment: the declaration (`baton.toml` as a commit has it, or the file the user gave
//! with `--env`), its inputs' objects, its hash, and its snapshot made ready to mount.

use std::path::{Path, PathBuf};

use std::time::Duration;

use baton_core::{ENVIRONMENT_FILE, Environment, Event, Input, MAX_ENVIRONMENT_FILE, OwnCredentials, Phase};
use baton_git::Worktree;
use baton_sandbox::{RunRequest, Sandbox, SandboxConfig};

use crate::EngineError;
use crate::clean::CleanMachines;
use crate::services::WithServices;
use crate::snapshot::{Caches, Provenance, SetupStep, Snapshots, Source, run_step};

/// How long one `after_checkout` step may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where a declaration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Undeclared,
    /// The repository's `baton.toml`, this git object.
    File(String),
    /// The file the user gave with `--env`.
    Given,
}

/// A declaration as one commit has it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub environment: Environment,
    pub inputs: Vec<Input>,
    origin: Origin,
}

impl Resolved {
    /// The declaration at `commit`, unless `given` (a `--env` file's text) replaces it; with the
    /// objects of its inputs at `commit` (empty for one the commit lacks).
    pub fn read(
        worktree: &Worktree,
        commit: &str,
        given: Option<&str>,
        own: &OwnCredentials,
    ) -> Result<Resolved, EngineError> {
        let (environment, origin) = match given {
            Some(text) => (Environment::parse(text, own)?, Origin::Given),
            None => match worktree.file_at(commit, ENVIRONMENT_FILE, MAX_ENVIRONMENT_FILE)? {
                Some(file) => (Environment::parse(&file.text, own)?, Origin::File(file.object)),
                None => (Environment::default(), Origin::Undeclared),
            },
        };
        let mut inputs = Vec::new();
        for path in &environment.inputs {
            // Named by its object, never read: an input may be large.
            let object = worktree.object_at(commit, path)?.unwrap_or_default();
            inputs.push(Input { path: path.clone(), object });
        }
        Ok(Resolved { environment, inputs, origin })
    }

    pub fn hash(&self) -> String {
        self.environment.hash(&self.inputs)
    }

    pub fn snapshot_key(&self) -> String {
        self.environment.snapshot_key(&self.inputs)
    }

    pub fn source<'a>(&'a self, worktree: &'a Worktree, git_dir: &'a Path, commit: &'a str) -> Source<'a> {
        Source { environment: &self.environment, inputs: &self.inputs, worktree, git_dir, commit }
    }

    /// Where the declaration came from, for people.
    pub fn origin(&self) -> String {
        match &self.origin {
            Origin::Undeclared => format!("no {ENVIRONMENT_FILE}"),
            Origin::File(object) => format!("{ENVIRONMENT_FILE} {}", &object[..object.len().min(12)]),
            Origin::Given => "the file given with --env".into(),
        }
    }
}

/// An environment made ready for a task's machines.
#[derive(Debug, Clone)]
pub(crate) struct TaskEnvironment {
    pub declared: Environment,
    pub hash: String,
    /// The snapshot beneath every machine, when `initialize` made one.
    pub lower: Option<PathBuf>,
    /// What happened to make it ready, for the journal: the events to append.
    pub events: Vec<Event>,
}

impl TaskEnvironment {
    /// Finds or builds the snapshot of `resolved`. A setup that fails is
    /// [`EngineError::Setup`], with its report.
    pub(crate) fn prepare(
        snapshots: &Snapshots,
        resolved: &Resolved,
        source: Source<'_>,
        caches: Caches,
    ) -> Result<TaskEnvironment, EngineError> {
        let hash = resolved.hash();
        let short = &hash[..12];
        let (lower, mut events, detail, key) = if resolved.environment.has_snapshot() {
            let (snapshot, provenance) = snapshots.ensure(&source, caches)?;
            let key = &snapshot.manifest.key[..12];
            let detail = match provenance {
                Provenance::Reused => format!("snapshot {key} reused"),
                Provenance::Built => {
                    format!("snapshot {key} built in {:.1} s", snapshot.manifest.build_ms as f64 / 1000.0)
                }
            };
            let refused = match provenance {
                Provenance::Built => snapshot.manifest.steps.iter().flat_map(|step| step.refused.clone()).collect(),
                Provenance::Reused => Vec::new(),
            };
            let events = refused.into_iter().map(|(host, port)| Event::ConnectionRefused {
                host,
                port,
                phase: Phase::Initialize,
            });
            (Some(snapshot.layer), events.collect(), detail, Some(snapshot.manifest.key))
        } else {
            (None, Vec::new(), "no snapshot: the host's root".to_owned(), None)
        };
        let detail = format!("environment {short} from {}: {detail}", resolved.origin());
        events.push(Event::EnvironmentPrepared { hash: hash.clone(), snapshot: key, detail });
        Ok(TaskEnvironment { declared: resolved.environment.clone(), hash, lower, events })
    }

    pub(crate) fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

/// What `baton env check` found: the environment built from nothing, then the checks run on a
/// clean checkout over it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvironmentCheck {
    pub hash: String,
    /// Every command, in order: the build's, `after_checkout`, the checks.
    pub steps: Vec<SetupStep>,
    /// Why it stopped early, when it did.
    pub failure: Option<String>,
    pub passed: bool,
}

/// Builds the environment `commit` declares (or `given`) from nothing in `scratch`, with empty
/// caches, and runs `after_checkout` and `checks` on a clean checkout of `commit` over it: an
/// environment that relies on anything it does not declare fails here.
pub fn check_environment(
    config: &SandboxConfig,
    scratch: &Path,
    worktree: &Worktree,
    commit: &str,
    given: Option<&str>,
    own: &OwnCredentials,
    checks: &[String],
) -> Result<EnvironmentCheck, EngineError> {
    let resolved = Resolved::read(worktree, commit, given, own)?;
    let git_dir = worktree.common_dir()?;
    let mut report = EnvironmentCheck { hash: resolved.hash(), steps: Vec::new(), failure: None, passed: false };
    let lower = if resolved.environment.has_snapshot() {
        let snapshots = Snapshots::new(scratch, config.clone());
        match snapshots.rebuild(&resolved.source(worktree, &git_dir, commit), Caches::Fresh) {
            Ok(snapshot) => {
                report.steps.extend(snapshot.manifest.steps);
                Some(snapshot.layer)
            }
            Err(EngineError::Setup(failure)) => {
                report.steps = failure.steps;
                report.failure = Some(failure.reason.unwrap_or_else(|| "initialize failed".into()));
                return Ok(report);
            }
            Err(error) => return Err(error),
        }
    } else {
        None
    };
    let clean = CleanMachines::at(config.clone(), scratch.join("clean"), scratch.join("state"), git_dir);
    let machine = WithServices::new(clean.build(worktree, commit, lower)?, resolved.environment.startup.clone());
    let session = match machine.session() {
        Ok(session) => session,
        Err(error) => {
            report.failure = Some(error.to_string());
            return Ok(report);
        }
    };
    let after_checkout = resolved.environment.after_checkout.iter().map(|command| (Phase::AfterCheckout, command));
    for (phase, command) in after_checkout.chain(checks.iter().map(|command| (Phase::Check, command))) {
        let request = RunRequest::shell(command, SETUP_TIMEOUT);
        let step = run_step(&machine, |request| session.run(request), phase, command, request, &[])?;
        let failed = step.exit_code != 0;
        report.steps.push(step);
        if failed && phase == Phase::AfterCheckout {
            report.failure = Some(format!("after_checkout `{command}` failed"));
            return Ok(report);
        }
    }
    report.passed = report.steps.iter().all(|step| step.exit_code == 0);
    Ok(report)
}
