//! What baton's tests stand on: a scripted model server that speaks the real wire protocols, and
//! fixture git repositories. It depends on no other baton crate, so the tests can trust it.

pub mod model;
mod repo;

pub use repo::{FixtureRepo, git};
