//! Incoming hooks on a real `baton serve`: deliveries in GitHub's, GitLab's, Forgejo's and the
//! generic form, signed over their raw bodies, start one task each; a redelivery starts none; a
//! bad or missing signature is 401 and starts none; a pull request comment on a task no forge can
//! vouch for is ignored; every delivery is logged with its outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use baton_testkit::model::{Expect, Rule, Script, ScriptedServer};
use common::served::{Served, baton, reaching, save_template, serve, serve_with};
use serde_json::{Value, json};

fn finishing() -> Script {
    Script { rules: vec![Rule { when: Expect::default(), reply: common::finish("done") }], ..Script::default() }
}

/// Makes hook `name` of `kind` starting template `fix`; its secret.
fn hook(home: &std::path::Path, name: &str, kind: &str) -> String {
    let made =
        baton(home).args(["hook", "create", "--name", name, "--kind", kind, "--template", "fix"]).output().unwrap();
    assert!(made.status.success(), "{}", common::describe(&made));
    String::from_utf8(made.stdout).unwrap().trim().to_owned()
}

async fn tasks(served: &Served) -> Vec<Value> {
    let listed: Value =
        served.http().get(format!("{}/api/v1/tasks", served.url)).send().await.unwrap().json().await.unwrap();
    listed["tasks"].as_array().unwrap().clone()
}

