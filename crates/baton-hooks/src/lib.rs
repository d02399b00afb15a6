//! Webhooks both ways. Incoming: a delivery is verified over its raw body in its sender's dialect
//! (GitHub, GitLab, Gitea, Forgejo, or a generic HMAC with a timestamp), then read into what
//! happened, which a hook's rules match. Outgoing: what baton sends is signed the same generic way,
//! so one receiver's code verifies both. No IO: the caller hands in headers, the body and the clock.

use std::collections::BTreeMap;

use baton_core::{HookKind, HookRule};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// How far a generic delivery's timestamp may be from the receiver's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// The headers of baton's own signature (the generic kind's, and every notification's).
pub const TIMESTAMP_HEADER: &str = "x-baton-timestamp";
pub const SIGNATURE_HEADER: &str = "x-baton-signature";
pub const EVENT_HEADER: &str = "x-baton-event";
pub const DELIVERY_HEADER: &str = "x-baton-delivery";

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its signature is missing, wrong or out of date (401).
    Unauthenticated(String),
    /// It cannot be read (400).
    Malformed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unauthenticated(reason) | Refusal::Malformed(reason) => f.write_str(reason),
        }
    }
}

/// A verified delivery, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's id for this delivery (a redelivery keeps it).
    pub id: String,
    /// The sender's name for the event.
    pub event: String,
    pub happening: Happening,
}

/// What a delivery says happened, in the terms rules match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    /// A label was put on an issue (or an issue was opened with it).
    IssueLabelled { labels: Vec<String>, title: String, body: String, url: String },
    /// A comment on a pull (merge) request; `branch` is the request's source branch.
    Comment { branch: String, text: String, author: Author },
    /// A generic delivery: its payload's top-level text and number fields.
    Fields(BTreeMap<String, String>),
    /// Anything else: no rule acts on it.
    Other(String),
}

/// Who wrote a comment: their login, and the forge's number for them where its APIs take that
/// (GitLab's member API does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub login: String,
    pub id: Option<u64>,
}

/// What a hook's rules make of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a task from `template`, its request filled with `fields`.
    Start { template: String, fields: BTreeMap<String, String> },
    /// Send `text` to the task on `branch`, if `author` may write to the repository.
    FollowUp { branch: String, text: String, author: Author },
    /// Nothing, for this reason.
    Ignore(String),
}

/// Checks the delivery's signature in `kind`'s dialect; `header` looks a header up by its
/// lowercase name; `now_secs` is the receiver's clock.
pub fn verify(
    kind: HookKind,
    secret: &[u8],
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), Refusal> {
    let missing = |name: &str| Refusal::Unauthenticated(format!("no {name} header: the delivery is not signed"));
    let wrong = |name: &str| Refusal::Unauthenticated(format!("the {name} header does not match the body and secret"));
    match kind {
        HookKind::Github => {
            let name = "X-Hub-Signature-256";
            let sent = header("x-hub-signature-256").ok_or_else(|| missing(name))?;
            let hex = sent.strip_prefix("sha256=").ok_or_else(|| wrong(name))?;
            check_mac(secret, &[body], hex).map_err(|()| wrong(name))
        }
        HookKind::Gitlab => {
            let name = "X-Gitlab-Token";
            let sent = header("x-gitlab-token").ok_or_else(|| missing(name))?;
            if bool::from(sent.as_bytes().ct_eq(secret)) { Ok(()) } else { Err(wrong(name)) }
        }
        HookKind::Gitea | HookKind::Forgejo => {
            let (name, lower) = match kind {
                HookKind::Forgejo => ("X-Forgejo-Signature", "x-forgejo-signature"),
                _ => ("X-Gitea-Signature", "x-gitea-signature"),
            };
            let sent = header(lower).ok_or_else(|| missing(name))?;
            check_mac(secret, &[body], &sent).map_err(|()| wrong(name))
        }
        HookKind::Generic => {
            let stamp = header(TIMESTAMP_HEADER).ok_or_else(|| missing("X-Baton-Timestamp"))?;
            let seconds: i64 = stamp.trim().parse().map_err(|_| {
                Refusal::Unauthenticated(format!("X-Baton-Timestamp {stamp:?} is not a number of Unix seconds"))
            })?;
            if (now_secs - seconds).abs() > TOLERANCE_SECS {
                return Err(Refusal::Unauthenticated(format!(
                    "X-Baton-Timestamp is {}s from this server's clock (at most {TOLERANCE_SECS}s): a replay, or a skewed clock",
                    now_secs - seconds
                )));
            }
            let sent = header(SIGNATURE_HEADER).ok_or_else(|| missing("X-Baton-Signature"))?;
            let hex = sent.strip_prefix("sha256=").ok_or_else(|| wrong("X-Baton-Signature"))?;
            check_mac(secret, &[stamp.trim().as_bytes(), b".", body], hex).map_err(|()| wrong("X-Baton-Signature"))
        }
    }
}

