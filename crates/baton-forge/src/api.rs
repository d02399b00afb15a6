//! The REST calls, in each forge's dialect.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{Commenter, Forge, ForgeError, Kind, PullRequest, Report};

/// How long one call may take, all told.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this much of a refusal's body goes into the error.
const ERROR_BODY_CHARS: usize = 500;

impl Forge {
    /// Opens a draft pull request from `head` into `base` (the repository's default branch when
    /// `None`) saying what `report` says, or updates the body of the open one from `head`: a
    /// retried call never opens a second, and a title or draft state a human changed stays.
    pub async fn publish(&self, head: &str, base: Option<&str>, report: &Report) -> Result<PullRequest, ForgeError> {
        let body = report.body();
        if let Some(open) = self.open_from(head).await? {
            let (method, fields) = match self.kind {
                Kind::GitHub | Kind::Gitea => (Method::PATCH, json!({"body": body})),
                Kind::GitLab => (Method::PUT, json!({"description": body})),
            };
            return read_pull(self.kind, &self.call(method, &self.pull(open.number), Some(fields)).await?);
        }
        let base = match base {
            Some(base) => base.to_owned(),
            None => self.default_branch().await?,
        };
        let title = report.title();
        let fields = match self.kind {
            Kind::GitHub => json!({"title": title, "head": head, "base": base, "body": body, "draft": true}),
            Kind::GitLab => json!({
                "title": format!("Draft: {title}"), "source_branch": head, "target_branch": base, "description": body
            }),
            Kind::Gitea => json!({"title": format!("WIP: {title}"), "head": head, "base": base, "body": body}),
        };
        read_pull(self.kind, &self.call(Method::POST, &self.pulls(), Some(fields)).await?)
    }

    /// Whether `who` may write to the repository (push, merge): only their comments steer a task.
    pub async fn may_write(&self, who: &Commenter) -> Result<bool, ForgeError> {
        let path = match (self.kind, who.id) {
            (Kind::GitHub | Kind::Gitea, _) => {
                format!("{}/collaborators/{}/permission", self.repo(), segment(&who.login))
            }
            (Kind::GitLab, Some(id)) => format!("{}/members/all/{id}", self.repo()),
            (Kind::GitLab, None) => return Ok(false),
        };
        let answer = match self.call(Method::GET, &path, None).await {
            Ok(answer) => answer,
            // Not a member, or not even a user the forge will tell about.
            Err(ForgeError::Refused { status: 403 | 404, .. }) => return Ok(false),
            Err(other) => return Err(other),
        };
        Ok(match self.kind {
            Kind::GitHub => matches!(answer["permission"].as_str(), Some("admin" | "write")),
            Kind::Gitea => matches!(answer["permission"].as_str(), Some("owner" | "admin" | "write")),
            // Developer (30) and above push.
            Kind::GitLab => answer["access_level"].as_u64().is_some_and(|level| level >= 30),
        })
    }

    /// Comments `text` on pull request `number`.
    pub async fn reply(&self, number: u64, text: &str) -> Result<(), ForgeError> {
        let (path, fields) = match self.kind {
            Kind::GitHub | Kind::Gitea => (format!("{}/issues/{number}/comments", self.repo()), json!({"body": text})),
            Kind::GitLab => (format!("{}/notes", self.pull(number)), json!({"body": text})),
        };
        self.call(Method::POST, &path, Some(fields)).await.map(drop)
    }

    /// The open pull request from `head`, if there is one.
    async fn open_from(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        let owner = self.project.split('/').next().unwrap_or_default();
        let query = match self.kind {
            Kind::GitHub => format!("?head={}:{}&state=open", segment(owner), segment(head)),
            Kind::GitLab => format!("?source_branch={}&state=opened", segment(head)),
            Kind::Gitea => "?state=open&limit=50".to_owned(),
        };
        let listed = self.call(Method::GET, &format!("{}{query}", self.pulls()), None).await?;
        let Some(pulls) = listed.as_array() else {
            return Err(self.unreadable("GET", &self.pulls(), "not a list of pull requests"));
        };
        // Gitea cannot filter by head: every open one is looked at.
        let from_head = pulls.iter().find(|pull| self.kind != Kind::Gitea || pull["head"]["ref"] == head);
        from_head.map(|pull| read_pull(self.kind, pull)).transpose()
    }

