//! Holding a task's lease while running it: claimed before the run, renewed at a third of its time
//! to live from a thread of its own (a run's blocking sandbox or git work never delays a renewal),
//! released when the run ends. Whoever holds it is the only writer: appends are fenced by it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_core::TaskId;
use baton_store::{Lease, NextClaim, Store, StoreError};
use tokio::sync::Notify;

use crate::journal::now;

/// This process's name as a lease holder: its host, pid and start time, unique across restarts.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{host}:{}:{started}", std::process::id())
}

/// Whether `holder` (see [`holder_name`]) is a process of this machine that is no longer running.
/// A holder elsewhere is never judged: its lease has to expire.
pub(crate) fn is_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return false };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    host == here && pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// A lease kept renewed until dropped, then released.
pub struct HeldLease {
    lease: Lease,
    stop: Arc<Notify>,
    keeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLease").field("lease", &self.lease).finish_non_exhaustive()
    }
}

impl HeldLease {
    /// Claims `task` for `holder` for `ttl`; `None` while another holder has it.
    pub async fn claim(
        store: Arc<dyn Store>,
        task: &TaskId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, StoreError> {
        let ttl_ms = ttl.as_millis() as i64;
        let lease = match store.claim(task, holder, now(), ttl_ms).await? {
            Some(lease) => lease,
            // A holder on this machine that is no longer running (killed) gives way at once.
            None => match store.lease(task).await?.filter(|current| is_dead(&current.holder)) {
                Some(stale) => match store.take_over(&stale, holder, now(), ttl_ms).await? {
                    Some(lease) => lease,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
        };
        Ok(Some(HeldLease::kept(store, lease, ttl)))
    }

    /// Claims the next task to run (see [`Store::claim_next`]) for `next.holder`.
    pub async fn claim_next(
        store: Arc<dyn Store>,
        next: &NextClaim<'_>,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, StoreError> {
        let lease = store.claim_next(next).await?;
        Ok(lease.map(|lease| HeldLease::kept(store, lease, ttl)))
    }

    /// Takes over `stale`, the lease of a holder known to be dead, before it expires.
    pub async fn take_over(
        store: Arc<dyn Store>,
        stale: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, StoreError> {
        let lease = store.take_over(stale, holder, now(), ttl.as_millis() as i64).await?;
        Ok(lease.map(|lease| HeldLease::kept(store, lease, ttl)))
    }

    /// Keeps `lease` renewed from a thread of its own until dropped.
    fn kept(store: Arc<dyn Store>, lease: Lease, ttl: Duration) -> HeldLease {
        let stop = Arc::new(Notify::new());
        let (kept, signal) = (lease.clone(), stop.clone());
        let keeper = std::thread::spawn(move || keep(store, kept, ttl, &signal));
        HeldLease { lease, stop, keeper: Some(keeper) }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

/// Renews `lease` every third of `ttl` until told to stop, then releases it. A renewal that finds
/// the lease gone ends the keeping: the run's next append is refused by the fence. The waiting is
/// done inside the background runtime (see `background.rs`), never beside it: the store's pool
/// hands a used connection back by a task spawned on that runtime, which must keep running.
fn keep(store: Arc<dyn Store>, mut lease: Lease, ttl: Duration, stop: &Notify) {
    let runtime = match crate::background::handle() {
        Ok(runtime) => runtime,
        Err(error) => return eprintln!("lease of task {}: cannot keep it: {error}", lease.task),
    };
    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = stop.notified() => {
                    let _ = store.release(&lease).await;
                    return;
                }
                _ = tokio::time::sleep(ttl / 3) => {}
            }
            match store.renew(&lease, now(), ttl.as_millis() as i64).await {
                Ok(Some(renewed)) => lease = renewed,
                Ok(None) => return,
                // A store that cannot be reached now may be reachable at the next beat.
                Err(error) => eprintln!("lease of task {}: cannot renew: {error}", lease.task),
            }
        }
    });
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // A permit is kept if the keeper is not waiting yet: it stops at its next wait.
        self.stop.notify_one();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}
