//! The captain role: what it is told, and the plan it submits.

use std::fmt::Write as _;

use baton_core::{Subtask, TaskSpec, ToolSpec};
use serde::Deserialize;
use serde_json::json;

const CAPTAIN_PROMPT: &str = include_str!("captain.md");

pub const SUBMIT_PLAN: &str = "submit_plan";

/// The captain's system prompt, with the repository's instructions for it appended.
pub fn captain_system(instructions: &str) -> String {
    format!("{}{instructions}", CAPTAIN_PROMPT.trim_end())
}

/// What opens the captain's leg: the request and the checks the whole task must pass.
pub fn captain_brief(spec: &TaskSpec) -> String {
    let mut out = format!("# Task to plan\n\n{}\n", spec.request.trim());
    if !spec.checks.is_empty() {
        out.push_str("\n# Checks the whole task must pass at the end\n\n");
        for check in &spec.checks {
            let _ = writeln!(out, "- `{}`", check.command);
        }
    }
    out
}

pub fn submit_plan_spec() -> ToolSpec {
    let subtask = json!({
        "type": "object",
        "properties": {
            "key": {"type": "string", "description": "A short name, like s1."},
            "request": {"type": "string"},
            "scope": {"type": "array", "items": {"type": "string"}, "description": "Existing paths the subtask may change."},
            "checks": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "budget_share": {"type": "integer", "minimum": 1, "maximum": 100}
        },
        "required": ["key", "request", "scope", "checks", "depends_on", "budget_share"],
        "additionalProperties": false
    });
    let parameters = json!({
        "type": "object",
        "properties": {"subtasks": {"type": "array", "items": subtask, "minItems": 1}},
        "required": ["subtasks"],
        "additionalProperties": false
    });
    ToolSpec {
        name: SUBMIT_PLAN.to_owned(),
        description: "Submit the plan: its subtasks, each with request, scope, checks, dependencies and budget share. baton validates it (checks must run, scope paths must exist) and either accepts it, ending your leg, or says what to fix.".to_owned(),
        parameters: parameters.to_string(),
    }
}

/// A `submit_plan` call's subtasks in an order that runs every dependency first, after the checks
/// that need no repository; or every reason the plan is refused.
pub fn parse_plan(arguments: &str) -> Result<Vec<Subtask>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        subtasks: Vec<Subtask>,
    }
    let args: Args = serde_json::from_str(arguments).map_err(|e| format!("invalid arguments for submit_plan: {e}"))?;
    let mut problems = Vec::new();
    if args.subtasks.is_empty() {
        problems.push("the plan has no subtask".to_owned());
    }
    let keys: Vec<&str> = args.subtasks.iter().map(|s| s.key.as_str()).collect();
    for (n, subtask) in args.subtasks.iter().enumerate() {
        let name =
            if subtask.key.trim().is_empty() { format!("subtask {}", n + 1) } else { format!("`{}`", subtask.key) };
        if keys.iter().filter(|k| **k == subtask.key).count() > 1 {
            problems.push(format!("{name}: the key is used twice"));
        }
        if subtask.request.trim().is_empty() {
            problems.push(format!("{name}: the request is empty"));
        }
        if subtask.checks.iter().all(|c| c.trim().is_empty()) {
            problems.push(format!("{name}: it needs at least one acceptance check"));
        }
        for dependency in subtask.depends_on.iter().filter(|d| !keys.contains(&d.as_str())) {
            problems.push(format!("{name}: depends on `{dependency}`, which is not in the plan"));
        }
    }
    let shares: u32 = args.subtasks.iter().map(|s| u32::from(s.budget_share)).sum();
    if shares > 100 {
        problems.push(format!("the budget shares add up to {shares}%, more than 100%"));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    // Dependencies first: repeatedly take the subtasks whose dependencies are all placed.
    let mut ordered: Vec<Subtask> = Vec::new();
    let mut left = args.subtasks;
    while !left.is_empty() {
        let (ready, waiting): (Vec<Subtask>, Vec<Subtask>) =
            left.into_iter().partition(|s| s.depends_on.iter().all(|d| ordered.iter().any(|o| o.key == *d)));
        if ready.is_empty() {
            let stuck: Vec<String> = waiting.iter().map(|s| format!("`{}`", s.key)).collect();
            return Err(format!("the dependencies of {} form a cycle", stuck.join(", ")));
        }
        ordered.extend(ready);
        left = waiting;
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subtask(key: &str, depends_on: &[&str]) -> serde_json::Value {
        json!({"key": key, "request": "do it", "scope": ["src"], "checks": ["make test"], "depends_on": depends_on, "budget_share": 40})
    }

    #[test]
    fn plans_are_ordered_by_dependency_and_bad_ones_named() {
        let plan = json!({"subtasks": [subtask("b", &["a"]), subtask("a", &[])]}).to_string();
        let keys: Vec<String> = parse_plan(&plan).unwrap().into_iter().map(|s| s.key).collect();
        assert_eq!(keys, ["a", "b"]);
        let cycle = json!({"subtasks": [subtask("a", &["b"]), subtask("b", &["a"])]}).to_string();
        assert_eq!(parse_plan(&cycle).unwrap_err(), "the dependencies of `a`, `b` form a cycle");
        let bad = json!({"subtasks": [subtask("a", &["zz"]), subtask("a", &[]), subtask("c", &[])]}).to_string();
        let err = parse_plan(&bad).unwrap_err();
        assert!(
            err.contains("`a`: the key is used twice") && err.contains("depends on `zz`, which is not in the plan"),
            "{err}"
        );
        assert!(err.contains("the budget shares add up to 120%"), "{err}");
        assert!(parse_plan(r#"{"subtasks": []}"#).unwrap_err().contains("no subtask"));
    }
}