    async fn default_branch(&self) -> Result<String, ForgeError> {
        let repo = self.call(Method::GET, &self.repo(), None).await?;
        repo["default_branch"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.unreadable("GET", &self.repo(), "no default_branch"))
    }

    /// The repository's path in the API.
    fn repo(&self) -> String {
        match self.kind {
            Kind::GitHub | Kind::Gitea => {
                format!("/repos/{}", self.project.split('/').map(segment).collect::<Vec<_>>().join("/"))
            }
            Kind::GitLab => format!("/projects/{}", segment(&self.project)),
        }
    }

    fn pulls(&self) -> String {
        match self.kind {
            Kind::GitHub | Kind::Gitea => format!("{}/pulls", self.repo()),
            Kind::GitLab => format!("{}/merge_requests", self.repo()),
        }
    }

    fn pull(&self, number: u64) -> String {
        format!("{}/{number}", self.pulls())
    }

    fn unreadable(&self, method: &'static str, path: &str, why: &str) -> ForgeError {
        ForgeError::Unreadable { method, url: format!("{}{path}", self.api), why: why.to_owned() }
    }

    /// One call: JSON both ways, the token in the forge's header, no redirects followed.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ForgeError> {
        let token = std::env::var(&self.token_env)
            .ok()
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ForgeError::NoToken(self.token_env.clone(), self.api.clone()))?;
        let url = format!("{}{path}", self.api);
        let name = method_name(&method);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .user_agent("baton")
            .build()
            .map_err(|source| ForgeError::Http { method: name, url: url.clone(), source })?;
        let mut request = client.request(method, &url).header("Accept", "application/json");
        request = match self.kind {
            Kind::GitHub => request
                .bearer_auth(&token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28"),
            Kind::GitLab => request.header("PRIVATE-TOKEN", &token),
            Kind::Gitea => request.header("Authorization", format!("token {token}")),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.map_err(|source| ForgeError::Http { method: name, url: url.clone(), source })?;
        let status = response.status().as_u16();
        let text =
            response.text().await.map_err(|source| ForgeError::Http { method: name, url: url.clone(), source })?;
        if !(200..300).contains(&status) {
            let body: String = text.replace(&token, &self.token_env).chars().take(ERROR_BODY_CHARS).collect();
            return Err(ForgeError::Refused { method: name, url, status, body });
        }
        serde_json::from_str(&text).map_err(|error| ForgeError::Unreadable {
            method: name,
            url,
            why: error.to_string(),
        })
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        _ => "request",
    }
}

/// A pull request in the forge's words.
fn read_pull(kind: Kind, pull: &Value) -> Result<PullRequest, ForgeError> {
    let unreadable = |why: &str| ForgeError::Unreadable { method: "read", url: String::new(), why: why.to_owned() };
    let (number, url) = match kind {
        Kind::GitHub | Kind::Gitea => (pull["number"].as_u64(), pull["html_url"].as_str()),
        Kind::GitLab => (pull["iid"].as_u64(), pull["web_url"].as_str()),
    };
    let (Some(number), Some(url)) = (number, url) else {
        return Err(unreadable("a pull request without its number or page"));
    };
    let merged = pull["merged"].as_bool() == Some(true) || pull["merged_at"].is_string();
    let state = match (pull["state"].as_str(), merged) {
        (_, true) | (Some("merged"), _) => "merged",
        (Some("open" | "opened"), _) => "open",
        _ => "closed",
    };
    let title = pull["title"].as_str().unwrap_or_default();
    let draft = match kind {
        Kind::GitHub | Kind::GitLab => pull["draft"].as_bool().unwrap_or(false),
        Kind::Gitea => pull["draft"].as_bool().unwrap_or(false) || title.starts_with("WIP:"),
    };
    Ok(PullRequest { number, url: url.to_owned(), state: state.to_owned(), draft })
}

/// `text` as one path or query segment: everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
