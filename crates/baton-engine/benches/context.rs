//! What LONG-HORIZON (600 steps with large outputs, a 32k window) costs in input tokens with baton's
//! legs and handoffs, against two baselines computed from the same run's journal: sending the
//! naive full history every step, and dropping the oldest messages to fit the window. Also how many
//! facts (files written, plan statuses) each request lacks. Every request is counted the same way:
//! the o200k tokens of every string of its Chat Completions body.
//!
//! EXPLORATION (600 steps reading a large module page by page, on the same window) measures what a
//! task that only reads costs, and that it is never taken for a loop.
//!
//! `cargo bench -p baton-engine --bench context` (as root: the agent's commands run in the sandbox)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use baton_core::{Event, Message, ModelRequest, Part, Role, StopReason, TaskState};
use baton_model::protocol::{ChatCompletions, Protocol};
use baton_store::Store;
use baton_testkit::exploration;
use baton_testkit::model::{count_tokens, text_of};
use common::Harness;

const WINDOW: u64 = 32_768;
/// What a request may use when the answer keeps 4096 tokens, as baton's budget keeps.
const INPUT_LIMIT: u64 = WINDOW - 4096;

fn message_text(message: &Message) -> String {
    let mut out = String::new();
    for part in &message.parts {
        match part {
            Part::Text { text } | Part::Reasoning { text, .. } => out.push_str(text),
            Part::ToolCall { name, arguments, .. } => {
                out.push_str(name);
                out.push_str(arguments);
            }
            Part::ToolResult { output, .. } => out.push_str(output),
        }
        out.push('\n');
    }
    out
}

/// The whole task as one conversation: the first leg's brief, then every leg's messages in order
/// (later legs' briefs left out: a single context would never have had them).
fn full_history(journal: &[baton_core::Recorded], state: &TaskState) -> Vec<Message> {
    let mut fold = TaskState::created(state.id.clone(), &journal[0]).unwrap();
    let mut history: Vec<Message> = Vec::new();
    let take = |transcript: &[Message], history: &mut Vec<Message>| {
        let skip = if history.is_empty() { 0 } else { 1 };
        history.extend(transcript.iter().skip(skip).cloned());
    };
    for recorded in &journal[1..] {
        if let Event::LegStarted { leg, .. } = &recorded.event
            && *leg > 1
        {
            take(&fold.work.transcript, &mut history);
        }
        fold.apply(recorded).unwrap();
    }
    take(&fold.work.transcript, &mut history);
    history
}

fn main() {
    if is_not_root() {
        println!("context benchmark skipped: the sandbox needs root");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (h, id, facts) = Harness::long_horizon(WINDOW).await;
        let started = Instant::now();
        let (state, _) = h.run(&id).await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{:?}", state.stop);
        let journal = h.store.events(&id, 0).await.unwrap();

        // baton: what the server received, summarisation calls included.
        let requests = h.server.requests();
        let baton: u64 = requests.iter().map(|r| count_tokens(&r.body)).sum();
        let summaries: u64 = requests.iter().filter(|r| r.served == "rule").map(|r| count_tokens(&r.body)).sum();
        let largest = requests.iter().map(|r| count_tokens(&r.body)).max().unwrap_or(0);
        let mut baton_lost = 0;
        for request in requests.iter().filter(|r| r.served == "reply") {
            baton_lost += facts.missing(request.turn.unwrap(), &text_of(&request.body)).len();
        }

        // The baselines, from the same journal. Token counts add up over a body's strings, so each
        // message is counted once and requests are sums of prefixes.
        let History { base, sizes, texts, asks } = History::of(&h, &journal, &state);
        let mut prefix = vec![0u64];
        for size in &sizes {
            prefix.push(prefix.last().unwrap() + size);
        }
        let (mut full, mut over_window, mut dropped, mut dropped_lost, mut lossy_requests) = (0, 0, 0, 0, 0);
        let mut oldest_kept = 1;
        for (step, &end) in asks.iter().enumerate() {
            let whole = base + prefix[end];
            full += whole;
            over_window += usize::from(whole > WINDOW);
            // Drop whole exchanges after the brief, oldest first, until the rest fits.
            oldest_kept = oldest_kept.max(1);
            while base + sizes[0] + prefix[end] - prefix[oldest_kept] > INPUT_LIMIT && oldest_kept + 2 <= end {
                oldest_kept += 2;
            }
            dropped += base + sizes[0] + prefix[end] - prefix[oldest_kept];
            let kept = std::iter::once(&texts[0]).chain(&texts[oldest_kept..end]).map(String::as_str).collect::<String>();
            let lost = facts.missing(step, &kept).len();
            dropped_lost += lost;
            lossy_requests += usize::from(lost > 0);
        }
        let all_text: String = texts.concat();
        let full_lost = facts.missing(asks.len(), &all_text).len();

        let reasons = |needle: &str| {
            journal
                .iter()
                .filter(|r| matches!(&r.event, Event::HandoffWritten { handoff } if handoff.reason.contains(needle)))
                .count()
        };
        println!(
            "LONG-HORIZON: {} steps in {:.1} s, window {WINDOW} tokens; {} handoffs ({} at a plan-step boundary, {} at the soft threshold, {} emergency)",
            state.work.steps,
            seconds,
            state.work.handoffs,
            reasons("plan step"),
            reasons("soft threshold"),
            reasons("hard threshold") + reasons("provider refused"),
        );
        println!(
            "input tokens: baton {baton} (summarisation calls {summaries}; largest request {largest}), full history {full} ({over_window} of {} requests over the window), dropping the oldest {dropped}",
            asks.len()
        );
        println!("ratio baton / full history: {:.3} (aim < 0.3)", baton as f64 / full as f64);
        println!("ratio baton / dropping the oldest: {:.3}", baton as f64 / dropped as f64);
        println!(
            "facts lost (files written, plan statuses; summed over requests): baton {baton_lost}; dropping the oldest {dropped_lost} in {lossy_requests} requests; full history {full_lost} at its last request"
        );
        explore().await;
    });
}

