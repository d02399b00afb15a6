//! Many tasks in the background, in as many processes on as many machines as share the store:
//! runnable tasks taken by [`Store::claim_next`] (interrupted ones first, then by priority, owners
//! in turn, oldest first), at most `slots` at a time here, each run on a thread of its own with a
//! runtime of its own, so the engine's blocking sandbox and git work never stalls the runtime that
//! serves requests. Each run holds the task's lease (see `lease.rs`): a task another process runs
//! is left alone, one whose holder died is taken over once its lease expires (at once when the
//! holder was a process of this machine). A task that waits for a human or pauses holds no slot: its run returns, and
//! whatever makes it runnable again wakes the scheduler. Nor does a task whose attempts run as tasks
//! of their own: its run returns with the task still running, and it is parked until one of its
//! children stops (or, should that be missed, for `PARKED` at most).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::{Recorded, Status, TaskId, TaskState};
use baton_store::{NextClaim, Store};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::lease::HeldLease;

/// Builds the engine a task runs with (its model, its price, the configured sandbox), or says why
/// it cannot.
pub type Engines = dyn Fn(&TaskState) -> Result<Engine, String> + Send + Sync;

/// Sees every event any scheduled task journals, as it is journaled.
pub type Observer = dyn Fn(&TaskId, &Recorded) + Send + Sync;

/// How often the store is looked at even without a wake: tasks queued by another process that
/// could not tell this one.
const POLL: Duration = Duration::from_secs(1);

/// How long a task whose run returned while it was still running is left alone, unless one of its
/// children stops first.
const PARKED: Duration = Duration::from_secs(30);

pub struct Scheduler {
    store: Arc<dyn Store>,
    /// The data directory: where a cancelled task's machine is taken down once its run ends.
    home: std::path::PathBuf,
    engines: Arc<Engines>,
    observer: Arc<Observer>,
    slots: Arc<Semaphore>,
    total: usize,
    /// This process, as a lease holder.
    holder: String,
    lease_ttl: Duration,
    wake: Arc<Notify>,
    /// Tasks with a run in progress here.
    running: Arc<Mutex<BTreeSet<TaskId>>>,
    /// Most tasks of one owner running at once, in every process.
    per_owner: Option<u32>,
    /// Tasks whose run could not start (no engine for them): not tried again until a restart.
    refused: Arc<Mutex<BTreeSet<TaskId>>>,
    /// Tasks waiting for their children, each since when.
    parked: Arc<Mutex<BTreeMap<TaskId, std::time::Instant>>>,
    /// Cancelled at shutdown: every run stops before its next step.
    stopping: CancellationToken,
    /// Runs started since this scheduler was made.
    started: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("free_slots", &self.slots.available_permits()).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// `lease_ttl`: how long a task stays this process's after its last renewal (renewed at a third
    /// of it), and so how long a crashed holder's tasks wait before another process takes them up.
    pub fn new(
        store: Arc<dyn Store>,
        home: &std::path::Path,
        slots: usize,
        lease_ttl: Duration,
        engines: Arc<Engines>,
        observer: Arc<Observer>,
    ) -> Scheduler {
        Scheduler {
            store,
            home: home.to_owned(),
            engines,
            observer,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            total: slots.max(1),
            holder: crate::lease::holder_name(),
            lease_ttl,
            wake: Arc::new(Notify::new()),
            running: Arc::default(),
            per_owner: None,
            refused: Arc::default(),
            parked: Arc::default(),
            stopping: CancellationToken::new(),
            started: Default::default(),
        }
    }

    /// Runs at most `limit` tasks of one owner at once, counting every process's (tasks a stopped
    /// process left running are taken up first, whoever owns them, and count from then on).
    pub fn per_owner(mut self, limit: u32) -> Scheduler {
        self.per_owner = Some(limit.max(1));
        self
    }

    /// Wakes the scheduler: a task was queued or became runnable.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// How many tasks may run here at once.
    pub fn slots(&self) -> usize {
        self.total
    }

