//! Money that never overshoots: a model call is held at a bound no provider's count can exceed,
//! so a provider that counts three times baton's estimate is still inside every hold; one that
//! bills more than that (or bills attempts that failed) is charged all of it, the overrun is
//! journaled, and the task pauses before its next action. Real path: scripted model server over
//! HTTP, git, sandbox (root), SQLite journal and account.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Budget, Credits, EntryKind, Event, Policy, Status, StopReason, TaskId, TaskState, Timestamp, total};
use baton_model::Price;
use baton_store::Store;
use baton_testkit::model::{Fault, Reply, Script, Usage as ScriptUsage, count_tokens};
use common::{Harness, call, stopped, turn};
use proptest::prelude::*;
use serde_json::json;

fn credits(text: &str) -> Credits {
    text.parse().unwrap()
}

/// Input is as dear as output here, so what the provider counts of the prompt decides the bill.
fn price() -> Price {
    Price { input: credits("10"), cache_read: credits("1"), cache_write: credits("12.5"), output: credits("10") }
}

/// Fix add(), test, finish; each answer's usage is `usage`.
fn fixing(usage: [ScriptUsage; 3]) -> Script {
    let replies = [
        call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("t", "shell", json!({"command": "python3 test_calc.py"})),
        call("f", "finish", json!({"summary": "add() adds."})),
    ];
    let expects = [None, Some("edited `calc.py`"), Some("all tests passed")];
    let turns = replies
        .into_iter()
        .zip(expects)
        .zip(usage)
        .map(|((reply, expect), usage)| turn(expect, Reply { usage, ..reply }));
    Script { turns: turns.collect(), ..Script::default() }
}

fn times_the_prompt(times: u64) -> ScriptUsage {
    ScriptUsage { input_per_request_token: Some(times), output: 100, ..ScriptUsage::default() }
}

async fn priced(script: Script) -> Harness {
    let mut h = Harness::new(script).await;
    h.price = Some(price());
    h
}

/// What the scripted provider reported for every reply it served, priced (Chat Completions reports
/// no cache writes).
fn reported(h: &Harness, script: &Script) -> Credits {
    let mut sum = 0;
    for request in h.server.requests().iter().filter(|r| r.served == "reply") {
        let usage = script.turns[request.turn.unwrap()].reply.usage;
        let input = usage.input_per_request_token.map_or(usage.input, |times| times * count_tokens(&request.body));
        let usage = baton_core::Usage { input, output: usage.output, ..baton_core::Usage::default() };
        sum += price().cost(&usage).micros();
    }
    Credits::from_micros(sum)
}

/// Each hold and what it was settled at, and the overruns, in journal order.
async fn holds_and_overruns(h: &Harness, id: &TaskId) -> (Vec<(Credits, Credits)>, Vec<(Credits, Credits)>) {
    let events: Vec<Event> = h.store.events(id, 0).await.unwrap().into_iter().map(|r| r.event).collect();
    let mut held = std::collections::BTreeMap::new();
    let (mut settled, mut overruns) = (Vec::new(), Vec::new());
    for event in events {
        match event {
            Event::Reserved { key, charges } => {
                held.insert(key, total(&charges));
            }
            Event::Settled { key, charges } => settled.push((held[&key], total(&charges))),
            Event::Overran { held, charged, .. } => overruns.push((held, charged)),
            _ => {}
        }
    }
    (settled, overruns)
}

/// The account's balance is the sum of its entries, and the task's spend is what it was charged.
async fn the_books_balance(h: &Harness, state: &TaskState) {
    let entries = h.store.entries(u32::MAX).await.unwrap();
    let sum: i64 = entries.iter().map(|e| e.amount.micros()).sum();
    let account = h.store.account(Timestamp(0)).await.unwrap();
    assert_eq!(account.balance.micros(), sum, "balance = Σ entries");
    let charged: i64 =
        entries.iter().filter(|e| matches!(e.kind, EntryKind::Charge(_))).map(|e| -e.amount.micros()).sum();
    assert_eq!(charged, state.money.spent.micros(), "the journal and the account agree");
    assert_eq!(account.reserved, Credits::ZERO);
}

