//! Pull requests on stand-ins of GitHub's, GitLab's and Forgejo's REST APIs (`forge_standin.py`):
//! a verified task on a remote opens a draft with its summary, checks, review and cost; a follow-up
//! that continues the branch updates the same pull request and is answered there, naming the commit
//! that addressed it; only a comment by someone who may write to the repository steers a task; the
//! token never reaches the journal.
//! The GitHub stand-in checks every request against GitHub's published OpenAPI description.
//!
//! Needs `BATON_TEST_PYTHON` (a Python with jsonschema) and `BATON_TEST_GITHUB_OPENAPI` (the
//! description from the @octokit/openapi package); `scripts/test` installs both.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::git;
use baton_testkit::model::{Script, ScriptedServer};
use common::{calc_repo, call, describe};
use serde_json::{Value, json};

const TOKEN: &str = "standin-sekrit-token";

/// A forge stand-in, stopped when dropped.
struct StandIn {
    child: Child,
    port: u16,
}

impl StandIn {
    fn start(kind: &str, remote: &Path, writers: &str) -> StandIn {
        let python = std::env::var("BATON_TEST_PYTHON")
            .expect("BATON_TEST_PYTHON must name a Python with jsonschema; scripts/test sets it up");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/forge_standin.py");
        let mut command = Command::new(python);
        command.arg(script).arg(kind).args(["--project", "acme/calc", "--token", TOKEN, "--writers", writers]);
        command.arg("--remote").arg(remote);
        if kind == "github" {
            let openapi = std::env::var("BATON_TEST_GITHUB_OPENAPI").expect(
                "BATON_TEST_GITHUB_OPENAPI must name @octokit/openapi's api.github.com.json; scripts/test installs it",
            );
            command.args(["--openapi", &openapi]);
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().strip_prefix("PORT ").unwrap_or_else(|| panic!("the stand-in said {line:?}")).parse().unwrap();
        StandIn { child, port }
    }

    fn api(&self, kind: &str) -> String {
        let prefix = match kind {
            "gitlab" => "/api/v4",
            "gitea" => "/api/v1",
            _ => "",
        };
        format!("http://127.0.0.1:{}{prefix}", self.port)
    }

    async fn log(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/_log", self.port);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn baton(home: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command.args(args).env("BATON_HOME", home).env("BATON_CONFIG", home.join("config.toml")).env_remove("BATON_MODEL");
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::process::Command::from(command).output().await.unwrap()
}

fn bare_remote(dir: &Path) -> PathBuf {
    let origin = calc_repo();
    git(dir, &["clone", "--quiet", "--bare", &origin.path().display().to_string(), "remote.git"]);
    dir.join("remote.git")
}

async fn journal(home: &Path, id: &str) -> Vec<Value> {
    let shown = baton(home, &["task", "events", id, "--json"], &[]).await;
    String::from_utf8(shown.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn published(journal: &[Value]) -> Vec<&Value> {
    journal
        .iter()
        .filter(|e| e["event"]["type"] == "pull_request_published")
        .map(|e| &e["event"]["pull_request"])
        .collect()
}

/// The requests that opened and updated pull requests.
fn writes<'a>(log: &'a Value, kind: &str) -> (Vec<&'a Value>, Vec<&'a Value>) {
    let pulls = if kind == "gitlab" { "/merge_requests" } else { "/pulls" };
    let requests = log["requests"].as_array().unwrap();
    let opened = requests.iter().filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with(pulls));
    let updated = requests.iter().filter(|r| matches!(r["method"].as_str(), Some("PATCH" | "PUT")));
    (opened.collect(), updated.collect())
}

/// The agent fixes `add` and finishes; then, asked for more, writes NOTES and says `summary`.
fn fix_then_notes(summary: &str) -> Script {
    Script {
        turns: vec![
            call("e1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("f1", "finish", json!({"summary": "add() adds now."})),
            call("w2", "write_file", json!({"path": "NOTES", "content": "add() adds.\n"})),
            call("f2", "finish", json!({"summary": summary})),
        ],
        ..Script::default()
    }
}

/// A verified task opens a draft; a follow-up that continues its branch updates the same one.
async fn a_verified_task_opens_a_draft_and_a_follow_up_updates_it(kind: &str) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let remote = bare_remote(dir.path());
    let url = format!("file://{}", remote.display());
    let forge = StandIn::start(kind, &remote, "");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = format!(
        "[forges.standin]\nkind = \"{kind}\"\nremote = \"{url}\"\napi = \"{}\"\nproject = \"acme/calc\"\ntoken_env = \"STANDIN_TOKEN\"\n\n[pull_requests]\nlink = \"http://baton.test/ui/tasks/{{task}}\"\n",
        forge.api(kind)
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let script = fix_then_notes("Wrote NOTES as asked.");
    let model = ScriptedServer::start(script).await.unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url())), ("STANDIN_TOKEN", TOKEN.to_owned())];
    let args = [
        "run",
        "Make add() add\n\nThe test says how.",
        "--repo",
        &url,
        "--check",
        "python3 test_calc.py",
        "--no-review",
        "--model",
        "openai-compatible/scripted",
    ];
    let output = baton(&home, &args, &env).await;
    assert!(output.status.success(), "{}", describe(&output));
    let listed = baton(&home, &["task", "list", "--json"], &[]).await;
    let first = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let events = journal(&home, &first).await;
    let opened = published(&events);
    assert_eq!(opened.len(), 1, "{kind}: {}", describe(&output));
    let verified = events.iter().rfind(|e| e["event"]["type"] == "checkpointed").unwrap()["event"]["commit"].clone();
    assert_eq!(opened[0]["commit"], verified);
    assert_eq!(opened[0]["number"], 1);
    assert_eq!(opened[0]["draft"], true, "{kind}: {}", opened[0]);

