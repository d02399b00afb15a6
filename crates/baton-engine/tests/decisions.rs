//! Decision points: a destructive command waits for a human's approval, a denial is told to the
//! agent, `ask_human` gets its answer, and a waiting task survives restarts spending nothing. Real
//! path: scripted model server over HTTP, git, sandbox (root), SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Answer, DecisionKind, Event, Status, StopReason, TaskId, TaskState, Timestamp};
use baton_model::Price;
use baton_store::Store;
use baton_testkit::model::{Reply, Script, Usage};
use common::{Harness, call, turn};
use serde_json::json;

/// The first answer is `first`; then the agent fixes add() (after seeing `told` in the last tool
/// result) and finishes.
fn script(first: Reply, told: &str) -> Script {
    let used = |reply: Reply| Reply { usage: Usage { input: 1000, output: 100, ..Usage::default() }, ..reply };
    Script {
        turns: vec![
            turn(None, used(first)),
            turn(Some(told), used(call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})))),
            turn(Some("edited `calc.py`"), used(call("f", "finish", json!({"summary": "add() adds."})))),
        ],
        ..Script::default()
    }
}

async fn decide(h: &Harness, id: &TaskId, state: &TaskState, answer: &str, approved: bool) {
    let decision = state.work.decisions.last().unwrap().0.id.clone();
    let event = Event::DecisionMade { id: decision, answer: Answer { answer: answer.into(), approved } };
    h.store.append(id, state.next_seq, Timestamp(state.next_seq as i64), &[event]).await.unwrap();
}

