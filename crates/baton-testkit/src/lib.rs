//! What baton's tests stand on. It depends on no other baton crate, so the tests can trust it.

mod repo;

pub use repo::{FixtureRepo, git};
