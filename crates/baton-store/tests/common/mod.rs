//! Helpers shared by the store's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
#![allow(dead_code)] // each test binary uses its own part of these helpers

use baton_core::{Event, Status, StopReason, TaskId, TaskSpec, Timestamp};

pub fn created(request: &str) -> Event {
    Event::TaskCreated {
        spec: Box::new(TaskSpec::new(request, std::path::PathBuf::from("/repo"))),
        base_commit: "0".repeat(40),
        branch: "baton/test-00000000".into(),
    }
}

/// An event the state machine accepts from `status`, marked with `detail` where the event has one.
pub fn next_valid_event(status: Status, detail: String) -> Event {
    match status {
        Status::Queued => Event::Started,
        Status::Running => Event::Paused { reason: StopReason::Stuck, detail },
        _ => Event::Resumed { detail },
    }
}

pub fn at(millis: i64) -> Timestamp {
    Timestamp(millis)
}

/// A small deterministic generator, so a failing run can be repeated from its printed seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn task_id(&mut self) -> TaskId {
        TaskId::from_entropy(self.next())
    }
}

pub fn seed() -> u64 {
    std::env::var("BATON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    })
}