/// Posts `body` to hook `name` with `headers` (no token); the status and the JSON answer.
async fn deliver(served: &Served, name: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/api/v1/hooks/{name}", served.url)).body(body.to_owned());
    for (header, value) in headers {
        request = request.header(*header, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn labelled_issue(title: &str) -> String {
    json!({"action": "labeled", "label": {"name": "baton"},
        "issue": {"title": title, "body": "It panics.", "html_url": "https://forge.test/acme/calc/issues/7",
                  "labels": [{"name": "baton"}]}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_start_one_task_each_and_redeliveries_and_forgeries_start_none() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    save_template(home.path(), repo.path(), "fix", "Fix the issue below.", &["--check", "true", "--no-review"]);
    let github = hook(home.path(), "gh", "github");
    let forgejo = hook(home.path(), "fj", "forgejo");
    let generic = hook(home.path(), "any", "generic");
    let gitlab_token = "a-gitlab-token-set-on-the-forge";
    let made = baton(home.path())
        .args(["hook", "create", "--name", "gl", "--kind", "gitlab", "--template", "fix", "--secret-env", "GL_TOKEN"])
        .env("GL_TOKEN", gitlab_token)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", common::describe(&made));
    let served = serve(home.path(), &model, "2");

    // GitHub: signed, started; again, a duplicate; forged or unsigned, 401.
    let body = labelled_issue("Crash on empty input");
    let signature = format!("sha256={}", baton_hooks::sign_body(github.as_bytes(), body.as_bytes()));
    let headers = |signature: &str, delivery: &str| {
        vec![
            ("X-GitHub-Event", "issues".to_owned()),
            ("X-GitHub-Delivery", delivery.to_owned()),
            ("X-Hub-Signature-256", signature.to_owned()),
        ]
    };
    let (status, started) = deliver(&served, "gh", &headers(&signature, "gh-1"), &body).await;
    assert_eq!(status, 201, "{started}");
    let task = started["task"].as_str().unwrap().to_owned();
    let (status, again) = deliver(&served, "gh", &headers(&signature, "gh-1"), &body).await;
    assert_eq!(
        (status, again["outcome"].as_str(), again["task"].as_str()),
        (200, Some("duplicate"), Some(task.as_str()))
    );
    let forged = format!("sha256={}", baton_hooks::sign_body(b"not the secret", body.as_bytes()));
    let (status, refused) = deliver(&served, "gh", &headers(&forged, "gh-2"), &body).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("X-Hub-Signature-256"), "{refused}");
    let (status, _) = deliver(&served, "gh", &headers(&signature, "gh-3"), &labelled_issue("Tampered")).await;
    assert_eq!(status, 401, "the signature covers the body");
    let (status, _) = deliver(&served, "gh", &[("X-GitHub-Delivery", "gh-4".to_owned())], &body).await;
    assert_eq!(status, 401, "unsigned");
    assert_eq!(tasks(&served).await.len(), 1);
    let url = format!("{}/api/v1/tasks/{task}", served.url);
    let done = reaching(&served.http(), url, "done").await;
    assert_eq!(
        done["request"],
        "Fix the issue below.\n\nCrash on empty input\n\nIt panics.\n\nhttps://forge.test/acme/calc/issues/7"
    );
    assert_eq!(done["owner"], "hook:gh");

    // GitLab: its token; a label added by an update starts a task; again, nothing.
    let gitlab = json!({"object_kind": "issue", "object_attributes": {"action": "update", "title": "Wrong sum",
        "description": "2 + 2", "url": "https://forge.test/acme/calc/-/issues/8"},
        "changes": {"labels": {"previous": [], "current": [{"title": "baton"}]}}})
    .to_string();
    let gitlab_headers = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Issue Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "gl-1".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
        ]
    };
    let (status, started) = deliver(&served, "gl", &gitlab_headers(gitlab_token), &gitlab).await;
    assert_eq!((status, started["outcome"].as_str()), (201, Some("started")), "{started}");
    assert_eq!(deliver(&served, "gl", &gitlab_headers(gitlab_token), &gitlab).await.0, 200);
    assert_eq!(deliver(&served, "gl", &gitlab_headers("a-guess"), &gitlab).await.0, 401);
    assert_eq!(tasks(&served).await.len(), 2);

    // Forgejo: its own signature header.
    let body = labelled_issue("Division by zero");
    let forgejo_headers = |signature: String| {
        vec![
            ("X-Forgejo-Event", "issues".to_owned()),
            ("X-Forgejo-Delivery", "fj-1".to_owned()),
            ("X-Forgejo-Signature", signature),
        ]
    };
    let forgejo_body = body.replace("\"labeled\"", "\"label_updated\"");
    let signed = baton_hooks::sign_body(forgejo.as_bytes(), forgejo_body.as_bytes());
    let (status, started) = deliver(&served, "fj", &forgejo_headers(signed.clone()), &forgejo_body).await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(deliver(&served, "fj", &forgejo_headers(signed), &forgejo_body).await.0, 200);
    let wrong = baton_hooks::sign_body(github.as_bytes(), forgejo_body.as_bytes());
    assert_eq!(deliver(&served, "fj", &forgejo_headers(wrong), &forgejo_body).await.0, 401);
    assert_eq!(tasks(&served).await.len(), 3);

    // Generic: signed with a timestamp; a stale one is refused even with a good signature.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let body = json!({"title": "Nightly sweep", "body": "Tidy the warnings."}).to_string();
    let generic_headers = |at: i64, delivery: &str| {
        vec![
            ("X-Baton-Timestamp", at.to_string()),
            ("X-Baton-Delivery", delivery.to_owned()),
            ("X-Baton-Signature", baton_hooks::sign(generic.as_bytes(), at, body.as_bytes())),
        ]
    };
    assert_eq!(deliver(&served, "any", &generic_headers(now - 3600, "g-1"), &body).await.0, 401);
    assert_eq!(deliver(&served, "any", &generic_headers(now, "g-1"), &body).await.0, 201, "a refused id is not taken");
    assert_eq!(tasks(&served).await.len(), 4);

    // Unknown hooks, unreadable bodies: 4xx with the reason, nothing started.
    assert_eq!(deliver(&served, "nope", &[], "{}").await.0, 404);
    let garbage = "not json";
    let signed = format!("sha256={}", baton_hooks::sign_body(github.as_bytes(), garbage.as_bytes()));
    let (status, refused) = deliver(&served, "gh", &headers(&signed, "gh-9"), garbage).await;
    assert_eq!(status, 400);
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("the body is not JSON"), "{refused}");
    // A label no rule names: logged, nothing started.
    let other = labelled_issue("Docs").replace("\"name\":\"baton\"", "\"name\":\"docs\"");
    let signed = format!("sha256={}", baton_hooks::sign_body(github.as_bytes(), other.as_bytes()));
    let (status, ignored) = deliver(&served, "gh", &headers(&signed, "gh-10"), &other).await;
    assert_eq!((status, ignored["outcome"].as_str()), (202, Some("ignored")), "{ignored}");
    assert_eq!(tasks(&served).await.len(), 4);

    // A review comment on the pull request of the first task's branch: that task is not pushed to a
    // forge, so nobody can say whether the commenter may write to it, and nothing is done.
    // (tests/pull_requests.rs follows up a task from a writer's comment, on a forge.)
    let branch = done["branch"].as_str().unwrap();
    let comment = json!({"action": "created", "comment": {"body": "@baton also handle whitespace", "user": {"login": "maintainer"}},
        "pull_request": {"head": {"ref": branch}}})
    .to_string();
    let signed = format!("sha256={}", baton_hooks::sign_body(github.as_bytes(), comment.as_bytes()));
    let mut comment_headers = headers(&signed, "gh-11");
    comment_headers[0].1 = "pull_request_review_comment".to_owned();
    let (status, ignored) = deliver(&served, "gh", &comment_headers, &comment).await;
    assert_eq!((status, ignored["outcome"].as_str()), (202, Some("ignored")), "{ignored}");
    assert!(ignored["detail"].as_str().unwrap().contains("is not pushed to a forge"), "{ignored}");
    assert_eq!(tasks(&served).await.len(), 4, "no task continues the branch");

    // The UI's Hooks page lists the hooks and the deliveries, a started one linking its task.
    let page = reqwest::Client::new()
        .get(format!("{}/hooks", served.url))
        .header(reqwest::header::COOKIE, format!("baton_session={}", served.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<code>gh</code></td><td>github</td>"), "{page}");
    assert!(page.contains(&format!("<a href=\"/tasks/{task}\">started task {task} from template fix</a>")), "{page}");
    assert!(page.contains("<td>duplicate</td><td>200</td>"), "{page}");

    // Every delivery is in the log with what came of it.
    let log = baton(home.path()).args(["--json", "hook", "deliveries", "--limit", "100"]).output().unwrap();
    let log: Vec<Value> = serde_json::from_slice(&log.stdout).unwrap();
    let outcomes: Vec<(&str, &str, u64)> = log
        .iter()
        .rev()
        .map(|d| (d["hook"].as_str().unwrap(), d["outcome"].as_str().unwrap(), d["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("gh", "started", 201),
            ("gh", "duplicate", 200),
            ("gh", "refused", 401),
            ("gh", "refused", 401),
            ("gh", "refused", 401),
            ("gl", "started", 201),
            ("gl", "duplicate", 200),
            ("gl", "refused", 401),
            ("fj", "started", 201),
            ("fj", "duplicate", 200),
            ("fj", "refused", 401),
            ("any", "refused", 401),
            ("any", "started", 201),
            ("nope", "refused", 404),
            ("gh", "refused", 400),
            ("gh", "ignored", 202),
            ("gh", "ignored", 202),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_floods_are_rate_limited_before_they_reach_the_log() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    save_template(home.path(), repo.path(), "fix", "Fix it.", &["--check", "true"]);
    hook(home.path(), "gh", "github");
    // One request a second, bursts of ten, shared by every hook's deliveries.
    let served = serve_with(home.path(), &model, &["--slots", "1", "--rate-limit", "1"]);
    let mut statuses = Vec::new();
    for n in 0..12 {
        let name = if n % 2 == 0 { "gh" } else { "no-such-hook" };
        statuses.push(deliver(&served, name, &[("X-GitHub-Delivery", format!("f-{n}"))], "{}").await.0);
    }
    // The burst of ten goes through; what comes faster than the refill is refused.
    assert!(statuses[..10].iter().all(|status| *status == 401 || *status == 404), "{statuses:?}");
    assert!(statuses[10..].contains(&429), "{statuses:?}");
    // The log holds what got through; a token's own requests are not held up by the flood.
    let log = served.http().get(format!("{}/api/v1/hooks/gh/deliveries", served.url)).send().await.unwrap();
    assert_eq!(log.status(), 200);
    let log: Value = log.json().await.unwrap();
    let through = statuses.iter().step_by(2).filter(|status| **status != 429).count();
    assert_eq!(log["deliveries"].as_array().unwrap().len(), through, "{log}");
}
