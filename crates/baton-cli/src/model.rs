//! `baton model ...`: what baton knows about models, and a one-call check that a model is reachable
//! with the configured endpoint and key.

use std::time::Instant;

use anyhow::Context;
use baton_core::{Message, ModelRequest, Part, Role};
use baton_model::{Catalog, ModelClient, ModelName, Providers};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::ModelCommand;
use crate::config::Config;
use crate::show;

pub async fn run(config: &Config, command: ModelCommand, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?.with_overrides(&config.text).with_context(|| config.context())?;
    match command {
        ModelCommand::List => list(&catalog, json),
        ModelCommand::Check { model, prompt } => check(config, &catalog, &model, &prompt, json).await,
    }
}

fn list(catalog: &Catalog, json: bool) -> anyhow::Result<()> {
    let models: Vec<_> = catalog.names().map(|name| (name, catalog.get(name))).collect();
    if json {
        let rows: Vec<_> = models
            .iter()
            .filter_map(|(name, info)| info.map(|info| (name, info)))
            .map(|(name, info)| {
                json!({
                    "model": name,
                    "context_window": info.context_window,
                    "max_output_tokens": info.max_output_tokens,
                    "price_per_million": info.price.map(|p| json!({
                        "input": p.input.to_string(), "cache_read": p.cache_read.to_string(),
                        "cache_write": p.cache_write.to_string(), "output": p.output.to_string(),
                    })),
                })
            })
            .collect();
        return show::json(&rows);
    }
    println!(
        "{:<36} {:>9} {:>8}  PRICE PER MILLION TOKENS (input / cache read / cache write / output)",
        "MODEL", "CONTEXT", "OUTPUT"
    );
    for (name, info) in models {
        let Some(info) = info else { continue };
        let price = info.price.map_or("unknown: calls cannot be charged".to_owned(), |p| {
            format!("{} / {} / {} / {}", p.input, p.cache_read, p.cache_write, p.output)
        });
        println!("{name:<36} {:>9} {:>8}  {price}", info.context_window, info.max_output_tokens);
    }
    Ok(())
}

async fn check(config: &Config, catalog: &Catalog, model: &str, prompt: &str, json: bool) -> anyhow::Result<()> {
    let name: ModelName = model.parse()?;
    let providers = Providers::from_config(&config.text).with_context(|| config.context())?;
    let client = providers.client(&name, &|var| std::env::var(var).ok())?;
    let request = ModelRequest {
        model: name.model.clone(),
        system: String::new(),
        messages: vec![Message { role: Role::User, parts: vec![Part::Text { text: prompt.to_owned() }] }],
        tools: vec![],
        max_output_tokens: 64,
        stable_prefix: 0,
    };
    let start = Instant::now();
    let response = client
        .complete(&request, &mut |_| {}, &CancellationToken::new())
        .await
        .with_context(|| format!("{name} at {}", client.url()))?;
    let elapsed = start.elapsed();
    let cost = catalog.get(&name.to_string()).and_then(|info| info.price).map(|price| price.cost(&response.usage));
    if json {
        return show::json(&json!({
            "model": name.to_string(),
            "url": client.url(),
            "reply": response.text(),
            "finish": response.finish,
            "usage": response.usage,
            "cost_micros": cost.map(|c| c.micros()),
            "seconds": elapsed.as_secs_f64(),
        }));
    }
    let usage = response.usage;
    println!("{name} at {} answered in {:.1} s", client.url(), elapsed.as_secs_f64());
    println!("reply   {}", response.text().trim());
    println!(
        "tokens  {} in, {} from cache, {} written to cache, {} out",
        usage.input, usage.cache_read, usage.cache_write, usage.output
    );
    match cost {
        Some(cost) => println!("cost    {cost} credits"),
        None => println!("cost    unknown: add a price for {name} under [models.\"{name}\"] in the config file"),
    }
    Ok(())
}
