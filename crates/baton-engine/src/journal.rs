//! Appending to a task's journal while keeping its folded state in step.

use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::{Event, Recorded, TaskId, TaskState, Timestamp};
use baton_store::{Lease, Store, StoreError};
use baton_tools::SharedSecrets;

use crate::{Admission, EngineError};

/// The journal of one task, as the engine writes it. `append` makes an event durable before it
/// returns, with any deferred events before it; `defer` is for an event whose durability can wait
/// for the next `append` (a result, never an intent), which saves a synced commit per event. The
/// observer sees each event once it is durable. Every event is redacted of the task's secrets first,
/// whatever carries them (a tool's output, a check's, a diff, a handoff).
pub(crate) struct Journal<'a> {
    store: &'a dyn Store,
    state: TaskState,
    secrets: SharedSecrets,
    /// Applied to `state`, not yet written.
    deferred: Vec<Recorded>,
    observer: &'a mut (dyn FnMut(&Recorded) + Send),
    /// Every append is made under it, when the run holds one: a run that lost it writes nothing.
    lease: Option<&'a Lease>,
}

pub(crate) fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

impl<'a> Journal<'a> {
    pub(crate) async fn open(
        store: &'a dyn Store,
        task: &TaskId,
        lease: Option<&'a Lease>,
        observer: &'a mut (dyn FnMut(&Recorded) + Send),
    ) -> Result<Journal<'a>, EngineError> {
        let state = store.load(task).await?;
        Ok(Journal { store, state, secrets: SharedSecrets::default(), observer, deferred: Vec::new(), lease })
    }

    /// Writes `events` at `seq`, under the run's lease if it has one.
    async fn write(&self, seq: u64, at: Timestamp, events: &[Event]) -> Result<u64, StoreError> {
        match self.lease {
            Some(lease) => self.store.append_leased(lease, seq, at, events).await,
            None => self.store.append(&self.state.id, seq, at, events).await,
        }
    }

    /// Keeps `secrets` (as they are granted) out of every event from now on.
    pub(crate) fn redact(&mut self, secrets: SharedSecrets) {
        self.secrets = secrets;
    }

    /// `event` with every form of every secret replaced by its name. Through the event's JSON, so
    /// that no field is missed; a secret's JSON-escaped form is one of the forms looked for.
    fn redacted(&self, event: Event) -> Result<Event, EngineError> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        if secrets.is_empty() {
            return Ok(event);
        }
        let json = serde_json::to_string(&event).map_err(|e| EngineError::Redaction(e.to_string()))?;
        let clean = baton_core::redact(&json, &secrets);
        if clean == json {
            return Ok(event);
        }
        serde_json::from_str(&clean).map_err(|e| EngineError::Redaction(e.to_string()))
    }

    /// The observer, for a child task whose events the same watcher should see.
    pub(crate) fn observer(&mut self) -> &mut (dyn FnMut(&Recorded) + Send) {
        &mut *self.observer
    }

    pub(crate) fn state(&self) -> &TaskState {
        &self.state
    }

    pub(crate) fn into_state(self) -> TaskState {
        self.state
    }

    fn apply(&mut self, event: Event) -> Result<(), EngineError> {
        let event = self.redacted(event)?;
        let recorded = Recorded { seq: self.state.next_seq, at: now(), event };
        self.state.apply(&recorded).map_err(|source| EngineError::Journal { task: self.state.id.clone(), source })?;
        self.deferred.push(recorded);
        Ok(())
    }

    /// Journals `events` like `append`, unless the account refuses a reservation among them: then
    /// none of them is written (the deferred events before them are) and the refusal is returned.
    /// The events are written before they are applied, so a refusal leaves the state as it was.
    pub(crate) async fn try_append(&mut self, events: Vec<Event>) -> Result<Admission, EngineError> {
        let events = events.into_iter().map(|event| self.redacted(event)).collect::<Result<Vec<_>, _>>()?;
        let seq = self.deferred.first().map_or(self.state.next_seq, |first| first.seq);
        let mut written: Vec<Event> = self.deferred.iter().map(|r| r.event.clone()).collect();
        written.extend(events.iter().cloned());
        let at = now();
        match self.write(seq, at, &written).await {
            Ok(_) => {}
            Err(StoreError::Refused { refusal, .. }) => {
                self.flush().await?;
                return Ok(Admission::Refused(refusal));
            }
            Err(error) => return Err(error.into()),
        }
        for mut recorded in self.deferred.drain(..) {
            recorded.at = at;
            (self.observer)(&recorded);
        }
        for event in events {
            let recorded = Recorded { seq: self.state.next_seq, at, event };
            self.state
                .apply(&recorded)
                .map_err(|source| EngineError::Journal { task: self.state.id.clone(), source })?;
            (self.observer)(&recorded);
        }
        Ok(Admission::Admitted)
    }

    /// Journals `event`, and every deferred event before it, durably before returning.
    pub(crate) async fn append(&mut self, event: Event) -> Result<(), EngineError> {
        self.apply(event)?;
        self.flush().await
    }

    /// Applies `event` now and writes it with the next `append`. A crash before then loses it: use
    /// it only for an event whose loss resume handles (an answer is asked again, a finished call is
    /// reported as interrupted).
    pub(crate) fn defer(&mut self, event: Event) -> Result<(), EngineError> {
        self.apply(event)
    }

    /// Writes the deferred events.
    pub(crate) async fn flush(&mut self) -> Result<(), EngineError> {
        let Some(first) = self.deferred.first() else { return Ok(()) };
        let seq = first.seq;
        let at = now();
        let events: Vec<Event> = self.deferred.iter().map(|r| r.event.clone()).collect();
        self.write(seq, at, &events).await?;
        // Observers see only what is durable, as it is stored: an event's time is the time of the
        // write that made it durable, so the live stream and the journal agree.
        for mut recorded in self.deferred.drain(..) {
            recorded.at = at;
            (self.observer)(&recorded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use std::time::Duration;

    use baton_core::TaskSpec;
    use baton_store::SqlStore;

    use super::*;

    /// Events deferred at different moments and written in one batch: the observer is told each
    /// with the time the store keeps for it.
    #[tokio::test]
    async fn the_observer_sees_every_event_at_the_time_it_is_stored() {
        let home = tempfile::tempdir().unwrap();
        let store = SqlStore::open(home.path()).await.unwrap();
        let id = TaskId::from_entropy(7);
        let created = Event::TaskCreated {
            spec: Box::new(TaskSpec::new("time", std::path::PathBuf::from("/repo"))),
            base_commit: "0".repeat(40),
            branch: "baton/time".into(),
        };
        store.append(&id, 0, Timestamp(0), &[created]).await.unwrap();
        let mut seen = Vec::new();
        let mut observer = |recorded: &Recorded| seen.push((recorded.seq, recorded.at));
        let mut journal = Journal::open(&store, &id, None, &mut observer).await.unwrap();
        journal.append(Event::Started).await.unwrap();
        for text in ["one", "two"] {
            journal.defer(Event::Feedback { text: text.into() }).unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        journal.append(Event::Feedback { text: "three".into() }).await.unwrap();
        journal.defer(Event::Feedback { text: "four".into() }).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
        let admitted = journal.try_append(vec![Event::Feedback { text: "five".into() }]).await.unwrap();
        assert!(matches!(admitted, Admission::Admitted));
        drop(journal);
        let stored: Vec<(u64, Timestamp)> =
            store.events(&id, 1).await.unwrap().into_iter().map(|r| (r.seq, r.at)).collect();
        assert_eq!(seen, stored);
        assert_eq!(seen.len(), 6);
    }
}