fn verified(state: &TaskState) -> bool {
    state.stop.as_ref().map(|s| s.reason) == Some(StopReason::Verified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destructive_command_waits_through_a_restart_spending_nothing_and_runs_once_approved() {
    let command = "echo 'DROP TABLE sessions;' > drop.sql && echo dropped";
    let mut h = Harness::new(script(call("d", "shell", json!({"command": command})), "dropped")).await;
    h.price = Some(Price {
        input: "1".parse().unwrap(),
        cache_read: "0.1".parse().unwrap(),
        cache_write: "1".parse().unwrap(),
        output: "5".parse().unwrap(),
    });
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    let (decision, answer) = state.work.decisions.last().unwrap();
    assert!(answer.is_none());
    assert_eq!(decision.kind, DecisionKind::Destructive { rule: "database dropped".into(), command: command.into() });
    assert_eq!(state.question.as_deref(), Some(format!("May the agent run `{command}`?").as_str()));
    assert!(!kinds.contains(&"tool_call_started".to_owned()), "the command did not start: {kinds:?}");
    assert!(!h.worktree(&id).join("drop.sql").exists());

    // A restart of a waiting task changes nothing and spends nothing.
    let (again, kinds) = h.run(&id).await;
    assert!(kinds.is_empty(), "{kinds:?}");
    assert_eq!(
        (again.status(), again.next_seq, again.money.spent),
        (Status::Waiting, state.next_seq, state.money.spent)
    );
    assert_eq!(h.server.requests().len(), 1);

    decide(&h, &id, &again, "fine, it is a scratch database", true).await;
    let (state, kinds) = h.run(&id).await;
    assert!(verified(&state), "{kinds:?} {:?}", state.stop);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!((h.server.requests().len(), h.server.remaining_turns()), (3, 0));
    let journal = h.store.events(&id, 0).await.unwrap();
    let started =
        journal.iter().filter(|r| matches!(&r.event, Event::ToolCallStarted { call_id, .. } if call_id == "d")).count();
    assert_eq!(started, 1, "the approved command ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_command_does_not_run_and_the_agent_is_told_why() {
    let first = call("d", "shell", json!({"command": "rm -rf /etc/ssl && echo gone"}));
    let h = Harness::new(script(first, "a human denied this command: not on my machine")).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    assert!(
        matches!(&state.work.decisions[0].0.kind, DecisionKind::Destructive { rule, .. } if rule == "recursive delete outside the workspace")
    );
    decide(&h, &id, &state, "not on my machine", false).await;
    let (state, kinds) = h.run(&id).await;
    assert!(verified(&state), "{kinds:?} {:?}", state.stop);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!(h.server.remaining_turns(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_human_waits_for_the_answer_and_the_agent_reads_it() {
    let ask = json!({"question": "Should add() also accept strings?", "options": ["yes", "no"], "why": "the tests do not say"});
    let h = Harness::new(script(call("q", "ask_human", ask), "The human answered: no, numbers only")).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    let decision = &state.work.decisions[0].0;
    assert_eq!(
        (decision.kind.clone(), decision.options.clone()),
        (DecisionKind::Ask, vec!["yes".to_owned(), "no".to_owned()])
    );
    assert_eq!(decision.why, "the tests do not say");
    decide(&h, &id, &state, "no, numbers only", true).await;
    let (state, kinds) = h.run(&id).await;
    assert!(verified(&state), "{kinds:?} {:?}", state.stop);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_granted_by_name_reaches_commands_but_never_the_model() {
    // `cargo test` sets CARGO_PKG_NAME (baton-engine) in the test's environment: the credential.
    let ask = json!({"name": "CARGO_PKG_NAME", "why": "to publish"});
    let script = Script {
        turns: vec![
            turn(None, call("k", "request_credential", ask)),
            turn(
                Some("is set in the environment"),
                call("s", "shell", json!({"command": "echo \"$CARGO_PKG_NAME\"; echo ${#CARGO_PKG_NAME}"})),
            ),
            turn(
                Some("[secret CARGO_PKG_NAME]\n12"),
                // Into a file, where baton's own reads find it: the check prints it, the diff holds it.
                call("w", "shell", json!({"command": "echo \"$CARGO_PKG_NAME\" > leak.txt; echo written"})),
            ),
            turn(Some("written"), call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            turn(None, call("f", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h
        .create_with(|spec| {
            spec.checks[0].command = "python3 -c \"print(open('leak.txt').read().encode().hex())\" 2>/dev/null; cat leak.txt 2>/dev/null; python3 test_calc.py".into();
        })
        .await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    assert_eq!(state.work.decisions[0].0.kind, DecisionKind::Credential { name: "CARGO_PKG_NAME".into() });
    decide(&h, &id, &state, "ok", true).await;
    let (state, kinds) = h.run(&id).await;
    assert!(verified(&state), "{kinds:?} {:?}", state.stop);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let sent: String = h.server.requests().iter().map(|r| r.body.to_string()).collect();
    assert!(!sent.contains("baton-engine"), "the value never reaches the model");
    let journal = format!("{:?}", h.store.events(&id, 0).await.unwrap());
    assert!(!journal.contains("baton-engine"), "nor the journal");
    assert!(!journal.contains("6261746f6e2d656e67696e65"), "nor its hex");
    let checked = h.store.events(&id, 0).await.unwrap().into_iter().find_map(|r| match r.event {
        baton_core::Event::CheckFinished { output, .. } => Some(output),
        _ => None,
    });
    assert_eq!(
        checked.as_deref().map(|o| o.lines().take(2).collect::<Vec<_>>()),
        Some(vec!["[secret CARGO_PKG_NAME]0a", "[secret CARGO_PKG_NAME]"]),
        "the check printed the value, in hex and as written: {checked:?}"
    );
}

/// The variable baton's configuration keeps its provider's key in is baton's own, whatever its name:
/// asking for it is refused outright, with no human asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_asking_for_the_variable_of_batons_configured_provider_key_is_refused_unasked() {
    let ask = call("k", "request_credential", json!({"name": common::SCRIPTED_PROVIDER_KEY, "why": "to call it"}));
    let h = Harness::new(script(ask, "`SCRIPTED_PROVIDER_KEY` is one of baton's own credentials")).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert!(verified(&state), "{kinds:?} {:?}", state.stop);
    assert!(state.work.decisions.is_empty(), "a human was asked: {:?}", state.work.decisions);
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

/// A server that numbers tool calls per answer gives two different destructive commands the same
/// id: the approval of the first must not let the second run unasked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_destructive_commands_with_one_reused_call_id_each_wait_for_their_own_decision() {
    let drop = |table: &str| format!("echo 'DROP TABLE {table};' > {table}.sql && echo dropped {table}");
    let script = Script {
        turns: vec![
            turn(None, call("call_0", "shell", json!({ "command": drop("a") }))),
            turn(Some("dropped a"), call("call_0", "shell", json!({ "command": drop("b") }))),
        ],
        ..Script::default()
    };
    let h = Harness::new(script).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    decide(&h, &id, &state, "a is a scratch table", true).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "the second command ran on the first one's approval: {kinds:?}");
    assert_eq!(state.work.decisions.len(), 2);
    assert!(state.question.as_deref().is_some_and(|q| q.contains("DROP TABLE b")), "{:?}", state.question);
    assert!(h.worktree(&id).join("a.sql").exists() && !h.worktree(&id).join("b.sql").exists());
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    // Each call and its result carry the task-unique id the transcript replays.
    let ids: Vec<String> = state.work.call_ids.iter().cloned().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}
