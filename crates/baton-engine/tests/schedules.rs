//! A schedule's claimed firing survives the server that claimed it: the next server creates that
//! same task, once, and neither it nor a later server fires it again. Real path: SQLite, the
//! schedule loop, a starter that journals tasks as the server's does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_core::{
    Budget, CatchUp, DEFAULT_MAX_FAILURES, Event, Firing, FiringOutcome, Pick, Schedule, ScheduleMode, TaskId,
    TaskState, Template, Timestamp, branch_name,
};
use baton_engine::{Schedules, Starter, Timing, add_schedule};
use baton_store::{Firings, SqlStore, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Journals each task as `baton serve` does, counting the calls.
struct Journaling {
    store: Arc<SqlStore>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Starter for Journaling {
    async fn start(&self, id: &TaskId, template: &Template, owner: Option<String>) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let spec = template.spec(owner);
        let branch = branch_name(&spec.request, id);
        let created = Event::TaskCreated { spec: Box::new(spec), base_commit: "0".repeat(40), branch };
        match self.store.append(id, 0, now(), &[created]).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn continue_from(&self, _: &TaskId, earlier: &TaskState, _: &Template) -> Result<(), String> {
        Err(format!("this schedule starts fresh tasks, not a continuation of {}", earlier.id))
    }
}

fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
}

async fn run_for(schedules: &Schedules, time: Duration) {
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(time).await;
        stopping.cancel();
    });
    schedules.run(stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_claimed_by_a_server_that_died_starts_its_task_once_after_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlStore::open(home.path()).await.unwrap());
    let template = Template {
        name: "nightly".into(),
        request: "Tidy up".into(),
        repo: std::path::PathBuf::from("/repo").into(),
        push: None,
        base: "HEAD".into(),
        checks: vec!["true".into()],
        check_timeout_secs: 60,
        scope: Vec::new(),
        protect: Vec::new(),
        budget: Budget::default(),
        model: Some("openai/gpt-4.1".into()),
        context_window: None,
        max_handoffs: None,
        review: false,
        plan: false,
        approve_plan: false,
        role_models: Default::default(),
        attempts: 1,
        pick: Pick::Rule,
        priority: 0,
        environment: None,
    };
    store.add_template(&template, now()).await.unwrap();
    // Made 70 s ago, due once a minute at the second it was 30 s ago: exactly one firing has
    // fallen due since, and the next is 30 s off.
    let made = Timestamp(now().0 - 70_000);
    let second = (made.0 + 40_000) / 1000 % 60;
    let schedule = Schedule {
        name: "nightly".into(),
        template: "nightly".into(),
        cron: format!("{second} * * * * *"),
        timezone: "UTC".into(),
        mode: ScheduleMode::Fresh,
        catch_up: CatchUp::Skip,
        runs_per_day: None,
        run_budget: None,
        month_budget: None,
        max_failures: DEFAULT_MAX_FAILURES,
        owner: None,
    };
    add_schedule(store.as_ref(), &schedule, made).await.unwrap();
    let claimed_at = now();
    let due = Timing::new(&schedule).unwrap().between(made, claimed_at, 10);
    assert_eq!(due.len(), 1, "{due:?}");

    // A server claimed the firing (on time) and died before its task existed.
    let id = TaskId::from_entropy(42);
    let claim = Firing {
        schedule: "nightly".into(),
        at: due[0],
        outcome: FiringOutcome::Claimed,
        task: Some(id.to_string()),
        detail: "starting".into(),
        recorded_at: claimed_at,
    };
    store.advance_schedule("nightly", made, claimed_at, &[claim]).await.unwrap();
    assert!(matches!(store.load(&id).await, Err(StoreError::NotFound(_))));
    // Another server cannot take the same firings: the cursor has moved.
    let again = store.advance_schedule("nightly", made, claimed_at, &[]).await;
    assert!(matches!(again, Err(StoreError::ScheduleChanged(_))), "{again:?}");

    let starter = Arc::new(Journaling { store: store.clone(), calls: AtomicUsize::new(0) });
    run_for(&Schedules::new(store.clone(), starter.clone(), Default::default()), Duration::from_millis(1500)).await;
    let task = store.load(&id).await.unwrap();
    assert_eq!(task.spec.request, "Tidy up");
    let firings = store.firings("nightly", Firings::All, Timestamp(0), 10).await.unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].outcome, FiringOutcome::Started);
    assert!(firings[0].detail.starts_with(&format!("started task {id}")), "{}", firings[0].detail);
    assert_eq!(starter.calls.load(Ordering::SeqCst), 1);

    // Yet another server: nothing more is started.
    run_for(&Schedules::new(store.clone(), starter.clone(), Default::default()), Duration::from_millis(1500)).await;
    assert_eq!(store.firings("nightly", Firings::All, Timestamp(0), 10).await.unwrap(), firings);
    assert_eq!(starter.calls.load(Ordering::SeqCst), 1);
    assert_eq!(store.list(None).await.unwrap().len(), 1);
}
