//! The checks run on a clean machine: a fresh checkout of the commit that will be marked verified,
//! with a fresh home, after the agent's session and its background processes were stopped. Each
//! test is a way an agent could make the checks pass without fixing the code, if they ran in its
//! own machine; each ends not verified, and the agent is told where the checks ran.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Status, StopReason};
use baton_testkit::model::{Expect, Reply, Script, Turn};
use common::{Harness, call, stopped, turn};
use serde_json::json;

/// The agent's `trick`, then `finish` twice (the second after the checks' feedback).
async fn tricked(trick: Vec<Reply>) -> (Harness, baton_core::TaskState, Vec<String>) {
    let finish = || call("f", "finish", json!({"summary": "Tests pass now."}));
    let told = Turn {
        expect: Expect { body_contains: Some("They ran on a clean machine".into()), ..Expect::default() },
        ..turn(None, finish())
    };
    let mut turns: Vec<Turn> = trick.into_iter().map(|reply| turn(None, reply)).collect();
    turns.extend([turn(None, finish()), told]);
    let h = Harness::new(Script { turns, ..Script::default() }).await;
    let id = h.create_with(|spec| spec.protect = vec!["test_*.py".into()]).await;
    let (state, kinds) = h.run(&id).await;
    (h, state, kinds)
}

fn assert_not_verified(h: &Harness, state: &baton_core::TaskState, kinds: &[String]) {
    assert_eq!(stopped(state), (Status::Failed, Some(StopReason::ChecksFailed)), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert!(state.work.last_commit.is_none(), "nothing was marked verified");
    let output = &state.work.last_checks[0].output;
    assert!(output.contains("gave -1"), "the real code was checked: {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_planted_in_the_agents_home_never_judges_the_work() {
    // Python imports `usercustomize` from the user's site-packages at every start: in the agent's
    // home, it would swap the module under test for a correct one.
    let fake = "import sys, types\nm = types.ModuleType('calc')\nm.add = lambda a, b: a + b\nsys.modules['calc'] = m\n";
    let command = format!(
        "d=$(python3 -m site --user-site) && mkdir -p $d && printf %s {} > $d/usercustomize.py && python3 test_calc.py",
        shell_quote(fake)
    );
    let (h, state, kinds) = tricked(vec![call("t", "shell", json!({ "command": command }))]).await;
    assert!(model_saw(&h, "all tests passed"), "the trick works in the agent's own machine");
    assert_not_verified(&h, &state, &kinds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_early_on_the_path_never_judges_the_work() {
    // A `python3` that always passes, first on the PATH of every login shell of the agent's home.
    let command = "mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho all tests passed\\n' > ~/.local/bin/python3 \
         && chmod +x ~/.local/bin/python3 && echo 'PATH=$HOME/.local/bin:$PATH' | tee -a ~/.profile >> ~/.bashrc \
         && bash -lc 'python3 test_calc.py'";
    let (h, state, kinds) = tricked(vec![call("t", "shell", json!({ "command": command }))]).await;
    assert!(model_saw(&h, "all tests passed"), "the trick works in the agent's own machine");
    assert_not_verified(&h, &state, &kinds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_package_shadowing_the_code_never_judges_the_work() {
    // A package `calc/` wins over `calc.py`; listed in `.gitignore`, it is never committed.
    let trick = vec![
        call("p", "write_file", json!({"path": "calc/__init__.py", "content": "def add(a, b):\n    return a + b\n"})),
        call("g", "write_file", json!({"path": ".gitignore", "content": "calc/\n"})),
        call("t", "shell", json!({"command": "python3 test_calc.py"})),
    ];
    let (h, state, kinds) = tricked(trick).await;
    assert!(model_saw(&h, "all tests passed"), "the trick works in the worktree");
    assert_not_verified(&h, &state, &kinds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_process_rewriting_the_protected_test_never_judges_the_work() {
    let loop_ = "while true; do echo 'print(\"all tests passed\")' > test_calc.py; sleep 0.01; done";
    let trick = vec![call("b", "shell", json!({ "command": loop_, "background": true }))];
    let (h, state, kinds) = tricked(trick).await;
    assert_not_verified(&h, &state, &kinds);
}

/// Whether a request to the model carried `text` (a tool's result).
fn model_saw(h: &Harness, text: &str) -> bool {
    h.server.requests().iter().any(|request| request.body.to_string().contains(text))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_checkout_reads_to_git_as_the_verified_commit() {
    let fix = call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}));
    let finish = call("f", "finish", json!({"summary": "add() adds."}));
    let h = Harness::new(Script { turns: vec![turn(None, fix), turn(None, finish)], ..Script::default() }).await;
    let check = "git status --porcelain && git log -1 --format=%s && git diff --quiet HEAD && echo clean-tree";
    let id = h
        .create_with(|spec| {
            spec.checks.push(baton_core::CheckSpec { name: "git".into(), command: check.into(), timeout_secs: 60 })
        })
        .await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    let git = &state.work.last_checks[1].output;
    assert!(git.contains("baton: Make add() add") && git.contains("clean-tree"), "{git}");
    let commit = state.work.last_commit.clone().unwrap();
    assert_eq!(h.repo.git(&["rev-parse", &state.branch]), commit);
}

/// What the checks leave in the clean machine (here a symlink to a host directory) is removed
/// before the next verification builds it again, without following it to the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_check_leaves_behind_is_removed_without_following_it_to_the_host() {
    let host = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(host.path().join("kept"), "host file\n").unwrap();
    let finish = || call("f", "finish", json!({"summary": "Tests pass now."}));
    let h = Harness::new(Script { turns: vec![turn(None, finish()), turn(None, finish())], ..Script::default() }).await;
    let plant = format!(
        "ln -s {} /workspace/link && mkdir -p /workspace/deep && ln -s {} /workspace/deep/link",
        host.path().display(),
        host.path().display()
    );
    let id = h
        .create_with(|spec| {
            spec.checks.insert(0, baton_core::CheckSpec { name: "plant".into(), command: plant, timeout_secs: 60 });
        })
        .await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.work.verifications, 2, "the clean machine was built twice: {kinds:?}");
    assert!(
        state.work.last_checks[0].passed,
        "the second build removed the first one's links: {:?}",
        state.work.last_checks
    );
    assert_eq!(std::fs::read_to_string(host.path().join("kept")).unwrap(), "host file\n");
}
