//! What the `baton` binary's tests share: a scripted tool call and the calc repository.

#![allow(dead_code)] // not every test file uses every helper

use baton_testkit::FixtureRepo;
use baton_testkit::model::{Reply, ToolCall, Turn};
use serde_json::Value;

/// A turn whose answer is one call of `name` with `arguments`.
pub fn call(id: &str, name: &str, arguments: Value) -> Turn {
    Turn {
        reply: Reply {
            tool_calls: vec![ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }],
            ..Reply::default()
        },
        ..Turn::default()
    }
}

/// A Python module whose `add` subtracts, and the test that says so.
pub fn calc_repo() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        ("test_calc.py", "from calc import add\nassert add(2, 3) == 5\nprint('ok')\n"),
    ])
}
