//! `baton task ...` end to end: the real binary, a real git repository, a real journal on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::{FixtureRepo, git};
use serde_json::Value;

/// A data directory and a user repository with one commit.
struct Env {
    home: tempfile::TempDir,
    repo: FixtureRepo,
}

impl Env {
    fn new() -> Env {
        Env { home: tempfile::tempdir().unwrap(), repo: FixtureRepo::with_files(&[("README", "hello\n")]) }
    }

    fn baton(&self) -> Command {
        let mut command = Command::cargo_bin("baton").unwrap();
        command.env("BATON_HOME", self.home.path()).env_remove("XDG_DATA_HOME").stdin(Stdio::null());
        command
    }

    /// Runs baton and returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.baton().args(args).output().unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let (ok, stdout, stderr) = self.run(&[args, &["--json"]].concat());
        assert!(ok, "baton {args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(!ok, "baton {args:?} should have failed; it printed {stdout}");
        assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "not one clear line: {stderr:?}");
        stderr.trim_end().to_owned()
    }

    fn repo_arg(&self) -> String {
        self.repo.path().to_string_lossy().into_owned()
    }

    fn create(&self, request: &str) -> Value {
        self.ok_json(&["task", "create", "--repo", &self.repo_arg(), "--request", request, "--check", "cargo test"])
    }
}

#[test]
fn a_task_is_created_listed_shown_followed_and_cancelled() {
    let env = Env::new();
    let head = git(env.repo.path(), &["rev-parse", "HEAD"]);
    let repo = env.repo_arg();
    let created = env.ok_json(&[
        "task",
        "create",
        "--repo",
        &repo,
        "--request",
        "Fix the parser",
        "--check",
        "cargo test",
        "--check",
        "cargo clippy",
        "--check-timeout",
        "90s",
        "--scope",
        "src",
        "--budget",
        "2.5",
        "--window",
        "59m",
        "--max-steps",
        "300",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["lifecycle"]["status"], "queued");
    assert_eq!(created["base_commit"], head);
    assert_eq!(created["branch"], format!("baton/fix-the-parser-{}", &id[..8]));
    assert_eq!(created["spec"]["checks"][1]["command"], "cargo clippy");
    assert_eq!(created["spec"]["checks"][1]["timeout_secs"], 90);
    assert_eq!(created["spec"]["budget"]["credits"], 2_500_000);
    assert_eq!(created["spec"]["budget"]["wall_clock_secs"], 3540);

    let other = env.create("Another thing")["id"].as_str().unwrap().to_owned();
    let listed = env.ok_json(&["task", "list"]);
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&other.as_str()));

    // A unique prefix is as good as the id; the text view names what matters.
    let (ok, shown, _) = env.run(&["task", "show", &id[..6]]);
    assert!(ok);
    for expected in [
        format!("task     {id}"),
        "status   queued".into(),
        format!("base     HEAD ({head})"),
        "2.50 credits, 59m window, 300 steps".into(),
    ] {
        assert!(shown.contains(&expected), "missing {expected:?} in\n{shown}");
    }

    // A follower started before the cancel sees it and then exits on its own.
    let follower =
        env.baton().args(["task", "events", &id, "--follow", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let cancelled = env.ok_json(&["task", "cancel", &id, "--reason", "changed my mind"]);
    assert_eq!(cancelled["lifecycle"], serde_json::json!({"status": "cancelled", "stop_reason": "cancelled"}));
    assert_eq!(cancelled["stop"]["detail"], "changed my mind");
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success());
    let kinds: Vec<String> = String::from_utf8(followed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["task_created", "cancelled"]);

    let paused_only = env.ok_json(&["task", "list", "--status", "cancelled"]);
    assert_eq!(paused_only.as_array().unwrap().len(), 1);
    assert_eq!(env.fails(&["task", "cancel", &id]), format!("error: task {id} has already ended (cancelled)"));
}

