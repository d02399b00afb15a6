//! Incoming hooks: named endpoints a forge (or anything that signs its requests) calls, with rules
//! that turn what happened into a task from a template or a follow-up on a task's branch; and the
//! log of every delivery.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::template::check_name;
use crate::time::Timestamp;

/// A hook: who calls it (which signature it checks) and what its deliveries start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub name: String,
    pub kind: HookKind,
    pub rules: Vec<HookRule>,
}

/// The sender's dialect: how it signs, how it names events and deliveries, what its payloads hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// `X-Gitlab-Token: <the secret>`.
    Gitlab,
    /// `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`.
    Gitea,
    /// `X-Forgejo-Signature: <hex HMAC-SHA256 of the body>`.
    Forgejo,
    /// `X-Baton-Timestamp: <unix seconds>` and `X-Baton-Signature: sha256=<hex HMAC-SHA256 of
    /// "<timestamp>.<body>">`, refused outside a tolerance.
    Generic,
}

impl HookKind {
    pub const ALL: [HookKind; 5] =
        [HookKind::Github, HookKind::Gitlab, HookKind::Gitea, HookKind::Forgejo, HookKind::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Github => "github",
            HookKind::Gitlab => "gitlab",
            HookKind::Gitea => "gitea",
            HookKind::Forgejo => "forgejo",
            HookKind::Generic => "generic",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookKind {
    type Err = String;

    fn from_str(text: &str) -> Result<HookKind, String> {
        HookKind::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| {
            format!("unknown hook kind `{text}` (expected one of: github, gitlab, gitea, forgejo, generic)")
        })
    }
}

/// What a delivery must be for a rule to act on it, and what it then does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum HookRule {
    /// An issue labelled `label` starts a task from `template`; its request is the template's with
    /// the issue's title, body and address (`{{title}}`, `{{body}}`, `{{url}}`, or after it).
    IssueLabelled { label: String, template: String },
    /// A comment starting with `mention` on a pull (merge) request whose branch is a task's
    /// continues that task with the rest of the comment.
    Comment { mention: String },
    /// Every delivery starts a task from `template`, the payload's top-level text fields filling
    /// its request's `{{field}}` placeholders (the generic kind's rule).
    Any { template: String },
}

impl Hook {
    pub fn check(&self) -> Result<(), String> {
        check_name("hook", &self.name)?;
        if self.rules.is_empty() {
            return Err("a hook needs a rule: a template to start, or a mention to follow up".into());
        }
        for rule in &self.rules {
            match rule {
                HookRule::IssueLabelled { label, template } => {
                    check_name("template", template)?;
                    if label.trim().is_empty() {
                        return Err("an issue rule needs a label".into());
                    }
                }
                HookRule::Comment { mention } if mention.trim().is_empty() => {
                    return Err("a comment rule needs a mention, such as @baton".into());
                }
                HookRule::Comment { .. } => {}
                HookRule::Any { template } => check_name("template", template)?,
            }
            let forge_rule = !matches!(rule, HookRule::Any { .. });
            if forge_rule == (self.kind == HookKind::Generic) {
                return Err(format!(
                    "a {} hook takes {} rules",
                    self.kind,
                    if self.kind == HookKind::Generic { "only `any`" } else { "issue and comment" }
                ));
            }
        }
        Ok(())
    }
}

/// One request to a hook, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub hook: String,
    /// The sender's id for it (empty when it gave none).
    pub id: String,
    /// The sender's name for what happened (`issues`, `Note Hook`, ...).
    pub event: String,
    pub outcome: DeliveryOutcome,
    /// The HTTP status it was answered with.
    pub status: u16,
    pub detail: String,
    /// The task it started or followed up.
    pub task: Option<String>,
    pub received_at: Timestamp,
}

/// What a delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Verified and matched, its task's id chosen: the task is being started. A redelivery of it
    /// finishes starting that same task.
    Accepted,
    Started,
    FollowedUp,
    /// Verified; no rule acts on it.
    Ignored,
    /// Verified, and received before: nothing more is done.
    Duplicate,
    /// Not verified or not readable: nothing is done.
    Refused,
    /// A rule matched but its task could not be started or followed up.
    Failed,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 7] = [
        DeliveryOutcome::Accepted,
        DeliveryOutcome::Started,
        DeliveryOutcome::FollowedUp,
        DeliveryOutcome::Ignored,
        DeliveryOutcome::Duplicate,
        DeliveryOutcome::Refused,
        DeliveryOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::Started => "started",
            DeliveryOutcome::FollowedUp => "followed_up",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::Duplicate => "duplicate",
            DeliveryOutcome::Refused => "refused",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<DeliveryOutcome, String> {
        DeliveryOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| format!("unknown delivery outcome `{text}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fit_their_kind() {
        let issue = HookRule::IssueLabelled { label: "baton".into(), template: "fix".into() };
        let comment = HookRule::Comment { mention: "@baton".into() };
        let any = HookRule::Any { template: "fix".into() };
        let hook = |kind, rules: &[HookRule]| Hook { name: "gh".into(), kind, rules: rules.to_vec() };
        assert_eq!(hook(HookKind::Github, &[issue.clone(), comment.clone()]).check(), Ok(()));
        assert_eq!(hook(HookKind::Generic, std::slice::from_ref(&any)).check(), Ok(()));
        assert!(hook(HookKind::Github, &[any]).check().is_err());
        assert!(hook(HookKind::Generic, &[issue]).check().is_err());
        assert!(hook(HookKind::Forgejo, &[]).check().is_err());
        assert!(hook(HookKind::Gitlab, &[HookRule::Comment { mention: " ".into() }]).check().is_err());
        for kind in HookKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        for outcome in DeliveryOutcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
        }
    }
}
