//! `baton demo`, behind the default `demo` feature: the one command that needs the test kit (its
//! scripted model server and sample repository), so a build without the feature links neither.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use baton_model::Providers;

use crate::config::Config;

/// `baton demo`: the real machinery (git, sandbox, checks, journal) on a sample repository, driven by
/// a recorded session that baton's scripted model server replays. No model or key is needed.
pub async fn run(home: &Path, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let script = baton_testkit::demo_script().context("the recorded demo session is unreadable")?;
    let server =
        baton_testkit::model::ScriptedServer::start(script).await.context("cannot start the demo's model server")?;
    let repo = baton_testkit::demo_repo().keep();
    if !json {
        println!(
            "baton demo — a REPLAY: a recorded session is served by baton's scripted model server at {}.",
            server.url()
        );
        println!("Everything else is real: git, the sandbox, the checks, the journal.");
        println!("Sample repository: {} (calc.py's add() subtracts, so test_calc.py fails).\n", repo.display());
    }
    let providers = Providers {
        openai_compatible: baton_model::ProviderConfig {
            base_url: Some(format!("{}/v1", server.url())),
            api_key_env: None,
        },
        ..Providers::default()
    };
    let model = "openai-compatible/recorded-demo";
    let legs = crate::run::Legs::default();
    let parts = crate::run::engine_parts_with(home, config, &providers, model, legs)?;
    let args = crate::cli::TaskArgs {
        model: Some(model.to_owned()),
        repo: repo.to_string_lossy().into_owned(),
        push: false,
        push_remote: "origin".to_owned(),
        checks: vec![baton_testkit::DEMO_CHECK.to_owned()],
        check_timeout: std::time::Duration::from_secs(60),
        base: "HEAD".to_owned(),
        scope: Vec::new(),
        protect: vec!["test_*.py".to_owned()],
        env: None,
        budget: None,
        window: None,
        max_steps: Some(20),
        priority: 0,
        context_window: None,
        max_handoffs: None,
        // The recorded session has no review round and no plan.
        no_review: true,
        plan: false,
        attempts: 1,
        pick: baton_core::Pick::Rule,
        owner: None,
        approve_plan: false,
        captain_model: None,
        review_model: None,
    };
    let state = crate::task::create_task(home, baton_testkit::DEMO_REQUEST.to_owned(), args).await?;
    let code = crate::run::drive(home, parts, state.clone(), json).await?;
    if !json {
        println!();
        crate::run::diff(home, state.id.as_str()).await?;
    }
    Ok(code)
}
