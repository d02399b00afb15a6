//! LONG-HORIZON: a scripted task of 600 steps with large tool outputs, far more than a 32k context
//! holds. The agent reads one large log per item, digs out its answer and writes it to `out/`; a
//! plan of ten phases tracks the fifty items. The context tests run it and the context benchmark
//! measures it.

use std::fmt::Write as _;

use serde_json::json;

use crate::FixtureRepo;
use crate::model::{Expect, Reply, Rule, Script, ToolCall, Turn};

pub const ITEMS: usize = 50;
const ITEMS_PER_PHASE: usize = 5;
const PHASES: usize = ITEMS / ITEMS_PER_PHASE;
/// Model steps per item; with the final `finish`, the task takes `ITEMS * STEPS_PER_ITEM + 1`.
pub const STEPS_PER_ITEM: usize = 12;
/// Lines of each item's log.
const LOG_LINES: usize = 90;
/// The line of the log that holds the answer.
const ANSWER_LINE: usize = 37;

/// The text the scripted model answers a handoff's summarisation call by.
pub const HANDOFF_ASK: &str = "Write the handoff for the next leg";

pub const REQUEST: &str = "For every data/log_NNN.txt, find its `answer_N = VALUE` line and write VALUE (and a newline) \
     to out/r_NNN.txt. Track the work with a plan of ten phases of five items.";
pub const CHECK: &str = "sh check.sh";

/// The scenario: its repository, its script, and what each handoff must carry.
#[derive(Debug)]
pub struct LongHorizon {
    pub repo: FixtureRepo,
    pub script: Script,
    pub facts: Facts,
}

/// What the agent has established by each turn.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `(turn, path)`: the turn whose tool call writes `path`.
    writes: Vec<(usize, String)>,
    /// `(turn, steps)`: the turn whose `update_plan` sets the plan, as `(status, title)`.
    plan_steps: Vec<(usize, Vec<(String, String)>)>,
}

fn answer(item: usize) -> String {
    format!("{:08x}", (item as u64 + 1).wrapping_mul(2_654_435_761) % (1 << 32))
}

fn path(dir: &str, item: usize) -> String {
    format!("{dir}/{}_{item:03}.txt", if dir == "out" { "r" } else { "log" })
}

/// A log of about 6 KB: noise lines that differ per item, and the answer on one line.
fn log(item: usize) -> String {
    let mut text = String::new();
    for line in 1..=LOG_LINES {
        if line == ANSWER_LINE {
            let _ = writeln!(text, "answer_{item} = {}", answer(item));
        } else {
            let noise = (item * 7919 + line * 104_729) % 1_000_003;
            let _ = writeln!(
                text,
                "{line:04} trace item={item} seq={noise:07} state=ok payload=lorem ipsum dolor sit amet {noise:x}"
            );
        }
    }
    text
}

fn check_script() -> String {
    let mut text = String::from(
        "#!/bin/sh\nfail=0\nexpect() { [ \"$(cat \"$1\" 2>/dev/null)\" = \"$2\" ] || { echo \"$1: expected $2\"; fail=1; }; }\n",
    );
    for item in 0..ITEMS {
        let _ = writeln!(text, "expect {} {}", path("out", item), answer(item));
    }
    let _ = writeln!(text, "[ $fail = 0 ] && echo \"all {ITEMS} results correct\"\nexit $fail");
    text
}

/// A plan with `done_phases` done: the `update_plan` arguments and its `(status, title)`s.
fn plan(done_phases: usize) -> (serde_json::Value, Vec<(String, String)>) {
    let mut steps = Vec::new();
    let mut pairs = Vec::new();
    for phase in 0..PHASES {
        let status = match phase {
            p if p < done_phases => "done",
            p if p == done_phases => "in_progress",
            _ => "pending",
        };
        let first = phase * ITEMS_PER_PHASE;
        let title = format!("phase {phase}: items {first}-{}", first + ITEMS_PER_PHASE - 1);
        steps.push(json!({"title": title, "status": status}));
        pairs.push((status.to_owned(), title));
    }
    (json!({ "steps": steps }), pairs)
}

fn call(turn: usize, name: &str, arguments: serde_json::Value) -> Turn {
    let reply = Reply {
        tool_calls: vec![ToolCall { id: format!("call_{turn}"), name: name.into(), arguments: arguments.to_string() }],
        ..Reply::default()
    };
    Turn { reply, ..Turn::default() }
}

fn shell(turn: usize, command: String) -> Turn {
    call(turn, "shell", json!({ "command": command }))
}

/// A script of `turns` for a model with a `window`-token context, whose every handoff's
/// summarisation call is answered with `narrative`.
pub fn handing_off(turns: Vec<Turn>, narrative: &str, window: u64) -> Script {
    Script {
        turns,
        rules: vec![Rule {
            when: Expect { body_contains: Some(HANDOFF_ASK.into()), ..Expect::default() },
            reply: Reply { text: Some(narrative.into()), ..Reply::default() },
        }],
        context_window: Some(window),
        replay_identical: false,
    }
}

