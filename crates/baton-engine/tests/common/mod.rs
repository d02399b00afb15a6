//! What the engine's tests share: fixtures, script helpers and a harness that runs a whole task
//! through the real path.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code; not every test file uses every helper

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::{
    ApprovalPolicy, Budget, CheckSpec, Event, Rates, TaskId, TaskSpec, TaskState, Timestamp, branch_name,
};
use baton_engine::{Engine, EngineConfig};
use baton_model::{Price, ProviderConfig, Providers};
use baton_sandbox::SandboxConfig;
use baton_store::{SqlStore, Store};
use baton_testkit::FixtureRepo;
use baton_testkit::long_horizon::{self, Facts};
use baton_testkit::model::{Expect, Reply, Script, ScriptedServer, ToolCall, Turn};

/// A small Python package whose test fails: `add` subtracts.
pub fn python_fixture() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        (
            "test_calc.py",
            "from calc import add\n\nassert add(2, 3) == 5, f\"add(2, 3) gave {add(2, 3)}\"\nprint(\"all tests passed\")\n",
        ),
        ("AGENTS.md", "Run `python3 test_calc.py` to test.\n"),
        // Byte-code caches are not work: kept out of the commits, they cannot differ by timing.
        (".gitignore", "__pycache__/\n"),
    ])
}

pub fn call(id: &str, name: &str, arguments: serde_json::Value) -> Reply {
    Reply {
        tool_calls: vec![ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }],
        ..Reply::default()
    }
}

/// How a run left the task: its status, and why it stopped.
pub fn stopped(state: &TaskState) -> (baton_core::Status, Option<baton_core::StopReason>) {
    (state.status(), state.stop.as_ref().map(|s| s.reason))
}

pub fn turn(expect_in_last_result: Option<&str>, reply: Reply) -> Turn {
    Turn {
        expect: Expect { last_tool_result_contains: expect_in_last_result.map(str::to_owned), ..Expect::default() },
        faults: vec![],
        reply,
    }
}

pub struct Harness {
    pub home: tempfile::TempDir,
    pub repo: FixtureRepo,
    pub store: Arc<SqlStore>,
    pub server: ScriptedServer,
    /// The context window the engine is told the model has.
    pub context_window: u64,
    /// The model's price; without one, calls are not charged.
    pub price: Option<Price>,
    pub rates: Rates,
    /// Whether a task at its credit limit asks a human instead of pausing.
    pub ask_on_budget_overrun: bool,
    /// The hosts tasks may reach; `None`: no network.
    pub network: Option<baton_sandbox::EgressPolicy>,
    /// The provider the task's model is reached through, and so the wire protocol:
    /// `openai-compatible` (Chat Completions), `openai` (Responses) or `anthropic` (Messages).
    pub provider: &'static str,
}

/// The variable the harness's configuration names for its provider's key (`api_key_env`).
pub const SCRIPTED_PROVIDER_KEY: &str = "SCRIPTED_PROVIDER_KEY";

impl Harness {
    pub async fn new(script: Script) -> Harness {
        Harness::with_repo(script, python_fixture()).await
    }

    pub async fn with_repo(script: Script, repo: FixtureRepo) -> Harness {
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store = Arc::new(SqlStore::open(home.path()).await.unwrap());
        let server = ScriptedServer::start(script).await.unwrap();
        Harness {
            home,
            repo,
            store,
            server,
            context_window: 128_000,
            price: None,
            rates: Rates::default(),
            ask_on_budget_overrun: false,
            network: None,
            provider: "openai-compatible",
        }
    }

    /// LONG-HORIZON on a model declared with a `window`-token context: the harness, the task, and
    /// the facts each request must carry.
    pub async fn long_horizon(window: u64) -> (Harness, TaskId, Facts) {
        let scenario = long_horizon::long_horizon(window);
        let mut h = Harness::with_repo(scenario.script, scenario.repo).await;
        h.context_window = window;
        let id = h
            .create_with(|spec| {
                spec.request = long_horizon::REQUEST.into();
                spec.checks =
                    vec![CheckSpec { name: "results".into(), command: long_horizon::CHECK.into(), timeout_secs: 60 }];
                spec.budget = Budget::default();
            })
            .await;
        (h, id, scenario.facts)
    }

