//! The file tools on a real directory, with good and hostile arguments.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use baton_tools::{Effect, PlanStep, StepStatus, ToolResult, Toolbox, Workspace};
use proptest::prelude::*;
use serde_json::json;

struct Fixture {
    /// Holds the workspace and, beside it, a directory the agent must never reach.
    dir: tempfile::TempDir,
    tools: Toolbox,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("workspace");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/lib.rs"), "fn a() {\n    1\n}\n\nfn b() {\n    1\n}\n").unwrap();
        fs::write(root.join("README.md"), "# Demo\n").unwrap();
        fs::write(root.join(".git"), "gitdir: /elsewhere\n").unwrap();
        fs::create_dir_all(dir.path().join("secret")).unwrap();
        fs::write(dir.path().join("secret/key"), "top secret").unwrap();
        let tools = Toolbox::new(Workspace::open(&root).unwrap());
        Fixture { dir, tools }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("workspace")
    }

    fn call(&self, name: &str, arguments: serde_json::Value) -> ToolResult {
        self.tools.call(name, &arguments.to_string())
    }

    fn ok(&self, name: &str, arguments: serde_json::Value) -> ToolResult {
        let result = self.call(name, arguments.clone());
        assert!(!result.is_error, "{name} {arguments} failed: {}", result.output);
        result
    }

    fn err(&self, name: &str, arguments: serde_json::Value) -> String {
        let result = self.call(name, arguments.clone());
        assert!(result.is_error, "{name} {arguments} should have failed; it said {}", result.output);
        assert_eq!(result.effect, Effect::None);
        result.output
    }
}

#[test]
fn paths_that_leave_the_workspace_are_refused() {
    let f = Fixture::new();
    let root = f.root();
    symlink("/etc", root.join("etc_link")).unwrap();
    symlink("../secret", root.join("up")).unwrap();
    symlink("/proc/self/root", root.join("proc_root")).unwrap();
    symlink(f.dir.path().join("secret"), root.join("out")).unwrap();
    symlink("README.md", root.join("alias.md")).unwrap();

    for (path, expected) in [
        ("../secret/key", "climbs out of the workspace"),
        ("src/../../secret/key", "climbs out of the workspace"),
        ("/etc/passwd", "is outside the workspace"),
        ("/workspace/../secret/key", "climbs out of the workspace"),
        ("/proc/self/root/etc/passwd", "is outside the workspace"),
        ("etc_link/passwd", "leads outside the workspace through a symlink"),
        ("up/key", "leads outside the workspace through a symlink"),
        ("proc_root/etc/passwd", "leads outside the workspace through a symlink"),
        ("out/key", "leads outside the workspace through a symlink"),
        ("src/\u{0}lib.rs", "contains a NUL byte"),
    ] {
        let message = f.err("read_file", json!({"path": path}));
        assert!(message.contains(expected), "{path}: {message}");
    }
    // Writing through an escaping symlink changes nothing outside.
    let message = f.err("write_file", json!({"path": "out/key", "content": "pwned"}));
    assert!(message.contains("leads outside the workspace"), "{message}");
    let message = f.err("write_file", json!({"path": "up/new", "content": "pwned"}));
    assert!(message.contains("leads outside the workspace"), "{message}");
    assert_eq!(fs::read_to_string(f.dir.path().join("secret/key")).unwrap(), "top secret");
    assert!(!f.dir.path().join("secret/new").exists());
    // Git metadata is read-only to the tools.
    let message = f.err("write_file", json!({"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\nrm -rf /"}));
    assert!(message.contains("git metadata, which is read-only"), "{message}");
    let message = f.err("apply_patch", json!({"patch": "*** Begin Patch\n*** Delete File: .git\n*** End Patch"}));
    assert!(message.contains("git metadata"), "{message}");

    // Paths that stay inside are fine, however they are written.
    assert!(f.ok("read_file", json!({"path": "/workspace/src/../README.md"})).output.contains("# Demo"));
    assert!(f.ok("read_file", json!({"path": "./alias.md"})).output.contains("# Demo"));
}

