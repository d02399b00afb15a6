//! `baton env`: a repository's declared environment, its snapshots, and the proof that it is
//! complete (`check`: built from nothing, then the checks).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use baton_core::OwnCredentials;
use baton_engine::{Caches, EngineError, Manifest, Provenance, Resolved, SetupFailure, Snapshots};
use baton_git::{Repo, Worktree};
use baton_store::Store;
use serde::Serialize;

use crate::cli::{EnvArgs, EnvCommand};
use crate::config::Config;
use crate::show;

/// The repository's checkout (read through git objects only) and the commit `args` name.
struct Target {
    worktree: Worktree,
    commit: String,
    given: Option<String>,
    /// The variables a declaration may not name, as the configuration has them.
    own: OwnCredentials,
}

fn target(args: &EnvArgs, config: &Config) -> anyhow::Result<Target> {
    let repo = Repo::open(&args.repo)?;
    let commit = repo.resolve_commit(&args.base)?;
    let worktree = Worktree::open(repo.root())?;
    let given = match &args.env {
        Some(file) => Some(std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?),
        None => None,
    };
    Ok(Target { worktree, commit, given, own: crate::run::own_credentials(config)? })
}

impl Target {
    fn resolve(&self) -> anyhow::Result<Resolved> {
        Ok(Resolved::read(&self.worktree, &self.commit, self.given.as_deref(), &self.own)?)
    }
}

