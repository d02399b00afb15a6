use std::path::PathBuf;

use baton_core::{CatchUp, Credits, ScheduleMode, Status};
use clap::{Args, Parser, Subcommand};

/// Run long coding tasks with LLM agents: planned, built in a sandbox on their own git branch,
/// verified by checks baton runs itself, and journaled so that nothing is lost.
#[derive(Debug, Parser)]
#[command(name = "baton", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print machine-readable JSON (JSON Lines for event streams) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// baton's data directory: journal, blobs, worktrees [default: $XDG_DATA_HOME/baton]
    #[arg(long, global = true, env = "BATON_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// The configuration file [default: $XDG_CONFIG_HOME/baton/config.toml]
    #[arg(long, global = true, env = "BATON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Read and steer tasks on a `baton serve` instead of this machine's data directory (task,
    /// budget, decide and finding commands), with the token in BATON_TOKEN.
    #[arg(long, global = true, env = "BATON_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Keep tasks, tokens, templates and the account in a PostgreSQL database shared by servers
    /// and workers on many machines, instead of the data directory's SQLite database (which still
    /// holds this machine's checkouts and sandboxes). Its schema must be this baton's: `baton migrate`.
    #[arg(long, global = true, env = "BATON_STORE", value_name = "postgres://…")]
    pub store: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task in the foreground: an agent works in a sandbox on the task's branch until the
    /// checks pass. The exit code says how it ended (see README).
    Run(Box<RunArgs>),
    /// Continue a paused or interrupted task where its journal ends; with --all, every task a crash
    /// or a kill left unfinished (queued, running, verifying or reviewing), one after another.
    Resume {
        /// The task's id, or a unique prefix of it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Resume every interrupted task instead of one.
        #[arg(long)]
        all: bool,
        /// provider/model to continue with [default: the one the task used]
        #[arg(long, env = "BATON_MODEL")]
        model: Option<String>,
        /// The model's context window in tokens [default: the task's]
        #[arg(long, value_name = "TOKENS", value_parser = window_parser())]
        context_window: Option<u64>,
        /// Most handoffs the task may make before it pauses [default: the task's]
        #[arg(long, value_name = "N")]
        max_handoffs: Option<u32>,
    },
    /// Answer the question a waiting task asks (or approve the command it waits on), then continue
    /// the task in the foreground.
    Decide {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// The answer, as the agent will read it.
        #[arg(long)]
        answer: String,
        /// Refuse: the command waiting for approval does not run, and the agent is told why.
        #[arg(long)]
        deny: bool,
        /// Record the answer without continuing the task now.
        #[arg(long)]
        no_resume: bool,
        /// provider/model to continue with [default: the one the task used]
        #[arg(long, env = "BATON_MODEL")]
        model: Option<String>,
    },
    /// Pick the attempt that becomes a best-of-N task's result (a task started with --pick human,
    /// once its attempts have ended), then continue the task in the foreground: the attempt is
    /// merged into its branch and checked there.
    Pick {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// The attempt, like attempt-2 (`baton task show` lists them).
        attempt: String,
        /// Record the pick without continuing the task now.
        #[arg(long)]
        no_resume: bool,
        /// provider/model to continue with [default: the one the task used]
        #[arg(long, env = "BATON_MODEL")]
        model: Option<String>,
    },
    /// Serve the HTTP API on this data directory and run queued tasks in the background, several at
    /// a time. Every request needs a token (`baton token create`). Prints its URL.
    Serve(Box<ServeArgs>),
    /// Run queued tasks from a shared PostgreSQL store, without serving the API: one of many
    /// workers on many machines (each with its own data directory for sandboxes and checkouts).
    Worker(Box<WorkerArgs>),
    /// Bring a PostgreSQL store's schema (--store) up to this baton's: every process refuses a
    /// schema it does not know exactly. Without --store, the data directory's own SQLite database
    /// (which is brought up to date whenever it is opened).
    Migrate,
    /// The API's bearer tokens: each has a scope (read, write or admin); its secret is shown once.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Task definitions saved under a name, to start tasks from.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Cron rules that start tasks from a template while `baton serve` runs, within limits.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Endpoints that forges (or any signer) call to start tasks and follow them up.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Webhooks baton sends when tasks wait, finish or pause, a schedule pauses itself, or the
    /// budget runs low.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Show the handoffs between a task's legs: each leg's narrative and the ledger baton added,
    /// with what changed since the handoff before.
    Handoffs {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
    /// Show what a task changed on its branch.
    Diff {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
    /// Open a task's draft pull request on its remote's forge, or bring it up to date (a task on a
    /// URL or created with --push, not running; a verified task gets one by itself).
    Pr {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
    /// Watch baton fix a sample repository, replaying a recorded model session: no model or key
    /// needed (as root, or as an ordinary user where the kernel allows user namespaces).
    #[cfg(feature = "demo")]
    Demo,
    /// Print a task's journal (the same as `baton task events`).
    Log {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
    /// Create, inspect and cancel tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// See the models baton knows and check that one answers.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Settle a review finding yourself: resolve it, or dismiss it as irrelevant.
    #[command(subcommand)]
    Finding(FindingCommand),
    /// The account's credits and spending rules, and a task's limits.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// A repository's declared environment (baton.toml) and the snapshots built from it.
    #[command(subcommand)]
    Env(EnvCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Beyond loopback only with tokens, and put TLS in front (a reverse proxy):
    /// the API speaks plain HTTP.
    #[arg(long, default_value = "127.0.0.1:8420")]
    pub addr: std::net::SocketAddr,
    #[command(flatten)]
    pub running: RunningArgs,
    /// provider/model for tasks created without one.
    #[arg(long, env = "BATON_MODEL")]
    pub model: Option<String>,
    /// Serve without tokens: anyone who can reach the address may run commands in its
    /// sandboxes, which on loopback is every user of this machine. Refused beyond loopback.
    #[arg(long)]
    pub no_auth: bool,
    /// Requests a token (or, with --no-auth, everyone) may make per second, with bursts of ten
    /// times as many; more get 429 and a Retry-After.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
}

/// How a process runs tasks: how many at once, how long its leases last.
#[derive(Debug, Args)]
pub struct RunningArgs {
    /// Tasks run at once [default: the machine's cores, no more than its memory holds at the
    /// sandbox's memory limit]; a server with 0 serves the API and runs none (workers do).
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Seconds a task stays this process's after its last lease renewal (renewed at a third of
    /// it): how long a crashed process's tasks wait before another takes them up (a restart on the
    /// same machine takes them at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Most tasks of one owner (the API token that created them) running at once, in every
    /// process; queued tasks of equal priority take turns between owners either way.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub per_owner: Option<u32>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub running: RunningArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret, once: only its hash is kept.
    Create {
        /// A name to list and revoke it by (never reused).
        #[arg(long)]
        name: String,
        /// read: look; write: also create, steer and cancel tasks; admin: also move money.
        #[arg(long)]
        scope: baton_core::Scope,
    },
    /// Every token: name, scope, when made and when revoked.
    List,
    /// Revoke a token: requests with it are refused from now on.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Save a task definition under a name: a request and the options of `baton run`.
    Create {
        /// What to call it (1 to 64 of A-Z, a-z, 0-9, '-', '_', '.').
        #[arg(long)]
        name: String,
        #[command(flatten)]
        task: Box<CreateArgs>,
    },
    /// Every template: name, request, repository.
    List,
    /// One template's whole definition.
    Show { name: String },
    /// Delete a template; tasks started from it stay.
    Delete { name: String },
    /// Start a task from a template, queued for `baton serve` (or `baton resume ID`); prints its id.
    Start { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Start tasks from a template on a cron rule; `baton serve` fires it.
    Create(Box<ScheduleArgs>),
    /// Every schedule: its rule, whether it is paused, when it fires next.
    List,
    /// One schedule: its definition, its next firings and its latest ones.
    Show { name: String },
    /// Stop a schedule firing until it is resumed.
    Pause {
        name: String,
        /// Why, for whoever reads it later.
        #[arg(long, default_value = "paused by hand")]
        reason: String,
    },
    /// Let a paused schedule fire again, from now on (what fell due meanwhile is not caught up).
    Resume { name: String },
    /// Delete a schedule and its firings; tasks it started stay.
    Delete { name: String },
    /// A schedule's firings, newest first: what each started, or why it was skipped.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Make a hook at POST /api/v1/hooks/NAME; prints the secret its sender signs with.
    Create {
        /// 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// github, gitlab, gitea, forgejo, or generic (baton's own HMAC with a timestamp).
        #[arg(long)]
        kind: baton_core::HookKind,
        /// The template a delivery starts: for a forge, on an issue labelled --label; for the
        /// generic kind, on every delivery (its text fields fill the request's {{field}}s).
        #[arg(long)]
        template: Option<String>,
        /// The issue label that starts a task.
        #[arg(long, default_value = "baton")]
        label: String,
        /// A comment on a pull request that starts with this follows up the task on its branch.
        #[arg(long, default_value = "@baton")]
        mention: String,
        /// Take the secret from this environment variable instead of making one (a GitLab
        /// token, say, that is already set on the forge).
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
    },
    /// Every hook: its kind and rules.
    List,
    /// Delete a hook; its deliveries stay in the log.
    Delete { name: String },
    /// The latest deliveries, to one hook or to all: what each came to.
    Deliveries {
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send notices to a URL (while `baton serve` runs), signed with a secret printed once.
    Add {
        /// 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// Where to POST them (http:// or https://).
        #[arg(long)]
        url: String,
        /// json (baton's) or slack (an incoming-webhook message).
        #[arg(long, default_value = "json")]
        format: baton_core::Format,
        /// Only these: waiting, finished, paused, schedule.paused, budget.low (repeat the flag)
        /// [default: all].
        #[arg(long = "event", value_name = "EVENT")]
        events: Vec<baton_core::NoticeKind>,
        /// Take the signing secret from this environment variable instead of making one.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
    },
    /// Every subscription: where it sends, which events, whether it is disabled.
    List,
    /// Stop sending to a subscription; its log stays.
    Remove { name: String },
    /// Send a signed test notification now and say what the receiver answered.
    Test { name: String },
    /// The latest notifications, to one subscription or all: delivered, pending or given up.
    Log {
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// What `schedule create` is given.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The template each run starts from.
    #[arg(long)]
    pub template: String,
    /// What to call the schedule [default: the template's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Five fields (minute hour day month weekday), or six with seconds first, e.g. "0 3 * * 1-5".
    #[arg(long)]
    pub cron: String,
    /// The IANA time zone the rule's hours and days are in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// fresh: each run a new task from the template's base; continue: each run continues the
    /// previous run's branch.
    #[arg(long, default_value = "fresh")]
    pub mode: ScheduleMode,
    /// After downtime: skip what fell due, or run it once.
    #[arg(long, default_value = "skip")]
    pub catch_up: CatchUp,
    /// At most this many runs start on one day (in --tz).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs_per_day: Option<u32>,
    /// Each run's credit budget (the template's own when that is lower).
    #[arg(long, value_name = "CREDITS")]
    pub run_budget: Option<Credits>,
    /// What all runs started in a month (in --tz) may spend together.
    #[arg(long, value_name = "CREDITS")]
    pub month_budget: Option<Credits>,
    /// Pause the schedule after this many failed runs in a row.
    #[arg(long, value_name = "K", default_value_t = baton_core::DEFAULT_MAX_FAILURES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: u32,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// What the repository declares, its hash, and whether its snapshot is built.
    Show(EnvArgs),
    /// Build the snapshot, or find the one built before (the repository's caches are kept).
    Build(EnvArgs),
    /// Build the snapshot again, replacing the one there was.
    Rebuild {
        #[command(flatten)]
        args: EnvArgs,
        /// From nothing: empty caches instead of the repository's kept ones.
        #[arg(long)]
        clean: bool,
    },
    /// Prove the environment complete: build it from nothing in a scratch place, then run the
    /// checks on a clean checkout of the commit there. Exits 1 when anything fails.
    Check {
        #[command(flatten)]
        args: EnvArgs,
        /// A check to run (repeatable) [default: the `test` command baton.toml names].
        #[arg(long = "check", value_name = "CMD")]
        checks: Vec<String>,
    },
    /// The snapshots built, newest first.
    List,
    /// Delete snapshots no unfinished task uses and nothing used for a while.
    Gc {
        /// How long a snapshot may go unused before it goes, like 7d or 12h.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        unused_for: std::time::Duration,
    },
}

/// Which environment an `env` command is about.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The git repository.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// The commit, branch or tag whose baton.toml and inputs count.
    #[arg(long, value_name = "REF", default_value = "HEAD")]
    pub base: String,
    /// An environment file to use instead of the repository's baton.toml.
    #[arg(long, value_name = "FILE")]
    pub env: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FindingCommand {
    /// Mark a finding resolved.
    Resolve(FindingArgs),
    /// Mark a finding irrelevant.
    Dismiss(FindingArgs),
}

#[derive(Debug, Args)]
pub struct FindingArgs {
    /// The task's id, or a unique prefix of it.
    pub task: String,
    /// The finding's id, like f1.
    pub finding: String,
    /// Why, for the journal and the agent.
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// The balance, what is held by actions in flight, this month's spend, and the rules.
    Show,
    /// Add credits to the account.
    Topup {
        /// How many credits, like 20 or 0.5.
        amount: Credits,
        /// Record it as a grant (credits given, not bought).
        #[arg(long)]
        grant: bool,
        /// A note for the ledger.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Set the monthly spend cap, a hard ceiling: work pauses before it would cross it.
    SetCap {
        /// Credits per calendar month (UTC), or `none`.
        cap: String,
    },
    /// Refill the balance to TARGET whenever it would fall below THRESHOLD, at most N times a month.
    AutoReload {
        #[arg(long, required_unless_present = "off")]
        threshold: Option<Credits>,
        #[arg(long, required_unless_present = "off")]
        target: Option<Credits>,
        #[arg(long, default_value_t = 3)]
        max_per_month: u32,
        /// Turn auto-reload off.
        #[arg(long, conflicts_with_all = ["threshold", "target"])]
        off: bool,
    },
    /// Whether work may go on once the balance is spent (billed afterwards): `on` or `off`.
    Overage { switch: Switch },
    /// The account's ledger, newest first: credits, reloads and every charge with its task.
    History {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Change a task's limits (raise them after a pause, then `baton resume ID`).
    Task {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Most credits the task may spend, or `none`.
        #[arg(long, value_name = "CREDITS")]
        credits: Option<String>,
        /// Longest wall-clock time, like 2h, or `none`.
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// Most agent steps, or `none`.
        #[arg(long, value_name = "N")]
        max_steps: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Models with their context window, output limit and price.
    List,
    /// Send one short request to a model and show the reply, tokens and cost.
    Check {
        /// provider/model: openai/<model> (Responses API), anthropic/<model>, or
        /// openai-compatible/<model> (Chat Completions, for Ollama, vLLM, llama.cpp and others).
        model: String,
        /// What to send.
        #[arg(long, default_value = "Reply with the single word: ready")]
        prompt: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task: pin its base commit, name its branch, and queue it.
    Create(Box<CreateArgs>),
    /// List tasks, newest first.
    List {
        /// Only tasks with this status (queued, running, waiting, paused, verifying, reviewing,
        /// done, failed, cancelled).
        #[arg(long)]
        status: Option<Status>,
    },
    /// Show one task, rebuilt from its journal.
    Show {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
    /// Print a task's journal.
    Events {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Keep printing new events until the task ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Send a task a follow-up: its agent reads it before its next model call (a paused task runs
    /// again with `baton resume`, or at once on a server).
    Message {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// What you add, as the agent will read it.
        text: String,
    },
    /// Cancel a task for good; its branch and commits are kept.
    Cancel {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Why, for the journal.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the task should achieve, in plain words.
    pub request: String,

    #[command(flatten)]
    pub task: TaskArgs,

    /// Queue the task and print its id instead of running it here: a `baton serve` on the same
    /// data directory runs it.
    #[arg(long)]
    pub detach: bool,
}

/// Handoffs a task may make before it pauses, unless `--max-handoffs` says otherwise.
pub const MAX_HANDOFFS: u32 = 50;

/// A context window: anything smaller could not hold baton's own prompt.
fn window_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(4096..)
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What the task should achieve, in plain words.
    #[arg(long, value_name = "TEXT")]
    pub request: String,

    #[command(flatten)]
    pub task: TaskArgs,
}

/// What `task create` and `run` share.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// provider/model: openai/<model>, anthropic/<model> or openai-compatible/<model>. The task
    /// keeps it, so `baton resume` continues with the same model.
    #[arg(long, env = "BATON_MODEL")]
    pub model: Option<String>,

    /// The git repository to work on: a directory (its checkout is never modified) or a remote's
    /// URL (https://, ssh://, file://), mirrored in the data directory, the task branch pushed to
    /// it at every checkpoint. Credentials come from BATON_GIT_TOKEN or the credential store.
    #[arg(long, value_name = "DIR|URL", default_value = ".")]
    pub repo: String,

    /// Push the task branch at every checkpoint to the local repository's remote (see
    /// --push-remote), as a task on a URL does.
    #[arg(long)]
    pub push: bool,

    /// The remote --push pushes to.
    #[arg(long, value_name = "NAME", default_value = "origin", requires = "push")]
    pub push_remote: String,

    /// An acceptance command the harness runs to verify the work (repeatable).
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,

    /// How long each check may run, like 90s or 10m.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub check_timeout: std::time::Duration,

    /// The commit, branch or tag to start from.
    #[arg(long, value_name = "REF", default_value = "HEAD")]
    pub base: String,

    /// A path, relative to the repository root, the task is meant to change (repeatable).
    #[arg(long = "scope", value_name = "PATH")]
    pub scope: Vec<String>,

    /// Files the agent may not change, like `tests/**`: restored before the checks run, and any
    /// change reported (repeatable).
    #[arg(long = "protect", value_name = "GLOB")]
    pub protect: Vec<String>,

    /// An environment file to use instead of the repository's baton.toml (the task keeps its text).
    #[arg(long, value_name = "FILE")]
    pub env: Option<PathBuf>,

    /// Most credits the task may spend, like 5 or 0.25.
    #[arg(long, value_name = "CREDITS")]
    pub budget: Option<Credits>,

    /// Longest wall-clock time the task may run, like 59m or 8h.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub window: Option<std::time::Duration>,

    /// Most agent steps the task may take.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,

    /// Among queued tasks a server runs, higher goes first (then the oldest).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,

    /// The model's context window in tokens [default: the model table's, or 32768 for a model
    /// baton does not know]. Legs hand off to a fresh context before their prompt outgrows it.
    #[arg(long, value_name = "TOKENS", value_parser = window_parser())]
    pub context_window: Option<u64>,

    /// Most handoffs the task may make before it pauses [default: 50]. The task keeps it.
    #[arg(long, value_name = "N")]
    pub max_handoffs: Option<u32>,

    /// Skip the review: a verified change is done without a reviewer reading it.
    #[arg(long)]
    pub no_review: bool,

    /// Start with a captain who plans the work as subtasks; they run as child tasks in order.
    #[arg(long)]
    pub plan: bool,

    /// Who asked for the task (an API token's name); not a flag.
    #[arg(skip)]
    pub owner: Option<String>,

    /// Best of N: try the request N times from the same base, each attempt a child task with an
    /// N-th of the limits; the best verified one (fewest open findings, then the smallest change,
    /// then the cheapest) becomes the task's result.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "plan")]
    pub attempts: u32,

    /// Who picks among the attempts: `rule` (baton, as above) or `human` (the task waits once
    /// every attempt has ended, until `baton pick ID ATTEMPT`).
    #[arg(long, value_name = "WHO", default_value = "rule")]
    pub pick: baton_core::Pick,

    /// With --plan: a human approves the plan (`baton decide`) before any subtask starts.
    #[arg(long, requires = "plan")]
    pub approve_plan: bool,

    /// provider/model for the captain [default: --model]
    #[arg(long, value_name = "P/M")]
    pub captain_model: Option<String>,

    /// provider/model for the reviewer [default: --model]
    #[arg(long, value_name = "P/M")]
    pub review_model: Option<String>,
}
