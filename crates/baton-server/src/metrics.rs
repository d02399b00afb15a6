//! `/metrics` in Prometheus' text format. Gauges are read from the store at each scrape (tasks by
//! status, the queue) and from the scheduler (slots); counters and the step histogram are kept by
//! [`Meter`] from the events this process journals, so they count from this process's start, as
//! Prometheus counters do.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use baton_core::{Credits, Event, Recorded, Status, TaskId, Timestamp, total};

use crate::{Api, ApiError};

/// Upper bounds of the step histogram's buckets, in seconds.
const STEP_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// What the events journaled by this process add up to.
#[derive(Debug, Default)]
pub struct Meter {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// The model each task's current leg calls.
    models: HashMap<TaskId, String>,
    /// When each task's step in progress began (its model call's intent).
    steps: HashMap<TaskId, Timestamp>,
    calls: BTreeMap<String, u64>,
    /// `(model, kind)` → tokens.
    tokens: BTreeMap<(String, &'static str), u64>,
    spent: Credits,
    /// Count per bucket of [`STEP_BUCKETS`] (not cumulative), then the sum and count.
    step_buckets: [u64; STEP_BUCKETS.len()],
    step_sum: f64,
    step_count: u64,
}

impl Meter {
    /// Counts one journaled event of `task`.
    pub fn observe(&self, task: &TaskId, recorded: &Recorded) {
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &recorded.event {
            Event::LegStarted { model, .. } => {
                counts.models.insert(task.clone(), model.clone());
            }
            Event::ModelCallStarted { .. } => {
                counts.end_step(task, recorded.at);
                counts.steps.insert(task.clone(), recorded.at);
            }
            Event::ModelCallFinished { response, .. } => {
                let model = counts.models.get(task).cloned().unwrap_or_else(|| "unknown".to_owned());
                *counts.calls.entry(model.clone()).or_default() += 1;
                let usage = &response.usage;
                for (kind, tokens) in [
                    ("input", usage.input),
                    ("cache_read", usage.cache_read),
                    ("cache_write", usage.cache_write),
                    ("output", usage.output),
                ] {
                    *counts.tokens.entry((model.clone(), kind)).or_default() += tokens;
                }
            }
            Event::Settled { charges, .. } => {
                counts.spent = Credits::from_micros(counts.spent.micros() + total(charges).micros());
            }
            // A step ends with the next model call, or when the task leaves the build loop.
            Event::VerificationStarted
            | Event::WaitingForHuman { .. }
            | Event::DecisionRequested { .. }
            | Event::Paused { .. } => counts.end_step(task, recorded.at),
            // An ended task is forgotten, so a long-lived server keeps nothing per task.
            Event::Finished { .. } | Event::Cancelled { .. } => {
                counts.end_step(task, recorded.at);
                counts.models.remove(task);
            }
            _ => {}
        }
    }
}

impl Counts {
    fn end_step(&mut self, task: &TaskId, at: Timestamp) {
        let Some(began) = self.steps.remove(task) else { return };
        let seconds = (at.as_millis() - began.as_millis()).max(0) as f64 / 1000.0;
        if let Some(bucket) = STEP_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.step_buckets[bucket] += 1;
        }
        self.step_sum += seconds;
        self.step_count += 1;
    }
}

