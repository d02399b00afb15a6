//! Where the task, budget, decide and finding commands read and steer: this machine's data
//! directory, or a `baton serve` over its API (`--server URL`, with `BATON_TOKEN`). Both give the
//! same domain values — a task's state is folded from its journal either way — so the output is
//! the same, and both validate alike (the server with the same code, behind its API).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use baton_core::{
    AutoReload, Credits, Entry, EntryKind, FindingStatus, Month, Policy, Position, Recorded, Status, StopReason,
    TaskId, TaskState, Timestamp,
};
use baton_server::{FollowedUp, LimitChange};
use baton_store::{SqlStore, Store, TaskSummary};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::budget;
use crate::task::{self, now};

#[async_trait]
pub trait Backend: Send + Sync {
    /// All tasks, newest first, optionally only those with `status`.
    async fn list(&self, status: Option<Status>) -> anyhow::Result<Vec<TaskSummary>>;

    /// The one task whose id starts with `prefix`.
    async fn resolve(&self, prefix: &str) -> anyhow::Result<TaskId>;

    /// The task's events from `from` on, in order.
    async fn events(&self, task: &TaskId, from: u64) -> anyhow::Result<Vec<Recorded>>;

    /// The account's position now.
    async fn account(&self) -> anyhow::Result<Position>;

    /// The newest `limit` entries of the account's ledger, newest first.
    async fn entries(&self, limit: u32) -> anyhow::Result<Vec<Entry>>;

    /// Adds a positive grant or top-up to the account.
    async fn credit(&self, kind: EntryKind, amount: Credits, note: &str) -> anyhow::Result<()>;

    /// Replaces the account's policy (checked first).
    async fn set_policy(&self, policy: Policy) -> anyhow::Result<()>;

    /// Changes the task's limits; its state after.
    async fn set_limits(&self, task: &TaskId, change: &LimitChange) -> anyhow::Result<TaskState>;

    /// A human settles a finding; the task's state after.
    async fn settle(
        &self,
        task: &TaskId,
        finding: &str,
        status: FindingStatus,
        note: String,
    ) -> anyhow::Result<TaskState>;

    /// Answers the task's open decision `decision`.
    async fn decide(&self, task: &TaskId, decision: &str, answer: String, approved: bool) -> anyhow::Result<()>;

    /// Picks the attempt that becomes the task's result, for a task waiting for a pick.
    async fn pick(&self, task: &TaskId, attempt: &str) -> anyhow::Result<()>;

    /// Sends the user's follow-up to the task; its number.
    async fn follow_up(&self, task: &TaskId, text: &str) -> anyhow::Result<FollowedUp>;

    /// Ends the task for good (its branch kept); its state after.
    async fn cancel(&self, task: &TaskId, reason: &str) -> anyhow::Result<TaskState>;

    /// The task's state, folded from its journal.
    async fn load(&self, task: &TaskId) -> anyhow::Result<TaskState> {
        let journal = self.events(task, 0).await?;
        baton_core::fold(task.clone(), &journal).with_context(|| format!("task {task}: the journal does not fold"))
    }
}

/// The backend the command line names: the server at `server`, or the data directory `home`.
pub async fn open(
    home: &dyn Fn() -> anyhow::Result<PathBuf>,
    server: Option<&str>,
) -> anyhow::Result<Box<dyn Backend>> {
    match server {
        Some(url) => Ok(Box::new(Remote::new(url)?)),
        None => {
            let home = home()?;
            Ok(Box::new(Local { store: crate::store::open(&home).await?, home }))
        }
    }
}

/// This machine's data directory.
#[derive(Debug)]
pub struct Local {
    pub home: PathBuf,
    pub store: SqlStore,
}

#[async_trait]
impl Backend for Local {
    async fn list(&self, status: Option<Status>) -> anyhow::Result<Vec<TaskSummary>> {
        Ok(self.store.list(status).await?)
    }