#[test]
fn read_file_pages_numbers_and_refuses_binaries() {
    let f = Fixture::new();
    let long: String = (1..=2500).map(|n| format!("line {n}\n")).collect();
    fs::write(f.root().join("long.txt"), long).unwrap();
    let first = f.ok("read_file", json!({"path": "long.txt"})).output;
    assert!(first.starts_with("     1\tline 1\n"));
    assert!(first.contains("  2000\tline 2000\n"));
    assert!(
        first.ends_with("… lines 2001-2500 not shown; continue with start_line=2001"),
        "{}",
        &first[first.len() - 80..]
    );
    let range = f.ok("read_file", json!({"path": "long.txt", "start_line": 2499, "end_line": 9999})).output;
    assert_eq!(range, "  2499\tline 2499\n  2500\tline 2500\n");
    assert_eq!(
        f.err("read_file", json!({"path": "long.txt", "start_line": 2501})),
        "`long.txt` has 2500 lines; start_line 2501 is outside 1..=2500"
    );
    assert_eq!(
        f.err("read_file", json!({"path": "long.txt", "start_line": 5, "end_line": 4})),
        "end_line 4 is before start_line 5"
    );

    fs::write(f.root().join("wide.txt"), "x".repeat(5000)).unwrap();
    assert!(f.ok("read_file", json!({"path": "wide.txt"})).output.contains("(line cut at 2000 of 5000 characters)"));
    fs::write(f.root().join("blob.bin"), b"\x7fELF\x00\x01").unwrap();
    assert!(f.err("read_file", json!({"path": "blob.bin"})).contains("is a binary file (6 bytes)"));
    fs::write(f.root().join("latin1.txt"), b"caf\xe9\n").unwrap();
    assert!(f.err("read_file", json!({"path": "latin1.txt"})).contains("is a binary file"));
    fs::write(f.root().join("empty.txt"), "").unwrap();
    assert_eq!(f.ok("read_file", json!({"path": "empty.txt"})).output, "`empty.txt` is empty");
    assert_eq!(f.err("read_file", json!({"path": "src"})), "`src` is a directory; use list_dir");
    assert_eq!(f.err("read_file", json!({"path": "nope.rs"})), "`nope.rs` does not exist");
}