/// The generic signature of `body` sent at `timestamp` (Unix seconds): `sha256=<hex>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex(&mac(secret, &[timestamp.to_string().as_bytes(), b".", body])))
}

/// The hex HMAC-SHA256 of `body` alone, as GitHub (with `sha256=`), Gitea and Forgejo sign.
pub fn sign_body(secret: &[u8], body: &[u8]) -> String {
    hex(&mac(secret, &[body]))
}

fn keyed(secret: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)] // HMAC takes a key of any length: this cannot fail
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC keys have no length limit");
    for part in parts {
        mac.update(part);
    }
    mac
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed(secret, parts).finalize().into_bytes().to_vec()
}

/// Compared in constant time, so that timing tells a forger nothing.
fn check_mac(secret: &[u8], parts: &[&[u8]], sent_hex: &str) -> Result<(), ()> {
    let sent = unhex(sent_hex.trim()).ok_or(())?;
    keyed(secret, parts).verify_slice(&sent).map_err(drop)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok()).collect()
}

/// Reads a verified delivery in `kind`'s dialect.
pub fn read(kind: HookKind, header: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> Result<Received, Refusal> {
    let (event_header, id_headers): (&str, &[&str]) = match kind {
        HookKind::Github => ("x-github-event", &["x-github-delivery"]),
        HookKind::Gitlab => ("x-gitlab-event", &["x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid"]),
        HookKind::Gitea => ("x-gitea-event", &["x-gitea-delivery"]),
        HookKind::Forgejo => ("x-forgejo-event", &["x-forgejo-delivery", "x-gitea-delivery"]),
        HookKind::Generic => (EVENT_HEADER, &[DELIVERY_HEADER]),
    };
    let id = id_headers
        .iter()
        .find_map(|name| header(name))
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| Refusal::Malformed(format!("no delivery id: the {} header is missing", id_headers[0])))?;
    if id.len() > 200 {
        return Err(Refusal::Malformed("the delivery id is longer than 200 bytes".into()));
    }
    let event = header(event_header).unwrap_or_default();
    let payload: Value =
        serde_json::from_slice(body).map_err(|error| Refusal::Malformed(format!("the body is not JSON: {error}")))?;
    if !payload.is_object() {
        return Err(Refusal::Malformed("the body is not a JSON object".into()));
    }
    let happening = match kind {
        HookKind::Github => github(&event, &payload),
        HookKind::Gitlab => gitlab(&event, &payload),
        HookKind::Gitea | HookKind::Forgejo => gitea(&event, &payload),
        HookKind::Generic => Happening::Fields(fields(&payload)),
    };
    Ok(Received { id, event, happening })
}

