//! Long tasks in small contexts: handoffs to fresh legs carry the ledger, a provider's overflow
//! leads to an emergency handoff, and legs that hand off without progress pause the task. Real
//! path: scripted model server over HTTP, git, sandbox (root), SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Budget, Event, Handoff, Status, StopReason, Timestamp};
use baton_store::Store;
use baton_testkit::model::{Expect, RecordedRequest, Reply, Rule, Script, count_tokens, text_of};
use baton_testkit::{exploration, long_horizon};
use common::{Harness, call, turn};
use serde_json::json;

/// Answers every handoff's summarisation call.
fn summary_rule() -> Rule {
    Rule {
        when: Expect { body_contains: Some(long_horizon::HANDOFF_ASK.into()), ..Expect::default() },
        reply: Reply { text: Some("Read calc.py; next: fix add() and run the tests.".into()), ..Reply::default() },
    }
}

/// The requests that opened a leg after a handoff: each follows a summarisation call.
fn leg_openings(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests.windows(2).filter(|pair| pair[0].served == "rule").map(|pair| &pair[1]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_horizon_600_steps_in_a_32k_window_end_verified_and_every_leg_starts_with_every_fact() {
    const WINDOW: u64 = 32_768;
    let (h, id, facts) = Harness::long_horizon(WINDOW).await;
    let (state, kinds) = h.run(&id).await;
    let stop = state.stop.clone();
    assert_eq!(
        (state.status(), stop.as_ref().map(|s| s.reason)),
        (Status::Done, Some(StopReason::Verified)),
        "{stop:?}"
    );
    assert_eq!(state.work.steps as usize, long_horizon::ITEMS * long_horizon::STEPS_PER_ITEM + 1);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!(h.server.remaining_turns(), 0);

    let requests = h.server.requests();
    for request in &requests {
        assert!(!request.served.starts_with("context_overflow"), "{}", request.served);
        assert!(count_tokens(&request.body) <= WINDOW);
    }
    let handoffs = kinds.iter().filter(|kind| *kind == "handoff_written").count();
    assert_eq!(handoffs as u32, state.work.handoffs);
    assert!(handoffs >= 3, "600 steps of large outputs must not fit one 32k leg: {handoffs} handoffs");
    let openings = leg_openings(&requests);
    assert_eq!(openings.len(), handoffs);
    for opening in openings {
        let turn = opening.turn.expect("a leg opens with a scripted turn");
        let missing = facts.missing(turn, &text_of(&opening.body));
        assert!(missing.is_empty(), "the leg opened by turn {turn} does not know {missing:?}");
        // The ledger lists the plan itself, not only the calls that set it.
        assert!(text_of(&opening.body).contains("## Plan\n\n1. ["), "turn {turn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_context_overflow_mid_leg_is_an_emergency_handoff_and_the_task_goes_on() {
    // The provider's window is 7000 tokens; baton is told 128k, so only the refusal can tell it.
    let script = Script {
        turns: vec![
            turn(None, call("r", "read_file", json!({"path": "calc.py"}))),
            turn(None, call("s1", "shell", json!({"command": "seq 1 1500"}))),
            turn(None, call("s2", "shell", json!({"command": "seq 1501 3000"}))),
            turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(Some("edited `calc.py`"), call("t", "shell", json!({"command": "python3 test_calc.py"}))),
            turn(Some("all tests passed"), call("f", "finish", json!({"summary": "add() adds."}))),
        ],
        rules: vec![summary_rule()],
        context_window: Some(7000),
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    let stop = state.stop.clone();
    assert_eq!(
        (state.status(), stop.as_ref().map(|s| s.reason)),
        (Status::Done, Some(StopReason::Verified)),
        "{stop:?} {kinds:?}"
    );
    let requests = h.server.requests();
    let refused: Vec<&RecordedRequest> = requests.iter().filter(|r| r.served.starts_with("context_overflow")).collect();
    assert_eq!(refused.len(), 1, "{:?}", requests.iter().map(|r| &r.served).collect::<Vec<_>>());
    assert_eq!(state.work.handoffs, 1);
    let handoff = state.work.last_handoff.as_ref().unwrap();
    assert!(handoff.emergency && handoff.reason.contains("provider refused"), "{}", handoff.reason);
    assert_eq!(handoff.narrative, "Read calc.py; next: fix add() and run the tests.");
    assert_eq!(handoff.ledger.files_read, ["calc.py"]);
    assert_eq!(state.work.learned_window, Some(7000), "the window the provider stated");
    let opening = leg_openings(&requests)[0].body.to_string();
    assert!(opening.contains("emergency handoff from leg 1") && opening.contains("Read calc.py; next"), "{opening}");
    assert!(count_tokens(&leg_openings(&requests)[0].body) < 7000);
    let order: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| matches!(*k, "model_call_failed" | "handoff_started" | "handoff_written" | "leg_started"))
        .collect();
    assert_eq!(order, ["leg_started", "model_call_failed", "handoff_started", "handoff_written", "leg_started"]);
}

/// The steps each leg took, from the handoffs' records.
fn leg_lengths(state: &baton_core::TaskState, handoffs: &[Handoff]) -> Vec<u32> {
    let ends: Vec<u32> = handoffs.iter().map(|h| h.step).chain([state.work.steps]).collect();
    ends.iter().scan(0, |start, end| Some(end - std::mem::replace(start, *end))).collect()
}

async fn handoffs(h: &Harness, id: &baton_core::TaskId) -> Vec<Handoff> {
    h.events_matching(id, |event| match event {
        Event::HandoffWritten { handoff } => Some(*handoff),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exploring_a_large_module_on_a_32k_window_is_never_taken_for_a_loop() {
    // 200 pages of 100 lines, every range new: several legs that change nothing but each read on.
    const WINDOW: u64 = 32_768;
    let scenario = exploration::exploration(200, WINDOW);
    let mut h = Harness::with_repo(scenario.script, scenario.repo).await;
    h.context_window = WINDOW;
    let id = h.create_with(|spec| spec.budget = Budget::default()).await;
    let (state, kinds) = h.run_verified(&id).await;
    assert!(!kinds.contains(&"nudged".to_owned()), "reading on is not being stuck");
    let handoffs = handoffs(&h, &id).await;
    assert!(handoffs.len() >= 2, "200 pages must not fit one 32k leg: {} handoffs", handoffs.len());
    // Large outputs are elided by size, so a leg holds dozens of reads, not the ten it held when
    // the newest eight messages were kept whatever their size.
    let lengths = leg_lengths(&state, &handoffs);
    assert!(lengths[..lengths.len() - 1].iter().all(|steps| *steps >= 30), "steps per leg: {lengths:?}");
    for request in h.server.requests() {
        assert!(count_tokens(&request.body) <= WINDOW);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_same_ranges_round_and_round_pauses_the_task_as_a_handoff_loop() {
    // 60 pages read round and round: each leg reads ranges it has not read itself (so nothing
    // repeats within a leg), but from the third leg on, only ranges earlier legs read.
    const WINDOW: u64 = 32_768;
    let scenario = exploration::looping(60, 600, WINDOW);
    let mut h = Harness::with_repo(scenario.script, scenario.repo).await;
    h.context_window = WINDOW;
    let id = h.create_with(|spec| spec.budget = Budget::default()).await;
    let (state, kinds) = h.run(&id).await;
    let stop = state.stop.clone().unwrap();
    assert_eq!((state.status(), stop.reason), (Status::Paused, StopReason::HandoffLoop), "{stop:?} {kinds:?}");
    let (leg, seen) = (state.work.leg, state.work.leg_seen);
    let expected = format!(
        "handoff loop: legs {} and {leg} each filled their context without changing a file, completing a plan step, running the checks or seeing anything earlier legs had not (leg {leg}: {seen} results, every one seen before)",
        leg - 1
    );
    assert_eq!(stop.detail, expected);
    assert!(seen >= 30 && state.work.leg_new == 0, "{seen}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let handoffs = handoffs(&h, &id).await;
    let lengths = leg_lengths(&state, &handoffs);
    // The pages go round once in the first legs, which are not idle.
    assert!(lengths.iter().take(lengths.len() - 2).sum::<u32>() >= 60, "{lengths:?}");

    // `baton resume` gives the task one more try; the same behaviour pauses it again.
    let (state, _) = h.run(&id).await;
    let stop = state.stop.clone().unwrap();
    assert_eq!((state.status(), stop.reason), (Status::Paused, StopReason::HandoffLoop), "{stop:?}");
    assert!(stop.detail.starts_with(&format!("handoff loop: legs {} and {}", leg, leg + 1)), "{}", stop.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_a_crash_interrupted_is_written_on_resume_and_the_task_goes_on() {
    let script = Script {
        turns: vec![
            turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(Some("edited `calc.py`"), call("f", "finish", json!({"summary": "add() adds."}))),
        ],
        rules: vec![summary_rule()],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create().await;
    // The journal of a run killed while its first leg was writing its handoff.
    let crashed = [
        Event::Started,
        Event::LegStarted {
            leg: 1,
            model: "openai-compatible/scripted".into(),
            system: "build".into(),
            brief: "# Task".into(),
            role: Default::default(),
        },
        Event::HandoffStarted {
            reason: "the prompt reached 71% of the context (soft threshold)".into(),
            emergency: false,
            window: None,
        },
    ];
    h.store.append(&id, 1, Timestamp(1), &crashed).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    // This journal, written by hand, names no environment yet: the resume names it first.
    assert_eq!(kinds[..3], ["environment_prepared", "handoff_written", "leg_started"], "{kinds:?}");
    assert!(!kinds.contains(&"handoff_started".to_owned()), "the intent is journaled once: {kinds:?}");
    let handoff = state.work.last_handoff.as_ref().unwrap();
    assert_eq!(
        (handoff.from_leg, handoff.reason.as_str()),
        (1, "the prompt reached 71% of the context (soft threshold)")
    );
    assert_eq!(state.work.leg, 2);
}
