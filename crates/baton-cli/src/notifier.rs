//! Sends notices out while `baton serve` runs: each subscription's new notices are queued as
//! notifications (with the cursor that took them, in one step), then POSTed, signed, until the
//! receiver answers 2xx — retried with backoff, given up after a few attempts, and a subscription
//! whose notifications keep failing is disabled. Every attempt is in the delivery log.

use std::sync::Arc;
use std::time::Duration;

use baton_core::{Format, Notice, Notification, NotificationState, Subscription, TaskId, TaskState, Timestamp};
use baton_store::{SavedSubscription, Store, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::task::now;

/// How often new notices and due retries are looked for.
const POLL: Duration = Duration::from_millis(500);
/// Attempts at one notification before it is given up.
const MAX_ATTEMPTS: u32 = 6;
/// Notifications given up in a row before their subscription is disabled.
pub const DISABLE_AFTER: u32 = 3;
/// The first retry's wait; each later one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Notifier {
    store: Arc<dyn Store>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(store: Arc<dyn Store>) -> anyhow::Result<Notifier> {
        Ok(Notifier { store, client: client()? })
    }

    pub async fn run(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.queue().await {
                eprintln!("notifications: {error}");
            }
            if let Err(error) = self.send_due().await {
                eprintln!("notifications: {error}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Queues each active subscription's new notices of the kinds it wants.
    async fn queue(&self) -> Result<(), StoreError> {
        for saved in self.store.subscriptions().await? {
            if saved.disabled.is_some() {
                continue;
            }
            let notices = self.store.notices(saved.cursor, 100).await?;
            let Some(last) = notices.last() else { continue };
            let mut queued = Vec::new();
            for notice in notices.iter().filter(|notice| saved.subscription.wants(notice.kind)) {
                queued.push(self.notification(&saved.subscription, notice).await?);
            }
            match self.store.enqueue(&saved.subscription.name, saved.cursor, last.seq, &queued).await {
                Ok(()) | Err(StoreError::SubscriptionChanged(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn notification(&self, subscription: &Subscription, notice: &Notice) -> Result<Notification, StoreError> {
        let task = match notice.task.as_deref().map(TaskId::parse) {
            Some(Ok(id)) => match self.store.load(&id).await {
                Ok(state) => Some(state),
                Err(StoreError::NotFound(_)) => None,
                Err(error) => return Err(error),
            },
            _ => None,
        };
        let payload = payload(subscription.format, notice, task.as_ref());
        let created_at = now();
        Ok(Notification {
            seq: 0,
            subscription: subscription.name.clone(),
            notice: notice.seq,
            kind: notice.kind,
            payload,
            state: NotificationState::Pending,
            attempts: 0,
            next_at: created_at,
            last_error: None,
            created_at,
            delivered_at: None,
        })
    }

    /// Sends every notification whose attempt is due.
    async fn send_due(&self) -> Result<(), StoreError> {
        for notification in self.store.due_notifications(now(), 50).await? {
            let saved = match self.store.subscription(&notification.subscription).await {
                Ok(saved) => Some(saved),
                Err(StoreError::NoSuchSubscription(_)) => None,
                Err(error) => return Err(error),
            };
            let sent = match &saved {
                Some(saved) if saved.disabled.is_none() => {
                    let delivery = format!("{}-{}", notification.subscription, notification.seq);
                    post(&self.client, saved, notification.kind.as_str(), &delivery, &notification.payload).await
                }
                Some(saved) => {
                    Err(format!("the subscription is disabled: {}", saved.disabled.as_deref().unwrap_or("")))
                }
                None => Err("the subscription was removed".to_owned()),
            };
            let at = now();
            let attempts = notification.attempts + 1;
            let (state, next_at, error) = match sent {
                Ok(()) => (NotificationState::Delivered, at, None),
                Err(error) if attempts >= MAX_ATTEMPTS || saved.as_ref().is_none_or(|s| s.disabled.is_some()) => {
                    (NotificationState::Failed, at, Some(error))
                }
                Err(error) => {
                    (NotificationState::Pending, Timestamp(at.0 + backoff(attempts).as_millis() as i64), Some(error))
                }
            };
            self.store
                .notification_attempted(notification.seq, state, next_at, error.as_deref(), at, DISABLE_AFTER)
                .await?;
        }
        Ok(())
    }
}

/// What is sent for `notice` (about `task`, when it is about one) in `format`.
fn payload(format: Format, notice: &Notice, task: Option<&TaskState>) -> String {
    let value = match format {
        Format::Json => json!({
            "event": notice.kind,
            "notice": notice.seq,
            "at": notice.at,
            "detail": notice.detail,
            "task": task.map(|state| json!({
                "id": state.id,
                "request": state.spec.request,
                "branch": state.branch,
                "status": state.status(),
                "stop_reason": state.stop.as_ref().map(|stop| stop.reason),
                "spent": state.money.spent.to_string(),
            })),
        }),
        Format::Slack => {
            let about = match task {
                Some(state) => format!("task {} ({})", state.id, crate::show::headline(&state.spec.request, 80)),
                None => "baton".to_owned(),
            };
            json!({ "text": format!("{}: {about} — {}", notice.kind, notice.detail) })
        }
    };
    value.to_string()
}

/// The wait after failed attempt `attempts` (from 1).
fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// Redirects are not followed: a notification goes where its subscription says, nowhere else.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?)
}

/// POSTs `payload` to the subscription, signed as the generic hook kind verifies (so one
/// receiver's code checks both ways); `Err` with what went wrong unless it answered 2xx.
pub async fn post(
    client: &reqwest::Client,
    saved: &SavedSubscription,
    event: &str,
    delivery: &str,
    payload: &str,
) -> Result<(), String> {
    let at = now().as_millis().div_euclid(1000);
    let response = client
        .post(&saved.subscription.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(baton_hooks::EVENT_HEADER, event)
        .header(baton_hooks::DELIVERY_HEADER, delivery)
        .header(baton_hooks::TIMESTAMP_HEADER, at.to_string())
        .header(baton_hooks::SIGNATURE_HEADER, baton_hooks::sign(saved.secret.as_bytes(), at, payload.as_bytes()))
        .body(payload.to_owned())
        .send()
        .await
        .map_err(|error| format!("cannot reach {}: {error}", saved.subscription.url))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(format!("{} answered {status}", saved.subscription.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_sent_as_baton_json_or_a_slack_message() {
        let notice = Notice {
            seq: 7,
            kind: baton_core::NoticeKind::SchedulePaused,
            task: None,
            detail: "schedule nightly paused itself: 3 failed runs in a row".into(),
            at: Timestamp(1_800_000_000_000),
        };
        let slack: serde_json::Value = serde_json::from_str(&payload(Format::Slack, &notice, None)).unwrap_or_default();
        assert_eq!(
            slack,
            json!({"text": "schedule.paused: baton — schedule nightly paused itself: 3 failed runs in a row"})
        );
        let ours: serde_json::Value = serde_json::from_str(&payload(Format::Json, &notice, None)).unwrap_or_default();
        assert_eq!(
            ours,
            json!({"event": "schedule.paused", "notice": 7, "at": 1_800_000_000_000_i64, "task": null,
                   "detail": "schedule nightly paused itself: 3 failed runs in a row"})
        );
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_a_bound() {
        let waits: Vec<u64> = (1..=12).map(|attempt| backoff(attempt).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