    let log = forge.log().await;
    assert_eq!(log["failures"], json!([]), "{kind}: every request as the forge takes it");
    let (created, updated) = writes(&log, kind);
    assert!(created.len() == 1 && updated.is_empty(), "{kind}: {log}");
    let body = &created[0]["body"];
    let (title, text) = match kind {
        "github" => {
            assert_eq!(body["draft"], true);
            (body["title"].as_str().unwrap(), body["body"].as_str().unwrap())
        }
        "gitlab" => (body["title"].as_str().unwrap(), body["description"].as_str().unwrap()),
        _ => (body["title"].as_str().unwrap(), body["body"].as_str().unwrap()),
    };
    let expected_title = match kind {
        "gitlab" => "Draft: Make add() add",
        "gitea" => "WIP: Make add() add",
        _ => "Make add() add",
    };
    assert_eq!(title, expected_title);
    let short = &verified.as_str().unwrap()[..12];
    for part in [
        "## Summary\n\n```text\nadd() adds now.\n```",
        "## Testing",
        &format!("clean checkout of {short}"),
        "- ` python3 test_calc.py `: passed (exit code 0,",
        "## Review\n\nNot reviewed.",
        "## Cost",
        &format!("[{first}](http://baton.test/ui/tasks/{first})"),
    ] {
        assert!(text.contains(part), "{kind}: {part:?} is not in\n{text}");
    }
    let head = if kind == "gitlab" { &body["source_branch"] } else { &body["head"] };
    assert_eq!(head.as_str().unwrap(), events[0]["event"]["branch"].as_str().unwrap());

