//! `baton run`, `baton resume`, `baton diff`: the agent at work, in the foreground.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use baton_core::{Credits, Event, LegRole, OwnCredentials, Recorded, Status, StopReason, TaskState, Usage, total};
use baton_engine::{Engine, EngineConfig, HeldLease, RoleModel};
use baton_model::{Catalog, HttpClient, ModelName, Price, Providers};
use baton_sandbox::SandboxConfig;
use baton_store::Store;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::{show, task};

/// The hidden first argument that makes the `baton` binary build a sandbox (see `baton-sandbox`).
pub const SANDBOX_INIT: &str = "__sandbox-init";

/// The process exit code for each way a task can stop; 1 and 2 stay for errors and usage.
pub fn exit_code(state: &TaskState) -> u8 {
    if state.status() == Status::Waiting {
        return 20;
    }
    match state.stop.as_ref().map(|s| s.reason) {
        Some(StopReason::Verified) => 0,
        Some(StopReason::ChecksFailed) => 10,
        Some(StopReason::BudgetExhausted) => 11,
        Some(StopReason::TimeWindowExhausted) => 12,
        Some(StopReason::Stuck) => 13,
        Some(StopReason::Cancelled) => 14,
        Some(StopReason::EnvironmentError) => 15,
        Some(StopReason::ModelError) => 16,
        Some(StopReason::HandoffLoop) => 17,
        Some(StopReason::SubtaskStopped) => 18,
        None => 1,
    }
}

const NO_MODEL: &str = "no model is configured: pass --model provider/model or set BATON_MODEL, for example \
     --model anthropic/claude-sonnet-4-5 (with ANTHROPIC_API_KEY), --model openai/gpt-5 (with OPENAI_API_KEY), or \
     --model openai-compatible/qwen3-coder (with OPENAI_COMPATIBLE_BASE_URL=http://localhost:11434/v1)";

/// Everything `drive` needs besides the task.
pub struct Parts {
    client: HttpClient,
    roles: Vec<(LegRole, RoleModel)>,
    engine: EngineConfig,
    /// The model's price, when the catalog knows it.
    pub price: Option<Price>,
}

/// How a run's legs work: a window that overrides the model table's, the handoff cap (baton's
/// default when `None`), and the models of roles that do not use the task's.
#[derive(Debug, Clone, Default)]
pub struct Legs {
    pub context_window: Option<u64>,
    pub max_handoffs: Option<u32>,
    pub role_models: std::collections::BTreeMap<LegRole, String>,
}

/// The model client and the engine's settings; checked before a task is created, so a missing key
/// leaves nothing behind.
pub fn engine_parts(home: &Path, config: &Config, model: &str, legs: Legs) -> anyhow::Result<Parts> {
    let providers = Providers::from_config(&config.text).with_context(|| config.context())?;
    engine_parts_with(home, config, &providers, model, legs)
}

/// The window of a model the catalog does not know: small enough for most local models.
const UNKNOWN_WINDOW: u64 = 32_768;

pub(crate) fn engine_parts_with(
    home: &Path,
    config: &Config,
    providers: &Providers,
    model: &str,
    legs: Legs,
) -> anyhow::Result<Parts> {
    let name: ModelName = model.parse()?;
    let client = providers.client(&name, &|var| std::env::var(var).ok())?;
    let catalog = Catalog::builtin()?.with_overrides(&config.text).with_context(|| config.context())?;
    let info = catalog.get(&name.to_string());
    let max_output_tokens = info.map_or(16_384, |info| info.max_output_tokens.min(32_768)) as u32;
    let context_window = legs.context_window.or(info.map(|info| info.context_window)).unwrap_or(UNKNOWN_WINDOW);
    let sandbox = sandbox_config(home, config)?;
    let price = info.and_then(|info| info.price);
    let forges = baton_forge::Forges::read(&config.text).with_context(|| config.context())?;
    let engine = EngineConfig {
        home: home.to_owned(),
        model: name,
        price,
        rates: catalog.rates(),
        approval: config.approval()?,
        max_output_tokens,
        context_window,
        max_handoffs: legs.max_handoffs.unwrap_or(crate::cli::MAX_HANDOFFS),
        max_verifications: 3,
        sandbox,
        own_credentials: own_credentials_of(providers, &forges),
        forges,
    };
    let mut roles = Vec::new();
    for (role, model) in &legs.role_models {
        let name: ModelName = model.parse()?;
        let client = providers.client(&name, &|var| std::env::var(var).ok())?;
        let price = catalog.get(&name.to_string()).and_then(|info| info.price);
        roles.push((*role, RoleModel { name, client: Arc::new(client), price }));
    }
    Ok(Parts { client, roles, engine, price })
}