    pub async fn create(&self) -> TaskId {
        self.create_with(|_| {}).await
    }

    /// A task on the fixture, its spec adjusted by `edit` (more checks, protected files, a window).
    pub async fn create_with(&self, edit: impl FnOnce(&mut TaskSpec)) -> TaskId {
        let mut spec = TaskSpec {
            checks: vec![CheckSpec { name: "tests".into(), command: "python3 test_calc.py".into(), timeout_secs: 60 }],
            budget: Budget { steps: Some(20), ..Budget::default() },
            review: false,
            ..TaskSpec::new("Make add() add", self.repo.path().canonicalize().unwrap())
        };
        edit(&mut spec);
        let id = TaskId::from_entropy(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
        let base_commit = self.repo.git(&["rev-parse", "HEAD"]);
        let branch = branch_name(&spec.request, &id);
        self.store
            .append(&id, 0, Timestamp(0), &[Event::TaskCreated { spec: Box::new(spec), base_commit, branch }])
            .await
            .unwrap();
        id
    }

    fn approval(&self) -> ApprovalPolicy {
        let mut policy = ApprovalPolicy::new(&[], &[]).unwrap();
        policy.ask_on_budget_overrun = self.ask_on_budget_overrun;
        policy
    }

    pub fn engine(&self) -> Engine {
        let at = |base: String| ProviderConfig { base_url: Some(base), api_key_env: None };
        let providers = Providers {
            openai: at(format!("{}/v1", self.server.url())),
            openai_compatible: at(format!("{}/v1", self.server.url())),
            anthropic: at(self.server.url()),
            ..Providers::default()
        };
        let model: baton_model::ModelName = format!("{}/scripted", self.provider).parse().unwrap();
        let key = |_: &str| Some("scripted-key".to_owned());
        let client = providers.client(&model, &key).unwrap();
        let init = SandboxConfig::locate_init().expect("baton-sandbox-init is not built: run the workspace's tests");
        let config = EngineConfig {
            home: self.home.path().to_owned(),
            model,
            price: self.price,
            rates: self.rates,
            approval: self.approval(),
            max_output_tokens: 4096,
            context_window: self.context_window,
            max_handoffs: 50,
            max_verifications: 2,
            sandbox: SandboxConfig { network: self.network.clone(), ..SandboxConfig::new(init, self.home.path()) },
            forges: Default::default(),
            // As a configuration whose provider's key is in a variable of its own choosing.
            own_credentials: baton_core::OwnCredentials::with([SCRIPTED_PROVIDER_KEY.to_owned()]),
        };
        Engine::new(self.store.clone(), Arc::new(client), config)
    }

    /// Runs the task and asserts that it ended verified, every scripted expectation met.
    pub async fn run_verified(&self, id: &TaskId) -> (TaskState, Vec<String>) {
        let (state, kinds) = self.run(id).await;
        assert_eq!(
            stopped(&state),
            (baton_core::Status::Done, Some(baton_core::StopReason::Verified)),
            "{:?} {kinds:?} {:?}",
            state.stop,
            self.server.failures()
        );
        assert!(self.server.failures().is_empty(), "{:?}", self.server.failures());
        (state, kinds)
    }

    pub async fn run(&self, id: &TaskId) -> (TaskState, Vec<String>) {
        let mut kinds = Vec::new();
        let state = self.engine().run(id, &mut |recorded| kinds.push(recorded.event.kind().to_owned())).await.unwrap();
        (state, kinds)
    }

    /// What `pick` takes from each of the task's events, in journal order.
    pub async fn events_matching<T>(&self, id: &TaskId, pick: impl FnMut(Event) -> Option<T>) -> Vec<T> {
        self.store.events(id, 0).await.unwrap().into_iter().map(|recorded| recorded.event).filter_map(pick).collect()
    }

    /// The task's worktree, with its disk mounted while the result lives.
    pub fn worktree(&self, id: &TaskId) -> AttachedWorktree {
        let layout = baton_engine::TaskLayout::of(self.home.path(), id);
        AttachedWorktree { _disk: layout.attach_disk(None).unwrap(), path: layout.worktree() }
    }
}

pub struct AttachedWorktree {
    path: PathBuf,
    _disk: Option<baton_sandbox::TaskDisk>,
}

impl AttachedWorktree {
    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }
}
