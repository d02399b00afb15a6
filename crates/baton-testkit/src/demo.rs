//! The material of `baton demo`: a small repository with a failing test, and a recorded session
//! that fixes it, served by the scripted model server as a replay.

use crate::FixtureRepo;
use crate::model::Script;

/// The recorded session, as the scripted server replays it.
const SESSION: &str = include_str!("demo/session.json");

/// The demo repository: a Python module whose `add` subtracts, and the test that catches it.
pub fn demo_repo() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a - b\n"),
        (
            "test_calc.py",
            "from calc import add\n\nassert add(2, 3) == 5, f\"add(2, 3) returned {add(2, 3)}\"\nassert add(-1, 1) == 0\nprint(\"2 tests passed\")\n",
        ),
        ("AGENTS.md", "Run the tests with `python3 test_calc.py`.\n"),
        (".gitignore", "__pycache__/\n"),
    ])
}

/// The check the demo task is verified by.
pub const DEMO_CHECK: &str = "python3 test_calc.py";
/// The demo task's request.
pub const DEMO_REQUEST: &str = "The add() function in calc.py gives wrong results; fix it so the tests pass.";

/// The recorded session.
pub fn demo_script() -> Result<Script, serde_json::Error> {
    serde_json::from_str(SESSION)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_recorded_session_parses() {
        let script = super::demo_script().unwrap();
        assert!(script.turns.len() >= 4);
    }
}
