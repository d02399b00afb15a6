//! `baton hook`: endpoints forges call, and the log of their deliveries.

use std::path::Path;

use anyhow::Context as _;
use baton_core::{Hook, HookKind, HookRule};
use baton_store::Store;

use crate::cli::HookCommand;
use crate::show;
use crate::task::now;

pub async fn run(home: &Path, command: HookCommand, json: bool) -> anyhow::Result<()> {
    let store = crate::store::open(home).await?;
    match command {
        HookCommand::Create { name, kind, template, label, mention, secret_env } => {
            let rules = match (kind, template) {
                (HookKind::Generic, Some(template)) => vec![HookRule::Any { template }],
                (HookKind::Generic, None) => anyhow::bail!("a generic hook needs --template: what it starts"),
                (_, Some(template)) => vec![HookRule::IssueLabelled { label, template }, HookRule::Comment { mention }],
                (_, None) => vec![HookRule::Comment { mention }],
            };
            let hook = Hook { name, kind, rules };
            hook.check().map_err(anyhow::Error::msg)?;
            for rule in &hook.rules {
                if let HookRule::IssueLabelled { template, .. } | HookRule::Any { template } = rule {
                    store.template(template).await.with_context(|| "make the template first")?;
                }
            }
            let secret = signing_secret(secret_env)?;
            store.add_hook(&hook, &secret, now()).await?;
            if json {
                return show::json(&serde_json::json!({ "hook": hook, "secret": secret }));
            }
            println!("{secret}");
            eprintln!(
                "hook {} ({}) made: deliveries go to POST /api/v1/hooks/{}, signed with the secret above",
                hook.name, hook.kind, hook.name
            );
            Ok(())
        }
        HookCommand::List => {
            let hooks = store.hooks().await?;
            if json {
                return show::json(&hooks);
            }
            if hooks.is_empty() {
                println!("no hooks; make one with `baton hook create --name N --kind github --template T`");
            }
            for saved in &hooks {
                let rules: Vec<String> = saved.hook.rules.iter().map(describe).collect();
                println!("{:<20} {:<8} {}", saved.hook.name, saved.hook.kind, rules.join("; "));
            }
            Ok(())
        }
        HookCommand::Delete { name } => {
            store.delete_hook(&name).await?;
            if !json {
                println!("hook {name} deleted");
            }
            Ok(())
        }
        HookCommand::Deliveries { name, limit } => {
            let deliveries = store.deliveries(name.as_deref(), limit).await?;
            if json {
                return show::json(&deliveries);
            }
            for delivery in &deliveries {
                println!(
                    "{} UTC  {:<12} {:<11} {} {:<24} {}",
                    delivery.received_at,
                    delivery.hook,
                    delivery.outcome,
                    delivery.status,
                    delivery.id,
                    delivery.detail
                );
            }
            Ok(())
        }
    }
}

/// The secret a hook's sender (or a notification's receiver) shares with baton: from the
/// environment variable named, or 24 random bytes in hex; at least 16 characters either way.
pub fn signing_secret(from_env: Option<String>) -> anyhow::Result<String> {
    let secret = match from_env {
        Some(var) => std::env::var(&var).with_context(|| format!("no secret in ${var}"))?,
        None => {
            let mut entropy = [0u8; 24];
            getrandom::fill(&mut entropy).map_err(|e| anyhow::anyhow!("cannot draw a secret: {e}"))?;
            entropy.iter().map(|byte| format!("{byte:02x}")).collect()
        }
    };
    if secret.trim().len() < 16 {
        anyhow::bail!("a signing secret must be at least 16 characters");
    }
    Ok(secret)
}

fn describe(rule: &HookRule) -> String {
    match rule {
        HookRule::IssueLabelled { label, template } => format!("issues labelled {label} start {template}"),
        HookRule::Comment { mention } => format!("pull request comments starting {mention} follow up"),
        HookRule::Any { template } => format!("every delivery starts {template}"),
    }
}