pub async fn run(home: &Path, config: &Config, command: EnvCommand, json: bool) -> anyhow::Result<ExitCode> {
    let snapshots = Snapshots::new(home, crate::run::sandbox_config(home, config)?);
    match command {
        EnvCommand::Show(args) => {
            let target = target(&args, config)?;
            let resolved = target.resolve()?;
            let key = resolved.environment.has_snapshot().then(|| resolved.snapshot_key());
            let built = key.as_deref().and_then(|key| snapshots.find(key)).map(|snapshot| snapshot.manifest);
            let shown = Shown { hash: resolved.hash(), origin: resolved.origin(), key, built, resolved: &resolved };
            if json {
                show::json(&shown)?
            } else {
                print_shown(&shown)
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Build(args) => build(&snapshots, &target(&args, config)?, Build::Reuse, json),
        EnvCommand::Rebuild { args, clean } => {
            build(&snapshots, &target(&args, config)?, if clean { Build::Clean } else { Build::KeptCaches }, json)
        }
        EnvCommand::Check { args, checks } => {
            let target = target(&args, config)?;
            let resolved = target.resolve()?;
            let checks = match (checks.is_empty(), resolved.environment.commands.get("test")) {
                (false, _) => checks,
                (true, Some(test)) => vec![test.clone()],
                (true, None) => bail!(
                    "name the checks with --check CMD, or declare [environment.commands] test = \"…\" in baton.toml"
                ),
            };
            let scratch = home.join("environments").join(format!("c{}", std::process::id()));
            let sandbox = crate::run::sandbox_config(home, config)?;
            let report = baton_engine::check_environment(
                &sandbox,
                &scratch,
                &target.worktree,
                &target.commit,
                target.given.as_deref(),
                &target.own,
                &checks,
            );
            let _ = std::fs::remove_dir_all(&scratch);
            let report = report?;
            if json {
                show::json(&report)?;
            } else {
                println!(
                    "environment {} built from nothing, checks on a clean checkout of {}",
                    &report.hash[..12],
                    &target.commit[..12]
                );
                for step in &report.steps {
                    print_step(step);
                }
                match (&report.failure, report.passed) {
                    (Some(failure), _) => println!("not complete: {failure}"),
                    (None, true) => println!("complete: every step and check passed"),
                    (None, false) => println!("not complete: a check failed"),
                }
            }
            Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        EnvCommand::List => {
            let manifests = snapshots.list()?;
            if json {
                show::json(&manifests)?;
            } else if manifests.is_empty() {
                println!("no snapshots");
            } else {
                for manifest in &manifests {
                    println!(
                        "{}  {:>9}  built in {:>6.1} s  from {} {}",
                        &manifest.key[..12],
                        size(manifest.bytes),
                        manifest.build_ms as f64 / 1000.0,
                        manifest.repository.display(),
                        &manifest.commit[..manifest.commit.len().min(12)]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Gc { unused_for } => {
            // A snapshot an unfinished task's machines stand on is kept, however old.
            let store = crate::store::open(home).await?;
            let mut keep = BTreeSet::new();
            for summary in store.list(None).await?.into_iter().filter(|summary| !summary.status.is_terminal()) {
                keep.extend(store.load(&summary.id).await?.work.snapshot);
            }
            let removed = snapshots.collect(unused_for, &keep)?;
            if json {
                show::json(&removed)?;
            } else {
                let freed: u64 = removed.iter().map(|m| m.bytes).sum();
                println!("removed {} snapshots ({}); kept {} in use", removed.len(), size(freed), keep.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How `build` treats what exists already.
#[derive(Debug, Clone, Copy)]
enum Build {
    /// The snapshot built before, if there is one.
    Reuse,
    /// A new one, with the repository's kept caches.
    KeptCaches,
    /// A new one from nothing.
    Clean,
}

fn build(snapshots: &Snapshots, target: &Target, how: Build, json: bool) -> anyhow::Result<ExitCode> {
    let resolved = target.resolve()?;
    if !resolved.environment.has_snapshot() {
        bail!(
            "the environment declares no `initialize`, so there is no snapshot to build: its machines are the host's root"
        );
    }
    let git_dir = target.worktree.common_dir()?;
    let source = resolved.source(&target.worktree, &git_dir, &target.commit);
    let built = match how {
        Build::Reuse => snapshots.ensure(&source, Caches::Kept),
        Build::KeptCaches => snapshots.rebuild(&source, Caches::Kept).map(|s| (s, Provenance::Built)),
        Build::Clean => snapshots.rebuild(&source, Caches::Fresh).map(|s| (s, Provenance::Built)),
    };
    match built {
        Ok((snapshot, provenance)) => {
            if json {
                show::json(&snapshot.manifest)?;
            } else {
                let manifest = &snapshot.manifest;
                let how = match provenance {
                    Provenance::Reused => "reused (built before)".to_owned(),
                    Provenance::Built => format!("built in {:.1} s", manifest.build_ms as f64 / 1000.0),
                };
                println!("snapshot {} {how}, {}", &manifest.key[..12], size(manifest.bytes));
                for step in manifest.steps.iter().filter(|_| provenance == Provenance::Built) {
                    print_step(step);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::Setup(failure)) => {
            if json {
                show::json(&Failed { failure: failure.to_string(), steps: &failure.steps })?;
            } else {
                print!("{failure}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Serialize)]
struct Failed<'a> {
    failure: String,
    steps: &'a [baton_engine::SetupStep],
}

#[derive(Serialize)]
struct Shown<'a> {
    hash: String,
    origin: String,
    /// The snapshot's key, when `initialize` makes one.
    key: Option<String>,
    built: Option<Manifest>,
    #[serde(serialize_with = "environment")]
    resolved: &'a Resolved,
}

fn environment<S: serde::Serializer>(resolved: &&Resolved, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Declared<'a> {
        environment: &'a baton_core::Environment,
        inputs: &'a [baton_core::Input],
    }
    Declared { environment: &resolved.environment, inputs: &resolved.inputs }.serialize(serializer)
}

fn print_shown(shown: &Shown<'_>) {
    let environment = &shown.resolved.environment;
    println!("environment  {} (from {})", &shown.hash[..12], shown.origin);
    match (&shown.key, &shown.built) {
        (None, _) => println!("snapshot     none: no `initialize`, machines are the host's root"),
        (Some(key), None) => println!("snapshot     {} not built yet (`baton env build`)", &key[..12]),
        (Some(key), Some(built)) => {
            println!(
                "snapshot     {} built, {}, in {:.1} s",
                &key[..12],
                size(built.bytes),
                built.build_ms as f64 / 1000.0
            )
        }
    }
    let lists = [
        ("initialize", &environment.initialize),
        ("secrets", &environment.secrets),
        ("cache", &environment.cache),
        ("after_checkout", &environment.after_checkout),
    ];
    for (name, list) in lists {
        for item in list {
            println!("{name:<12} {item}");
        }
    }
    for input in &shown.resolved.inputs {
        let object = if input.object.is_empty() { "missing".to_owned() } else { input.object[..12].to_owned() };
        println!("{:<12} {} ({object})", "input", input.path);
    }
    for service in &environment.startup {
        let ready = service.ready.as_deref().map_or(String::new(), |r| format!(", ready when `{r}` passes"));
        println!("{:<12} {}{ready} (within {} s)", "startup", service.command, service.timeout_secs);
    }
    for (name, command) in &environment.commands {
        println!("{:<12} {name}: {command}", "command");
    }
}

fn print_step(step: &baton_engine::SetupStep) {
    let failure = SetupFailure { steps: vec![step.clone()], reason: None }.to_string();
    for line in failure.lines().skip(1) {
        println!("{line}");
    }
}

fn size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