    async fn resolve(&self, prefix: &str) -> anyhow::Result<TaskId> {
        Ok(self.store.resolve(prefix).await?)
    }

    async fn events(&self, task: &TaskId, from: u64) -> anyhow::Result<Vec<Recorded>> {
        Ok(self.store.events(task, from).await?)
    }

    async fn account(&self) -> anyhow::Result<Position> {
        Ok(self.store.account(now()).await?)
    }

    async fn entries(&self, limit: u32) -> anyhow::Result<Vec<Entry>> {
        Ok(self.store.entries(limit).await?)
    }

    async fn credit(&self, kind: EntryKind, amount: Credits, note: &str) -> anyhow::Result<()> {
        if amount <= Credits::ZERO {
            bail!("a top-up must be more than zero credits, not {amount}");
        }
        self.store.credit(now(), kind, amount, note).await?;
        Ok(())
    }

    async fn set_policy(&self, policy: Policy) -> anyhow::Result<()> {
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(self.store.set_policy(policy).await?)
    }

    async fn set_limits(&self, task: &TaskId, change: &LimitChange) -> anyhow::Result<TaskState> {
        Ok(budget::set_limits(&self.store, task, change).await?)
    }

    async fn settle(
        &self,
        task: &TaskId,
        finding: &str,
        status: FindingStatus,
        note: String,
    ) -> anyhow::Result<TaskState> {
        Ok(task::settle_finding(&self.store, task, finding, status, note).await?)
    }

    async fn decide(&self, task: &TaskId, decision: &str, answer: String, approved: bool) -> anyhow::Result<()> {
        Ok(task::decide(&self.store, task, decision, answer, approved).await?)
    }

    async fn pick(&self, task: &TaskId, attempt: &str) -> anyhow::Result<()> {
        Ok(task::pick(&self.store, task, attempt).await?)
    }

    async fn follow_up(&self, task: &TaskId, text: &str) -> anyhow::Result<FollowedUp> {
        Ok(task::follow_up(&self.store, task, text).await?)
    }

    async fn cancel(&self, task: &TaskId, reason: &str) -> anyhow::Result<TaskState> {
        Ok(task::cancel(&self.store, &self.home, task, reason).await?)
    }

    async fn load(&self, task: &TaskId) -> anyhow::Result<TaskState> {
        Ok(self.store.load(task).await?)
    }
}