#[test]
fn write_and_edit_change_exactly_what_was_asked() {
    let f = Fixture::new();
    let result = f.ok("write_file", json!({"path": "deep/new/dir/file.txt", "content": "a\nb\n"}));
    assert_eq!(result.effect, Effect::Changed(vec!["deep/new/dir/file.txt".into()]));
    assert_eq!(fs::read_to_string(f.root().join("deep/new/dir/file.txt")).unwrap(), "a\nb\n");

    let script = f.root().join("run.sh");
    fs::write(&script, "echo 1\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    f.ok("write_file", json!({"path": "run.sh", "content": "echo 2\n"}));
    assert_eq!(fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755, "an edit keeps the file executable");

    assert_eq!(
        f.err("edit_file", json!({"path": "src/lib.rs", "old": "    1\n", "new": "    2\n"})),
        "`old` occurs 2 times in `src/lib.rs` (lines 2, 6); add surrounding lines to make it unique, or set replace_all"
    );
    let result = f.ok("edit_file", json!({"path": "src/lib.rs", "old": "fn b() {\n    1", "new": "fn b() {\n    2"}));
    assert_eq!(result.output, "edited `src/lib.rs`: replaced 1 occurrence (line 5)");
    assert_eq!(fs::read_to_string(f.root().join("src/lib.rs")).unwrap(), "fn a() {\n    1\n}\n\nfn b() {\n    2\n}\n");
    f.ok("edit_file", json!({"path": "src/lib.rs", "old": "fn", "new": "pub fn", "replace_all": true}));
    assert_eq!(fs::read_to_string(f.root().join("src/lib.rs")).unwrap().matches("pub fn").count(), 2);

    let loose = f.err("edit_file", json!({"path": "src/lib.rs", "old": "pub fn a() {\n 1", "new": "x"}));
    assert!(loose.contains("does match if whitespace is ignored"), "{loose}");
    assert!(f.err("edit_file", json!({"path": "src/lib.rs", "old": "nowhere", "new": "x"})).contains("was not found"));
    assert!(f.err("edit_file", json!({"path": "src/lib.rs", "old": "", "new": "x"})).contains("`old` is empty"));
    assert!(f.err("edit_file", json!({"path": "src/lib.rs", "old": "pub", "new": "pub"})).contains("are the same"));
}

#[test]
fn apply_patch_changes_several_files_or_none() {
    let f = Fixture::new();
    let patch = "*** Begin Patch\n\
                 *** Add File: src/new.rs\n+pub fn new() {}\n\
                 *** Update File: src/lib.rs\n*** Move to: src/core.rs\n@@ fn b() {\n-    1\n+    42\n\
                 *** Delete File: README.md\n\
                 *** End Patch";
    let result = f.ok("apply_patch", json!({"patch": patch}));
    assert_eq!(
        result.effect,
        Effect::Changed(vec!["src/new.rs".into(), "src/core.rs".into(), "src/lib.rs".into(), "README.md".into()])
    );
    assert_eq!(fs::read_to_string(f.root().join("src/new.rs")).unwrap(), "pub fn new() {}\n");
    assert_eq!(
        fs::read_to_string(f.root().join("src/core.rs")).unwrap(),
        "fn a() {\n    1\n}\n\nfn b() {\n    42\n}\n"
    );
    assert!(!f.root().join("src/lib.rs").exists() && !f.root().join("README.md").exists());

    // The second hunk cannot apply, so the first file is not touched either.
    let before = fs::read_to_string(f.root().join("src/core.rs")).unwrap();
    let bad = "*** Begin Patch\n*** Add File: other.rs\n+x\n*** Update File: src/core.rs\n@@\n-    1\n+    7\n@@\n-this line is not there\n+y\n*** End Patch";
    let message = f.err("apply_patch", json!({"patch": bad}));
    assert!(message.starts_with("hunk 2 of `src/core.rs`: cannot find the lines it changes"), "{message}");
    assert_eq!(fs::read_to_string(f.root().join("src/core.rs")).unwrap(), before);
    assert!(!f.root().join("other.rs").exists());
    assert!(
        f.err("apply_patch", json!({"patch": "*** Begin Patch\n*** Add File: src/new.rs\n+x\n*** End Patch"}))
            .contains("already exists")
    );
}

#[test]
fn apply_patch_keeps_line_endings_never_overwrites_by_moving_and_undoes_a_failed_write() {
    let f = Fixture::new();
    let root = f.root();
    fs::write(root.join("dos.txt"), "one\r\ntwo\r\nthree").unwrap();
    let patch = "*** Begin Patch\n*** Update File: dos.txt\n@@\n-two\n+2\n*** End Patch";
    f.ok("apply_patch", json!({"patch": patch}));
    assert_eq!(fs::read(root.join("dos.txt")).unwrap(), b"one\r\n2\r\nthree", "CRLF kept, no final newline added");

    // A move onto a file that exists is refused, and nothing changes.
    let moving = "*** Begin Patch\n*** Update File: dos.txt\n*** Move to: README.md\n@@\n-one\n+1\n*** End Patch";
    assert!(f.err("apply_patch", json!({"patch": moving})).contains("`README.md` already exists"));
    assert_eq!(fs::read_to_string(root.join("README.md")).unwrap(), "# Demo\n");
    assert!(root.join("dos.txt").exists());

    // The last write fails (its parent is a file): the earlier ones are undone.
    let failing = "*** Begin Patch\n*** Update File: src/lib.rs\n@@ fn b() {\n-    1\n+    9\n\
                   *** Delete File: dos.txt\n*** Add File: README.md/inner.txt\n+x\n*** End Patch";
    let message = f.err("apply_patch", json!({"patch": failing}));
    assert!(message.ends_with("the patch was not applied (nothing was changed)"), "{message}");
    assert_eq!(fs::read_to_string(root.join("src/lib.rs")).unwrap(), "fn a() {\n    1\n}\n\nfn b() {\n    1\n}\n");
    assert_eq!(fs::read(root.join("dos.txt")).unwrap(), b"one\r\n2\r\nthree");
}

#[test]
fn list_dir_shows_the_tree_without_git() {
    let f = Fixture::new();
    fs::create_dir_all(f.root().join("src/nested/deeper")).unwrap();
    fs::write(f.root().join("src/nested/x.rs"), "").unwrap();
    symlink("README.md", f.root().join("link.md")).unwrap();
    assert_eq!(f.ok("list_dir", json!({"path": "."})).output, "README.md\nlink.md@\nsrc/");
    assert_eq!(
        f.ok("list_dir", json!({"path": "/workspace", "depth": 3})).output,
        "README.md\nlink.md@\nsrc/\n  lib.rs\n  nested/\n    deeper/\n    x.rs"
    );
    assert_eq!(f.err("list_dir", json!({"path": "README.md"})), "`README.md` is not a directory; use read_file");
    assert_eq!(f.err("list_dir", json!({"path": ".", "depth": 99})), "depth 99 is outside 1..=5");
}

#[test]
fn plan_and_finish_are_validated() {
    let f = Fixture::new();
    let result = f.ok(
        "update_plan",
        json!({"steps": [{"title": "read", "status": "done"}, {"title": "fix", "status": "in_progress"}]}),
    );
    assert_eq!(
        result.effect,
        Effect::Plan(vec![
            PlanStep { title: "read".into(), status: StepStatus::Done },
            PlanStep { title: "fix".into(), status: StepStatus::InProgress },
        ])
    );
    let two = json!({"steps": [{"title": "a", "status": "in_progress"}, {"title": "b", "status": "in_progress"}]});
    assert_eq!(f.err("update_plan", two), "2 steps are in_progress; keep at most one");
    assert!(
        f.err("update_plan", json!({"steps": [{"title": "a", "status": "started"}]}))
            .contains("unknown variant `started`")
    );
    assert_eq!(
        f.ok("finish", json!({"summary": "Fixed the parser."})).effect,
        Effect::Finish("Fixed the parser.".into())
    );
    assert_eq!(f.err("finish", json!({"summary": "  "})), "the summary is empty; say what changed and why");
}

#[test]
fn malformed_calls_get_precise_errors() {
    let f = Fixture::new();
    let cases = [
        ("read_file", "{\"path\": 7}", "invalid arguments for read_file: invalid type: integer `7`, expected a string"),
        ("read_file", "{}", "invalid arguments for read_file: missing field `path`"),
        ("read_file", "{\"path\": \"a\", \"mode\": \"fast\"}", "invalid arguments for read_file: unknown field `mode`"),
        (
            "read_file",
            "{\"path\": \"a\", \"start_line\": -1}",
            "invalid arguments for read_file: invalid value: integer `-1`",
        ),
        (
            "write_file",
            "{\"path\": \"a\", \"content\": \"\\udc80\"}",
            "invalid arguments for write_file: lone leading surrogate",
        ),
        ("edit_file", "{\"path\": \"a\", \"old\": \"x\"", "invalid arguments for edit_file: EOF while parsing"),
        ("list_dir", "[\"src\"]", "invalid arguments for list_dir: expected a JSON object, got [\"src\"]"),
        (
            "launch_missiles",
            "{}",
            "there is no tool `launch_missiles`; the tools are: read_file, write_file, edit_file, apply_patch, search, list_dir, update_plan, finish",
        ),
    ];
    for (tool, arguments, expected) in cases {
        let result = f.tools.call(tool, arguments);
        assert!(result.is_error && result.output.starts_with(expected), "{tool} {arguments}: {}", result.output);
    }
    let huge = f.call("read_file", json!({"path": "README.md", "start_line": u64::MAX}));
    assert!(huge.is_error && huge.output.contains("is outside 1..=1"), "{}", huge.output);
}

#[test]
fn every_schema_is_a_closed_json_object() {
    for spec in Toolbox::new(Workspace::open(Path::new(".")).unwrap()).specs() {
        let schema: serde_json::Value = serde_json::from_str(&spec.parameters).unwrap();
        assert_eq!(schema["type"], "object", "{}", spec.name);
        assert_eq!(schema["additionalProperties"], false, "{}", spec.name);
        for required in schema["required"].as_array().unwrap() {
            assert!(schema["properties"].get(required.as_str().unwrap()).is_some(), "{}: {required}", spec.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_arguments_make_a_tool_panic(
        tool in prop::sample::select(vec!["read_file", "write_file", "edit_file", "apply_patch", "search", "list_dir", "update_plan", "finish"]),
        path in prop_oneof![Just("src/lib.rs".to_owned()), Just("..".to_owned()), "\\PC{0,20}", "[./a-z]{0,30}"],
        text in "\\PC{0,200}",
        number in any::<i64>(),
        raw in "\\PC{0,100}",
    ) {
        let f = Fixture::new();
        let shaped = json!({"path": path, "content": text, "old": text, "new": path, "patch": text, "pattern": text, "glob": path,
                            "start_line": number, "end_line": number, "depth": number, "summary": text,
                            "steps": [{"title": text, "status": "pending"}]});
        let _ = f.tools.call(tool, &shaped.to_string());
        let _ = f.tools.call(tool, &raw);
        // Whatever happened, nothing outside the workspace changed.
        prop_assert_eq!(fs::read_to_string(f.dir.path().join("secret/key")).unwrap(), "top secret");
        prop_assert!(Path::new(&f.dir.path().join("secret")).read_dir().unwrap().count() == 1);
    }
}

#[test]
fn search_reads_gitignore_files_only_beneath_the_workspace() {
    let f = Fixture::new();
    let root = f.root();
    // Rules from outside the worktree would hide every source file.
    fs::write(f.dir.path().join("secret/rules"), "*.rs\n").unwrap();
    symlink(f.dir.path().join("secret/rules"), root.join(".gitignore")).unwrap();
    let found = f.ok("search", json!({"pattern": "fn a"})).output;
    assert!(found.starts_with("src/lib.rs:1: fn a() {"), "{found}");

    // A FIFO in place of a `.gitignore` is not waited on.
    fs::remove_file(root.join(".gitignore")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, root.join(".gitignore"), rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let tools = Toolbox::new(Workspace::open(&root).unwrap());
    std::thread::spawn(move || done.send(tools.call("search", &json!({"pattern": "fn b"}).to_string())).unwrap());
    let result = finished.recv_timeout(std::time::Duration::from_secs(60)).expect("search blocked on a FIFO");
    assert!(result.output.starts_with("src/lib.rs:5: fn b() {"), "{}", result.output);

    // Real rules are honoured, the nearest `.gitignore` first.
    fs::remove_file(root.join(".gitignore")).unwrap();
    fs::write(root.join(".gitignore"), "build/\n*.log\n").unwrap();
    fs::create_dir_all(root.join("build")).unwrap();
    fs::write(root.join("build/out.rs"), "fn a_built() {}\n").unwrap();
    fs::write(root.join("src/run.log"), "fn a_logged\n").unwrap();
    fs::write(root.join("src/.gitignore"), "!run.log\n").unwrap();
    let found = f.ok("search", json!({"pattern": "fn a"})).output;
    assert!(!found.contains("build/out.rs"), "{found}");
    assert!(found.contains("src/run.log:1: fn a_logged"), "{found}");
}

#[test]
fn search_honours_no_rule_file_over_its_limits_and_says_so() {
    let f = Fixture::new();
    let root = f.root();
    // One file over 64 KiB: cut at a byte count its rules could ignore more than the whole file.
    let padding = "# padding\n".repeat(7_000);
    fs::write(root.join(".gitignore"), format!("*.rs\n{padding}")).unwrap();
    let found = f.ok("search", json!({"pattern": "fn a"})).output;
    assert!(found.starts_with("src/lib.rs:1: fn a() {"), "{found}");
    assert!(found.ends_with("limit for one rule file or 1048576 in all: .gitignore)"), "{found}");

    // Twenty files within the limit each, 1.2 MB in all: those read once 1 MiB is spent are not honoured.
    fs::remove_file(root.join(".gitignore")).unwrap();
    let padding = "# padding\n".repeat(6_000);
    for n in 0..20 {
        let dir = root.join(format!("d{n:02}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".gitignore"), format!("hidden.txt\n{padding}")).unwrap();
        fs::write(dir.join("hidden.txt"), "needle\n").unwrap();
    }
    let found = f.ok("search", json!({"pattern": "needle"})).output;
    let shown = found.lines().filter(|line| line.ends_with("hidden.txt:1: needle")).count();
    assert!((1..20).contains(&shown), "{found}");
    let refused = found.lines().last().unwrap().matches("/.gitignore").count();
    assert_eq!(shown, refused, "{found}");
}

#[test]
fn read_file_refuses_a_fifo_without_waiting_on_it() {
    let f = Fixture::new();
    let fifo = f.root().join("pipe");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let tools = Toolbox::new(Workspace::open(&f.root()).unwrap());
    std::thread::spawn(move || done.send(tools.call("read_file", &json!({"path": "pipe"}).to_string())).unwrap());
    let result = finished.recv_timeout(std::time::Duration::from_secs(60)).expect("read_file blocked on a FIFO");
    assert!(result.is_error && result.output == "`pipe` is not a regular file", "{}", result.output);
}
