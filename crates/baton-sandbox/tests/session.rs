//! Sessions: one sandbox for many commands, with background processes that later commands can
//! reach. Needs root, like every sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_sandbox::{LocalSandbox, RunRequest, Sandbox, SandboxConfig, Stopped};

fn sandbox(dir: &std::path::Path) -> LocalSandbox {
    let worktree = dir.join("worktree");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::write(worktree.join("index.html"), "served from the worktree\n").unwrap();
    let config = SandboxConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_baton-sandbox-init")), &dir.join("data"));
    LocalSandbox::new(config, &dir.join("data/task"), &worktree, vec![]).unwrap()
}

fn shell(command: &str) -> RunRequest {
    RunRequest::shell(command, Duration::from_secs(20))
}

/// Polls until `done` says yes or ten seconds pass.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_background_server_is_reachable_from_later_commands_until_stopped() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sandbox = sandbox(dir.path());
    let session = sandbox.session().unwrap();

    let server = session.spawn(&shell("exec python3 -u -m http.server 8123 --bind 127.0.0.1")).unwrap();
    let fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8123/index.html').read().decode(), end='')\"";
    let mut last = String::new();
    assert!(
        eventually(|| {
            let outcome = session.run(&shell(fetch)).unwrap();
            last = outcome.output.text();
            outcome.exit_code == 0
        }),
        "the server never answered: {last}"
    );
    assert_eq!(last, "served from the worktree\n");

    // The server's log shows the request; it is still running.
    let mut log = Vec::new();
    assert!(eventually(|| {
        log.extend(server.read_new().output);
        String::from_utf8_lossy(&log).contains("GET /index.html")
    }));
    assert_eq!(server.read_new().exit_code, None);

    server.stop();
    assert!(eventually(|| server.read_new().exit_code.is_some()));
    assert_eq!(server.read_new().exit_code, Some(128 + 9));
    let after = session.run(&shell(fetch)).unwrap();
    assert_ne!(after.exit_code, 0, "the server still answers after stop");
}

#[test]
fn background_input_and_foreground_limits() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sandbox = sandbox(dir.path());
    let session = sandbox.session().unwrap();

    let mut echo = session.spawn(&shell("while read line; do echo \"got $line\"; done; echo bye")).unwrap();
    echo.write(b"one\ntwo\n").unwrap();
    let mut seen = Vec::new();
    assert!(
        eventually(|| {
            seen.extend(echo.read_new().output);
            seen == b"got one\ngot two\n"
        }),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    echo.close_input();
    assert!(eventually(|| {
        let new = echo.read_new();
        seen.extend(new.output);
        new.exit_code == Some(0)
    }));
    assert!(String::from_utf8_lossy(&seen).ends_with("bye\n"));

    let outcome = session.run(&shell("echo $$ > /tmp/shared; exit 4")).unwrap();
    assert_eq!(outcome.exit_code, 4);
    // Commands of one session share its /tmp.
    assert_eq!(session.run(&shell("test -s /tmp/shared && echo shared")).unwrap().output.text(), "shared\n");

    let slow = session.run(&RunRequest::shell("echo begun; sleep 60 & sleep 60", Duration::from_millis(300))).unwrap();
    assert_eq!(slow.stopped, Some(Stopped::Timeout));
    assert_eq!(slow.output.text(), "begun\n");
    // The timed-out command's whole group is gone, its background `sleep` included.
    let left = session.run(&shell("ps -e -o comm= | grep -c '^sleep$' || true")).unwrap();
    assert_eq!(left.output.text(), "0\n");

    let missing = session.run(&RunRequest { argv: vec!["/no/such/program".into()], ..shell("") });
    assert!(missing.unwrap_err().to_string().contains("cannot start `/no/such/program`"));
}

#[test]
fn ending_a_session_ends_everything_in_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sandbox = sandbox(dir.path());
    // A duration no other test uses marks this test's processes on the host.
    let sleepers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00613\x00"))
            .count()
    };
    {
        let session = sandbox.session().unwrap();
        let _daemon = session.spawn(&shell("setsid sleep 613 & sleep 613")).unwrap();
        assert!(eventually(|| sleepers() == 2), "both sleepers should be running");
    }
    // Nothing of the session survives it, not even what left its process group.
    assert!(eventually(|| sleepers() == 0), "{} sleepers survived the session", sleepers());
    // A new session of the same sandbox starts clean and works.
    assert_eq!(sandbox.session().unwrap().run(&shell("echo again")).unwrap().output.text(), "again\n");
}

