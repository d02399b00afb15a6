//! Tasks on remotes: a task on a `file://` URL works in a mirror, pushes its branch at every
//! checkpoint, and continues from the pushed branch on a data directory that never saw it; `--push`
//! does the same for a local repository's remote; a push refused once is tried again; a URL that
//! carries credentials is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::Path;
use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::git;
use baton_testkit::model::{Script, ScriptedServer};
use common::{calc_repo, call, describe};
use serde_json::{Value, json};

async fn baton(home: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let config = home.join("config.toml");
    if !config.exists() {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(&config, "").unwrap();
    }
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command.args(args).env("BATON_HOME", home).env("BATON_CONFIG", &config).env_remove("BATON_MODEL");
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::process::Command::from(command).output().await.unwrap()
}

/// A bare copy of the calc repository: the remote.
fn bare_remote(dir: &Path) -> std::path::PathBuf {
    let origin = calc_repo();
    let remote = dir.join("remote.git");
    git(dir, &["clone", "--quiet", "--bare", &origin.path().display().to_string(), "remote.git"]);
    remote
}

async fn events(home: &Path) -> (String, Vec<Value>) {
    let listed = baton(home, &["task", "list", "--json"], &[]).await;
    let tasks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = tasks[0]["id"].as_str().unwrap().to_owned();
    let shown = baton(home, &["task", "events", &id, "--json"], &[]).await;
    let events = String::from_utf8(shown.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (id, events)
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"]["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_a_file_url_pushes_each_checkpoint_and_continues_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let remote = bare_remote(dir.path());
    let url = format!("file://{}", remote.display());
    let script = Script {
        turns: vec![
            call("w1", "write_file", json!({"path": "notes.txt", "content": "first\n"})),
            call("e1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            // After the pause, on the other data directory.
            call("w2", "write_file", json!({"path": "notes.txt", "content": "second\n"})),
            call("f1", "finish", json!({"summary": "add() adds"})),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let first = dir.path().join("first-home");
    let args = [
        "run",
        "Make add() add",
        "--repo",
        &url,
        "--check",
        "python3 test_calc.py",
        "--no-review",
        "--max-steps",
        "2",
        "--model",
        "openai-compatible/scripted",
    ];
    let paused = baton(&first, &args, &env).await;
    let (id, journal) = events(&first).await;
    assert!(
        of_type(&journal, "paused").len() == 1 && of_type(&journal, "finished").is_empty(),
        "{}",
        describe(&paused)
    );
    let created = &of_type(&journal, "task_created")[0]["event"];
    assert_eq!(created["spec"]["repo"], url.as_str());
    assert_eq!(created["spec"]["push"], url.as_str(), "a task on a URL pushes back to it");
    let branch = created["branch"].as_str().unwrap().to_owned();
    let checkpoint = of_type(&journal, "checkpointed").last().unwrap()["event"]["commit"].as_str().unwrap().to_owned();
    let pushed = of_type(&journal, "pushed");
    assert_eq!(pushed.len(), 1, "one push per checkpoint: {pushed:?}");
    assert_eq!(pushed[0]["event"]["commit"], checkpoint.as_str());
    assert!(pushed[0]["event"].get("error").is_none(), "{:?}", pushed[0]);
    let remote_git = |args: &[&str]| git(&remote, args);
    assert_eq!(remote_git(&["rev-parse", &format!("refs/heads/{branch}")]).trim(), checkpoint);
    assert_eq!(remote_git(&["show", &format!("{checkpoint}:notes.txt")]), "first");
    assert!(first.join("mirrors").is_dir(), "the remote is mirrored in the data directory");

    // Another data directory with the journal and nothing else: no mirror, no machine.
    let second = dir.path().join("second-home");
    std::fs::create_dir_all(&second).unwrap();
    for entry in std::fs::read_dir(&first).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("baton.db") {
            std::fs::copy(entry.path(), second.join(entry.file_name())).unwrap();
        }
    }
    let raised = baton(&second, &["budget", "task", &id, "--max-steps", "none"], &[]).await;
    assert!(raised.status.success(), "{}", describe(&raised));
    let resumed = baton(&second, &["resume", &id], &env).await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    let (_, journal) = events(&second).await;
    assert_eq!(of_type(&journal, "finished")[0]["event"]["reason"], "verified", "{}", describe(&resumed));
    let last = of_type(&journal, "checkpointed").last().unwrap()["event"]["commit"].as_str().unwrap().to_owned();
    let pushes: Vec<&str> =
        of_type(&journal, "pushed").iter().map(|p| p["event"]["commit"].as_str().unwrap()).collect();
    assert_eq!(pushes.last(), Some(&last.as_str()), "the verified commit is pushed: {pushes:?}");
    assert_eq!(remote_git(&["rev-parse", &format!("refs/heads/{branch}")]).trim(), last);
    // The work goes on from the pushed branch: the first checkpoint is in the history, and both edits
    // are in the result.
    let ancestry = std::process::Command::new("git")
        .args(["-C", &remote.display().to_string(), "merge-base", "--is-ancestor", &checkpoint, &last])
        .status()
        .unwrap();
    assert!(ancestry.success(), "{checkpoint} is not an ancestor of {last}");
    assert_eq!(remote_git(&["show", &format!("{last}:notes.txt")]), "second");
    assert!(remote_git(&["show", &format!("{last}:calc.py")]).contains("a + b"));
    assert!(second.join("mirrors").is_dir());
    assert!(server.failures().is_empty() && server.remaining_turns() == 0, "{:?}", server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sends_a_local_tasks_branch_to_its_remote_and_a_refused_push_is_journaled() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let remote = bare_remote(dir.path());
    let local = calc_repo();
    local.git(&["remote", "add", "origin", &remote.display().to_string()]);
    let fix = || {
        [
            call("e1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("f1", "finish", json!({"summary": "add() adds"})),
        ]
    };
    let script = Script { turns: fix().into_iter().chain(fix()).collect(), ..Script::default() };
    let server = ScriptedServer::start(script).await.unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let home = dir.path().join("home");
    let repo = local.path().display().to_string();
    let flags = ["--repo", &repo, "--push", "--check", "python3 test_calc.py", "--no-review"];
    let model = ["--model", "openai-compatible/scripted"];
    let args: Vec<&str> = ["run", "Make add() add"].iter().chain(&flags).chain(&model).copied().collect();
    let output = baton(&home, &args, &env).await;
    assert!(output.status.success(), "{}", describe(&output));
    let (_, journal) = events(&home).await;
    let created = &of_type(&journal, "task_created")[0]["event"];
    assert_eq!(created["spec"]["push"], format!("file://{}", remote.display()));
    let branch = created["branch"].as_str().unwrap();
    let verified = of_type(&journal, "checkpointed").last().unwrap()["event"]["commit"].as_str().unwrap().to_owned();
    assert_eq!(git(&remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim(), verified);
    // The user's checkout is untouched, and gets no mirror: the local repository is the source.
    assert_eq!(local.git(&["status", "--porcelain"]), "");
    assert!(!home.join("mirrors").exists());

    // No forge is known for a file:// remote: `baton pr` says so, and journals nothing.
    let (id, before) = events(&home).await;
    let pr = baton(&home, &["pr", &id], &[]).await;
    let stderr = String::from_utf8_lossy(&pr.stderr);
    assert!(!pr.status.success() && stderr.contains("no forge is known for file://"), "{stderr}");
    assert_eq!(events(&home).await.1.len(), before.len());

    // A second task whose branch someone else has already taken on the remote: never forced.
    let args: Vec<&str> =
        ["task", "create", "--request", "Make add() add again"].iter().chain(&flags).chain(&model).copied().collect();
    let created = baton(&home, &args, &[]).await;
    assert!(created.status.success(), "{}", describe(&created));
    let listed = baton(&home, &["task", "list", "--json"], &[]).await;
    let tasks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let second = tasks.as_array().unwrap().iter().find(|t| t["request"] == "Make add() add again").unwrap();
    let id = second["id"].as_str().unwrap();
    let shown: Value =
        serde_json::from_slice(&baton(&home, &["task", "show", id, "--json"], &[]).await.stdout).unwrap();
    let branch = shown["branch"].as_str().unwrap();
    let other = dir.path().join("someone-else");
    git(dir.path(), &["clone", "--quiet", &remote.display().to_string(), "someone-else"]);
    std::fs::write(other.join("theirs.txt"), "theirs\n").unwrap();
    git(&other, &["add", "theirs.txt"]);
    git(&other, &["commit", "--quiet", "-m", "theirs"]);
    git(&other, &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")]);
    let theirs = git(&other, &["rev-parse", "HEAD"]).trim().to_owned();
    let resumed = baton(&home, &["resume", id], &env).await;
    assert!(resumed.status.success(), "a refused push does not stop the task: {}", describe(&resumed));
    let shown = baton(&home, &["task", "events", id, "--json"], &[]).await;
    let journal: Vec<Value> =
        String::from_utf8(shown.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refused = of_type(&journal, "pushed");
    assert!(!refused.is_empty(), "every checkpoint is pushed");
    for push in refused {
        let error = push["event"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("rejected") || error.contains("fetch first"), "{push}");
    }
    assert_eq!(git(&remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim(), theirs, "their commit stays");
    assert!(server.failures().is_empty() && server.remaining_turns() == 0, "{:?}", server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_remote_refuses_once_is_tried_again_and_lands() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let remote = bare_remote(dir.path());
    // The remote refuses the first push it is sent, as one busy packing its refs might.
    let hook = remote.join("hooks/pre-receive");
    let marker = remote.join("refused-once");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\n[ -e '{0}' ] && exit 0\ntouch '{0}'\necho busy >&2\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let local = calc_repo();
    local.git(&["remote", "add", "origin", &remote.display().to_string()]);
    let script = Script {
        turns: vec![
            call("e1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("f1", "finish", json!({"summary": "add() adds"})),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let home = dir.path().join("home");
    let repo = local.path().display().to_string();
    let args = ["run", "Make add() add", "--repo", &repo, "--push", "--check", "python3 test_calc.py", "--no-review"];
    let args: Vec<&str> = args.into_iter().chain(["--model", "openai-compatible/scripted"]).collect();
    let output = baton(&home, &args, &env).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(marker.exists(), "the remote refused no push");
    let (_, journal) = events(&home).await;
    let pushed = of_type(&journal, "pushed");
    assert!(!pushed.is_empty() && pushed.iter().all(|p| p["event"].get("error").is_none()), "{pushed:?}");
    let branch = of_type(&journal, "task_created")[0]["event"]["branch"].as_str().unwrap().to_owned();
    let verified = of_type(&journal, "checkpointed").last().unwrap()["event"]["commit"].as_str().unwrap().to_owned();
    assert_eq!(git(&remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim(), verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_with_credentials_or_other_transports_are_refused_before_anything_is_written() {
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (url, why) in [
        ("https://x-access-token:ghp_sekrit@example.invalid/o/r.git", "carries credentials"),
        ("ext::sh -c touch% /tmp/pwned", "does not exist"),
        ("http://example.invalid/o/r.git", "not a URL baton fetches from"),
    ] {
        let output =
            baton(home.path(), &["task", "create", "--request", "Do it", "--repo", url, "--check", "true"], &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("ghp_sekrit"), "the secret is echoed: {stderr}");
    }
    assert!(!home.path().join("baton.db").exists(), "nothing was written");
}
