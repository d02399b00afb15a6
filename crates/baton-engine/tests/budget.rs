//! Credits: a task pauses at its credit limit and resumes exactly once raised; the account's
//! policy (auto-reload, monthly cap, overage) decides whether work may go on; many tasks racing on
//! one account are charged exactly what the provider reported. Real path: scripted model server
//! over HTTP, git, sandbox (root), SQLite journal and account.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{
    AutoReload, Budget, ChargeKind, Credits, EntryKind, Event, Policy, Rates, Status, StopReason, TaskId, TaskState,
    Timestamp, Usage,
};
use baton_model::Price;
use std::sync::Arc;

use baton_store::{SqlStore, Store};
use baton_testkit::model::{Reply, Script, Usage as ScriptUsage};
use common::{Harness, call, stopped, turn};
use serde_json::json;

fn credits(text: &str) -> Credits {
    text.parse().unwrap()
}

/// Output is dear, input cheap: a call's worst case (room for 4,096 output tokens) is about 0.041
/// credits whatever the prompt, and what it reports is charged exactly.
fn price() -> Price {
    Price { input: credits("0.1"), cache_read: credits("0.01"), cache_write: credits("0.125"), output: credits("10") }
}

fn used(reply: Reply, input: u64, output: u64) -> Reply {
    Reply { usage: ScriptUsage { input, output, ..ScriptUsage::default() }, ..reply }
}

/// Fix add(), test, finish: each answer reports 1,000 input and 2,000 output tokens (0.0201 credits).
fn fixing_script() -> Script {
    let costly = |reply| used(reply, 1000, 2000);
    Script {
        turns: vec![
            turn(None, costly(call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})))),
            turn(Some("edited `calc.py`"), costly(call("t", "shell", json!({"command": "python3 test_calc.py"})))),
            turn(Some("all tests passed"), costly(call("f", "finish", json!({"summary": "add() adds."})))),
        ],
        ..Script::default()
    }
}

