//! The account against random sequences of reservations, settlements, top-ups, auto-reloads and
//! policy changes over several tasks, on real stores (SQLite, and PostgreSQL): the ledger always
//! balances, the journals agree with the account, and no policy limit is crossed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{
    AutoReload, Charge, ChargeKind, Credits, EntryKind, Event, Month, Policy, Refusal, TaskId, Timestamp,
};
use baton_store::{SqlStore, Store, StoreError};
use common::{Backend, Place, created, on_both_stores};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        task: usize,
        micros: i64,
    },
    /// Settles the task's oldest hold, charging `percent` of it (a hold is a worst-case estimate,
    /// so an action never costs more).
    Settle {
        task: usize,
        percent: i64,
    },
    TopUp {
        micros: i64,
    },
    Policy(Policy),
    /// Moves the clock on by this many days (a new month resets the cap and the reload count).
    Wait {
        days: i64,
    },
}

fn any_policy() -> impl Strategy<Value = Policy> {
    let reload = (1..50_i64, 50..200_i64, 0..3_u32).prop_map(|(threshold, target, max_per_month)| AutoReload {
        threshold: Credits::from_micros(threshold * 1000),
        target: Credits::from_micros(target * 1000),
        max_per_month,
    });
    (proptest::option::of(100..400_i64), proptest::option::of(reload), any::<bool>()).prop_map(
        |(cap, auto_reload, overage)| Policy {
            monthly_cap: cap.map(|c| Credits::from_micros(c * 1000)),
            auto_reload,
            overage,
        },
    )
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3_usize, 1..60_i64).prop_map(|(task, k)| Op::Reserve { task, micros: k * 1000 }),
        4 => (0..3_usize, 0..=100_i64).prop_map(|(task, percent)| Op::Settle { task, percent }),
        1 => (1..100_i64).prop_map(|k| Op::TopUp { micros: k * 1000 }),
        1 => any_policy().prop_map(Op::Policy),
        1 => (1..40_i64).prop_map(|days| Op::Wait { days }),
    ]
}

fn charges(micros: i64) -> Vec<Charge> {
    // Split over two kinds, as a model call's estimate is (input and output).
    let input = micros / 3;
    vec![
        Charge { kind: ChargeKind::Input, amount: Credits::from_micros(input) },
        Charge { kind: ChargeKind::Output, amount: Credits::from_micros(micros - input) },
    ]
}

struct World {
    _place: Place,
    store: SqlStore,
    tasks: Vec<TaskId>,
    /// Each task's holds, oldest first: (key, amount).
    holds: Vec<Vec<(String, i64)>>,
    now: i64,
    policy: Policy,
    /// Overage was on at some point: the balance may be below zero since.
    overage_ever: bool,
    /// A cap was set below what the month had already committed.
    cap_lowered: bool,
    next_key: u64,
}

impl World {
    async fn new(backend: Backend) -> World {
        let place = Place::new(backend).await;
        let store = place.open().await;
        let mut tasks = Vec::new();
        for n in 0..3 {
            let id = TaskId::from_entropy(1000 + n);
            store.append(&id, 0, Timestamp(0), &[created("money")]).await.unwrap();
            store.append(&id, 1, Timestamp(0), &[Event::Started]).await.unwrap();
            tasks.push(id);
        }
        let now = Month { year: 2026, month: 11 }.start().0;
        let policy = Policy { overage: false, ..Policy::default() };
        store.set_policy(policy).await.unwrap();
        World {
            _place: place,
            store,
            tasks,
            holds: vec![Vec::new(); 3],
            now,
            policy,
            overage_ever: false,
            cap_lowered: false,
            next_key: 0,
        }
    }

    async fn append(&self, task: usize, event: Event) -> Result<(), StoreError> {
        let id = &self.tasks[task];
        let seq = self.store.load(id).await.unwrap().next_seq;
        self.store.append(id, seq, Timestamp(self.now), &[event]).await.map(|_| ())
    }

    async fn run(&mut self, op: Op) {
        let before = self.store.account(Timestamp(self.now)).await.unwrap();
        match op {
            Op::Reserve { task, micros } => {
                let key = format!("k{}", self.next_key);
                self.next_key += 1;
                let seq = self.store.load(&self.tasks[task]).await.unwrap().next_seq;
                match self.append(task, Event::Reserved { key: key.clone(), charges: charges(micros) }).await {
                    Ok(()) => {
                        self.holds[task].push((key, micros));
                        let after = self.store.account(Timestamp(self.now)).await.unwrap();
                        if let Some(cap) = self.policy.monthly_cap {
                            let committed = after.spent_this_month.micros() + after.reserved.micros();
                            assert!(committed <= cap.micros(), "a hold crossed the cap: {after:?}");
                        }
                        if !self.policy.overage {
                            assert!(after.available() >= Credits::ZERO, "overage off, yet {after:?}");
                        }
                    }
                    Err(StoreError::Refused { refusal, .. }) => {
                        // Nothing was written: not the event, not a reload, not a hold.
                        assert_eq!(self.store.load(&self.tasks[task]).await.unwrap().next_seq, seq);
                        let after = self.store.account(Timestamp(self.now)).await.unwrap();
                        assert_eq!((after.balance, after.reserved), (before.balance, before.reserved));
                        match refusal {
                            Refusal::MonthlyCap { .. } => assert!(self.policy.monthly_cap.is_some()),
                            Refusal::NoCredits { .. } => assert!(!self.policy.overage),
                            Refusal::TaskBudget { .. } | Refusal::Overrun { .. } => {
                                panic!("the store never checks a task's limits")
                            }
                        }
                    }
                    Err(other) => panic!("{other}"),
                }
            }
            Op::Settle { task, percent } => {
                if self.holds[task].is_empty() {
                    return;
                }
                let (key, micros) = self.holds[task].remove(0);
                let cost = charges(micros * percent / 100);
                self.append(task, Event::Settled { key, charges: cost }).await.unwrap();
            }
            Op::TopUp { micros } => {
                let amount = Credits::from_micros(micros);
                self.store.credit(Timestamp(self.now), EntryKind::TopUp, amount, "test").await.unwrap();
            }
            Op::Policy(policy) => {
                self.overage_ever |= policy.overage;
                let committed = before.spent_this_month.micros() + before.reserved.micros();
                self.cap_lowered = policy.monthly_cap.is_some_and(|cap| cap.micros() < committed);
                self.policy = policy;
                self.store.set_policy(policy).await.unwrap();
            }
            Op::Wait { days } => {
                self.now += days * 86_400_000;
                if Month::of(Timestamp(self.now)) != before.month {
                    self.cap_lowered =
                        before.reserved.micros() > self.policy.monthly_cap.map_or(i64::MAX, Credits::micros);
                }
            }
        }
        self.check().await;
    }

