//! EXPLORATION: an agent that reads through a large module a hundred lines at a time, every range
//! new, before it makes a one-line fix; and its looping twin, which reads the same ranges round and
//! round. The context tests and the context benchmark run both: the first must never be taken for
//! a loop, the second must be.

use std::fmt::Write as _;

use serde_json::json;

use crate::FixtureRepo;
use crate::model::{Reply, Script, ToolCall, Turn};

/// Lines read per call.
pub const PAGE: usize = 100;
/// The module the agent reads.
pub const MODULE: &str = "service.py";
pub const REQUEST: &str =
    "Read service.py to learn how it routes requests, then fix add() in calc.py so the tests pass.";
pub const CHECK: &str = "python3 test_calc.py";

/// The scenario: its repository and its script.
#[derive(Debug)]
pub struct Exploration {
    pub repo: FixtureRepo,
    pub script: Script,
}

/// A module of `pages` pages, every line different, about 90 bytes a line.
fn module(pages: usize) -> String {
    let mut text = String::new();
    for line in 1..=pages * PAGE {
        let route = (line * 7919) % 100_003;
        let _ =
            writeln!(text, "def handler_{line:05}(request):  return dispatch(request, route={route:06}, retries=3)");
    }
    text
}

fn turn(turn: usize, said: String, name: &str, arguments: serde_json::Value) -> Turn {
    let call = ToolCall { id: format!("call_{turn}"), name: name.into(), arguments: arguments.to_string() };
    Turn { reply: Reply { text: Some(said), tool_calls: vec![call], ..Reply::default() }, ..Turn::default() }
}

/// Reading page `page` of the module.
fn read(at: usize, page: usize) -> Turn {
    let (first, last) = (page * PAGE + 1, (page + 1) * PAGE);
    let said = format!(
        "Reading lines {first}-{last} of {MODULE}: I follow how each handler dispatches its route before I change anything."
    );
    turn(at, said, "read_file", json!({ "path": MODULE, "start_line": first, "end_line": last }))
}

fn scenario(turns: Vec<Turn>, pages: usize, window: u64) -> Exploration {
    let module = module(pages);
    let repo = FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        (
            "test_calc.py",
            "from calc import add\n\nassert add(2, 3) == 5, f\"add(2, 3) gave {add(2, 3)}\"\nprint(\"all tests passed\")\n",
        ),
        (MODULE, &module),
    ]);
    let narrative = "I am reading service.py a hundred lines at a time; the ledger's plan says how far. Next: read on \
        from the line after the last one I read, then fix add() in calc.py.";
    Exploration { repo, script: crate::long_horizon::handing_off(turns, narrative, window) }
}

/// Every page of a module of `pages` pages, once, in order; then the fix, the tests and `finish`.
pub fn exploration(pages: usize, window: u64) -> Exploration {
    let mut turns: Vec<Turn> = (0..pages).map(|page| read(page, page)).collect();
    let at = turns.len();
    let fix = json!({ "path": "calc.py", "old": "a - b", "new": "a + b" });
    turns.push(turn(at, "Now the fix.".into(), "edit_file", fix));
    turns.push(turn(at + 1, "And the tests.".into(), "shell", json!({ "command": CHECK })));
    turns.push(turn(at + 2, "Done.".into(), "finish", json!({ "summary": "add() adds." })));
    scenario(turns, pages, window)
}

/// `reads` reads going round the `pages` pages of the module, never getting anywhere.
pub fn looping(pages: usize, reads: usize, window: u64) -> Exploration {
    scenario((0..reads).map(|at| read(at, at % pages)).collect(), pages, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_read_once_and_the_loop_goes_round() {
        let scenario = exploration(30, 32_768);
        assert_eq!(scenario.script.turns.len(), 33);
        let range = |turn: &Turn| turn.reply.tool_calls[0].arguments.clone();
        assert_eq!(range(&scenario.script.turns[29]), r#"{"end_line":3000,"path":"service.py","start_line":2901}"#);
        let looped = looping(5, 12, 32_768);
        assert_eq!(range(&looped.script.turns[11]), range(&looped.script.turns[1]));
        assert_eq!(module(2).lines().count(), 200);
    }
}
