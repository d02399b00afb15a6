//! `baton`: run long coding tasks with LLM agents, durably.

mod cli;
mod config;
mod home;
mod model;
mod show;
mod task;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Task(command) => task::run(&home::resolve(cli.home.as_deref())?, command, cli.json).await,
            Command::Model(command) => model::run(&config::load(cli.config.as_deref())?, command, cli.json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// One line on stderr with the whole chain of causes, and a failing exit code.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}