/// baton's own credentials as `config` names them: the usual variables, and those it chose for
/// the providers' keys and the forges' tokens.
pub fn own_credentials(config: &Config) -> anyhow::Result<OwnCredentials> {
    let providers = Providers::from_config(&config.text).with_context(|| config.context())?;
    let forges = baton_forge::Forges::read(&config.text).with_context(|| config.context())?;
    Ok(own_credentials_of(&providers, &forges))
}

fn own_credentials_of(providers: &Providers, forges: &baton_forge::Forges) -> OwnCredentials {
    OwnCredentials::with(providers.key_variables().chain(forges.token_variables()).map(str::to_owned))
}

/// Sandboxes built by this very program, as the configuration file says.
pub fn sandbox_config(home: &Path, config: &Config) -> anyhow::Result<SandboxConfig> {
    let program = std::env::current_exe().context("cannot find the baton program for the sandbox")?;
    let mut sandbox = SandboxConfig::new(program, home);
    sandbox.init_args = vec![SANDBOX_INIT.to_owned()];
    config.sandbox(&mut sandbox)?;
    Ok(sandbox)
}

/// The engine `parts` describe, journaling into `store`.
pub fn engine(store: Arc<dyn Store>, parts: Parts) -> Engine {
    parts.roles.into_iter().fold(Engine::new(store, Arc::new(parts.client), parts.engine), |engine, (role, model)| {
        engine.with_role_model(role, model)
    })
}

/// How long a task stays a process's after its last renewal: a holder that died on another machine
/// (or in another pid namespace) gives its tasks up after this.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn drive(home: &Path, parts: Parts, state: TaskState, json: bool) -> anyhow::Result<ExitCode> {
    let store: Arc<dyn Store> = Arc::new(crate::store::open(home).await?);
    let price = parts.price;
    let engine = engine(store.clone(), parts);
    if json {
        // The stream's first line names the task, so a consumer knows what to resume or inspect.
        let task = serde_json::json!({"id": state.id, "branch": state.branch, "base_commit": state.base_commit});
        show::json(&serde_json::json!({ "task": task }))?;
    } else {
        println!("task {} on branch {}", state.id, state.branch);
    }
    // What this run's model calls used and cost, from the usage each answer reports.
    let mut used = Usage::default();
    let mut cost = Credits::ZERO;
    let mut observer = |recorded: &Recorded| {
        // Summarisation calls of handoffs use tokens like any other call.
        match &recorded.event {
            Event::ModelCallFinished { response, .. } => used += response.usage,
            Event::HandoffWritten { handoff } => used += handoff.usage.unwrap_or_default(),
            Event::Settled { charges, .. } => cost = Credits::from_micros(cost.micros() + total(charges).micros()),
            _ => {}
        }
        let _ = show::event(recorded, json);
        if !json && matches!(recorded.event, Event::Settled { .. }) {
            println!("{:>5}  {:<20}  {:<20}  {cost} credits so far", "", "", "");
        }
    };
    // The task is this process's while it runs: a server on the same data directory leaves it
    // alone, and a second `baton resume` is refused instead of running its tools twice.
    let Some(lease) = HeldLease::claim(store.clone(), &state.id, &baton_engine::holder_name(), LEASE_TTL).await? else {
        bail!(
            "task {} is being run by another baton process (it holds the task's lease); wait for it to stop",
            state.id
        );
    };
    let ran = engine.run_leased(&state.id, Some(lease.lease()), &mut observer).await;
    drop(lease);
    let end = match ran {
        Ok(end) => end,
        Err(error) => {
            // Cancelled while it ran (its next write was refused): the machine goes now that
            // nothing runs on it.
            let now = store.load(&state.id).await?;
            if now.status() != Status::Cancelled {
                return Err(error.into());
            }
            baton_engine::discard(home, &now)
                .with_context(|| format!("task {} is cancelled, but its machine could not be removed", now.id))?;
            now
        }
    };
    if !json {
        let stop = match (&end.stop, &end.question) {
            (Some(stop), _) => format!("{}: {}", stop.reason, stop.detail),
            (None, Some(question)) => {
                format!("{question}\nanswer with `baton decide {} --answer TEXT` (--deny to refuse)", end.id)
            }
            (None, None) => "running".to_owned(),
        };
        println!("{} — {stop}", end.status());
        let priced = if price.is_some() { format!("{cost} credits") } else { "price unknown".to_owned() };
        println!(
            "{} steps; tokens: {} in, {} from cache, {} written to cache, {} out; {priced}",
            end.work.steps, used.input, used.cache_read, used.cache_write, used.output
        );
        if let Some(commit) = &end.work.last_commit {
            println!("branch {} at {}; see it with `baton diff {}`", end.branch, &commit[..12], end.id);
        }
    }
    Ok(ExitCode::from(exit_code(&end)))
}