#[test]
fn bad_input_gets_one_precise_line() {
    let env = Env::new();
    let repo = env.repo_arg();
    let plain = tempfile::tempdir().unwrap();
    let plain_arg = plain.path().to_string_lossy().into_owned();

    let err = env.fails(&["task", "create", "--repo", &plain_arg, "--request", "x"]);
    assert!(err.starts_with(&format!("error: {plain_arg} is not a git repository")), "{err}");
    let err = env.fails(&["task", "create", "--repo", "/no/such/dir", "--request", "x"]);
    assert_eq!(err, "error: /no/such/dir does not exist");
    let err = env.fails(&["task", "create", "--repo", &repo, "--request", "x", "--base", "no-such-ref"]);
    assert_eq!(
        err,
        format!("error: unknown ref `no-such-ref` in {}", fs::canonicalize(env.repo.path()).unwrap().display())
    );
    let err = env.fails(&["task", "create", "--repo", &repo, "--request", "   "]);
    assert_eq!(err, "error: the request is empty");
    let err = env.fails(&["task", "create", "--repo", &repo, "--request", "x", "--scope", "../../etc"]);
    assert_eq!(err, "error: scope path `../../etc` must be relative to the repository root and stay inside it");
    let err = env.fails(&["task", "create", "--repo", &repo, "--request", "x", "--check", "make", "--check", "make"]);
    assert_eq!(err, "error: two checks are named `make`; check names must be unique");
    assert_eq!(env.fails(&["task", "show", "zzzzzz"]), "error: no task `zzzzzz`");
    assert_eq!(env.fails(&["task", "show", "../../etc"]), "error: no task `../../etc`");

    // Usage errors come from clap: non-zero, and they name the flag.
    let (ok, _, stderr) = env.run(&["task", "create", "--repo", &repo, "--request", "x", "--budget", "1.5e3"]);
    assert!(!ok && stderr.contains("invalid value '1.5e3' for '--budget <CREDITS>'"), "{stderr}");
    let (ok, _, stderr) = env.run(&["task", "create", "--repo", &repo, "--request", "x", "--window", "soon"]);
    assert!(!ok && stderr.contains("'--window <DURATION>'"), "{stderr}");
    assert!(env.ok_json(&["task", "list"]).as_array().unwrap().is_empty(), "a refused create left a task behind");
}

#[test]
fn a_data_directory_inside_the_checkout_is_refused_before_anything_is_written() {
    let env = Env::new();
    let inside = env.repo.path().join(".baton-data");
    let output = env
        .baton()
        .args(["task", "create", "--repo", &env.repo_arg(), "--request", "x"])
        .env("BATON_HOME", &inside)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("task worktrees must live outside it"), "{stderr}");
    assert!(!inside.exists(), "baton wrote into the user's checkout");
    assert_eq!(env.repo.git(&["status", "--porcelain", "--ignored"]), "");
}

#[test]
fn an_unwritable_data_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();

    // Root ignores permission bits, so as root run the binary as `nobody` (from a copy it can reach).
    let binary = dir.path().join("baton");
    fs::copy(assert_cmd::cargo::cargo_bin("baton"), &binary).unwrap();
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut command = if is_root {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(&binary);
        setpriv
    } else {
        Command::new(&binary)
    };
    let output = command.args(["task", "list"]).env("BATON_HOME", &locked).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("error: cannot use baton's data directory {}", locked.display()))
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
}

#[test]
fn inherited_git_variables_cannot_redirect_baton() {
    let env = Env::new();
    let decoy = Env::new();
    decoy.repo.write(&[("other", "x")]);
    decoy.repo.commit("decoy");

    let output = env
        .baton()
        .args(["task", "create", "--repo", &env.repo_arg(), "--request", "x", "--json"])
        .env("GIT_DIR", decoy.repo.path().join(".git"))
        .env("GIT_WORK_TREE", decoy.repo.path())
        .env("GIT_CEILING_DIRECTORIES", "/")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["base_commit"], git(env.repo.path(), &["rev-parse", "HEAD"]));
}

