//! baton SIGKILLed at 20 random moments of a scripted task whose small context window makes it hand
//! off between legs: after each restart (`baton resume`) the task goes on, ends verified with the
//! same diff as an uninterrupted run, and no tool call ran twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::FixtureRepo;
use baton_testkit::long_horizon;
use baton_testkit::model::{Expect, Reply, Rule, Script, ScriptedServer, ToolCall, Turn};
use serde_json::{Value, json};

fn call(id: &str, name: &str, arguments: Value) -> Turn {
    Turn {
        reply: Reply {
            tool_calls: vec![ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }],
            delay_ms: Some(60),
            ..Reply::default()
        },
        ..Turn::default()
    }
}

/// Shell steps before the fix: enough that twenty kills land before the task can end.
const STEPS: usize = 30;

/// Marker lines go to the task's own /root, which persists with its sandbox layer and is not part
/// of the diff. The edit and the finish are repeated at the end, for a run whose first edit a kill
/// interrupted (the agent is told, and the script just tries again).
fn script() -> Script {
    let mut turns = Vec::new();
    for step in 1..=STEPS {
        turns.push(call(
            &format!("m{step}"),
            "shell",
            json!({"command": format!("echo step{step} >> /root/marker; echo {step} > progress.txt; sleep 0.1")}),
        ));
    }
    turns.push(call("e1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})));
    turns.push(call("t1", "shell", json!({"command": "python3 test_calc.py"})));
    turns.push(call("f1", "finish", json!({"summary": "add() adds"})));
    turns.push(call("e2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})));
    turns.push(call("f2", "finish", json!({"summary": "add() adds"})));
    let summary = Rule {
        when: Expect { body_contains: Some(long_horizon::HANDOFF_ASK.into()), ..Expect::default() },
        reply: Reply { text: Some("Marker steps so far are in the ledger; keep going.".into()), ..Reply::default() },
    };
    Script { turns, rules: vec![summary], replay_identical: true, ..Script::default() }
}

fn repo() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        ("test_calc.py", "from calc import add\nassert add(2, 3) == 5\nprint('ok')\n"),
        (".gitignore", "__pycache__/\n"),
    ])
}

fn baton(home: &std::path::Path, server: &ScriptedServer, args: &[&str]) -> Command {
    let config = home.join("config.toml");
    if !config.exists() {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(&config, "").unwrap();
    }
    let mut command = Command::cargo_bin("baton").unwrap();
    command
        .args(args)
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", config)
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))
        .env_remove("BATON_MODEL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn run_args(repo: &FixtureRepo) -> Vec<String> {
    let repo = repo.path().display().to_string();
    [
        "run",
        "Make add() add",
        "--repo",
        &repo,
        "--check",
        "python3 test_calc.py",
        "--model",
        "openai-compatible/scripted",
        "--no-review",
        // Small enough that the task hands off between legs, so kills land in handoffs too.
        "--context-window",
        "5000",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn task_id(home: &std::path::Path, server: &ScriptedServer) -> Option<String> {
    let output = baton(home, server, &["task", "list", "--json"]).stdout(Stdio::piped()).output().unwrap();
    let tasks: Value = serde_json::from_slice(&output.stdout).ok()?;
    tasks.get(0)?.get("id")?.as_str().map(str::to_owned)
}

fn diff(home: &std::path::Path, server: &ScriptedServer, id: &str) -> String {
    let output = baton(home, server, &["diff", id]).stdout(Stdio::piped()).output().unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// Kills the child after `wait` unless it has ended; says whether it had to be killed, and fails the
/// test on a child that failed by itself (a resume that cannot resume would loop forever here).
fn kill_after(mut child: Child, wait: Duration) -> bool {
    std::thread::sleep(wait);
    match child.try_wait() {
        Ok(Some(status)) => {
            assert!(status.success() || status.code() == Some(10), "baton ended by itself with {status:?}");
            false
        }
        _ => {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            true
        }
    }
}

#[test]
fn killed_twenty_times_the_task_still_ends_verified_with_the_same_diff() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seed = std::env::var("BATON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("seed {seed} (set BATON_TEST_SEED to repeat)");
    let mut rng = seed;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };

    // The uninterrupted run, for the expected diff.
    let reference = runtime.block_on(ScriptedServer::start(script())).unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo_one = repo();
    let output = baton(home.path(), &reference, &run_args(&repo_one).iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the uninterrupted run failed: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let id = task_id(home.path(), &reference).unwrap();
    let expected = diff(home.path(), &reference, &id);
    assert!(expected.contains("+    return a + b"), "{expected}");

    // The same task, killed at random moments.
    let server = runtime.block_on(ScriptedServer::start(script())).unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo_two = repo();
    let args = run_args(&repo_two);
    let mut kills = 0;
    let mut id: Option<String> = None;
    while kills < 20 {
        let child = match &id {
            None => baton(home.path(), &server, &args.iter().map(String::as_str).collect::<Vec<_>>()).spawn().unwrap(),
            Some(id) => baton(home.path(), &server, &["resume", id.as_str()]).spawn().unwrap(),
        };
        if kill_after(child, Duration::from_millis(20 + next(180))) {
            kills += 1;
        }
        id = id.or_else(|| task_id(home.path(), &server));
        if let Some(id) = &id {
            let shown = baton(home.path(), &server, &["task", "show", id.as_str(), "--json"])
                .stdout(Stdio::piped())
                .output()
                .unwrap();
            let state: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
            if state["lifecycle"]["status"] == "done" {
                break;
            }
        }
    }
    let id = id.expect("the task was never created");
    assert_eq!(kills, 20, "the task ended before it was killed twenty times");
    // What a restart does: every task a crash left unfinished continues.
    let output = baton(home.path(), &server, &["resume", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "after {kills} kills the task did not end verified: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(diff(home.path(), &server, &id), expected);

    let layout = baton_engine::TaskLayout::of(home.path(), &baton_core::TaskId::parse(&id).unwrap());
    let disk = layout.attach_disk(None).unwrap();
    let lines = std::fs::read_to_string(layout.layer().join("hidden/root/marker")).unwrap_or_default();
    drop(disk);
    for step in 1..=STEPS {
        let count = lines.lines().filter(|l| *l == format!("step{step}")).count();
        assert!(count <= 1, "step{step} ran {count} times after {kills} kills:\n{lines}");
    }
    let handoffs =
        baton(home.path(), &server, &["handoffs", id.as_str(), "--json"]).stdout(Stdio::piped()).output().unwrap();
    let handoffs: Value = serde_json::from_slice(&handoffs.stdout).unwrap();
    assert!(handoffs.as_array().unwrap().len() >= 2, "the task was meant to hand off: {handoffs}");
    println!("{kills} kills, {} handoffs; marker:\n{lines}", handoffs.as_array().unwrap().len());
}