/// A `baton serve`, reached with the token in `BATON_TOKEN`.
pub struct Remote {
    base: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Remote {
    pub fn new(url: &str) -> anyhow::Result<Remote> {
        let token = std::env::var("BATON_TOKEN")
            .context("--server needs a token in BATON_TOKEN (`baton token create` on the server)")?;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value: reqwest::header::HeaderValue =
            format!("Bearer {}", token.trim()).parse().context("BATON_TOKEN is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let http = reqwest::Client::builder().default_headers(headers).build()?;
        Ok(Remote { base: format!("{}/api/v1", url.trim_end_matches('/')), http })
    }

    /// Sends `request` and reads its JSON answer, or says what the server refused and why.
    pub async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = request.send().await.with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await.context("the server's answer broke off")?;
        if !status.is_success() {
            let error: Value = serde_json::from_slice(&body).unwrap_or_default();
            match error["error"]["message"].as_str() {
                Some(message) => bail!("{message} (server: {status})"),
                None => bail!("the server answered {status}"),
            }
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the server's answer is not what baton expects ({status})"))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }
}

fn credits(value: &Value) -> anyhow::Result<Credits> {
    let text = value.as_str().context("an amount is missing")?;
    text.parse::<Credits>().map_err(|error| anyhow::anyhow!("amount {text:?}: {error}"))
}

fn timestamp(value: &Value) -> anyhow::Result<Timestamp> {
    value.as_i64().map(Timestamp).context("a time is missing")
}

#[async_trait]
impl Backend for Remote {
    async fn list(&self, status: Option<Status>) -> anyhow::Result<Vec<TaskSummary>> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            query.extend(status.map(|status| ("status", status.to_string())));
            query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
            let page: Value = self.call(self.get("/tasks").query(&query)).await?;
            for task in page["tasks"].as_array().context("no tasks in the answer")? {
                let text = |field: &str| task[field].as_str().map(str::to_owned).with_context(|| format!("no {field}"));
                tasks.push(TaskSummary {
                    id: TaskId::parse(&text("id")?)?,
                    request: text("request")?,
                    branch: text("branch")?,
                    status: text("status")?.parse()?,
                    stop_reason: task["stop_reason"].as_str().map(str::parse::<StopReason>).transpose()?,
                    created_at: timestamp(&task["created_at"])?,
                    updated_at: timestamp(&task["updated_at"])?,
                    next_seq: task["next_seq"].as_u64().context("no next_seq")?,
                });
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(tasks),
            }
        }
    }

    async fn resolve(&self, prefix: &str) -> anyhow::Result<TaskId> {
        let task: Value = self.call(self.get(&format!("/tasks/{}", segment(prefix)?))).await?;
        Ok(TaskId::parse(task["id"].as_str().context("no id in the answer")?)?)
    }

    async fn events(&self, task: &TaskId, from: u64) -> anyhow::Result<Vec<Recorded>> {
        let mut events: Vec<Recorded> = Vec::new();
        loop {
            let next = from + events.len() as u64;
            let mut request = self.get(&format!("/tasks/{task}/events"));
            if let Some(after) = next.checked_sub(1) {
                request = request.query(&[("after", after)]);
            }
            let page: Value = self.call(request).await?;
            let batch: Vec<Recorded> =
                serde_json::from_value(page["events"].clone()).context("the events do not decode")?;
            events.extend(batch);
            if page["more"] != Value::Bool(true) {
                return Ok(events);
            }
        }
    }

    async fn account(&self) -> anyhow::Result<Position> {
        let account: Value = self.call(self.get("/account")).await?;
        let policy = &account["policy"];
        let auto_reload = match &policy["auto_reload"] {
            Value::Null => None,
            reload => Some(AutoReload {
                threshold: credits(&reload["threshold"])?,
                target: credits(&reload["target"])?,
                max_per_month: reload["max_per_month"].as_u64().context("no max_per_month")? as u32,
            }),
        };
        let month = account["month"].as_str().context("no month")?;
        let (year, number) = month.split_once('-').with_context(|| format!("month {month:?}"))?;
        Ok(Position {
            policy: Policy {
                monthly_cap: policy["monthly_cap"].as_str().map(|_| credits(&policy["monthly_cap"])).transpose()?,
                auto_reload,
                overage: policy["overage"].as_bool().context("no overage")?,
            },
            balance: credits(&account["balance"])?,
            reserved: credits(&account["reserved"])?,
            month: Month { year: year.parse()?, month: number.parse()? },
            spent_this_month: credits(&account["spent_this_month"])?,
            reloads_this_month: account["reloads_this_month"].as_u64().context("no reloads_this_month")? as u32,
        })
    }

    async fn entries(&self, limit: u32) -> anyhow::Result<Vec<Entry>> {
        let page: Value = self.call(self.get("/account/entries").query(&[("limit", limit)])).await?;
        let entries = page["entries"].as_array().context("no entries in the answer")?;
        entries
            .iter()
            .map(|entry| {
                Ok(Entry {
                    at: timestamp(&entry["at"])?,
                    kind: serde_json::from_value(entry["kind"].clone()).context("an entry's kind")?,
                    amount: credits(&entry["amount"])?,
                    task: entry["task"].as_str().map(str::to_owned),
                    key: entry["key"].as_str().map(str::to_owned),
                    note: entry["note"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    async fn credit(&self, kind: EntryKind, amount: Credits, note: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"credits": amount.to_string(), "grant": kind == EntryKind::Grant, "note": note});
        let _: Value = self.call(self.post("/account/topup").json(&body)).await?;
        Ok(())
    }

    async fn set_policy(&self, policy: Policy) -> anyhow::Result<()> {
        let reload = policy.auto_reload.map(|reload| {
            serde_json::json!({"threshold": reload.threshold.to_string(), "target": reload.target.to_string(), "max_per_month": reload.max_per_month})
        });
        let cap = policy.monthly_cap.map(|cap| cap.to_string());
        let body = serde_json::json!({"monthly_cap": cap, "auto_reload": reload, "overage": policy.overage});
        let _: Value = self.call(self.http.put(format!("{}/account/policy", self.base)).json(&body)).await?;
        Ok(())
    }

    async fn set_limits(&self, task: &TaskId, change: &LimitChange) -> anyhow::Result<TaskState> {
        let mut body = serde_json::Map::new();
        let mut put = |field: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(field.to_owned(), value);
            }
        };
        put("credits", change_value(&change.credits));
        put("window_secs", change_value(&change.window_secs));
        put("max_steps", change_value(&change.max_steps));
        let patch = self.http.patch(format!("{}/tasks/{task}/budget", self.base)).json(&body);
        let _: Value = self.call(patch).await?;
        self.load(task).await
    }

    async fn settle(
        &self,
        task: &TaskId,
        finding: &str,
        status: FindingStatus,
        note: String,
    ) -> anyhow::Result<TaskState> {
        let status = match status {
            FindingStatus::Resolved => "resolved",
            FindingStatus::Irrelevant => "dismissed",
            other => bail!("a human settles a finding as resolved or irrelevant, not {other:?}"),
        };
        let body = serde_json::json!({"status": status, "note": note});
        let _: Value =
            self.call(self.post(&format!("/tasks/{task}/findings/{}", segment(finding)?)).json(&body)).await?;
        self.load(task).await
    }

    async fn decide(&self, task: &TaskId, decision: &str, answer: String, approved: bool) -> anyhow::Result<()> {
        let body = serde_json::json!({"answer": answer, "deny": !approved});
        let _: Value =
            self.call(self.post(&format!("/tasks/{task}/decisions/{}", segment(decision)?)).json(&body)).await?;
        Ok(())
    }

    async fn pick(&self, task: &TaskId, attempt: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"attempt": attempt});
        let _: Value = self.call(self.post(&format!("/tasks/{task}/pick")).json(&body)).await?;
        Ok(())
    }

    async fn follow_up(&self, task: &TaskId, text: &str) -> anyhow::Result<FollowedUp> {
        let sent: Value =
            self.call(self.post(&format!("/tasks/{task}/messages")).json(&serde_json::json!({"text": text}))).await?;
        let task = TaskId::parse(sent["task"]["id"].as_str().context("no task in the answer")?)?;
        Ok(match sent["number"].as_u64() {
            Some(number) => FollowedUp::Delivered { task, number },
            None => FollowedUp::Continued { task },
        })
    }

    async fn cancel(&self, task: &TaskId, reason: &str) -> anyhow::Result<TaskState> {
        let _: Value =
            self.call(self.post(&format!("/tasks/{task}/cancel")).json(&serde_json::json!({"reason": reason}))).await?;
        self.load(task).await
    }
}

/// `text` as one segment of a path: ids are letters, digits, `-` and `_`, and anything else is
/// refused before it could change the path it is put in.
fn segment(text: &str) -> anyhow::Result<&str> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("`{text}` is not an id");
    }
    Ok(text)
}

/// A change as JSON: `None` to leave the field out, `null` to clear it.
fn change_value<T: serde::Serialize>(change: &baton_server::Change<T>) -> Option<Value> {
    match change {
        baton_server::Change::Keep => None,
        baton_server::Change::Clear => Some(Value::Null),
        baton_server::Change::Set(value) => Some(serde_json::to_value(value).unwrap_or(Value::Null)),
    }
}