/// Appends one metric's help and type lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(api): State<Api>) -> Result<Response, ApiError> {
    let tasks = api.store.list(None).await?;
    let mut out = String::new();
    header(&mut out, "baton_tasks", "gauge", "Tasks by status.");
    for status in Status::ALL {
        let count = tasks.iter().filter(|task| task.status == status).count();
        let _ = writeln!(out, "baton_tasks{{status=\"{status}\"}} {count}");
    }
    let load = api.tasks.load();
    let queued = tasks.iter().filter(|task| task.status == Status::Queued).count();
    header(&mut out, "baton_slots", "gauge", "Tasks this server may run at once.");
    let _ = writeln!(out, "baton_slots {}", load.slots);
    header(&mut out, "baton_slots_busy", "gauge", "Tasks this server runs now.");
    let _ = writeln!(out, "baton_slots_busy {}", load.busy);
    header(&mut out, "baton_queue_depth", "gauge", "Tasks queued and not started.");
    let _ = writeln!(out, "baton_queue_depth {queued}");
    header(
        &mut out,
        "baton_runs_started_total",
        "counter",
        "Runs this server started, each on a machine and sandbox of its own.",
    );
    let _ = writeln!(out, "baton_runs_started_total {}", load.runs_started);

    let counts = api.meter.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    header(&mut out, "baton_model_calls_total", "counter", "Model calls answered, by model.");
    for (model, calls) in &counts.calls {
        let _ = writeln!(out, "baton_model_calls_total{{model=\"{}\"}} {calls}", label(model));
    }
    header(&mut out, "baton_model_tokens_total", "counter", "Tokens the providers reported, by model and kind.");
    for ((model, kind), tokens) in &counts.tokens {
        let _ = writeln!(out, "baton_model_tokens_total{{model=\"{}\",kind=\"{kind}\"}} {tokens}", label(model));
    }
    header(&mut out, "baton_credits_spent_total", "counter", "Credits charged for this server's runs.");
    let _ = writeln!(out, "baton_credits_spent_total {}", counts.spent);
    header(&mut out, "baton_step_seconds", "histogram", "A step: a model call and the tool calls it asked for.");
    let mut cumulative = 0;
    for (bound, count) in STEP_BUCKETS.iter().zip(counts.step_buckets) {
        cumulative += count;
        let _ = writeln!(out, "baton_step_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "baton_step_seconds_bucket{{le=\"+Inf\"}} {}", counts.step_count);
    let _ = writeln!(out, "baton_step_seconds_sum {}", counts.step_sum);
    let _ = writeln!(out, "baton_step_seconds_count {}", counts.step_count);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use baton_core::{FinishReason, ModelResponse, Usage};

    use super::*;

    fn at(ms: i64, event: Event) -> Recorded {
        Recorded { seq: 0, at: Timestamp(ms), event }
    }

    #[test]
    fn steps_calls_and_tokens_are_counted_by_model() {
        let meter = Meter::default();
        let task = TaskId::from_entropy(1);
        let leg = Event::LegStarted {
            leg: 1,
            model: "m/x".into(),
            system: String::new(),
            brief: String::new(),
            role: Default::default(),
        };
        let usage = Usage { input: 100, cache_read: 20, cache_write: 0, output: 7, reasoning: 0 };
        let answered = Event::ModelCallFinished {
            step: 1,
            response: ModelResponse { parts: vec![], usage, finish: FinishReason::EndTurn },
        };
        for recorded in [
            at(0, leg),
            at(1_000, Event::ModelCallStarted { step: 1, prompt: None }),
            at(1_200, answered.clone()),
            at(1_400, Event::ModelCallStarted { step: 2, prompt: None }),
            at(1_500, answered),
            at(4_400, Event::VerificationStarted),
            at(4_500, Event::Finished { reason: baton_core::StopReason::Verified, detail: String::new() }),
        ] {
            meter.observe(&task, &recorded);
        }
        let counts = meter.inner.lock().unwrap();
        assert_eq!(counts.calls.get("m/x"), Some(&2));
        assert_eq!(counts.tokens.get(&("m/x".to_owned(), "input")), Some(&200));
        assert_eq!(counts.tokens.get(&("m/x".to_owned(), "output")), Some(&14));
        // Steps of 0.4 s and 3 s.
        assert_eq!(counts.step_count, 2);
        assert_eq!(counts.step_buckets[2], 1);
        assert_eq!(counts.step_buckets[5], 1);
        assert!((counts.step_sum - 3.4).abs() < 1e-9);
        assert!(counts.steps.is_empty() && counts.models.is_empty(), "an ended task is forgotten");
    }
}
