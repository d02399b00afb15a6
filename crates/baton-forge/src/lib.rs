//! Pull requests on forges: which forge a remote's pull requests go to (`[forges.NAME]` in the
//! configuration, else github.com, gitlab.com and codeberg.org by their hosts), and the few REST
//! calls baton makes there — open or update a task's draft pull request, ask whether a commenter
//! may write to the repository, reply to a comment.
//!
//! Tokens are read from the environment variable the forge names, at each call; they are never
//! kept anywhere else, and never printed.

mod api;
mod body;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use body::{Check, Finding, Report, reply};

/// The REST dialects baton speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// GitHub and GitHub Enterprise: drafts are a flag.
    GitHub,
    /// GitLab: merge requests; a draft's title starts with `Draft:`.
    GitLab,
    /// Gitea and Forgejo: a draft's title starts with `WIP:`.
    #[serde(alias = "forgejo")]
    Gitea,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("[forges.{name}]: {why}")]
    Config { name: String, why: String },
    #[error("the configuration: {0}")]
    Toml(String),
    #[error("{0} is not set: the forge at {1} needs a token to open pull requests")]
    NoToken(String, String),
    #[error("{method} {url}: {source}")]
    Http { method: &'static str, url: String, source: reqwest::Error },
    #[error("{method} {url} answered {status}: {body}")]
    Refused { method: &'static str, url: String, status: u16, body: String },
    #[error("{method} {url} answered with what baton cannot read: {why}")]
    Unreadable { method: &'static str, url: String, why: String },
}

/// A forge as the configuration declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    kind: Kind,
    /// Remotes whose URL starts with this use the forge.
    remote: String,
    /// The REST API's base URL (`https://api.github.com`, `https://gitlab.example/api/v4`,
    /// `https://forgejo.example/api/v1`).
    api: String,
    /// `owner/name` on the forge; by default the remote URL's path.
    #[serde(default)]
    project: Option<String>,
    /// The environment variable holding the token.
    #[serde(default)]
    token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PullRequestSection {
    /// Where a task is seen, `{task}` standing for its id (`https://baton.example/ui/tasks/{task}`).
    link: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Sections {
    #[serde(default)]
    forges: BTreeMap<String, Declared>,
    #[serde(default)]
    pull_requests: PullRequestSection,
}

/// The forges of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Forges {
    declared: Vec<Declared>,
    link: Option<String>,
}

/// One repository on one forge.
#[derive(Debug, Clone)]
pub struct Forge {
    kind: Kind,
    api: String,
    project: String,
    token_env: String,
}

/// A pull (or merge) request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub's and Gitea's number, GitLab's `iid`.
    pub number: u64,
    /// Its page.
    pub url: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    pub draft: bool,
}

/// Who wrote a comment, as the forge's delivery names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commenter {
    pub login: String,
    /// GitLab's user id (its access API takes ids).
    pub id: Option<u64>,
}

impl Forges {
    /// The variables declared forges' tokens are in, besides the usual ones.
    pub fn token_variables(&self) -> impl Iterator<Item = &str> {
        self.declared.iter().filter_map(|declared| declared.token_env.as_deref())
    }

    /// The `[forges.NAME]` and `[pull_requests]` sections of a configuration file's text.
    pub fn read(config: &str) -> Result<Forges, ForgeError> {
        let sections: Sections = toml::from_str(config).map_err(|error| ForgeError::Toml(error.to_string()))?;
        for (name, declared) in &sections.forges {
            let refuse = |why: &str| Err(ForgeError::Config { name: name.clone(), why: why.to_owned() });
            if !(declared.api.starts_with("https://") || declared.api.starts_with("http://")) {
                return refuse("`api` must be an http(s) URL");
            }
            if declared.remote.is_empty() {
                return refuse("`remote` must be the start of the remote URLs it serves");
            }
            if declared.project.as_deref().is_some_and(|p| p.split('/').any(str::is_empty)) {
                return refuse("`project` must be owner/name");
            }
        }
        Ok(Forges { declared: sections.forges.into_values().collect(), link: sections.pull_requests.link })
    }

    /// Where the task `id` is seen, when the configuration says.
    pub fn link(&self, task: &str) -> Option<String> {
        self.link.as_ref().map(|link| link.replace("{task}", task))
    }

