//! Sandbox start-up: running `true` in a fresh sandbox, against a plain fork/exec of `true` and
//! against bubblewrap (`bwrap --unshare-all`), median of 100 runs each, in the same run, as the
//! user it runs as (root, or rootless).
//!
//! `cargo bench -p baton-sandbox --bench start` (installs Debian's bubblewrap if missing, as root);
//! rootless: the same binary run as an ordinary user (docs/benchmarks.md shows how).

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_sandbox::{LocalSandbox, RunRequest, Sandbox, SandboxConfig};

const RUNS: usize = 100;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut run: impl FnMut()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed()
            })
            .collect(),
    )
}

fn ensure_bwrap() -> bool {
    if Command::new("bwrap").arg("--version").output().is_ok() {
        return true;
    }
    eprintln!("installing bubblewrap for the comparison");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "bubblewrap"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    Command::new("bwrap").arg("--version").output().is_ok()
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let worktree = dir.path().join("worktree");
    std::fs::create_dir_all(&worktree).unwrap();
    let config = SandboxConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_baton-sandbox-init")), &dir.path().join("data"));
    let sandbox = LocalSandbox::new(config.clone(), &dir.path().join("data/task"), &worktree, vec![]).unwrap();
    // An environment's snapshot: 47 MiB of Python libraries an `initialize` copied into the home.
    let build = LocalSandbox::new(config.clone(), &dir.path().join("data/build"), &worktree, vec![]).unwrap();
    let install = RunRequest::shell(
        "mkdir -p ~/.local/lib && cp -r /usr/lib/python3 ~/.local/lib/deps",
        Duration::from_secs(120),
    );
    assert_eq!(build.run(&install).unwrap().exit_code, 0);
    let over_snapshot = LocalSandbox::new(config, &dir.path().join("data/over"), &worktree, vec![])
        .unwrap()
        .with_lower(Some(dir.path().join("data/build/layer")));
    let request = RunRequest { argv: vec!["/bin/true".into()], ..RunRequest::shell("", Duration::from_secs(10)) };

    let me = rustix::process::geteuid();
    println!("as {}", if me.is_root() { "root".to_owned() } else { format!("uid {} (rootless)", me.as_raw()) });
    let plain = time(|| assert!(Command::new("/bin/true").status().unwrap().success()));
    let baton = time(|| assert_eq!(sandbox.run(&request).unwrap().exit_code, 0));
    let layered = time(|| assert_eq!(over_snapshot.run(&request).unwrap().exit_code, 0));
    let session = sandbox.session().unwrap();
    let in_session = time(|| assert_eq!(session.run(&request).unwrap().exit_code, 0));
    println!("fork/exec true        {:7.2} ms", plain.as_secs_f64() * 1e3);
    println!(
        "true in a session     {:7.2} ms  ratio to fork/exec {:5.1}x",
        in_session.as_secs_f64() * 1e3,
        in_session.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "baton sandbox + true  {:7.2} ms  ratio to fork/exec {:5.1}x",
        baton.as_secs_f64() * 1e3,
        baton.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "  over a snapshot     {:7.2} ms  ratio to over the host root {:4.2}x",
        layered.as_secs_f64() * 1e3,
        layered.as_secs_f64() / baton.as_secs_f64()
    );
    if ensure_bwrap() {
        let args = [
            "--unshare-all",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--die-with-parent",
            "/bin/true",
        ];
        let bwrap = time(|| assert!(Command::new("bwrap").args(args).status().unwrap().success()));
        println!(
            "bwrap --unshare-all   {:7.2} ms  ratio to fork/exec {:5.1}x  baton / bwrap {:4.2}x  session / bwrap {:4.2}x",
            bwrap.as_secs_f64() * 1e3,
            bwrap.as_secs_f64() / plain.as_secs_f64(),
            baton.as_secs_f64() / bwrap.as_secs_f64(),
            in_session.as_secs_f64() / bwrap.as_secs_f64()
        );
    } else {
        println!("bwrap is not installed and could not be installed; no comparison");
    }
}
