//! Appending to a task's journal while keeping its folded state in step.

use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::{Event, Recorded, TaskId, TaskState, Timestamp};
use baton_store::Store;

use crate::EngineError;

pub(crate) struct Journal<'a> {
    store: &'a dyn Store,
    state: TaskState,
    observer: &'a mut (dyn FnMut(&Recorded) + Send),
}

pub(crate) fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

impl<'a> Journal<'a> {
    pub(crate) async fn open(
        store: &'a dyn Store,
        task: &TaskId,
        observer: &'a mut (dyn FnMut(&Recorded) + Send),
    ) -> Result<Journal<'a>, EngineError> {
        let state = store.load(task).await?;
        Ok(Journal { store, state, observer })
    }

    pub(crate) fn state(&self) -> &TaskState {
        &self.state
    }

    pub(crate) fn into_state(self) -> TaskState {
        self.state
    }

    /// Journals `event` at the next seq, then applies it: the state never runs ahead of the journal.
    pub(crate) async fn append(&mut self, event: Event) -> Result<(), EngineError> {
        let recorded = Recorded { seq: self.state.next_seq, at: now(), event };
        self.store.append(&self.state.id, recorded.seq, recorded.at, std::slice::from_ref(&recorded.event)).await?;
        self.state.apply(&recorded).map_err(|source| EngineError::Journal { task: self.state.id.clone(), source })?;
        (self.observer)(&recorded);
        Ok(())
    }
}