    /// The forge the pull requests of the remote at `url` go to: the declared forge whose `remote`
    /// is the longest start of it, else github.com, gitlab.com or codeberg.org by the URL's host,
    /// or GitHub Enterprise at `GITHUB_API_URL` for a remote on that URL's host.
    pub fn for_remote(&self, url: &str) -> Option<Forge> {
        let (host, path) = host_and_path(url);
        let declared = self.declared.iter().filter(|d| url.starts_with(&d.remote)).max_by_key(|d| d.remote.len());
        if let Some(declared) = declared {
            return Some(Forge {
                kind: declared.kind,
                api: declared.api.trim_end_matches('/').to_owned(),
                project: declared.project.clone().unwrap_or(path),
                token_env: declared.token_env.clone().unwrap_or_else(|| default_token(declared.kind).to_owned()),
            });
        }
        let enterprise = std::env::var("GITHUB_API_URL").ok().filter(|api| host_and_path(api).0 == host);
        let (kind, api) = match host.as_str() {
            "github.com" => (Kind::GitHub, "https://api.github.com".to_owned()),
            "gitlab.com" => (Kind::GitLab, "https://gitlab.com/api/v4".to_owned()),
            "codeberg.org" => (Kind::Gitea, "https://codeberg.org/api/v1".to_owned()),
            _ => (Kind::GitHub, enterprise?),
        };
        Some(Forge {
            kind,
            api: api.trim_end_matches('/').to_owned(),
            project: path,
            token_env: default_token(kind).into(),
        })
    }
}

fn default_token(kind: Kind) -> &'static str {
    match kind {
        Kind::GitHub => "GITHUB_TOKEN",
        Kind::GitLab => "GITLAB_TOKEN",
        Kind::Gitea => "FORGEJO_TOKEN",
    }
}

/// The host of a URL and its path without a leading `/` or `~/` and a trailing `.git`.
fn host_and_path(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = host.split(':').next().unwrap_or_default().to_ascii_lowercase();
    let path = path.trim_start_matches("~/").trim_end_matches('/');
    (host, path.strip_suffix(".git").unwrap_or(path).to_owned())
}

impl Forge {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `owner/name` on the forge.
    pub fn project(&self) -> &str {
        &self.project
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

    use super::*;

    #[test]
    fn a_remote_finds_its_forge_by_declaration_or_by_host() {
        let forges = Forges::read(
            r#"
            [sandbox]
            cpus = 2
            [forges.inhouse]
            kind = "forgejo"
            remote = "ssh://git@forge.acme.internal/"
            api = "https://forge.acme.internal/api/v1/"
            [forges.mirror]
            kind = "gitlab"
            remote = "file:///srv/git/"
            api = "http://127.0.0.1:9/api/v4"
            project = "team/app"
            token_env = "MIRROR_TOKEN"
            "#,
        )
        .unwrap();
        let inhouse = forges.for_remote("ssh://git@forge.acme.internal/~/tools/app.git").unwrap();
        assert_eq!((inhouse.kind, inhouse.project.as_str()), (Kind::Gitea, "tools/app"));
        assert_eq!(inhouse.api, "https://forge.acme.internal/api/v1");
        let mirror = forges.for_remote("file:///srv/git/app.git").unwrap();
        assert_eq!(
            (mirror.kind, mirror.project.as_str(), mirror.token_env.as_str()),
            (Kind::GitLab, "team/app", "MIRROR_TOKEN")
        );
        let github = forges.for_remote("https://github.com/acme/app.git").unwrap();
        assert_eq!(
            (github.kind, github.project.as_str(), github.token_env.as_str()),
            (Kind::GitHub, "acme/app", "GITHUB_TOKEN")
        );
        assert_eq!(forges.for_remote("https://gitlab.com/g/sub/app").unwrap().project, "g/sub/app");
        assert!(forges.for_remote("https://git.unknown.example/a/b").is_none());
    }

    #[test]
    fn a_bad_declaration_is_refused_with_its_name() {
        for (text, why) in [
            ("[forges.x]\nkind = \"github\"\nremote = \"https://h/\"\napi = \"ftp://h\"", "[forges.x]: `api`"),
            ("[forges.x]\nkind = \"bitbucket\"\nremote = \"https://h/\"\napi = \"https://h\"", "unknown variant"),
            ("[forges.x]\nkind = \"github\"\nremote = \"\"\napi = \"https://h\"", "`remote`"),
            ("[forges.x]\nkind = \"github\"\nremote = \"h\"\napi = \"https://h\"\nproject = \"a/\"", "owner/name"),
            ("[forges.x]\nkind = \"github\"\nremote = \"h\"\napi = \"https://h\"\ntoken = \"t\"", "unknown field"),
        ] {
            let error = Forges::read(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
