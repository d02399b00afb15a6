//! A hostile agent against baton's own host-side work: random sequences of commands that swap
//! protected directories for symlinks, rename them, plant repositories and symlinked instruction
//! files, and keep doing so from background loops while baton restores, commits and reads. Whatever
//! the task's outcome, nothing outside the task's data changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use baton_testkit::FixtureRepo;
use baton_testkit::model::Script;
use common::{Harness, call, turn};
use proptest::prelude::*;
use serde_json::json;

/// Commands the agent may send; `{outside}` is a host directory that is not the task's.
const HOSTILE: &[&str] = &[
    "rm -rf tests && ln -sfn {outside} tests",
    "mv tests tests.moved && mkdir tests && ln -sfn {outside}/secret tests/test_calc.py",
    "ln -sfn {outside}/secret AGENTS.md",
    "mkdir -p .baton && ln -sfn {outside}/secret .baton/BUILD.md",
    "(for i in $(seq 400); do rm -rf tests; ln -sfn {outside} tests; sleep 0.002; rm -f tests; mkdir -p tests; echo x > tests/test_calc.py; done) >/dev/null 2>&1 &",
    "echo 'print(1)' > tests/test_calc.py",
    "git init -q nested && echo x > nested/f",
    "rm -rf nested tests.moved",
    "ln -sfn {outside} link; echo x > link/planted; true",
    // A file the base lacks, which the restore removes while the loops above swap its directory.
    "mkdir -p tests && echo x > tests/secret",
    "(while true; do ln -sfn {outside} tests.moved; mv -T tests.moved tests 2>/dev/null; mkdir -p tests.moved; done) >/dev/null 2>&1 &",
];

/// Every file below `dir` with its bytes and mode, and every symlink with its target.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            let key = path.strip_prefix(dir.ancestors().last().unwrap()).unwrap().display().to_string();
            if meta.is_dir() {
                files.insert(key, (Vec::new(), mode));
                pending.push(path);
            } else if meta.is_symlink() {
                files.insert(key, (std::fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes(), mode));
            } else {
                files.insert(key, (std::fs::read(&path).unwrap(), mode));
            }
        }
    }
    files
}

fn repo() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        (
            "tests/test_calc.py",
            "import sys; sys.path.insert(0, '.')\nfrom calc import add\nassert add(2, 3) == 5\nprint('ok')\n",
        ),
        (".gitignore", "__pycache__/\n"),
    ])
}

fn run_case(commands: Vec<usize>) {
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(outside.path().join("secret"), "not the task's\n").unwrap();
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    std::fs::write(outside.path().join("dir/kept"), "kept\n").unwrap();
    let outside_path = outside.path().display().to_string();

    let mut turns: Vec<_> = commands
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let command = HOSTILE[*i].replace("{outside}", &outside_path);
            turn(None, call(&format!("h{n}"), "shell", json!({ "command": command })))
        })
        .collect();
    turns.push(turn(None, call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))));
    turns.push(turn(None, call("f", "finish", json!({"summary": "add() adds."}))));
    turns.push(turn(None, call("f2", "finish", json!({"summary": "add() adds."}))));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let h = Harness::with_repo(Script { turns, ..Script::default() }, repo()).await;
        let before = (snapshot(outside.path()), snapshot(h.repo.path()));
        let id = h.create_with(|spec| spec.protect = vec!["tests/**".into()]).await;
        // The outcome may be anything, an engine error included; the host is what is judged.
        let mut finished = 0;
        let _ = h
            .engine()
            .run(&id, &mut |recorded| finished += usize::from(recorded.event.kind() == "tool_call_finished"))
            .await;
        assert!(finished >= commands.len(), "only {finished} calls ran of {commands:?}");
        let after = (snapshot(outside.path()), snapshot(h.repo.path()));
        assert_eq!(before.0, after.0, "a file outside the task changed after {commands:?}");
        let checkout = |files: &BTreeMap<String, (Vec<u8>, u32)>| -> BTreeMap<String, (Vec<u8>, u32)> {
            // The task's branch and its worktree's metadata are the task's own.
            files.iter().filter(|(k, _)| !k.contains("/.git/")).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        assert_eq!(checkout(&before.1), checkout(&after.1), "the user's checkout changed after {commands:?}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_command_sequences_never_change_a_file_outside_the_task(
        commands in proptest::collection::vec(0..HOSTILE.len(), 1..6)
    ) {
        run_case(commands);
    }
}
