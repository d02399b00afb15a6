//! Review: a reviewer reads the verified change and reports findings; a build leg fixes them and
//! marks them resolved; the reviewer reads only the new delta; the task ends done with each
//! finding linked to the commit that resolved it. Real path: scripted model server over HTTP, git,
//! sandbox (root), SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;

use baton_core::{Event, FindingStatus, LegRole, Severity, Status, StopReason};
use baton_engine::RoleModel;
use baton_model::{ModelName, ProviderConfig, Providers};
use baton_testkit::model::{Expect, Script, ScriptedServer, Turn, text_of};
use common::{Harness, call, stopped, turn};
use serde_json::json;

fn expecting(body_contains: &str, reply: baton_testkit::model::Reply) -> Turn {
    Turn { expect: Expect { body_contains: Some(body_contains.into()), ..Expect::default() }, reply, ..Turn::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_finding_is_fixed_rereviewed_as_a_delta_and_resolved_with_its_commit() {
    let finding = json!({"findings": [{
        "title": "debug print left in add()", "body": "add() prints on every call; remove the print.",
        "severity": "P1", "confidence": 90, "file": "calc.py", "start_line": 2, "end_line": 2
    }]});
    let script = Script {
        turns: vec![
            // Build: a fix that passes the checks, with a debug print left in.
            turn(
                None,
                call(
                    "b1",
                    "edit_file",
                    json!({"path": "calc.py", "old": "return a - b", "new": "print('debug', a, b)\n    return a + b"}),
                ),
            ),
            turn(None, call("b2", "finish", json!({"summary": "add() adds."}))),
            // Review round 1 reads the whole change.
            expecting("+    print('debug', a, b)", call("r1", "read_file", json!({"path": "calc.py"}))),
            turn(Some("print('debug', a, b)"), call("r2", "report_findings", finding)),
            // Build addresses the finding.
            expecting(
                "debug print left in add()",
                call("b3", "edit_file", json!({"path": "calc.py", "old": "print('debug', a, b)\n    ", "new": ""})),
            ),
            turn(
                None,
                call("b4", "resolve_finding", json!({"id": "f1", "status": "resolved", "reason": "removed the print"})),
            ),
            turn(Some("f1 marked Resolved"), call("b5", "finish", json!({"summary": "add() adds, quietly."}))),
            // Review round 2 reads only the delta, and it is clean.
            expecting("-    print('debug', a, b)", call("r3", "report_findings", json!({"findings": []}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!(h.server.remaining_turns(), 0);

    assert_eq!(state.work.review_rounds, 2);
    let f1 = &state.work.findings[0];
    assert_eq!((f1.id.as_str(), f1.severity, f1.status), ("f1", Severity::P1, FindingStatus::Resolved));
    assert_eq!(f1.note, "build: removed the print");
    let fixed = f1.commit.clone().expect("the finding is linked to the commit that resolved it");
    assert_eq!(state.work.last_commit.as_deref(), Some(fixed.as_str()), "the verified commit of round 2");
    let file = h.repo.git(&["show", &format!("{fixed}:calc.py")]);
    assert!(file.contains("return a + b") && !file.contains("print("), "{file}");

    // The second review's brief holds only the delta, not the first round's change.
    let requests = h.server.requests();
    let second_review = text_of(&requests[7].body);
    assert!(second_review.contains("Review round 2: only what changed since the last review"), "{second_review}");
    assert!(!second_review.contains("return a - b"), "the round-1 diff is not shown again: {second_review}");
    assert!(kinds.iter().filter(|k| *k == "review_started").count() == 2);
    assert_eq!(state.work.role, LegRole::Review);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviewer_uses_a_model_of_its_own() {
    let build = Script {
        turns: vec![
            turn(None, call("b1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("b2", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    // The reviewer first answers in words; it is told to report, and does.
    let said = baton_testkit::model::Reply { text: Some("Looks fine to me.".into()), ..Default::default() };
    let review = Script {
        turns: vec![
            turn(None, said),
            expecting(
                "Report what you found with `report_findings`",
                call("r1", "report_findings", json!({"findings": []})),
            ),
        ],
        ..Script::default()
    };
    let h = Harness::new(build).await;
    let reviewer = ScriptedServer::start(review).await.unwrap();
    let providers = Providers {
        openai_compatible: ProviderConfig { base_url: Some(format!("{}/v1", reviewer.url())), api_key_env: None },
        ..Providers::default()
    };
    let name: ModelName = "openai-compatible/reviewer".parse().unwrap();
    let client = Arc::new(providers.client(&name, &|_| None).unwrap());
    let engine = h.engine().with_role_model(LegRole::Review, RoleModel { name, client, price: None });
    let id = h.create_with(|spec| spec.review = true).await;
    let mut legs = Vec::new();
    let state = engine
        .run(&id, &mut |recorded| {
            if let Event::LegStarted { role, model, .. } = &recorded.event {
                legs.push((*role, model.clone()));
            }
        })
        .await
        .unwrap();
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{:?}", state.stop);
    assert_eq!(
        legs,
        [
            (LegRole::Build, "openai-compatible/scripted".to_owned()),
            (LegRole::Review, "openai-compatible/reviewer".to_owned())
        ]
    );
    assert_eq!((h.server.requests().len(), reviewer.requests().len()), (2, 2));
    assert_eq!(reviewer.requests()[0].body["model"], "reviewer");
    assert!(h.server.failures().is_empty() && reviewer.failures().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_calling_a_tool_it_was_not_offered_is_refused_and_nothing_changes() {
    let script = Script {
        turns: vec![
            turn(None, call("b1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("b2", "finish", json!({"summary": "add() adds."}))),
            // The reviewer writes anyway, then edits by patch, then reports.
            turn(None, call("r1", "write_file", json!({"path": "calc.py", "content": "hacked\n"}))),
            turn(
                Some(
                    "a review leg has no tool `write_file`; its tools are: read_file, search, list_dir, shell, recall, report_findings",
                ),
                call("r2", "submit_plan", json!({"subtasks": []})),
            ),
            turn(
                Some("a review leg has no tool `submit_plan`"),
                call("r3", "report_findings", json!({"findings": []})),
            ),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let head = h.repo.git(&["rev-parse", &state.branch]);
    assert_eq!(h.repo.git(&["show", &format!("{head}:calc.py")]), "def add(a, b):\n    return a + b");
    let offered = &h.server.requests()[2].body["tools"];
    let names: Vec<&str> = offered.as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(names, ["shell", "read_file", "search", "list_dir", "recall", "report_findings"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_near_the_end_of_its_context_is_told_to_report_now() {
    // Three long files: reading them takes the reviewer's prompt past the soft threshold of a small
    // window.
    // Pseudo-random characters: dense in tokens, as minified code or data is.
    let long = |seed: u64| {
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=;:";
        let mut state = seed;
        (0..6000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                alphabet[(state >> 33) as usize % alphabet.len()] as char
            })
            .collect::<String>()
    };
    let mut files: Vec<(String, String)> = (1..=3).map(|n| (format!("notes_{n}.txt"), long(n))).collect();
    files.push(("calc.py".into(), "def add(a, b):\n    return a - b\n".into()));
    files.push((
        "test_calc.py".into(),
        "from calc import add\n\nassert add(2, 3) == 5\nprint(\"all tests passed\")\n".into(),
    ));
    let files: Vec<(&str, &str)> = files.iter().map(|(path, text)| (path.as_str(), text.as_str())).collect();
    let script = Script {
        turns: vec![
            turn(None, call("b1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("b2", "finish", json!({"summary": "add() adds."}))),
            turn(None, call("r1", "read_file", json!({"path": "notes_1.txt"}))),
            turn(None, call("r2", "read_file", json!({"path": "notes_2.txt"}))),
            turn(None, call("r3", "read_file", json!({"path": "notes_3.txt"}))),
            expecting("baton: your context is nearly full", call("r4", "report_findings", json!({"findings": []}))),
        ],
        ..Script::default()
    };
    let mut h = Harness::with_repo(script, baton_testkit::FixtureRepo::with_files(&files)).await;
    h.context_window = 12_000;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, _) = h.run_verified(&id).await;
    assert_eq!((state.work.review_rounds, h.server.remaining_turns()), (1, 0));
    assert!(!state.stop.unwrap().detail.contains("The review could not run"));
}

/// A task asked for a review is not done without one: a reviewer whose provider refuses pauses the
/// task (`model_error`), and a resume checks and reviews the verified commit again, without running
/// the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_whose_provider_refuses_pauses_the_task_and_a_resume_reviews_again() {
    let refused = baton_testkit::model::Fault::Status { status: 400, retry_after: None, message: Some("no".into()) };
    let script = Script {
        turns: vec![
            turn(None, call("b1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("b2", "finish", json!({"summary": "add() adds."}))),
            // Refused first; asked again after the resume, the reviewer reports.
            Turn {
                faults: vec![refused],
                ..expecting("+    return a + b", call("r1", "report_findings", json!({"findings": []})))
            },
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::ModelError)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the reviewer's model call failed: "), "{detail}");
    let verified_commit = state.work.last_commit.clone();

    let (state, kinds) = h.run_verified(&id).await;
    assert!(!state.stop.as_ref().unwrap().detail.contains("could not run"), "{:?}", state.stop);
    assert_eq!((state.work.review_rounds, h.server.remaining_turns()), (1, 0));
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!(state.work.last_commit, verified_commit, "nothing was built again");
    // The resumed run: no model call of a build leg, the checks once (only a verification leads to
    // a review), one review round.
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(
        (count("verification_started"), count("review_started"), count("model_call_started")),
        (1, 1, 1),
        "{kinds:?}"
    );
}