/// The scenario for a model whose context window is `window` tokens: the scripted server refuses
/// any request larger than that.
pub fn long_horizon(window: u64) -> LongHorizon {
    let mut files: Vec<(String, String)> = (0..ITEMS).map(|item| (path("data", item), log(item))).collect();
    files.push(("check.sh".into(), check_script()));
    files.push(("out/.keep".into(), String::new()));
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let repo = FixtureRepo::with_files(&borrowed);

    let mut turns = Vec::new();
    let mut writes = Vec::new();
    let mut plan_steps = Vec::new();
    for item in 0..ITEMS {
        let log = path("data", item);
        let out = path("out", item);
        let next_log = path("data", (item + 1) % ITEMS);
        let phase = item / ITEMS_PER_PHASE;
        let at = turns.len();
        // Each call differs from every other, as a working agent's do.
        let mut steps: Vec<Turn> = Vec::new();
        if item == 0 {
            let (arguments, pairs) = plan(0);
            plan_steps.push((at, pairs));
            steps.push(call(at, "update_plan", arguments));
        } else {
            steps.push(shell(at, format!("ls data | head -n {}", item + 1)));
        }
        steps.push(call(at + 1, "read_file", json!({ "path": log })));
        steps.push(shell(at + 2, format!("grep -n answer {log}")));
        steps.push(shell(at + 3, format!("sed -n '1,80p' {log} | tr a-z A-Z")));
        steps.push(call(at + 4, "search", json!({ "pattern": format!("answer_{item} "), "path": "data" })));
        steps.push(shell(at + 5, format!("od -c {log} | head -n 50")));
        steps.push(call(at + 6, "write_file", json!({ "path": out, "content": format!("{}\n", answer(item)) })));
        writes.push((at + 6, out.clone()));
        steps.push(shell(at + 7, format!("cat {out} && wc -c {log}")));
        steps.push(call(at + 8, "read_file", json!({ "path": next_log, "start_line": 1, "end_line": 30 })));
        steps.push(shell(at + 9, format!("seq {item} {}", item + 700)));
        steps.push(shell(at + 10, format!("sha256sum {log} {out}")));
        if item % ITEMS_PER_PHASE == ITEMS_PER_PHASE - 1 {
            let (arguments, pairs) = plan(phase + 1);
            plan_steps.push((at + 11, pairs));
            steps.push(call(at + 11, "update_plan", arguments));
        } else {
            steps.push(shell(at + 11, format!("echo item {item} written")));
        }
        turns.extend(steps);
    }
    let finish = turns.len();
    turns.push(call(finish, "finish", json!({ "summary": format!("Wrote the {ITEMS} answers to out/.") })));

    let narrative = "Each item's answer is on the `answer_N = VALUE` line of data/log_NNN.txt; I write VALUE to \
        out/r_NNN.txt, then check it. Next: continue with the item after the last out/r_NNN.txt in the ledger.";
    LongHorizon { repo, script: handing_off(turns, narrative, window), facts: Facts { writes, plan_steps } }
}

impl Facts {
    /// The facts established before `turn` that `text` (a request's strings, unescaped) lacks. A
    /// file counts when its path appears; a plan step when its status and title appear either as
    /// the ledger lists them or as the `update_plan` call that set them.
    pub fn missing(&self, turn: usize, text: &str) -> Vec<String> {
        let mut missing: Vec<String> = self
            .writes
            .iter()
            .filter(|(at, path)| *at < turn && !text.contains(path.as_str()))
            .map(|(_, path)| path.clone())
            .collect();
        if let Some((_, steps)) = self.plan_steps.iter().rev().find(|(at, _)| *at < turn) {
            for (status, title) in steps {
                let listed = format!("[{status}] {title}");
                let called = format!("\"status\":\"{status}\",\"title\":\"{title}\"");
                if !text.contains(&listed) && !text.contains(&called) {
                    missing.push(listed);
                }
            }
        }
        missing
    }

    /// Every file the task writes, in order.
    pub fn outputs(&self) -> impl Iterator<Item = &str> {
        self.writes.iter().map(|(_, path)| path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_has_600_working_steps_and_a_finish() {
        let scenario = long_horizon(32_768);
        assert_eq!(scenario.script.turns.len(), ITEMS * STEPS_PER_ITEM + 1);
        assert_eq!(scenario.facts.outputs().count(), ITEMS);
        assert_eq!(scenario.facts.plan_steps.len(), PHASES + 1);
        // Before the last phase's end: every file, and phase 9 in progress.
        let facts = scenario.facts.missing(ITEMS * STEPS_PER_ITEM - 1, "");
        assert_eq!(facts.len(), ITEMS + PHASES);
        assert!(facts.contains(&"out/r_049.txt".to_owned()));
        assert!(facts.contains(&"[in_progress] phase 9: items 45-49".to_owned()));
        assert!(scenario.facts.missing(0, "").is_empty());
        let plan_call = scenario.script.turns[0].reply.tool_calls[0].arguments.clone();
        assert!(scenario.facts.missing(1, &plan_call).is_empty(), "the call that set the plan carries it");
        assert_eq!(scenario.facts.missing(STEPS_PER_ITEM, "").len(), 1 + PHASES);
        assert_eq!(
            scenario.facts.missing(STEPS_PER_ITEM, "out/r_000.txt [in_progress] phase 0: items 0-4").len(),
            PHASES - 1
        );
        assert!(log(3).contains(&format!("answer_3 = {}\n", answer(3))));
        assert!(check_script().contains(&format!("expect out/r_049.txt {}\n", answer(49))));
    }
}
