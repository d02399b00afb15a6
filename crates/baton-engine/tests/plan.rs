//! The captain: a scripted captain splits a request into two dependent subtasks (after a plan the
//! harness refuses); both run as child tasks and end verified in order, the second starting from
//! the first's result; the parent ends verified on the last result. Real path: scripted model
//! server over HTTP, git, sandbox (root), SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Charge, ChargeKind, CheckSpec, Credits, Event, LegRole, Rates, Status, StopReason, TaskId};
use baton_store::Store;
use baton_testkit::FixtureRepo;
use baton_testkit::model::Script;
use common::{Harness, call, python_fixture, turn};
use serde_json::json;

fn subtask(key: &str, request: &str, check: &str, depends_on: &[&str]) -> serde_json::Value {
    json!({"key": key, "request": request, "scope": ["calc.py"], "checks": [check], "depends_on": depends_on, "budget_share": 50})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captain_splits_the_work_into_two_dependent_subtasks_that_end_verified_in_order() {
    let repo: FixtureRepo = python_fixture();
    repo.write(&[("test_mul.py", "from calc import mul\n\nassert mul(2, 3) == 6\nprint(\"all tests passed\")\n")]);
    repo.commit("a test for mul");
    let refused = json!({"subtasks": [
        {"key": "s1", "request": "Fix add()", "scope": ["src/calc.py"], "checks": ["no-such-runner test"], "depends_on": [], "budget_share": 50},
        // Refused as any task with this spec would be.
        {"key": "s9", "request": "Test twice", "scope": ["calc.py"], "checks": ["true", "true"], "depends_on": [], "budget_share": 50}
    ]});
    // Listed second-first: the harness runs dependencies first.
    let plan = json!({"subtasks": [
        subtask("s2", "Add mul(a, b) to calc.py", "python3 test_mul.py", &["s1"]),
        subtask("s1", "Make add() add", "python3 test_calc.py", &[]),
    ]});
    let append_mul = json!({"path": "calc.py", "old": "    return a + b\n", "new": "    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"});
    let script = Script {
        turns: vec![
            turn(None, call("c1", "list_dir", json!({"path": "."}))),
            // The captain's commands run, and cannot write the worktree.
            turn(None, call("c0", "shell", json!({"command": "touch probe.txt || echo cannot write"}))),
            turn(Some("Read-only file system"), call("c2", "submit_plan", refused)),
            turn(Some("does not run (exit code 127"), call("c3", "submit_plan", plan)),
            // s1, on its own branch from the base.
            turn(None, call("a1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("a2", "finish", json!({"summary": "add() adds."}))),
            // s2, from s1's result.
            turn(None, call("m1", "read_file", json!({"path": "calc.py"}))),
            turn(Some("return a + b"), call("m2", "edit_file", append_mul)),
            turn(None, call("m3", "finish", json!({"summary": "mul() multiplies."}))),
        ],
        ..Script::default()
    };
    let mut h = Harness::with_repo(script, repo).await;
    // Every check the plan names is tried on a clean machine: each is charged as a check run.
    h.rates = Rates { check: Credits::from_micros(10_000), ..Rates::default() };
    let id = h
        .create_with(|spec| {
            spec.plan = true;
            spec.checks = ["python3 test_calc.py", "python3 test_mul.py"]
                .map(|c| CheckSpec { name: c.into(), command: c.into(), timeout_secs: 60 })
                .to_vec();
        })
        .await;
    let (state, kinds) = h.run_verified(&id).await;
    assert_eq!(h.server.remaining_turns(), 0);

    assert!(!h.worktree(&id).join("probe.txt").exists());
    let finished = kinds.iter().filter(|k| *k == "finished").count();
    assert_eq!(finished, 3, "the parent's watcher saw both subtasks end, then the parent: {kinds:?}");
    let transcript = format!("{:?}", h.server.requests()[3].body);
    assert!(transcript.contains("scope path `src/calc.py` does not exist"), "the refusal names each problem");
    assert!(transcript.contains("`s9`: two checks are named `true`"), "a child's spec is validated like any task's");
    assert_eq!(state.work.role, LegRole::Captain, "the parent never built anything itself");
    let keys: Vec<&str> = state.work.subtasks.iter().map(|s| s.plan.key.as_str()).collect();
    assert_eq!(keys, ["s1", "s2"]);
    let (s1, s2) = (&state.work.subtasks[0], &state.work.subtasks[1]);
    assert!(s1.outcome.as_ref().unwrap().verified && s2.outcome.as_ref().unwrap().verified);

    let first = h.store.load(&TaskId::parse(s1.task.as_ref().unwrap()).unwrap()).await.unwrap();
    let second = h.store.load(&TaskId::parse(s2.task.as_ref().unwrap()).unwrap()).await.unwrap();
    assert_eq!(second.base_commit, first.work.last_commit.clone().unwrap(), "s2 starts from s1's result");
    assert_eq!((first.spec.parent.as_deref(), second.spec.parent.as_deref()), (Some(id.as_str()), Some(id.as_str())));
    assert!(first.updated_at <= second.created_at, "s1 ended before s2 began");
    // The parent's branch holds the last result, which its own checks verified.
    let head = h.repo.git(&["rev-parse", &state.branch]);
    assert_eq!(Some(head.clone()), second.work.last_commit);
    assert!(h.repo.git(&["show", &format!("{head}:calc.py")]).contains("def mul(a, b):\n    return a * b"));
    assert!(state.work.last_checks.iter().all(|c| c.passed) && state.work.last_checks.len() == 2);
    // The refused plan probed three checks, the accepted one two.
    let probes: Vec<Vec<Charge>> = h
        .events_matching(&id, |event| match event {
            Event::Settled { key, charges } if key.contains("submit_plan") => Some(charges),
            _ => None,
        })
        .await;
    let check = |micros| Charge { kind: ChargeKind::Check, amount: Credits::from_micros(micros) };
    assert_eq!(probes, [vec![check(30_000)], vec![check(20_000)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_plan_runs_and_a_refused_one_goes_back_to_the_captain() {
    let two = json!({"subtasks": [
        subtask("s1", "Make add() add", "python3 test_calc.py", &[]),
        subtask("s2", "Tidy calc.py", "python3 test_calc.py", &["s1"]),
    ]});
    let one = json!({"subtasks": [subtask("s1", "Make add() add", "python3 test_calc.py", &[])]});
    let script = Script {
        turns: vec![
            turn(None, call("c1", "submit_plan", two)),
            turn(Some("plan refused by a human: one subtask is enough"), call("c2", "submit_plan", one)),
            turn(None, call("a1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("a2", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h
        .create_with(|spec| {
            spec.plan = true;
            spec.approve_plan = true;
        })
        .await;
    let decide = |state: &baton_core::TaskState, answer: &str, approved: bool| {
        let decision = state.work.decisions.last().unwrap().0.id.clone();
        let event = baton_core::Event::DecisionMade {
            id: decision,
            answer: baton_core::Answer { answer: answer.into(), approved },
        };
        (state.next_seq, event)
    };
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    let question = state.question.clone().unwrap();
    assert!(
        question.starts_with(
            "Approve this plan? s1: Make add() add [checks: python3 test_calc.py] | s2 (after s1): Tidy calc.py"
        ),
        "{question}"
    );
    assert!(state.work.subtasks.is_empty(), "nothing runs before approval");
    let (seq, event) = decide(&state, "one subtask is enough", false);
    h.store.append(&id, seq, baton_core::Timestamp(1), &[event]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    let (seq, event) = decide(&state, "yes", true);
    h.store.append(&id, seq, baton_core::Timestamp(2), &[event]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    assert_eq!(state.work.subtasks.len(), 1);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

/// A subtask that writes one file and finishes: the two turns its child task takes.
fn writes(key: &str, path: &str, content: &str) -> [baton_testkit::model::Turn; 2] {
    [
        turn(None, call(&format!("{key}w"), "write_file", json!({"path": path, "content": content}))),
        turn(None, call(&format!("{key}f"), "finish", json!({"summary": format!("wrote {path}")}))),
    ]
}

fn importing(key: &str, modules: &str, depends_on: &[&str]) -> serde_json::Value {
    json!({"key": key, "request": format!("Provide {modules}"), "scope": ["."], "depends_on": depends_on,
           "checks": [format!("python3 -c 'import {modules}'")], "budget_share": 20})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_subtasks_and_a_diamond_all_land_on_the_parents_branch() {
    // s1; s2 and s3 after s1; s4 after both (a diamond); s5 on its own.
    let plan = json!({"subtasks": [
        importing("s1", "calc", &[]),
        importing("s2", "mul", &["s1"]),
        importing("s3", "sub", &["s1"]),
        importing("s4", "both", &["s2", "s3"]),
        importing("s5", "five", &[]),
    ]});
    let mut turns = vec![turn(None, call("c1", "submit_plan", plan))];
    // The harness runs them by rounds of dependencies: s1 and s5, then s2 and s3, then s4.
    turns.extend([
        turn(None, call("s1e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
        turn(None, call("s1f", "finish", json!({"summary": "add() adds"}))),
    ]);
    turns.extend(writes("s5", "five.py", "FIVE = 5\n"));
    turns.extend(writes("s2", "mul.py", "def mul(a, b):\n    return a * b\n"));
    turns.extend(writes("s3", "sub.py", "def sub(a, b):\n    return a - b\n"));
    // s4 imports both of its dependencies' modules: its check passes only if both were merged in.
    turns.extend(writes("s4", "both.py", "from mul import mul\nfrom sub import sub\n"));
    let h = Harness::new(Script { turns, ..Script::default() }).await;
    let id = h
        .create_with(|spec| {
            spec.plan = true;
            spec.budget.steps = Some(50);
            spec.budget.credits = Some(Credits::from_micros(10_000_000));
            spec.checks = ["python3 test_calc.py", "python3 -c 'import both, five'"]
                .map(|c| CheckSpec { name: c.into(), command: c.into(), timeout_secs: 60 })
                .to_vec();
        })
        .await;
    let (state, _) = h.run_verified(&id).await;
    assert_eq!(h.server.remaining_turns(), 0);

    let child = |key: &str| {
        let subtask = state.work.subtasks.iter().find(|s| s.plan.key == key).unwrap();
        TaskId::parse(subtask.task.as_ref().unwrap()).unwrap()
    };
    let mut children = std::collections::BTreeMap::new();
    for key in ["s1", "s2", "s3", "s4", "s5"] {
        children.insert(key, h.store.load(&child(key)).await.unwrap());
    }
    let result = |key: &str| children[key].work.last_commit.clone().unwrap();
    assert_eq!(children["s5"].base_commit, state.base_commit, "an independent subtask starts from the parent's base");
    assert_eq!(children["s1"].base_commit, state.base_commit);
    assert_eq!(children["s2"].base_commit, result("s1"));
    assert_eq!(children["s3"].base_commit, result("s1"));
    assert_eq!(
        (children["s4"].base_commit.clone(), children["s4"].spec.merges.clone()),
        (result("s2"), vec![result("s3")])
    );
    // Each child's limits are its share of the parent's.
    assert!(children.values().all(|c| c.spec.budget.steps == Some(10)), "20% of 50 steps");
    assert!(children.values().all(|c| c.spec.budget.credits == Some(Credits::from_micros(2_000_000))), "20% of 10");

    // Every subtask's work is on the parent's branch, which its own checks verified.
    let head = h.repo.git(&["rev-parse", &state.branch]);
    let tree = h.repo.git(&["ls-tree", "--name-only", &head]);
    for file in ["mul.py", "sub.py", "both.py", "five.py"] {
        assert!(tree.lines().any(|l| l == file), "{file} missing from {tree}");
    }
    assert!(h.repo.git(&["show", &format!("{head}:calc.py")]).contains("a + b"));
    assert!(state.work.last_checks.len() == 2 && state.work.last_checks.iter().all(|c| c.passed));
    assert_eq!(state.work.role, LegRole::Captain, "no conflict: the parent built nothing itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_conflict_are_resolved_by_a_build_leg_of_the_parent_then_checked() {
    // Two independent subtasks fix the same line, each its own way.
    let plan = json!({"subtasks": [
        subtask("s1", "Make add() add", "python3 test_calc.py", &[]),
        subtask("s2", "Make add() add, operands swapped", "python3 test_calc.py", &[]),
    ]});
    let resolved = "def add(a, b):\n    return a + b\n";
    let script = Script {
        turns: vec![
            turn(None, call("c1", "submit_plan", plan)),
            turn(None, call("a1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("a2", "finish", json!({"summary": "a + b"}))),
            turn(None, call("b1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "b + a"}))),
            turn(None, call("b2", "finish", json!({"summary": "b + a"}))),
            // The parent's own build leg, told which file conflicted.
            baton_testkit::model::Turn {
                expect: baton_testkit::model::Expect {
                    body_contains: Some("calc.py (merging the result of subtask s2)".into()),
                    ..Default::default()
                },
                ..turn(None, call("p1", "read_file", json!({"path": "calc.py"})))
            },
            turn(Some("<<<<<<<"), call("p2", "write_file", json!({"path": "calc.py", "content": resolved}))),
            turn(None, call("p3", "finish", json!({"summary": "kept a + b"}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create_with(|spec| spec.plan = true).await;
    let (state, _) = h.run_verified(&id).await;
    assert_eq!(h.server.remaining_turns(), 0);
    assert_eq!(state.work.role, LegRole::Build, "the conflict was the parent's to resolve");
    let head = h.repo.git(&["rev-parse", &state.branch]);
    assert_eq!(h.repo.git(&["show", &format!("{head}:calc.py")]), resolved.trim_end());
    let log = h.repo.git(&["log", "--format=%s", &state.branch]);
    assert!(log.contains("baton: merge the result of subtask s2 (conflicts left in calc.py)"), "{log}");
    assert!(state.work.last_checks.iter().all(|c| c.passed) && !state.work.last_checks.is_empty());
}