async fn raise(h: &Harness, id: &TaskId, state: &TaskState, limit: &str) {
    let raised = Budget { credits: Some(credits(limit)), ..state.spec.budget };
    let seq = state.next_seq;
    h.store.append(id, seq, Timestamp(seq as i64), &[Event::BudgetChanged { budget: raised }]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_counting_three_times_the_estimate_stays_inside_every_hold_and_the_task_pauses_at_its_limit() {
    let script = fixing([times_the_prompt(3); 3]);
    let h = priced(script.clone()).await;
    // A call holds about 0.15 (its prompt's bytes at the cache-write price, 4,096 output tokens)
    // and is charged about 0.035: room for the first hold, not for the second's on top of that.
    let id = h.create_with(|spec| spec.budget = Budget { credits: Some(credits("0.17")), ..Budget::default() }).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the task's budget of 0.17 credits would be crossed"), "{detail}");
    assert!(state.work.steps >= 1, "{kinds:?}");
    let (settled, overruns) = holds_and_overruns(&h, &id).await;
    assert!(overruns.is_empty(), "{overruns:?}");
    assert!(settled.iter().all(|(held, charged)| charged <= held), "{settled:?}");
    assert!(state.money.spent <= credits("0.17"));
    assert_eq!(state.money.spent, reported(&h, &script), "charged exactly what the provider reported");
    the_books_balance(&h, &state).await;

    let requests = h.server.requests().len();
    raise(&h, &id, &state, "100").await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!((h.server.requests().len(), h.server.remaining_turns()), (3, 0), "{requests} before the resume");
    assert_eq!(state.money.spent, reported(&h, &script));
    the_books_balance(&h, &state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_billing_beyond_any_tokenizer_overruns_and_the_task_pauses_before_its_next_action() {
    // The second answer is billed at a hundred times the prompt's tokens: no tokenizer counts that.
    let script = fixing([times_the_prompt(1), times_the_prompt(100), times_the_prompt(1)]);
    let h = priced(script.clone()).await;
    // Each hold is about 0.15; the second answer is charged more than a credit.
    let id = h.create_with(|spec| spec.budget = Budget { credits: Some(credits("0.5")), ..Budget::default() }).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("`step 2 model call #"), "{detail}");
    assert!(detail.contains("cost more than baton held for it"), "{detail}");
    let (_, overruns) = holds_and_overruns(&h, &id).await;
    assert_eq!(overruns.len(), 1, "{overruns:?}");
    let (held, charged) = overruns[0];
    assert!(charged > held);
    // All of it is charged; the limit is crossed by no more than this one action's overrun.
    assert_eq!(state.money.spent, reported(&h, &script));
    assert!(state.money.spent > credits("0.5"), "the overrun crossed the limit: {}", state.money.spent);
    assert!(state.money.spent.micros() - credits("0.5").micros() <= charged.micros() - held.micros());
    // Paused before its next action: step 2's answer is journaled, its tool call never started.
    let after = kinds.iter().skip_while(|k| *k != "overran").collect::<Vec<_>>();
    assert!(
        !after.iter().any(|k| ["tool_call_started", "model_call_started", "reserved"].contains(&k.as_str())),
        "{kinds:?}"
    );
    assert_eq!(state.work.unanswered_calls().len(), 1);
    the_books_balance(&h, &state).await;

    // Resumed as it is, the limits hold for what follows: it is over its limit, so it pauses again.
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the task's budget of 0.50 credits would be crossed"), "{detail}");
    assert_eq!(h.server.requests().len(), 2);

    // Raised, it goes on from where it stopped: step 2's tool call runs once, nothing is asked twice.
    raise(&h, &id, &state, "100").await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Done, Some(StopReason::Verified)), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    assert_eq!((h.server.requests().len(), h.server.remaining_turns()), (3, 0));
    let started = h.events_matching(&id, |e| matches!(e, Event::ToolCallStarted { .. }).then_some(())).await;
    assert_eq!(started.len(), 3, "each tool call started once");
    assert_eq!(state.money.spent, reported(&h, &script));
    the_books_balance(&h, &state).await;
}

/// One answer's usage, and the faults its request meets first.
#[derive(Debug, Clone)]
struct Billing {
    usage: ScriptUsage,
    faults: Vec<Fault>,
}

fn any_billing() -> impl Strategy<Value = Billing> {
    let usage = prop_oneof![
        // Within the estimate, above it, and beyond what any tokenizer could count.
        (0u64..2000).prop_map(|input| ScriptUsage { input, output: 50, ..ScriptUsage::default() }),
        (1u64..4).prop_map(times_the_prompt),
        (20u64..60).prop_map(times_the_prompt),
    ];
    let fault = prop_oneof![
        Just(Fault::Status { status: 500, retry_after: None, message: None }),
        (1usize..400).prop_map(|bytes| Fault::CutAfter { bytes }),
        Just(Fault::CutBeforeLastEvent),
    ];
    (usage, proptest::collection::vec(fault, 0..3)).prop_map(|(usage, faults)| Billing { usage, faults })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the provider reports, and however its streams break: the task's limit and the
    /// account's cap are crossed by no more than one action's overrun, every overrun is journaled
    /// and pauses the task before anything else starts, and the books balance.
    #[test]
    fn no_limit_is_crossed_by_more_than_one_actions_overrun(
        billing in proptest::collection::vec(any_billing(), 3),
        limit in 20u64..200,
        cap in 20u64..200,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let mut script = fixing([billing[0].usage, billing[1].usage, billing[2].usage]);
            for (turn, billing) in script.turns.iter_mut().zip(&billing) {
                turn.faults = billing.faults.clone();
            }
            let h = priced(script.clone()).await;
            let (limit, cap) = (Credits::from_micros(limit as i64 * 10_000), Credits::from_micros(cap as i64 * 10_000));
            h.store.set_policy(Policy { monthly_cap: Some(cap), auto_reload: None, overage: true }).await.unwrap();
            let id = h.create_with(|spec| spec.budget = Budget { credits: Some(limit), ..Budget::default() }).await;
            let (state, kinds) = h.run(&id).await;
            let (settled, overruns) = holds_and_overruns(&h, &id).await;

            // An action that charged more than it held is journaled as an overrun, and only then.
            let over: Vec<_> = settled.iter().filter(|(held, charged)| charged > held).copied().collect();
            prop_assert_eq!(&over, &overruns);
            prop_assert!(overruns.len() <= 1, "a second action started after an overrun: {:?}", kinds);
            let excess = overruns.first().map_or(0, |(held, charged)| charged.micros() - held.micros());
            if !overruns.is_empty() {
                prop_assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)));
                let after: Vec<_> = kinds.iter().skip_while(|k| *k != "overran").collect();
                let started = ["tool_call_started", "model_call_started", "reserved", "verification_started"];
                prop_assert!(!after.iter().any(|k| started.contains(&k.as_str())), "{:?}", kinds);
            }
            prop_assert!(state.money.spent.micros() <= limit.micros() + excess, "{} over {}", state.money.spent, limit);
            let account = h.store.account(Timestamp(state.updated_at.0)).await.unwrap();
            prop_assert!(account.spent_this_month.micros() <= cap.micros() + excess);
            prop_assert!(state.money.held.is_empty());
            // Every attempt the provider may have billed is charged: what a reply reported, and the
            // hold of each attempt that broke before its usage was told.
            prop_assert!(state.money.spent >= reported(&h, &script));
            let entries = h.store.entries(u32::MAX).await.unwrap();
            prop_assert_eq!(account.balance.micros(), entries.iter().map(|e| e.amount.micros()).sum::<i64>());
            prop_assert_eq!(-account.balance.micros(), state.money.spent.micros());
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_before_its_usage_was_told_is_charged_at_its_hold_and_journaled() {
    let mut script = fixing([times_the_prompt(1); 3]);
    script.turns[0].faults = vec![Fault::CutAfter { bytes: 60 }];
    let h = priced(script.clone()).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    // The retry's cost and the cut attempt's hold are more than one hold: an overrun, and a pause.
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::BudgetExhausted)), "{kinds:?}");
    let billed = h
        .events_matching(&id, |e| match e {
            Event::ModelAttemptBilled { step, attempt, usage, .. } => Some((step, attempt, usage)),
            _ => None,
        })
        .await;
    assert_eq!(billed, vec![(1, 1, None)]);
    let (settled, overruns) = holds_and_overruns(&h, &id).await;
    let (held, charged) = settled[0];
    assert_eq!(overruns, vec![(held, charged)]);
    assert_eq!(charged.micros(), held.micros() + reported(&h, &script).micros());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_fails_after_costing_more_than_its_hold_pauses_naming_the_overrun() {
    let mut script = fixing([times_the_prompt(1); 3]);
    // Two attempts the provider may have billed, then one it refuses for good.
    script.turns[0].faults = vec![
        Fault::CutAfter { bytes: 60 },
        Fault::CutAfter { bytes: 60 },
        Fault::Status { status: 400, retry_after: None, message: Some("bad request".into()) },
    ];
    let h = priced(script).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::ModelError)), "{kinds:?}");
    let (settled, overruns) = holds_and_overruns(&h, &id).await;
    let (held, charged) = settled[0];
    assert_eq!(charged.micros(), 2 * held.micros(), "two attempts at their hold, the refused one at nothing");
    assert_eq!(overruns, vec![(held, charged)]);
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.starts_with("the model call failed: "), "{detail}");
    assert!(detail.contains(&format!("cost more than baton held for it: {held} held, {charged} charged")), "{detail}");
}