fn text(value: &Value, path: &[&str]) -> String {
    path.iter().try_fold(value, |value, key| value.get(key)).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn github(event: &str, payload: &Value) -> Happening {
    let action = text(payload, &["action"]);
    match (event, action.as_str()) {
        ("issues", "labeled") => Happening::IssueLabelled {
            labels: vec![text(payload, &["label", "name"])],
            title: text(payload, &["issue", "title"]),
            body: text(payload, &["issue", "body"]),
            url: text(payload, &["issue", "html_url"]),
        },
        ("pull_request_review_comment", "created")
            if forked(payload, "/pull_request/head/repo/id", "/pull_request/base/repo/id") =>
        {
            Happening::Other("a comment on a pull request from a fork".into())
        }
        ("pull_request_review_comment", "created") => Happening::Comment {
            branch: text(payload, &["pull_request", "head", "ref"]),
            text: text(payload, &["comment", "body"]),
            author: author(payload, "/comment/user/login", "/comment/user/id"),
        },
        _ => Happening::Other(format!("{event} {action}")),
    }
}

/// Gitea's payloads, which Forgejo keeps: GitHub's shapes with a few names of their own.
fn gitea(event: &str, payload: &Value) -> Happening {
    let action = text(payload, &["action"]);
    match (event, action.as_str()) {
        ("issues" | "issue_label", "label_updated") => Happening::IssueLabelled {
            labels: names(payload.pointer("/issue/labels"), "name"),
            title: text(payload, &["issue", "title"]),
            body: text(payload, &["issue", "body"]),
            url: text(payload, &["issue", "html_url"]),
        },
        ("issue_comment" | "pull_request_comment", "created")
            if forked(payload, "/pull_request/head/repo_id", "/pull_request/base/repo_id")
                || forked(payload, "/pull_request/head/repo/id", "/pull_request/base/repo/id") =>
        {
            Happening::Other("a comment on a pull request from a fork".into())
        }
        ("issue_comment" | "pull_request_comment", "created")
            if payload.pointer("/pull_request/head/ref").is_some() =>
        {
            Happening::Comment {
                branch: text(payload, &["pull_request", "head", "ref"]),
                text: text(payload, &["comment", "body"]),
                author: author(payload, "/comment/user/login", "/comment/user/id"),
            }
        }
        _ => Happening::Other(format!("{event} {action}")),
    }
}

fn gitlab(event: &str, payload: &Value) -> Happening {
    let kind = text(payload, &["object_kind"]);
    match kind.as_str() {
        "issue" => {
            // Only labels this delivery added: an issue already labelled is not started again
            // each time it is edited.
            let current = names(payload.pointer("/changes/labels/current"), "title");
            let previous = names(payload.pointer("/changes/labels/previous"), "title");
            let opened = text(payload, &["object_attributes", "action"]) == "open";
            let added: Vec<String> = if opened {
                names(payload.get("labels"), "title")
            } else {
                current.into_iter().filter(|label| !previous.contains(label)).collect()
            };
            if added.is_empty() {
                return Happening::Other(format!("{event}: no label added"));
            }
            Happening::IssueLabelled {
                labels: added,
                title: text(payload, &["object_attributes", "title"]),
                body: text(payload, &["object_attributes", "description"]),
                url: text(payload, &["object_attributes", "url"]),
            }
        }
        "note" if forked(payload, "/merge_request/source_project_id", "/merge_request/target_project_id") => {
            Happening::Other("a comment on a merge request from a fork".into())
        }
        "note" if payload.get("merge_request").is_some() => Happening::Comment {
            branch: text(payload, &["merge_request", "source_branch"]),
            text: text(payload, &["object_attributes", "note"]),
            author: author(payload, "/user/username", "/user/id"),
        },
        _ => Happening::Other(format!("{event} ({kind})")),
    }
}

fn author(payload: &Value, login: &str, id: &str) -> Author {
    let login = payload.pointer(login).and_then(Value::as_str).unwrap_or_default().to_owned();
    Author { login, id: payload.pointer(id).and_then(Value::as_u64) }
}

/// Whether a pull request's source is another repository than its target. A fork's branch may
/// take any name, a task's included: its comments must never reach that task.
fn forked(payload: &Value, head: &str, base: &str) -> bool {
    match (payload.pointer(head), payload.pointer(base)) {
        (Some(head), Some(base)) => head != base,
        _ => false,
    }
}

fn names(list: Option<&Value>, key: &str) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|item| item.get(key).and_then(Value::as_str)).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn fields(payload: &Value) -> BTreeMap<String, String> {
    let Some(object) = payload.as_object() else { return BTreeMap::new() };
    object
        .iter()
        .filter_map(|(key, value)| match value {
            Value::String(text) => Some((key.clone(), text.clone())),
            Value::Number(number) => Some((key.clone(), number.to_string())),
            _ => None,
        })
        .collect()
}

/// What the first of `rules` that acts on `happening` does.
pub fn decide(rules: &[HookRule], happening: &Happening) -> Action {
    for rule in rules {
        match (rule, happening) {
            (HookRule::IssueLabelled { label, template }, Happening::IssueLabelled { labels, title, body, url })
                if labels.iter().any(|given| given == label) =>
            {
                let fields = [("title", title), ("body", body), ("url", url)]
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value.clone()))
                    .collect();
                return Action::Start { template: template.clone(), fields };
            }
            (HookRule::Comment { mention }, Happening::Comment { branch, text, author }) => {
                let Some(rest) = text.trim_start().strip_prefix(mention.as_str()) else { continue };
                if branch.is_empty() {
                    return Action::Ignore("the comment names no branch".into());
                }
                let author = author.clone();
                return Action::FollowUp { branch: branch.clone(), text: rest.trim().to_owned(), author };
            }
            (HookRule::Any { template }, Happening::Fields(fields)) => {
                return Action::Start { template: template.clone(), fields: fields.clone() };
            }
            _ => {}
        }
    }
    let what = match happening {
        Happening::IssueLabelled { labels, .. } => format!("an issue labelled {}", labels.join(", ")),
        Happening::Comment { .. } => "a comment without the mention".to_owned(),
        Happening::Fields(_) => "the delivery".to_owned(),
        Happening::Other(event) => format!("event {event:?}"),
    };
    Action::Ignore(format!("no rule acts on {what}"))
}

/// A task's request from a template's and a delivery's fields: each `{{name}}` replaced by its
/// field; a request with no placeholder gets the title and body (or every field) after it.
pub fn request(template: &str, fields: &BTreeMap<String, String>) -> String {
    if template.contains("{{") {
        return fields
            .iter()
            .fold(template.to_owned(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value));
    }
    let told: Vec<String> = match (fields.get("title"), fields.get("body")) {
        (Some(title), body) => {
            [title.clone(), body.cloned().unwrap_or_default(), fields.get("url").cloned().unwrap_or_default()]
                .into_iter()
                .filter(|part| !part.trim().is_empty())
                .collect()
        }
        (None, _) => fields.iter().map(|(key, value)| format!("{key}: {value}")).collect(),
    };
    [template.trim().to_owned(), told.join("\n\n")]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests;