    /// Runs started here, each on a machine and sandbox of its own.
    pub fn runs_started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tasks running here now.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes up runnable tasks until `shutdown`: queued ones, and running ones whose holder's lease
    /// has expired (a crashed process's). Then each run stops before its next step (a step in
    /// progress ends first), commits its work in progress and releases its lease, and this returns
    /// once every run has; a restart takes each task up where it stopped.
    pub async fn run(&self, shutdown: CancellationToken) {
        self.store.watch_runnable(self.wake.clone()).await;
        loop {
            self.take_up_dead_holders_tasks(&shutdown).await;
            while !shutdown.is_cancelled() {
                let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
                let skip = self.not_now();
                let next = NextClaim {
                    holder: &self.holder,
                    at: crate::journal::now(),
                    ttl_ms: self.lease_ttl.as_millis() as i64,
                    per_owner: self.per_owner,
                    skip: &skip,
                };
                match HeldLease::claim_next(self.store.clone(), &next, self.lease_ttl).await {
                    Ok(Some(lease)) => self.start(lease.lease().task.clone(), lease, permit),
                    Ok(None) => break,
                    Err(error) => {
                        eprintln!("scheduler: cannot claim a task: {error}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.stopping.cancel();
        loop {
            let left = self.running();
            if left == 0 {
                return;
            }
            eprintln!("baton: stopping; {left} running task(s) finish their step first");
            // Each run wakes the scheduler as it ends.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Tasks whose holder was a process of this machine that is gone (killed), taken over before
    /// their leases expire: a restart goes on at once.
    async fn take_up_dead_holders_tasks(&self, shutdown: &CancellationToken) {
        let live = match self.store.live_leases(crate::journal::now()).await {
            Ok(live) => live,
            Err(error) => return eprintln!("scheduler: cannot read the leases: {error}"),
        };
        for stale in live.into_iter().filter(|lease| crate::lease::is_dead(&lease.holder)) {
            if shutdown.is_cancelled() {
                return;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { return };
            match HeldLease::take_over(self.store.clone(), &stale, &self.holder, self.lease_ttl).await {
                Ok(Some(lease)) => self.start(stale.task, lease, permit),
                Ok(None) => {}
                Err(error) => eprintln!("scheduler: task {}: cannot take its lease over: {error}", stale.task),
            }
        }
    }

    /// Tasks not to claim now: running here, refused here, or waiting for their children.
    fn not_now(&self) -> Vec<TaskId> {
        let mut skip: BTreeSet<TaskId> = self.running.lock().unwrap_or_else(|e| e.into_inner()).clone();
        skip.extend(self.refused.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        parked.retain(|_, since| since.elapsed() < PARKED);
        skip.extend(parked.keys().cloned());
        skip.into_iter().collect()
    }

    fn start(&self, id: TaskId, lease: HeldLease, permit: tokio::sync::OwnedSemaphorePermit) {
        self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        let (store, engines, observer) = (self.store.clone(), self.engines.clone(), self.observer.clone());
        let home = self.home.clone();
        let (running, refused, wake) = (self.running.clone(), self.refused.clone(), self.wake.clone());
        let parked = self.parked.clone();
        let stopping = self.stopping.clone();
        std::thread::spawn(move || {
            // The run blocks this thread in its sandbox and git work; the tasks it spawns run on
            // the background runtime's workers meanwhile (see `background.rs`).
            let runtime = crate::background::handle();
            let outcome = match &runtime {
                Ok(runtime) => runtime.block_on(async {
                    let state = store.load(&id).await.map_err(|error| error.to_string())?;
                    let engine = engines(&state)
                        .inspect_err(|_| {
                            refused.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
                        })?
                        .stopping_on(stopping.clone());
                    let mut observe = |recorded: &Recorded| observer(&id, recorded);
                    let ran = engine.run_leased(&id, Some(lease.lease()), &mut observe).await;
                    ran.map(|_| ()).map_err(|error| error.to_string())
                }),
                Err(error) => Err(error.clone()),
            };
            // Cancelled while it ran (its next write was refused): its machine goes now that
            // nothing runs on it.
            let state = runtime.ok().and_then(|runtime| runtime.block_on(store.load(&id)).ok());
            if let Some(state) = &state {
                let mut parked = parked.lock().unwrap_or_else(|e| e.into_inner());
                // Returned with nothing left to do while it runs: its children run on their own.
                if outcome.is_ok() && state.status().is_active() && !stopping.is_cancelled() {
                    parked.insert(id.clone(), std::time::Instant::now());
                }
                // A child that stopped wakes its parent, which journals how it ended.
                if let Some(parent) = state.spec.parent.as_deref().and_then(|parent| TaskId::parse(parent).ok())
                    && !state.status().is_active()
                {
                    parked.remove(&parent);
                }
            }
            match (outcome, state.filter(|state| state.status() == Status::Cancelled)) {
                (_, Some(state)) => {
                    if let Err(error) = crate::discard(&home, &state) {
                        eprintln!("scheduler: task {id} is cancelled, but {error}");
                    }
                }
                (Err(error), None) => eprintln!("scheduler: task {id}: {error}"),
                (Ok(()), None) => {}
            }
            // Released before the slot: the task is free for whoever takes it next.
            drop(lease);
            running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            drop(permit);
            wake.notify_one();
        });
    }
}
