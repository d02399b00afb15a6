//! `baton`: run long coding tasks with LLM agents, durably.

mod backend;
mod budget;
mod cli;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod env;
mod home;
mod hook;
mod model;
mod notifier;
mod notify;
mod run;
mod schedule;
mod serve;
mod show;
mod store;
mod task;
mod template;
mod token;
mod worker;

use std::process::ExitCode;

use baton_core::TaskId;
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // The same binary builds the sandboxes its tasks run in.
    if std::env::args().nth(1).as_deref() == Some(run::SANDBOX_INIT) {
        return ExitCode::from(baton_sandbox::init_main().clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    store::choose(cli.store.clone());
    let result = runtime.block_on(async {
        let home = || home::resolve(cli.home.as_deref());
        let config = || config::load(cli.config.as_deref());
        let server = cli.server.as_deref();
        let remote_capable = matches!(
            cli.command,
            Command::Task(_)
                | Command::Log { .. }
                | Command::Budget(_)
                | Command::Decide { .. }
                | Command::Pick { .. }
                | Command::Finding(_)
        );
        if server.is_some() && !remote_capable {
            anyhow::bail!(
                "--server (BATON_SERVER) applies to the task, log, budget, decide, pick and finding commands only"
            );
        }
        // After an answer, the task goes on here, unless a server takes it up or the user said not to.
        let go_on = |id: TaskId, no_resume: bool, model: Option<String>| async move {
            if no_resume || server.is_some() {
                return Ok(ExitCode::SUCCESS);
            }
            let legs = run::Legs::default();
            run::resume(&home()?, &config()?, id.as_str(), model, legs, cli.json).await
        };
        match cli.command {
            Command::Task(command) => task::run(&home, server, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Model(command) => model::run(&config()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Run(args) => run::run(&home()?, &config()?, *args, cli.json).await,
            Command::Resume { id: Some(id), model, context_window, max_handoffs, .. } => {
                let legs = run::Legs { context_window, max_handoffs, role_models: Default::default() };
                run::resume(&home()?, &config()?, &id, model, legs, cli.json).await
            }
            Command::Resume { id: None, model, context_window, max_handoffs, .. } => {
                let legs = run::Legs { context_window, max_handoffs, role_models: Default::default() };
                run::resume_all(&home()?, &config()?, model, legs, cli.json).await
            }
            Command::Finding(command) => task::finding(backend::open(&home, server).await?.as_ref(), command, cli.json)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Budget(command) => budget::run(backend::open(&home, server).await?.as_ref(), command, cli.json)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Env(command) => env::run(&home()?, &config()?, command, cli.json).await,
            Command::Decide { id, answer, deny, no_resume, model } => {
                let id =
                    task::answer(backend::open(&home, server).await?.as_ref(), &id, answer, deny, cli.json).await?;
                go_on(id, no_resume, model).await
            }
            Command::Pick { id, attempt, no_resume, model } => {
                let id = task::choose(backend::open(&home, server).await?.as_ref(), &id, &attempt, cli.json).await?;
                go_on(id, no_resume, model).await
            }
            Command::Serve(args) => serve::serve(&home()?, &config()?, *args).await,
            Command::Worker(args) => worker::worker(&home()?, &config()?, *args).await,
            Command::Migrate => worker::migrate(&home()?, cli.json).await,
            Command::Token(command) => token::run(&home()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Template(command) => template::run(&home()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Hook(command) => hook::run(&home()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Notify(command) => notify::run(&home()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Schedule(command) => schedule::run(&home()?, command, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Handoffs { id } => task::handoffs(&home()?, &id, cli.json).await.map(|()| ExitCode::SUCCESS),
            Command::Diff { id } => run::diff(&home()?, &id).await,
            Command::Pr { id } => task::pull_request(&home()?, &config()?, &id, cli.json).await,
            #[cfg(feature = "demo")]
            Command::Demo => demo::run(&home()?, &config()?, cli.json).await,
            Command::Log { id } => task::run(&home, server, cli::TaskCommand::Events { id, follow: false }, cli.json)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

/// One line on stderr with the whole chain of causes, and a failing exit code.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}
