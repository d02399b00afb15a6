//! `baton notify`: where notices are sent, and the log of what was.

use std::path::Path;

use baton_core::Subscription;
use baton_store::Store;

use crate::cli::NotifyCommand;
use crate::hook;
use crate::notifier;
use crate::show;
use crate::task::now;

pub async fn run(home: &Path, command: NotifyCommand, json: bool) -> anyhow::Result<()> {
    let store = crate::store::open(home).await?;
    match command {
        NotifyCommand::Add { name, url, format, events, secret_env } => {
            let subscription = Subscription { name, url, format, events };
            subscription.check().map_err(anyhow::Error::msg)?;
            let secret = hook::signing_secret(secret_env)?;
            store.subscribe(&subscription, &secret, now()).await?;
            if json {
                return show::json(&serde_json::json!({ "subscription": subscription, "secret": secret }));
            }
            println!("{secret}");
            eprintln!(
                "notifications go to {} (while `baton serve` runs), signed with the secret above: X-Baton-Signature \
                 is sha256=HMAC-SHA256(secret, \"<X-Baton-Timestamp>.<body>\")",
                subscription.url
            );
            Ok(())
        }
        NotifyCommand::List => {
            let subscriptions = store.subscriptions().await?;
            if json {
                return show::json(&subscriptions);
            }
            if subscriptions.is_empty() {
                println!("no subscriptions; add one with `baton notify add --name N --url URL`");
            }
            for saved in &subscriptions {
                let events = if saved.subscription.events.is_empty() {
                    "every event".to_owned()
                } else {
                    saved.subscription.events.iter().map(|kind| kind.as_str()).collect::<Vec<_>>().join(", ")
                };
                let state = saved.disabled.as_deref().map_or("active".to_owned(), |why| format!("disabled: {why}"));
                println!("{:<20} {}  ({events}; {state})", saved.subscription.name, saved.subscription.url);
            }
            Ok(())
        }
        NotifyCommand::Remove { name } => {
            store.unsubscribe(&name).await?;
            if !json {
                println!("subscription {name} removed");
            }
            Ok(())
        }
        NotifyCommand::Test { name } => {
            let saved = store.subscription(&name).await?;
            let payload =
                serde_json::json!({ "event": "test", "detail": "a test notification from baton" }).to_string();
            let sent = notifier::post(&notifier::client()?, &saved, "test", &format!("{name}-test"), &payload).await;
            match sent {
                Ok(()) => {
                    println!("{} accepted the test notification", saved.subscription.url);
                    Ok(())
                }
                Err(error) => anyhow::bail!("{error}"),
            }
        }
        NotifyCommand::Log { name, limit } => {
            let notifications = store.notifications(name.as_deref(), limit).await?;
            if json {
                return show::json(&notifications);
            }
            for sent in &notifications {
                println!(
                    "{} UTC  {:<16} {:<15} {:<9} {} attempt(s){}",
                    sent.created_at,
                    sent.subscription,
                    sent.kind,
                    sent.state.as_str(),
                    sent.attempts,
                    sent.last_error.as_deref().map_or(String::new(), |error| format!("; last: {error}"))
                );
            }
            Ok(())
        }
    }
}
