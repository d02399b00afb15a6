//! Notices: what happened that someone may want to hear of (a task waits for a person, finished,
//! paused; a schedule paused itself), kept in order as they are journaled; and the subscriptions
//! that send them out as signed webhooks, each sending logged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::template::check_name;
use crate::time::Timestamp;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    /// A task waits for a person's answer or approval.
    #[serde(rename = "task.waiting")]
    Waiting,
    /// A task ended: verified, or stopped for good with its reason.
    #[serde(rename = "task.finished")]
    Finished,
    /// A task paused: out of credits, out of its window or steps, or stopped by an error.
    #[serde(rename = "task.paused")]
    Paused,
    /// A schedule was paused: by itself after failed runs, or by a person.
    #[serde(rename = "schedule.paused")]
    SchedulePaused,
    /// The account's budget is low: the month's spend passed 80% of the cap, or the balance went
    /// below zero.
    #[serde(rename = "budget.low")]
    BudgetLow,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::Waiting,
        NoticeKind::Finished,
        NoticeKind::Paused,
        NoticeKind::SchedulePaused,
        NoticeKind::BudgetLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Waiting => "task.waiting",
            NoticeKind::Finished => "task.finished",
            NoticeKind::Paused => "task.paused",
            NoticeKind::SchedulePaused => "schedule.paused",
            NoticeKind::BudgetLow => "budget.low",
        }
    }

    /// The notice a journaled event makes, with its detail, if it makes one.
    pub fn of(event: &Event) -> Option<(NoticeKind, String)> {
        match event {
            Event::WaitingForHuman { question } => Some((NoticeKind::Waiting, question.clone())),
            Event::DecisionRequested { decision } => Some((NoticeKind::Waiting, decision.question.clone())),
            Event::Finished { reason, detail } => Some((NoticeKind::Finished, format!("{reason}: {detail}"))),
            Event::Paused { reason, detail } => Some((NoticeKind::Paused, format!("{reason}: {detail}"))),
            _ => None,
        }
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NoticeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<NoticeKind, String> {
        match text {
            "task.waiting" | "waiting" => Ok(NoticeKind::Waiting),
            "task.finished" | "finished" => Ok(NoticeKind::Finished),
            "task.paused" | "paused" => Ok(NoticeKind::Paused),
            "schedule.paused" => Ok(NoticeKind::SchedulePaused),
            "budget.low" => Ok(NoticeKind::BudgetLow),
            _ => Err(format!(
                "unknown event `{text}` (expected one of: task.waiting, task.finished, task.paused, schedule.paused, budget.low)"
            )),
        }
    }
}

/// Something that happened, in the order the store kept it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub seq: i64,
    pub kind: NoticeKind,
    /// The task it is about, if it is about one.
    pub task: Option<String>,
    pub detail: String,
    pub at: Timestamp,
}

/// Where notices are sent, and which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub name: String,
    /// An `http://` or `https://` address, POSTed to.
    pub url: String,
    pub format: Format,
    /// The kinds sent; all when empty.
    pub events: Vec<NoticeKind>,
}

/// The shape of what is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// baton's JSON: the event, the task, the detail.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": ...}`), which Slack-compatible chats also take.
    Slack,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            _ => Err(format!("unknown format `{text}` (expected json or slack)")),
        }
    }
}

impl Subscription {
    pub fn check(&self) -> Result<(), String> {
        check_name("subscription", &self.name)?;
        let scheme = self.url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) || self.url.chars().any(char::is_whitespace) {
            return Err(format!("{:?} is not an http:// or https:// address", self.url));
        }
        Ok(())
    }

    pub fn wants(&self, kind: NoticeKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

/// One notice sent (or being sent) to one subscription: the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub seq: i64,
    pub subscription: String,
    pub notice: i64,
    pub kind: NoticeKind,
    /// The body sent, the same on every attempt.
    pub payload: String,
    pub state: NotificationState,
    pub attempts: u32,
    /// When the next attempt is due (while pending).
    pub next_at: Timestamp,
    /// What the latest failed attempt got.
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Pending,
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
        }
    }
}

impl FromStr for NotificationState {
    type Err = String;

    fn from_str(text: &str) -> Result<NotificationState, String> {
        [NotificationState::Pending, NotificationState::Delivered, NotificationState::Failed]
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown notification state `{text}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StopReason;

    #[test]
    fn journaled_events_make_notices_and_names_read_back() {
        let finished = Event::Finished { reason: StopReason::Verified, detail: "2 of 2 checks".into() };
        assert_eq!(NoticeKind::of(&finished), Some((NoticeKind::Finished, "verified: 2 of 2 checks".into())));
        let paused = Event::Paused { reason: StopReason::BudgetExhausted, detail: "spent".into() };
        assert_eq!(NoticeKind::of(&paused).map(|(kind, _)| kind), Some(NoticeKind::Paused));
        assert_eq!(NoticeKind::of(&Event::Started), None);
        for kind in NoticeKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        assert_eq!("waiting".parse(), Ok(NoticeKind::Waiting));
        assert!("paused".parse::<NoticeKind>().is_ok_and(|kind| kind == NoticeKind::Paused));
        assert!("task.done".parse::<NoticeKind>().is_err());
    }

    #[test]
    fn subscriptions_post_to_web_addresses() {
        let subscription =
            |url: &str| Subscription { name: "ops".into(), url: url.into(), format: Format::Json, events: vec![] };
        assert_eq!(subscription("https://hooks.example.test/x").check(), Ok(()));
        for bad in ["ftp://x", "hooks.example.test", "http://a b", "javascript:alert(1)"] {
            assert!(subscription(bad).check().is_err(), "{bad}");
        }
        let picky = Subscription { events: vec![NoticeKind::Finished], ..subscription("http://x") };
        assert!(picky.wants(NoticeKind::Finished) && !picky.wants(NoticeKind::Waiting));
        assert!(subscription("http://x").wants(NoticeKind::Waiting));
    }
}