    /// What must hold after every operation.
    async fn check(&self) {
        let position = self.store.account(Timestamp(self.now)).await.unwrap();
        let entries = self.store.entries(u32::MAX).await.unwrap();
        let sum = entries.iter().map(|e| e.amount.micros()).sum::<i64>();
        assert_eq!(position.balance.micros(), sum, "the running balance is the sum of the entries");
        let month_start = Month::of(Timestamp(self.now)).start();
        let this_month = entries.iter().filter(|e| e.at >= month_start);
        let spent: i64 =
            this_month.clone().filter(|e| matches!(e.kind, EntryKind::Charge(_))).map(|e| -e.amount.micros()).sum();
        let reloads = this_month.filter(|e| e.kind == EntryKind::AutoReload).count() as u32;
        assert_eq!(
            (position.spent_this_month.micros(), position.reloads_this_month),
            (spent, reloads),
            "the month's running totals"
        );
        let mut held = 0;
        for (n, id) in self.tasks.iter().enumerate() {
            let state = self.store.load(id).await.unwrap();
            let charged: i64 = entries
                .iter()
                .filter(|e| e.task.as_deref() == Some(id.as_str()) && matches!(e.kind, EntryKind::Charge(_)))
                .map(|e| -e.amount.micros())
                .sum();
            assert_eq!(state.money.spent.micros(), charged, "task {n}'s journal and the account agree");
            held += state.money.held_total().micros();
            let ours: i64 = self.holds[n].iter().map(|(_, m)| m).sum();
            assert_eq!(state.money.held_total().micros(), ours);
        }
        assert_eq!(position.reserved.micros(), held, "the account holds what the journals hold");
        if let Some(reload) = self.policy.auto_reload {
            let month_start = Month::of(Timestamp(self.now)).start();
            let reloads = entries.iter().filter(|e| e.kind == EntryKind::AutoReload && e.at >= month_start).count();
            assert!(reloads as u32 <= reload.max_per_month.max(position.reloads_this_month), "{reloads} reloads");
        }
        if !self.overage_ever {
            assert!(position.balance >= Credits::ZERO && position.available() >= Credits::ZERO, "{position:?}");
        }
        if let Some(cap) = self.policy.monthly_cap
            && !self.cap_lowered
        {
            let committed = position.spent_this_month.micros() + position.reserved.micros();
            assert!(committed <= cap.micros(), "the month's spend and holds crossed the cap: {position:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_balances_and_no_limit_is_crossed_on_sqlite(ops in proptest::collection::vec(any_op(), 1..40)) {
        play(Backend::Sqlite, ops);
    }

    #[test]
    fn the_ledger_balances_and_no_limit_is_crossed_on_postgres(ops in proptest::collection::vec(any_op(), 1..40)) {
        play(Backend::Postgres, ops);
    }
}

fn play(backend: Backend, ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut world = World::new(backend).await;
        for op in ops {
            world.run(op).await;
        }
    });
}

async fn a_settlement_that_takes_the_month_past_four_fifths_of_the_cap_leaves_one_budget_low_notice(backend: Backend) {
    let world = World::new(backend).await;
    let at = Timestamp(world.now);
    let cap = Policy { monthly_cap: Some("10".parse().unwrap()), overage: false, ..Policy::default() };
    world.store.set_policy(cap).await.unwrap();
    world.store.credit(at, EntryKind::TopUp, "20".parse().unwrap(), "test").await.unwrap();
    let spend = |key: &str, micros: i64| {
        let (key, world) = (key.to_owned(), &world);
        async move {
            world.append(0, Event::Reserved { key: key.clone(), charges: charges(micros) }).await.unwrap();
            world.append(0, Event::Settled { key, charges: charges(micros) }).await.unwrap();
        }
    };
    spend("a", 7_000_000).await;
    let low = |notices: Vec<baton_core::Notice>| {
        notices
            .into_iter()
            .filter(|n| n.kind == baton_core::NoticeKind::BudgetLow)
            .map(|n| n.detail)
            .collect::<Vec<_>>()
    };
    assert!(low(world.store.notices(0, 100).await.unwrap()).is_empty(), "7 of 10");
    spend("b", 1_500_000).await;
    spend("c", 500_000).await;
    let told = low(world.store.notices(0, 100).await.unwrap());
    assert_eq!(told, ["8.50 credits spent in 2026-11: past 80% of the monthly cap of 10.00"], "once, at the crossing");
}

on_both_stores!(a_settlement_that_takes_the_month_past_four_fifths_of_the_cap_leaves_one_budget_low_notice);