    // A follow-up continues the branch: the same pull request shows the new commit.
    let sent = baton(&home, &["task", "message", &first, "Also write NOTES", "--json"], &[]).await;
    assert!(sent.status.success(), "{}", describe(&sent));
    let continuing = serde_json::from_slice::<Value>(&sent.stdout).unwrap()["task"].as_str().unwrap().to_owned();
    let resumed = baton(&home, &["resume", &continuing], &env).await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    let events = journal(&home, &continuing).await;
    let later = published(&events);
    assert_eq!(later.len(), 1, "{kind}: {}", describe(&resumed));
    assert_eq!(later[0]["number"], 1, "the same pull request");
    let newer = events.iter().rfind(|e| e["event"]["type"] == "checkpointed").unwrap()["event"]["commit"].clone();
    assert_eq!(later[0]["commit"], newer);
    let log = forge.log().await;
    assert_eq!(log["failures"], json!([]), "{kind}");
    let (created, updated) = writes(&log, kind);
    assert!(created.len() == 1 && updated.len() == 1, "{kind}: one pull request, updated once: {log}");
    let field = if kind == "gitlab" { "description" } else { "body" };
    let text = updated[0]["body"][field].as_str().unwrap();
    assert!(text.contains("Wrote NOTES as asked.") && text.contains(&newer.as_str().unwrap()[..12]), "{text}");
    assert!(updated[0]["body"].get("title").is_none(), "the title is left as it is: {}", updated[0]);
    // The follow-up is answered on the pull request, naming the commit that addressed it.
    let replies = log["comments"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{kind}: {log}");
    assert_eq!(replies[0]["number"], 1);
    let reply = replies[0]["body"].as_str().unwrap();
    assert!(reply.starts_with(&format!("Addressed in {}.", newer.as_str().unwrap())), "{reply}");
    assert!(reply.contains("```text\nAlso write NOTES\n```"), "{reply}");
    assert_eq!(
        events.iter().rfind(|e| e["event"]["type"] == "pull_request_published").unwrap()["event"]["answered"],
        json!(["Also write NOTES"])
    );
    assert_eq!(log["pulls"][0]["title"], expected_title, "still a draft");

    let shown = baton(&home, &["task", "show", &continuing], &[]).await;
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("pr       #1 http://forge.test/acme/calc/pull/1 (open, draft)"), "{shown}");
    for id in [&first, &continuing] {
        let all = baton(&home, &["task", "events", id, "--json"], &[]).await;
        assert!(!String::from_utf8_lossy(&all.stdout).contains(TOKEN), "the token is in the journal");
    }
    assert!(model.failures().is_empty() && model.remaining_turns() == 0, "{:?}", model.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_a_verified_task_opens_a_draft_and_a_follow_up_updates_it() {
    a_verified_task_opens_a_draft_and_a_follow_up_updates_it("github").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_a_verified_task_opens_a_draft_merge_request_and_a_follow_up_updates_it() {
    a_verified_task_opens_a_draft_and_a_follow_up_updates_it("gitlab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgejo_a_verified_task_opens_a_wip_pull_request_and_a_follow_up_updates_it() {
    a_verified_task_opens_a_draft_and_a_follow_up_updates_it("gitea").await;
}

/// Posts a GitHub review comment by `login` on `branch`'s pull request to hook `gh`.
async fn comment(
    served: &common::served::Served,
    secret: &str,
    delivery: &str,
    login: &str,
    branch: &str,
) -> (u16, Value) {
    let body = json!({"action": "created",
        "comment": {"body": "@baton also write NOTES", "user": {"login": login, "id": 1}},
        "pull_request": {"number": 1, "head": {"ref": branch, "repo": {"id": 9}}, "base": {"repo": {"id": 9}}}})
    .to_string();
    let signature = format!("sha256={}", baton_hooks::sign_body(secret.as_bytes(), body.as_bytes()));
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/gh", served.url))
        .header("X-GitHub-Event", "pull_request_review_comment")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_comment_by_someone_who_may_write_follows_up_the_task_of_a_pull_request() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let remote = bare_remote(dir.path());
    let url = format!("file://{}", remote.display());
    let forge = StandIn::start("github", &remote, "maintainer");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = format!(
        "[forges.standin]\nkind = \"github\"\nremote = \"{url}\"\napi = \"{}\"\nproject = \"acme/calc\"\ntoken_env = \"STANDIN_TOKEN\"\n",
        forge.api("github")
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let made =
        common::served::baton(&home).args(["hook", "create", "--name", "gh", "--kind", "github"]).output().unwrap();
    assert!(made.status.success(), "{}", describe(&made));
    let secret = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let script = fix_then_notes("Wrote NOTES as the maintainer asked.");
    let model = ScriptedServer::start(script).await.unwrap();
    let served = common::served::serve_with_env(&home, &model, &["--slots", "1"], &[("STANDIN_TOKEN", TOKEN)]);
    let http = served.http();
    let body = json!({"request": "Make add() add", "repo": url, "checks": ["python3 test_calc.py"], "review": false});
    let first = served.create(&body).await;
    let done = common::served::reaching(&http, format!("{}/api/v1/tasks/{first}", served.url), "done").await;
    assert_eq!(done["pull_request"]["number"], 1, "{done}");
    assert_eq!(done["pushed"], done["last_commit"]);
    let branch = done["branch"].as_str().unwrap();
    // On demand over the API: the same pull request, brought up to date.
    let again = http.post(format!("{}/api/v1/tasks/{first}/pr", served.url)).send().await.unwrap();
    let status = again.status();
    let again: Value = again.json().await.unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!((again["pull_request"]["number"].as_u64(), again["status"].as_str()), (Some(1), Some("done")));

    let (status, ignored) = comment(&served, &secret, "c-1", "stranger", branch).await;
    assert_eq!((status, ignored["outcome"].as_str()), (202, Some("ignored")), "{ignored}");
    assert!(ignored["detail"].as_str().unwrap().contains("stranger may not write"), "{ignored}");
    let listed: Value = http.get(format!("{}/api/v1/tasks", served.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1, "a reader's comment starts nothing");

    let (status, followed) = comment(&served, &secret, "c-2", "maintainer", branch).await;
    assert_eq!((status, followed["outcome"].as_str()), (200, Some("followed_up")), "{followed}");
    let next = followed["task"].as_str().unwrap();
    let continued = common::served::reaching(&http, format!("{}/api/v1/tasks/{next}", served.url), "done").await;
    assert_eq!((continued["branch"].as_str(), continued["request"].as_str()), (Some(branch), Some("also write NOTES")));
    assert_eq!(continued["pull_request"]["number"], 1, "the same pull request: {continued}");
    assert_eq!(continued["pull_request"]["commit"], continued["last_commit"]);

    let log = forge.log().await;
    assert_eq!(log["failures"], json!([]), "every request as GitHub's description has it");
    let asked: Vec<&str> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str().filter(|path| path.ends_with("/permission")))
        .collect();
    assert_eq!(
        asked,
        ["/repos/acme/calc/collaborators/stranger/permission", "/repos/acme/calc/collaborators/maintainer/permission"]
    );
    let (created, updated) = writes(&log, "github");
    assert_eq!((created.len(), updated.len()), (1, 2), "opened, updated on demand, updated by the follow-up: {log}");
    assert!(updated[1]["body"]["body"].as_str().unwrap().contains("Wrote NOTES as the maintainer asked."));
    let replies = log["comments"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "only the writer's comment is answered: {log}");
    let reply = replies[0]["body"].as_str().unwrap();
    let commit = continued["last_commit"].as_str().unwrap();
    assert!(
        reply.starts_with(&format!("Addressed in {commit}.\n\nAsked:\n\n```text\nalso write NOTES\n```")),
        "{reply}"
    );
}
