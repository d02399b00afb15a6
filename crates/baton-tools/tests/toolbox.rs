//! `search`, and `shell` in a real sandbox (needs root), with secrets kept out of every output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;

use baton_core::Secret;
use baton_sandbox::{LocalSandbox, SandboxConfig};
use baton_tools::{ToolResult, Toolbox, Workspace};
use serde_json::json;

const TOKEN: &str = "tok-9f8e7d6c5b4a";

fn toolbox(dir: &std::path::Path) -> Toolbox {
    let worktree = dir.join("worktree");
    fs::create_dir_all(worktree.join("src")).unwrap();
    fs::write(worktree.join("src/lib.rs"), "fn parse() {}\nfn lex() { parse() }\n").unwrap();
    fs::write(worktree.join("src/notes.md"), "parse this later\n").unwrap();
    fs::write(worktree.join(".gitignore"), "target/\n").unwrap();
    fs::create_dir_all(worktree.join("target")).unwrap();
    fs::write(worktree.join("target/generated.rs"), "fn parse_generated() {}\n").unwrap();
    fs::write(worktree.join("data.bin"), b"parse\x00\x01\x02").unwrap();
    std::os::unix::fs::symlink("/etc", worktree.join("etc_link")).unwrap();
    // Built with the workspace (`cargo test --workspace` builds every binary).
    let init = SandboxConfig::locate_init().expect("baton-sandbox-init is not built: run the workspace's tests");
    let config = SandboxConfig::new(init, &dir.join("data"));
    let sandbox = LocalSandbox::new(config, &dir.join("data/task"), &worktree, vec![]).unwrap();
    let secrets = vec![Secret { name: "API_TOKEN".into(), value: TOKEN.into() }];
    Toolbox::new(Workspace::open(&worktree).unwrap()).with_sandbox(Box::new(sandbox), secrets)
}

fn call(tools: &Toolbox, name: &str, arguments: serde_json::Value) -> ToolResult {
    tools.call(name, &arguments.to_string())
}

#[test]
fn search_honours_gitignore_globs_and_stays_inside() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tools = toolbox(dir.path());
    let found = call(&tools, "search", json!({"pattern": "fn parse"}));
    assert_eq!(found.output, "src/lib.rs:1: fn parse() {}\n1 matches in 1 files");
    let found = call(&tools, "search", json!({"pattern": "parse", "glob": "*.md"}));
    assert_eq!(found.output, "src/notes.md:1: parse this later\n1 matches in 1 files");
    let found = call(&tools, "search", json!({"pattern": "parse\\(\\)", "path": "src/lib.rs"}));
    assert_eq!(found.output, "src/lib.rs:1: fn parse() {}\nsrc/lib.rs:2: fn lex() { parse() }\n2 matches in 1 files");
    assert_eq!(call(&tools, "search", json!({"pattern": "root:x:0"})).output, "no match for `root:x:0`");
    let bad = call(&tools, "search", json!({"pattern": "fn (unclosed"}));
    assert!(bad.is_error && bad.output.starts_with("invalid regular expression"), "{}", bad.output);
    let outside = call(&tools, "search", json!({"pattern": "x", "path": "../.."}));
    assert!(outside.is_error && outside.output.contains("climbs out of the workspace"), "{}", outside.output);
}

#[test]
fn shell_runs_in_the_sandbox_and_never_shows_a_secret() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tools = toolbox(dir.path());
    assert_eq!(tools.specs()[0].name, "shell");

    let ran = call(&tools, "shell", json!({"command": "cat src/notes.md; echo oops >&2; exit 3"}));
    assert!(!ran.is_error, "{}", ran.output);
    assert!(ran.output.starts_with("exit code 3 in "), "{}", ran.output);
    assert!(ran.output.ends_with("\nparse this later\noops\n"), "{}", ran.output);

    let leaked = call(
        &tools,
        "shell",
        json!({"command": "echo $API_TOKEN; printf %s \"$API_TOKEN\" | base64; printf 'user:%s' \"$API_TOKEN\" | base64"}),
    );
    assert_eq!(leaked.output.matches("[secret API_TOKEN]").count(), 3, "{}", leaked.output);
    assert!(!leaked.output.contains(TOKEN) && !leaked.output.contains("dG9rLTlmOGU3ZDZj"), "{}", leaked.output);

    let slow = call(&tools, "shell", json!({"command": "sleep 30", "timeout_s": 1}));
    assert!(slow.output.starts_with("stopped after 1 s: the timeout ran out"), "{}", slow.output);
    for (arguments, expected) in [
        (json!({"command": "  "}), "the command is empty"),
        (json!({"command": "true", "timeout_s": 0}), "timeout_s must be at least 1"),
        (json!({"command": "true", "timeout_s": 99999999}), "timeout_s may be at most 14400"),
        (json!({"command": "true", "background": "yes"}), "invalid type: string \"yes\", expected a boolean"),
    ] {
        let result = call(&tools, "shell", arguments);
        assert!(result.is_error && result.output.contains(expected), "{}", result.output);
    }
}

#[test]
fn background_commands_keep_running_for_later_commands() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tools = toolbox(dir.path());
    let started = call(
        &tools,
        "shell",
        json!({"command": "python3 -u -m http.server 8124 --bind 127.0.0.1", "background": true}),
    );
    assert!(
        started.output.starts_with("started background process 1; its output goes to /tmp/baton-background-1.log"),
        "{}",
        started.output
    );

    let fetch = json!({"command": "for i in $(seq 50); do python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8124/src/notes.md').read().decode(), end='')\" 2>/dev/null && break; sleep 0.1; done"});
    let fetched = call(&tools, "shell", fetch);
    assert!(fetched.output.ends_with("\nparse this later\n"), "{}", fetched.output);
    let log = call(&tools, "shell", json!({"command": "cat /tmp/baton-background-1.log"}));
    assert!(log.output.contains("GET /src/notes.md"), "{}", log.output);

    call(&tools, "shell", json!({"command": "kill -- -$(cat /tmp/baton-background-1.pid); sleep 0.2"}));
    let next = call(&tools, "shell", json!({"command": "true"}));
    assert!(
        next.output.starts_with(
            "[background process 1 (`python3 -u -m http.server 8124 --bind 127.0.0.1`) exited with code 143]"
        ),
        "{}",
        next.output
    );
}
