//! The floor of one step of a durable, sandboxed agent loop on this machine, with nothing else: one
//! durable SQLite commit (an event appended to a task's journal), one command in a sandbox session
//! and one loopback HTTP round trip to a model server (a streamed Chat Completions answer, parsed).
//! `scripts/bench-step-overhead` runs it beside baton against the same scripted server and prints
//! baton's step as a multiple of it.
//!
//! `cargo run --release -p baton-engine --example floor -- URL STEPS` (as root, or an ordinary user
//! where user namespaces are allowed); prints the steps and seconds as JSON.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_core::{Event, Message, ModelRequest, Part, Role, TaskId, TaskSpec, Timestamp};
use baton_model::{ModelClient, ProviderConfig, Providers};
use baton_sandbox::{LocalSandbox, RunRequest, Sandbox, SandboxConfig};
use baton_store::{SqlStore, Store};
use tokio_util::sync::CancellationToken;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(steps)) = (args.next(), args.next()) else {
        return Err("usage: floor URL STEPS".into());
    };
    let steps: u64 = steps.parse()?;
    let home = tempfile::tempdir()?;
    let workspace = home.path().join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let init = SandboxConfig::locate_init().ok_or("baton-sandbox-init is not built beside this program")?;
    let config = SandboxConfig::new(init, &home.path().join("data"));
    let sandbox = LocalSandbox::new(config, &home.path().join("data/task"), &workspace, Vec::new())?;
    let providers = Providers {
        openai_compatible: ProviderConfig { base_url: Some(format!("{url}/v1")), api_key_env: None },
        ..Providers::default()
    };
    let client = providers.client(&"openai-compatible/floor".parse()?, &|_| None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = SqlStore::open(home.path()).await?;
        let task = TaskId::from_entropy(1);
        let spec = Box::new(TaskSpec::new("floor", PathBuf::from("/floor")));
        let created = Event::TaskCreated { spec, base_commit: "0".repeat(40), branch: "baton/floor".into() };
        store.append(&task, 0, Timestamp(0), &[created, Event::Started]).await?;
        let started = Instant::now();
        // Time in each part, so a multiple of the floor can be read as "this many more commits".
        let (mut http, mut command, mut commit) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let session = sandbox.session()?;
        for step in 1..=steps {
            let request = ModelRequest {
                model: "floor".into(),
                system: "floor".into(),
                messages: vec![Message { role: Role::User, parts: vec![Part::Text { text: format!("step {step}") }] }],
                tools: Vec::new(),
                max_output_tokens: 1024,
                stable_prefix: 0,
            };
            let at = Instant::now();
            client.complete(&request, &mut |_| {}, &CancellationToken::new()).await?;
            http += at.elapsed();
            let at = Instant::now();
            let outcome = session.run(&RunRequest::shell(&format!("true {step}"), Duration::from_secs(60)))?;
            let _ = std::fs::remove_file(&outcome.output_file);
            command += at.elapsed();
            let at = Instant::now();
            store.append(&task, step + 1, Timestamp(0), &[Event::Feedback { text: format!("step {step}") }]).await?;
            commit += at.elapsed();
        }
        let seconds = started.elapsed().as_secs_f64();
        let ms = |total: Duration| total.as_secs_f64() * 1000.0 / steps as f64;
        println!(
            "{{\"steps\": {steps}, \"seconds\": {seconds}, \"http_ms\": {}, \"command_ms\": {}, \"commit_ms\": {}}}",
            ms(http),
            ms(command),
            ms(commit)
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
