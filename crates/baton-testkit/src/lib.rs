//! What baton's tests stand on: a scripted model server that speaks the real wire protocols, and
//! fixture git repositories; also the material of `baton demo`. It depends on no other baton crate, so the tests can trust it.

mod demo;
pub mod exploration;
pub mod hostile;
pub mod long_horizon;
pub mod model;
pub mod postgres;
mod repo;

pub use demo::{DEMO_CHECK, DEMO_REQUEST, demo_repo, demo_script};
pub use repo::{FixtureRepo, git};