/// EXPLORATION: 597 pages of a module read in order, then the fix (600 steps), on the same window;
/// then the same pages read round and round, which must be caught.
async fn explore() {
    let scenario = exploration::exploration(597, WINDOW);
    let mut h = Harness::with_repo(scenario.script, scenario.repo).await;
    h.context_window = WINDOW;
    let id = h.create_with(|spec| spec.budget = baton_core::Budget::default()).await;
    let started = Instant::now();
    let (state, kinds) = h.run(&id).await;
    let seconds = started.elapsed().as_secs_f64();
    let journal = h.store.events(&id, 0).await.unwrap();
    let false_loops = kinds.iter().filter(|kind| *kind == "nudged").count()
        + usize::from(matches!(
            state.stop.as_ref().map(|s| s.reason),
            Some(StopReason::HandoffLoop | StopReason::Stuck)
        ));
    let baton: u64 = h.server.requests().iter().map(|r| count_tokens(&r.body)).sum();
    let History { base, sizes, asks, .. } = History::of(&h, &journal, &state);
    let full: u64 = asks.iter().map(|&end| base + sizes[..end].iter().sum::<u64>()).sum();
    println!(
        "EXPLORATION: {} steps in {:.1} s, window {WINDOW} tokens, ended {:?}; {} handoffs; loops falsely detected: {false_loops} (aim 0)",
        state.work.steps,
        seconds,
        state.stop.as_ref().map(|s| s.reason),
        state.work.handoffs,
    );
    println!(
        "input tokens: baton {baton} ({} per step), full history {full}; ratio baton / full history: {:.3}",
        baton / u64::from(state.work.steps.max(1)),
        baton as f64 / full as f64
    );
    let scenario = exploration::looping(60, 600, WINDOW);
    let mut h = Harness::with_repo(scenario.script, scenario.repo).await;
    h.context_window = WINDOW;
    let id = h.create_with(|spec| spec.budget = baton_core::Budget::default()).await;
    let (state, _) = h.run(&id).await;
    println!(
        "EXPLORATION going round 60 pages: stopped after {} steps with {:?}",
        state.work.steps,
        state.stop.as_ref().map(|s| s.reason)
    );
}

/// The whole task as one conversation, sized message by message in Chat Completions tokens.
struct History {
    /// The request without messages.
    base: u64,
    sizes: Vec<u64>,
    texts: Vec<String>,
    /// Request k holds every message before the k-th answer.
    asks: Vec<usize>,
}

impl History {
    fn of(h: &Harness, journal: &[baton_core::Recorded], state: &TaskState) -> History {
        let history = full_history(journal, state);
        let tools = {
            let mut tools = baton_tools::Toolbox::new(baton_tools::Workspace::open(h.repo.path()).unwrap()).specs();
            tools.push(baton_agent::recall_spec());
            tools.push(baton_agent::ask_human_spec());
            tools.push(baton_agent::request_credential_spec());
            tools
        };
        let body = |messages: Vec<Message>| {
            let request = ModelRequest {
                model: "scripted".into(),
                system: state.work.system.clone(),
                messages,
                tools: tools.clone(),
                max_output_tokens: 4096,
                stable_prefix: 0,
            };
            count_tokens(&ChatCompletions.body(&request).unwrap())
        };
        let base = body(Vec::new());
        let sizes = history.iter().map(|m| body(vec![m.clone()]) - base).collect();
        let texts = history.iter().map(message_text).collect();
        let asks = history.iter().enumerate().filter(|(_, m)| m.role == Role::Assistant).map(|(i, _)| i).collect();
        History { base, sizes, texts, asks }
    }
}

/// The sandbox needs root; a benchmark run without it says so instead of failing.
fn is_not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(true)
}