#[test]
fn cancelling_removes_the_task_worktree_and_keeps_the_branch() {
    let env = Env::new();
    let created = env.create("Tidy up");
    let id = created["id"].as_str().unwrap();
    let branch = created["branch"].as_str().unwrap();
    let worktree: PathBuf = env.home.path().join("machines").join(id).join("worktree");
    git(env.repo.path(), &["worktree", "add", "--quiet", "-b", branch, &worktree.to_string_lossy(), "HEAD"]);
    fs::write(worktree.join("scratch"), "uncommitted").unwrap();

    env.ok_json(&["task", "cancel", id]);
    assert!(!worktree.exists());
    assert_eq!(git(env.repo.path(), &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    assert!(!git(env.repo.path(), &["branch", "--list", branch]).is_empty(), "the branch must be kept");
}

#[test]
fn the_account_and_a_tasks_limits_are_managed_from_the_command_line() {
    let env = Env::new();
    let shown = env.ok_json(&["budget", "show"]);
    assert_eq!(shown["position"]["balance"], 0);
    assert_eq!(shown["position"]["policy"]["overage"], true, "by default spending is tracked, not stopped");

    env.ok_json(&["budget", "topup", "5", "--note", "first"]);
    env.ok_json(&["budget", "set-cap", "10"]);
    env.ok_json(&["budget", "auto-reload", "--threshold", "1", "--target", "5", "--max-per-month", "2"]);
    let shown = env.ok_json(&["budget", "overage", "off"]);
    let policy = &shown["position"]["policy"];
    assert_eq!((policy["monthly_cap"].as_i64(), policy["overage"].as_bool()), (Some(10_000_000), Some(false)));
    assert_eq!(policy["auto_reload"]["target"], 5_000_000);
    assert_eq!(shown["available"], 5_000_000);
    let history = env.ok_json(&["budget", "history"]);
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!((history[0]["kind"].as_str(), history[0]["note"].as_str()), (Some("top_up"), Some("first")));
    let (ok, text, _) = env.run(&["budget", "show"]);
    assert!(
        ok && text.contains("cap       10.00 a month") && text.contains("to 5.00 when below 1.00, at most 2 a month"),
        "{text}"
    );

    assert_eq!(env.fails(&["budget", "topup", "0"]), "error: a top-up must be more than zero credits, not 0.00");
    assert!(env.fails(&["budget", "set-cap", "lots"]).starts_with("error: invalid cap `lots`: invalid amount `lots`"));
    assert_eq!(
        env.fails(&["budget", "auto-reload", "--threshold", "5", "--target", "1"]),
        "error: the auto-reload target (1.00) must be above its threshold (5.00)"
    );
    env.ok_json(&["budget", "set-cap", "none"]);
    assert_eq!(env.ok_json(&["budget", "show"])["position"]["policy"]["monthly_cap"], Value::Null);

    let id = env.create("Fix it")["id"].as_str().unwrap().to_owned();
    let limits = env.ok_json(&["budget", "task", &id, "--credits", "2.5", "--window", "2h", "--max-steps", "40"]);
    assert_eq!(
        (limits["credits"].as_i64(), limits["wall_clock_secs"].as_u64(), limits["steps"].as_u64()),
        (Some(2_500_000), Some(7200), Some(40))
    );
    let state = env.ok_json(&["task", "show", &id]);
    assert_eq!(state["spec"]["budget"]["credits"], 2_500_000);
    env.ok_json(&["budget", "task", &id, "--credits", "none"]);
    assert_eq!(env.ok_json(&["task", "show", &id])["spec"]["budget"]["credits"], Value::Null);
    assert!(env.fails(&["budget", "task", &id, "--max-steps", "many"]).starts_with("error: invalid step limit `many`"));
    assert_eq!(env.fails(&["finding", "resolve", &id, "f1"]), format!("error: task {id} has no finding `f1`"));
}

/// A request (the model's words, a tool's output would do as well) that carries terminal escapes:
/// OSC 52 to set the clipboard, a window title, a cursor move and C1's CSI. The text commands show
/// them as escapes; nothing of them reaches the terminal raw.
#[test]
fn control_characters_from_a_task_never_reach_the_terminal_raw() {
    let env = Env::new();
    let hostile = "Fix it\u{1b}]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u{7}\u{1b}]0;owned\u{7}\u{1b}[2A\u{9b}31m done";
    let id = env.create(hostile)["id"].as_str().unwrap().to_owned();
    for args in [vec!["task", "list"], vec!["task", "show", id.as_str()], vec!["log", id.as_str()]] {
        let (ok, stdout, stderr) = env.run(&args);
        assert!(ok, "baton {args:?}: {stderr}");
        assert!(!stdout.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "baton {args:?} printed {stdout:?}");
        assert!(stdout.contains("\\u{1b}]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\u{7}"), "baton {args:?} hid it: {stdout}");
    }
    // JSON keeps the text exactly (escaped by JSON itself).
    assert_eq!(env.ok_json(&["task", "show", &id])["spec"]["request"], hostile);
}