async fn priced(script: Script) -> Harness {
    let mut h = Harness::new(script).await;
    h.price = Some(price());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_pauses_at_its_credit_limit_and_once_raised_resumes_without_repeating_a_call() {
    let h = priced(fixing_script()).await;
    // Room for the first call's hold (~0.041), not for the second's on top of what the first cost.
    let id = h.create_with(|spec| spec.budget = Budget { credits: Some(credits("0.05")), ..Budget::default() }).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(
        detail.starts_with("the task's budget of 0.05 credits would be crossed: 0.0201 spent, 0.00 held"),
        "{detail}"
    );
    assert_eq!((state.work.steps, h.server.requests().len()), (1, 1));
    assert!(state.money.held.is_empty());
    // The edit of the first step is committed on the branch before the pause.
    let head = state.work.last_commit.clone().unwrap();
    assert!(h.repo.git(&["show", &format!("{head}:calc.py")]).contains("a + b"));

    let seq = state.next_seq;
    let raised = Budget { credits: Some(credits("1")), ..state.spec.budget };
    h.store.append(&id, seq, Timestamp(seq as i64), &[Event::BudgetChanged { budget: raised }]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    // Every scripted turn answered once, in order, each request carrying the previous result.
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!((h.server.requests().len(), h.server.remaining_turns()), (3, 0));
    assert_eq!(state.money.spent, price().cost(&Usage { input: 3000, output: 6000, ..Usage::default() }));
    let account = h.store.account(Timestamp(0)).await.unwrap();
    assert_eq!((account.balance, account.reserved), (Credits::from_micros(-state.money.spent.micros()), Credits::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_policy_reloads_at_its_threshold_and_stops_at_the_cap_or_the_end_of_the_credits() {
    let now = Timestamp(1_795_672_800_000);

    // Auto-reload: 0.05 credits, reload to 0.2 (once a month) when less than 0.045 would be left.
    let h = priced(fixing_script()).await;
    let reload = AutoReload { threshold: credits("0.045"), target: credits("0.2"), max_per_month: 1 };
    h.store.set_policy(Policy { monthly_cap: None, auto_reload: Some(reload), overage: false }).await.unwrap();
    h.store.credit(now, EntryKind::TopUp, credits("0.05"), "test").await.unwrap();
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    let reloads: Vec<_> =
        h.store.entries(100).await.unwrap().into_iter().filter(|e| e.kind == EntryKind::AutoReload).collect();
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert!(h.store.account(now).await.unwrap().balance >= Credits::ZERO);

    // A monthly cap of 0.07: the first call (0.0201) and the second's hold (~0.041) fit; the third
    // hold would cross it, so the work pauses before it. The reload (due at every call here)
    // happens for the first two calls and not at the cap.
    let h = priced(fixing_script()).await;
    let reload = AutoReload { threshold: credits("1000"), target: credits("1000.01"), max_per_month: 5 };
    h.store
        .set_policy(Policy { monthly_cap: Some(credits("0.07")), auto_reload: Some(reload), overage: false })
        .await
        .unwrap();
    h.store.credit(now, EntryKind::TopUp, credits("100"), "test").await.unwrap();
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the monthly cap of 0.07 credits would be crossed: 0.0402 spent in "), "{detail}");
    assert_eq!(state.work.steps, 2);
    let account = h.store.account(Timestamp(state.updated_at.0)).await.unwrap();
    assert!(account.spent_this_month <= credits("0.07"));
    let reloads = h.store.entries(100).await.unwrap().iter().filter(|e| e.kind == EntryKind::AutoReload).count();
    assert_eq!(reloads, 2, "reloads happen below the threshold until the cap stops the work, then none");

    // Overage off and no reload: the work stops when the credits are spent.
    let h = priced(fixing_script()).await;
    h.store.set_policy(Policy { monthly_cap: None, auto_reload: None, overage: false }).await.unwrap();
    h.store.credit(now, EntryKind::Grant, credits("0.05"), "this month's credits").await.unwrap();
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the account's credits are spent: 0.0299 available"), "{detail}");
    assert_eq!(state.work.steps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_racing_on_one_account_are_charged_exactly_what_the_provider_reported_on_sqlite() {
    ten_tasks_race(None).await
}

/// The same race on a PostgreSQL store (the cluster of `scripts/test`): its row locks, not
/// SQLite's single writer, keep the account whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_racing_on_one_account_are_charged_exactly_what_the_provider_reported_on_postgres() {
    let url = baton_testkit::postgres::database().await;
    SqlStore::migrate(&url).await.unwrap();
    ten_tasks_race(Some(Arc::new(SqlStore::connect(&url).await.unwrap()))).await
}

/// Ten tasks on one account: on the first harness's SQLite store, or on `store`.
async fn ten_tasks_race(store: Option<Arc<SqlStore>>) {
    const TASKS: u64 = 10;
    // Each task its own scripted provider, with usage that differs per task and per answer.
    let script = |n: u64| {
        let mut script = fixing_script();
        for (i, turn) in script.turns.iter_mut().enumerate() {
            let i = i as u64;
            turn.reply.usage = ScriptUsage {
                input: 1000 + 37 * n + i,
                cache_read: 500 + n,
                output: 300 + 11 * n * i,
                ..ScriptUsage::default()
            };
        }
        script
    };
    let scripts: Vec<Script> = (0..TASKS).map(script).collect();
    let mut first = priced(scripts[0].clone()).await;
    if let Some(store) = store {
        first.store = store;
    }
    let mut others = Vec::new();
    for script in &scripts[1..] {
        let mut h = priced(script.clone()).await;
        // One store, one account: every harness writes to the first one's.
        h.store = first.store.clone();
        h.home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        others.push(h);
    }
    // Prepaid only, and less than the ten tasks cost together (~0.12): admission, not luck, keeps
    // the balance from going below zero, so some tasks must stop for want of credits.
    let now = Timestamp(1_795_672_800_000);
    first.store.set_policy(Policy { monthly_cap: None, auto_reload: None, overage: false }).await.unwrap();
    first.store.credit(now, EntryKind::TopUp, credits("0.1"), "test").await.unwrap();
    let harnesses: Vec<&Harness> = std::iter::once(&first).chain(&others).collect();
    let mut ids: Vec<TaskId> = Vec::new();
    for h in &harnesses {
        ids.push(h.create().await);
    }
    let runs = harnesses.iter().zip(&ids).map(|(h, id)| async move { h.run(id).await });
    let ends = futures_util::future::join_all(runs).await;
    for (state, kinds) in &ends {
        let refused = state.stop.as_ref().is_some_and(|s| s.detail.starts_with("the account's credits are spent"));
        assert!(stopped(state) == (Status::Done, Some(StopReason::Verified)) || refused, "{kinds:?} {:?}", state.stop);
    }
    assert!(ends.iter().any(|(state, _)| state.status() == Status::Done));
    assert!(ends.iter().any(|(state, _)| state.status() == Status::Paused), "the credits could not pay for all ten");
    // What each provider reported for the replies it served, priced per kind and rounded up.
    let mut reported = Credits::ZERO;
    for (h, script) in harnesses.iter().zip(&scripts) {
        for request in h.server.requests().iter().filter(|r| r.served == "reply") {
            let usage = script.turns[request.turn.unwrap()].reply.usage;
            // As Chat Completions reports it: no cache writes.
            let usage =
                Usage { input: usage.input, cache_read: usage.cache_read, output: usage.output, ..Usage::default() };
            reported = Credits::from_micros(reported.micros() + price().cost(&usage).micros());
        }
    }
    let entries = first.store.entries(u32::MAX).await.unwrap();
    let charged: i64 =
        entries.iter().filter(|e| matches!(e.kind, EntryKind::Charge(_))).map(|e| -e.amount.micros()).sum();
    assert_eq!(Credits::from_micros(charged), reported);
    let spent: i64 = ends.iter().map(|(state, _)| state.money.spent.micros()).sum();
    assert_eq!(spent, charged, "the journals and the account agree");
    let account = first.store.account(now).await.unwrap();
    assert_eq!((account.balance, account.reserved), (Credits::from_micros(100_000 - charged), Credits::ZERO));
    assert!(account.balance >= Credits::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_time_and_checks_are_charged_and_a_command_waits_for_its_hold() {
    let mut h = Harness::new(fixing_script()).await;
    h.rates = Rates { sandbox_second: credits("0.001"), check: credits("0.01") };
    // The test command may run 600 s (the default timeout): a hold of 0.6, more than the task has.
    let id = h.create_with(|spec| spec.budget = Budget { credits: Some(credits("0.5")), ..Budget::default() }).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    assert!(state.stop.as_ref().unwrap().detail.contains("this needs 0.60"), "{:?}", state.stop);
    assert_eq!(state.work.unanswered_calls().len(), 1, "the command did not start");

    let seq = state.next_seq;
    let raised = Budget { credits: Some(credits("5")), ..state.spec.budget };
    h.store.append(&id, seq, Timestamp(seq as i64), &[Event::BudgetChanged { budget: raised }]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "tool_call_started").count(), 2, "the refused call ran once, on resume");
    assert!(h.server.failures().is_empty() && h.server.remaining_turns() == 0, "{:?}", h.server.failures());
    // One check run, and at least a second each for the command and the check.
    assert_eq!(state.money.by_kind.get(&ChargeKind::Check), Some(&credits("0.01")));
    assert!(state.money.by_kind[&ChargeKind::SandboxSeconds] >= credits("0.002"), "{:?}", state.money.by_kind);
    let charged: i64 = h.store.entries(100).await.unwrap().iter().map(|e| e.amount.micros()).sum();
    assert_eq!(-charged, state.money.spent.micros());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_credit_limit_a_task_can_ask_a_human_to_raise_it() {
    let mut h = priced(fixing_script()).await;
    h.ask_on_budget_overrun = true;
    let id = h.create_with(|spec| spec.budget = Budget { credits: Some(credits("0.05")), ..Budget::default() }).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "{kinds:?}");
    let question = state.question.clone().unwrap();
    assert!(
        question.starts_with("The task's budget of 0.05 credits would be crossed (0.0201 spent or held"),
        "{question}"
    );
    // A refusal to raise it pauses the task; an answer with a higher limit raises it and goes on.
    let answer = |state: &TaskState, text: &str, approved: bool| {
        let id = state.work.decisions.last().unwrap().0.id.clone();
        Event::DecisionMade { id, answer: baton_core::Answer { answer: text.into(), approved } }
    };
    h.store.append(&id, state.next_seq, Timestamp(1), &[answer(&state, "no", false)]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    assert!(state.stop.as_ref().unwrap().detail.starts_with("the budget of 0.05 credits stays"));

    let (state, _) = h.run(&id).await;
    assert_eq!(state.status(), Status::Waiting, "asked again on resume");
    h.store.append(&id, state.next_seq, Timestamp(2), &[answer(&state, "0.5", true)]).await.unwrap();
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert_eq!(state.spec.budget.credits, Some(credits("0.5")));
    assert!(h.server.failures().is_empty() && h.server.remaining_turns() == 0, "{:?}", h.server.failures());
    assert_eq!(h.server.requests().len(), 3, "no request was sent twice");
}
