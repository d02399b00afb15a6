//! Whole tasks through the real path: a fixture repository, the scripted model server over HTTP,
//! real git, a real sandbox (root), a real SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Budget, CheckSpec, Event, Status, StopReason, Timestamp};
use baton_store::Store;
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Expect, Reply, Script, Turn};
use common::{Harness, call, stopped, turn};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_reads_edits_tests_and_finishes_verified() {
    let script = Script {
        turns: vec![
            turn(None, call("c1", "read_file", json!({"path": "calc.py"}))),
            turn(
                Some("return a - b"),
                call("c2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            ),
            turn(Some("edited `calc.py`"), call("c3", "shell", json!({"command": "python3 test_calc.py"}))),
            turn(Some("all tests passed"), call("c4", "finish", json!({"summary": "add() now adds."}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!(state.work.steps, 4);
    assert!(state.work.last_checks.iter().all(|c| c.passed && c.output.contains("all tests passed")));

    // The fix is committed on the task branch; the user's checkout is untouched.
    let commit = state.work.last_commit.clone().unwrap();
    assert_eq!(h.repo.git(&["rev-parse", &state.branch]), commit);
    assert!(h.repo.git(&["show", &format!("{commit}:calc.py")]).contains("a + b"));
    assert!(std::fs::read_to_string(h.repo.path().join("calc.py")).unwrap().contains("a - b"));
    assert_eq!(h.repo.git(&["status", "--porcelain"]), "");
    // The repository's AGENTS.md reached the model, and the journal replays to the same state.
    assert!(h.server.requests()[0].body.to_string().contains("Run `python3 test_calc.py` to test."));
    assert_eq!(h.store.load(&id).await.unwrap(), state);
    assert!(h.worktree(&id).join("calc.py").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_finishes_at_once_gets_feedback_and_is_not_verified() {
    let finish = || call("f", "finish", json!({"summary": "Nothing to do."}));
    let second = Turn {
        expect: Expect { body_contains: Some("AssertionError: add(2, 3) gave -1".into()), ..Expect::default() },
        ..turn(None, finish())
    };
    let h = Harness::new(Script { turns: vec![turn(None, finish()), second], ..Script::default() }).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Failed, Some(StopReason::ChecksFailed)), "{kinds:?}");
    assert_eq!(state.work.verifications, 2);
    assert!(h.server.failures().is_empty(), "the feedback did not reach the model: {:?}", h.server.failures());
    assert_eq!(kinds.iter().filter(|k| *k == "feedback").count(), 1);
    assert!(state.work.last_commit.is_none(), "nothing unverified is checkpointed");
}

/// The same call, forever (`looping` makes the i-th): the third identical result earns a nudge,
/// the next one a pause.
async fn nudged_then_stuck(looping: impl Fn(usize) -> baton_testkit::model::Reply) {
    let looping = (0..10).map(|i| turn(None, looping(i))).collect();
    let h = Harness::new(Script { turns: looping, ..Script::default() }).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::Stuck)), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "nudged").count(), 1, "{kinds:?}");
    // The nudge reached the model, and no model call was made after the pause: the cost stops there.
    let requests = h.server.requests();
    assert!(requests.last().unwrap().body.to_string().contains("you seem stuck"));
    assert_eq!(requests.len() as u32, state.work.steps);
    assert_eq!(state.work.steps, 4);
    assert_eq!(h.server.remaining_turns(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_agent_is_nudged_once_then_paused_as_stuck() {
    nudged_then_stuck(|i| call(&format!("c{i}"), "read_file", json!({"path": "calc.py"}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_slow_failing_test_whose_output_differs_only_in_timing_is_stuck() {
    // Each run prints another duration (and the shell's own timing line differs too).
    let slow = "python3 -c \"import random, time; s = time.time(); time.sleep(0.05 + random.random() / 10); print(f'FAILED test_add in {time.time() - s:.4f}s'); raise SystemExit(1)\"";
    nudged_then_stuck(|i| call(&format!("c{i}"), "shell", json!({ "command": slow }))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_a_background_process_with_new_output_is_not_stuck() {
    // Eight polls of a growing log, each result new, then the fix: progress all the way.
    let mut turns = vec![turn(
        None,
        call(
            "bg",
            "shell",
            json!({"command": "for i in $(seq 100); do echo tick $i; sleep 0.05; done", "background": true}),
        ),
    )];
    for i in 0..8 {
        turns.push(turn(
            None,
            call(&format!("p{i}"), "shell", json!({"command": "sleep 0.1; tail -n 1 /tmp/baton-background-1.log"})),
        ));
    }
    turns.push(turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))));
    turns.push(turn(None, call("f", "finish", json!({"summary": "fixed"}))));
    let h = Harness::new(Script { turns, ..Script::default() }).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Done, "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "nudged"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_a_crash_interrupted_is_reported_never_run_again() {
    // The journal as a crash left it: a shell call started and never finished.
    let h = Harness::new(Script {
        turns: vec![
            Turn {
                expect: Expect {
                    body_contains: Some("interrupted: baton stopped while this `shell` call ran".into()),
                    ..Expect::default()
                },
                ..turn(None, call("c2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})))
            },
            turn(None, call("c3", "finish", json!({"summary": "fixed"}))),
        ],
        ..Script::default()
    })
    .await;
    let id = h.create().await;
    let marker = "echo ran >> /workspace/marker";
    let response = baton_core::ModelResponse {
        parts: vec![baton_core::Part::ToolCall {
            id: "c1".into(),
            name: "shell".into(),
            arguments: json!({"command": marker}).to_string(),
        }],
        usage: baton_core::Usage::default(),
        finish: baton_core::FinishReason::ToolUse,
    };
    let crashed = [
        Event::Started,
        Event::LegStarted {
            leg: 1,
            model: "openai-compatible/scripted".into(),
            system: "s".into(),
            brief: "Make add() add".into(),
            role: Default::default(),
        },
        Event::ModelCallStarted { step: 1, prompt: None },
        Event::ModelCallFinished { step: 1, response },
        Event::ToolCallStarted {
            step: 1,
            call_id: "c1".into(),
            name: "shell".into(),
            arguments: json!({"command": marker}).to_string(),
        },
    ];
    h.store.append(&id, 1, Timestamp(1), &crashed).await.unwrap();

    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Done, "{kinds:?}");
    // This journal, written by hand, names no environment yet: the resume names it first.
    assert_eq!(
        &kinds[..2],
        ["environment_prepared", "tool_call_finished"],
        "the interrupted call is closed first: {kinds:?}"
    );
    assert!(!h.worktree(&id).join("marker").exists(), "the interrupted command ran again");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_with_the_protected_test_is_caught_and_not_verified() {
    let weaken = call("w", "write_file", json!({"path": "test_calc.py", "content": "print(\"all tests passed\")\n"}));
    let finish = || call("f", "finish", json!({"summary": "Tests pass now."}));
    let told = Turn {
        expect: Expect {
            body_contains: Some("These files are protected and were put back".into()),
            ..Expect::default()
        },
        ..turn(None, finish())
    };
    let h =
        Harness::new(Script { turns: vec![turn(None, weaken), turn(None, finish()), told], ..Script::default() }).await;
    let id = h.create_with(|spec| spec.protect = vec!["test_*.py".into()]).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Failed, Some(StopReason::ChecksFailed)), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "protected_restored").count(), 1, "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    // The weakened test never judged the work, and it is not left behind in the worktree.
    assert!(std::fs::read_to_string(h.worktree(&id).join("test_calc.py")).unwrap().contains("assert add(2, 3) == 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_fixes_half_and_fails_its_checks() {
    let h = Harness::new(Script {
        turns: vec![
            turn(None, call("e", "write_file", json!({"path": "calc.py", "content": "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a + b\n"}))),
            turn(None, call("t", "write_file", json!({"path": "test_mul.py", "content": "from calc import mul\nassert mul(2, 3) == 6, 'mul'\n"}))),
            turn(None, call("f", "finish", json!({"summary": "Half."}))),
            turn(None, call("g", "finish", json!({"summary": "Still half."}))),
        ],
        ..Script::default()
    })
    .await;
    // A second check covers the half the agent leaves broken.
    let mul = CheckSpec { name: "mul".into(), command: "python3 test_mul.py".into(), timeout_secs: 60 };
    let id = h.create_with(|spec| spec.checks.push(mul)).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Failed, Some(StopReason::ChecksFailed)), "{kinds:?}");
    let verdicts: Vec<(&str, bool)> = state.work.last_checks.iter().map(|c| (c.name.as_str(), c.passed)).collect();
    assert_eq!(verdicts, [("tests", true), ("mul", false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_on_a_rust_crate_ends_verified() {
    let crate_repo = FixtureRepo::with_files(&[
        ("Cargo.toml", "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        (
            "src/lib.rs",
            "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\n#[test]\nfn adds() {\n    assert_eq!(add(2, 3), 5);\n}\n",
        ),
        (".gitignore", "target/\n"),
    ]);
    let script = Script {
        turns: vec![
            turn(None, call("e", "edit_file", json!({"path": "src/lib.rs", "old": "a - b", "new": "a + b"}))),
            turn(
                Some("edited `src/lib.rs`"),
                call("t", "shell", json!({"command": "cargo test --offline --lib 2>&1 | tail -n 3"})),
            ),
            turn(Some("test result: ok. 1 passed"), call("f", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    let h = Harness::with_repo(script, crate_repo).await;
    let id = h
        .create_with(|spec| {
            spec.checks = vec![CheckSpec {
                name: "cargo test".into(),
                command: "cargo test --offline --lib".into(),
                timeout_secs: 300,
            }];
            spec.budget = Default::default();
        })
        .await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?} {:?}", state.work.last_checks);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let commit = state.work.last_commit.unwrap();
    assert!(h.repo.git(&["show", &format!("{commit}:src/lib.rs")]).contains("a + b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_time_window_commits_the_work_in_progress_pauses_and_resumes_once_extended() {
    // Steps much shorter than the window's last fifth (0.4 s), so that some step starts inside it
    // even on a loaded machine, and the agent is told before the window runs out.
    let slow = |i: usize| Turn {
        reply: Reply {
            delay_ms: Some(150),
            ..call(&format!("s{i}"), "shell", json!({"command": format!("echo {i} >> progress.txt; echo {i}")}))
        },
        ..Turn::default()
    };
    let mut turns: Vec<Turn> = (0..16).map(slow).collect();
    turns.push(turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))));
    turns.push(turn(Some("edited `calc.py`"), call("f", "finish", json!({"summary": "add() adds."}))));
    let h = Harness::new(Script { turns, ..Script::default() }).await;
    let id = h.create_with(|spec| spec.budget.wall_clock_secs = Some(2)).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::TimeWindowExhausted)), "{kinds:?}");
    // The work in progress is on the branch, not only in the worktree.
    let commit = state.work.last_commit.clone().expect("no checkpoint before the pause");
    assert_eq!(h.repo.git(&["rev-parse", &state.branch]), commit);
    assert!(h.repo.git(&["show", &format!("{commit}:progress.txt")]).starts_with("0\n"));
    assert_eq!(kinds[kinds.len() - 2..], ["checkpointed", "paused"]);
    assert!(kinds.contains(&"budget_low".to_owned()), "the agent was told the window is nearly over: {kinds:?}");

    // Given more time, the task continues where it stopped: no request is sent twice.
    let asked = h.server.requests().len();
    let budget = Budget { wall_clock_secs: Some(3600), ..state.spec.budget };
    h.store.append(&id, state.next_seq, Timestamp(1), &[Event::BudgetChanged { budget }]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert!(asked < 18 && h.server.requests().len() == 18, "{asked} requests before the pause");
    assert_eq!(h.server.remaining_turns(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_cannot_be_prepared_pauses_with_environment_error() {
    let h = Harness::new(Script::default()).await;
    let id = h.create().await;
    std::fs::remove_dir_all(h.repo.path()).unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(kinds, ["started", "paused"]);
    let stop = state.stop.unwrap();
    assert_eq!(stop.reason, StopReason::EnvironmentError);
    assert!(
        stop.detail.starts_with("the task's machine could not be prepared:") && stop.detail.contains("does not exist"),
        "{}",
        stop.detail
    );
    assert!(h.server.requests().is_empty(), "no model call without a machine");
}

/// git refuses the verification's commit (another git holds the worktree's index): the task
/// pauses, saying why, instead of staying `verifying` with every resume failing the same way; once
/// the lock is gone, `resume` verifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_git_refuses_mid_run_pauses_the_task_and_resume_verifies_it_once_the_cause_is_gone() {
    let waits = "echo 'DROP TABLE scratch;' > scratch.sql";
    let turns = vec![
        turn(None, call("w", "shell", json!({ "command": waits }))),
        turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
        turn(None, call("f", "finish", json!({"summary": "add() adds."}))),
        turn(None, call("f2", "finish", json!({"summary": "add() adds."}))),
    ];
    let h = Harness::new(Script { turns, ..Script::default() }).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    // While the task waits, another git takes the worktree's index.
    let worktrees: Vec<_> =
        std::fs::read_dir(h.repo.path().join(".git/worktrees")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(worktrees.len(), 1, "{worktrees:?}");
    let lock = worktrees[0].join("index.lock");
    std::fs::write(&lock, "").unwrap();
    let decision = state.work.decisions.last().unwrap().0.id.clone();
    let answer =
        Event::DecisionMade { id: decision, answer: baton_core::Answer { answer: "go".into(), approved: true } };
    h.store.append(&id, state.next_seq, Timestamp(1), &[answer]).await.unwrap();

    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::EnvironmentError)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("baton could not go on: ") && detail.contains("index.lock"), "{detail}");

    std::fs::remove_file(&lock).unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_at_the_output_limit_is_told_to_the_agent() {
    // The answer stops at the output limit in the middle of a tool call's arguments.
    let cut = Reply {
        stop: Some("max_tokens".into()),
        ..call("c1", "write_file", json!({"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}))
    };
    let cut = Reply {
        tool_calls: vec![baton_testkit::model::ToolCall {
            arguments: cut.tool_calls[0].arguments[..30].to_owned(),
            ..cut.tool_calls[0].clone()
        }],
        ..cut
    };
    let told = Expect { body_contains: Some("cut off at the output limit of 4096 tokens".into()), ..Expect::default() };
    let script = Script {
        turns: vec![
            turn(None, cut),
            Turn {
                expect: told,
                ..turn(None, call("c2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})))
            },
            turn(Some("edited `calc.py`"), call("c3", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create().await;
    h.run_verified(&id).await;
    let feedback = h.events_matching(&id, |e| if let Event::Feedback { text } = e { Some(text) } else { None }).await;
    assert_eq!(feedback.len(), 1, "{feedback:?}");
}