#[test]
fn output_streams_while_the_command_runs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sandbox = sandbox(dir.path());
    let session = sandbox.session().unwrap();
    // The command waits for a file that the test creates only after it has seen the first line, so
    // it can only finish if that line was streamed before the command ended.
    let gate = dir.path().join("worktree/gate");
    let (sender, receiver) = std::sync::mpsc::channel();
    let request = RunRequest {
        stream: Some(sender),
        ..RunRequest::shell("echo first; while [ ! -e gate ]; do sleep 0.02; done; echo second", Duration::from_secs(5))
    };
    std::thread::scope(|scope| {
        let run = scope.spawn(|| session.run(&request).unwrap());
        let first = receiver.recv_timeout(Duration::from_secs(5)).expect("nothing was streamed");
        assert_eq!(first, b"first\n");
        std::fs::write(&gate, "").unwrap();
        let outcome = run.join().unwrap();
        assert_eq!(outcome.stopped, None, "the command never saw the gate");
        assert_eq!(outcome.output.text(), "first\nsecond\n");
    });
}

#[test]
fn output_keeps_standard_output_and_error_apart_with_the_exit_code() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let session = sandbox(dir.path()).start_session().unwrap();
    let argv = ["/bin/sh", "-c", "cat; echo out; echo err >&2; echo \"$MARK\"; exit 7"].map(str::to_owned);
    let output = session.output(&argv, &[("MARK".into(), "marked".into())]).unwrap();
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\nmarked\n", "no input, then what went to stdout");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
    let missing = session.output(&["/no/such/program".to_owned()], &[]).unwrap_err();
    assert!(missing.to_string().contains("/no/such/program"), "{missing}");
    let again = session.output(&["/bin/true".to_owned()], &[]).unwrap();
    assert!(again.status.success(), "the session serves the next command");
}

#[test]
fn an_attached_command_speaks_over_its_pipes_and_dies_when_dropped() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sandbox = sandbox(dir.path());
    let session = sandbox.session().unwrap();

    let script = "while read line; do echo \"got $line\"; echo \"noise about $line\" >&2; done";
    let mut attached = session.attach(&shell(script)).unwrap();
    let mut lines = std::io::BufReader::new(attached.stdout.try_clone().unwrap());
    for word in ["one", "two"] {
        writeln!(attached.stdin, "{word}").unwrap();
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        // Only what it wrote to standard output: what it says on standard error goes to the file.
        assert_eq!(line, format!("got {word}\n"));
    }
    assert!(eventually(|| attached.process.stderr_tail().contains("noise about two")));
    // Only the end of standard error is kept, however much a command writes there.
    let loud =
        session.attach(&shell("head -c 5000000 /dev/zero | tr '\\0' x >&2; echo the-end >&2; sleep 600")).unwrap();
    assert!(eventually(|| loud.process.stderr_tail().ends_with("the-end\n")));
    assert!(loud.process.stderr_tail().len() <= baton_sandbox::ATTACHED_STDERR_BYTES);
    drop(loud);
    assert_eq!(attached.process.exit_code(), None);

    attached.process.stop();
    assert!(eventually(|| attached.process.exit_code().is_some()));
    let mut rest = String::new();
    assert_eq!(lines.read_line(&mut rest).unwrap(), 0, "its output ends with it: {rest:?}");

    // Dropped, a command that ignores its input is killed all the same.
    let sleeper = session.attach(&shell("echo $$ > /tmp/sleeper; exec sleep 600")).unwrap();
    assert!(eventually(|| session.run(&shell("test -s /tmp/sleeper")).unwrap().exit_code == 0));
    drop(sleeper);
    assert!(eventually(|| session.run(&shell("kill -0 $(cat /tmp/sleeper)")).unwrap().exit_code != 0));
}