pub async fn run(home: &Path, config: &Config, args: RunArgs, json: bool) -> anyhow::Result<ExitCode> {
    let model = args.task.model.clone().context(NO_MODEL)?;
    let role_models = [(LegRole::Captain, &args.task.captain_model), (LegRole::Review, &args.task.review_model)]
        .into_iter()
        .filter_map(|(role, model)| model.clone().map(|m| (role, m)))
        .collect();
    let legs = Legs { context_window: args.task.context_window, max_handoffs: args.task.max_handoffs, role_models };
    let parts = engine_parts(home, config, &model, legs)?;
    if args.task.budget.is_some() && parts.price.is_none() {
        bail!(
            "{model} has no price, so a credit budget cannot be kept: give its price in the configuration file ([models.\"{model}\"] input, output, …)"
        );
    }
    if args.task.checks.is_empty() {
        bail!("give at least one --check: baton only calls a task done when its checks pass");
    }
    let state = task::create_task(home, args.request, args.task).await?;
    if args.detach {
        if json {
            let task = serde_json::json!({"id": state.id, "branch": state.branch, "base_commit": state.base_commit});
            show::json(&serde_json::json!({ "task": task }))?;
        } else {
            println!("{}", state.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    drive(home, parts, state, json).await
}

pub async fn resume(
    home: &Path,
    config: &Config,
    id: &str,
    model: Option<String>,
    legs: Legs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(home).await?;
    let state = store.load(&store.resolve(id).await?).await?;
    let model = model.or_else(|| state.spec.model.clone()).context(NO_MODEL)?;
    let legs = Legs {
        context_window: legs.context_window.or(state.spec.context_window),
        max_handoffs: legs.max_handoffs.or(state.spec.max_handoffs),
        role_models: state.spec.role_models.clone(),
    };
    let parts = engine_parts(home, config, &model, legs)?;
    drive(home, parts, state, json).await
}

/// Resumes every task a crash left unfinished; the exit code is the last task's.
pub async fn resume_all(
    home: &Path,
    config: &Config,
    model: Option<String>,
    legs: Legs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(home).await?;
    let mut code = ExitCode::SUCCESS;
    let mut failed = Vec::new();
    // Every status a crash or a kill can leave a task in; one task that cannot resume is reported
    // and the others still run.
    for status in [Status::Queued, Status::Running, Status::Verifying, Status::Reviewing] {
        for task in store.list(Some(status)).await? {
            match resume(home, config, task.id.as_str(), model.clone(), legs.clone(), json).await {
                Ok(ended) => code = ended,
                Err(error) => {
                    eprintln!("error: task {}: {error:#}", task.id);
                    failed.push(task.id.to_string());
                }
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of the interrupted tasks could not resume: {}", failed.len(), failed.join(", "));
    }
    Ok(code)
}

pub async fn diff(home: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(home).await?;
    let state = store.load(&store.resolve(id).await?).await?;
    writeln!(crate::show::terminal(), "{}", diff_text(home, &state, None)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The task's committed change against its base commit: its branch in the user's repository, never
/// its worktree (the agent's files), so a cancelled or finished task still shows its work.
pub fn diff_text(home: &Path, state: &TaskState, upto: Option<&str>) -> anyhow::Result<String> {
    let head = upto.map_or_else(|| head_of(state), str::to_owned);
    Ok(baton_engine::repository(home, &state.spec.repo)?.diff(&state.base_commit, &head)?)
}

/// Where the task's change ends: its branch's head, or, once another task continues the branch,
/// its own last commit.
fn head_of(state: &TaskState) -> String {
    match (&state.work.continued_by, &state.work.last_commit) {
        (Some(_), Some(last)) => last.clone(),
        (Some(_), None) => state.base_commit.clone(),
        (None, _) => format!("refs/heads/{}", state.branch),
    }
}

/// The files of the task's change with their lines added and removed, from `git diff --numstat`.
pub fn changed_files(home: &Path, state: &TaskState) -> anyhow::Result<Vec<baton_core::FileChange>> {
    let files = baton_engine::repository(home, &state.spec.repo)?.numstat(&state.base_commit, &head_of(state))?;
    Ok(files.into_iter().map(|f| baton_core::FileChange { path: f.path, added: f.added, removed: f.removed }).collect())
}
