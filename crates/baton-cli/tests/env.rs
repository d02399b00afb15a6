//! `baton env`: a repository's environment built, shown, listed, collected, and proved complete
//! (`check` builds it from nothing and runs the checks) through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::Path;
use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::FixtureRepo;
use common::{describe, package_index};
use serde_json::Value;

fn baton(home: &Path, repo: &FixtureRepo, args: &[&str]) -> Output {
    baton_with(home, repo, args, &[])
}

/// [`baton`] with more variables in its environment.
fn baton_with(home: &Path, repo: &FixtureRepo, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command.args(args).current_dir(repo.path()).env("BATON_HOME", home).env("BATON_CONFIG", home.join("config.toml"));
    command.envs(env.iter().copied()).output().unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("not JSON: {}", describe(output)))
}

/// A repository whose tests need `calcextra`, which `initialize` installs from the package index
/// on loopback with the pip requirements in `requirements.txt`; `inputs` says whether the build
/// may see that file.
fn repo(port: u16, inputs: &str) -> FixtureRepo {
    let initialize = format!(
        "python3 -m pip install -q --user --break-system-packages --no-cache-dir --disable-pip-version-check --no-index --trusted-host packages.test --find-links http://packages.test:{port}/ -r requirements.txt"
    );
    let baton_toml = format!(
        "[environment]\ninitialize = {initialize:?}\n{inputs}\n[environment.commands]\ntest = \"python3 test_calc.py\"\n"
    );
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a + b\n"),
        ("test_calc.py", "from calcextra import double\nassert double(2) == 4\nprint('ok')\n"),
        ("requirements.txt", "calcextra\n"),
        ("baton.toml", &baton_toml),
    ])
}

fn home(port: u16) -> tempfile::TempDir {
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config =
        format!("[network]\nallow = [\"packages.test\"]\nresolve = {{ \"packages.test\" = \"127.0.0.1:{port}\" }}\n");
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    home
}

#[test]
fn check_fails_on_an_environment_that_relies_on_an_undeclared_file_and_passes_once_declared() {
    let port = package_index();
    let home = home(port);
    // `requirements.txt` is not among the inputs: the build never sees it.
    let undeclared = repo(port, "");
    let output = baton(home.path(), &undeclared, &["env", "check"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("requirements.txt") && said.contains("not complete"), "{}", describe(&output));

    let declared = repo(port, "inputs = [\"requirements.txt\"]");
    let output = baton(home.path(), &declared, &["env", "check", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = json(&output);
    assert_eq!(report["passed"], true, "{report}");
    let phases: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["initialize", "initialize", "check"], "{report}");
    // Nothing of the check stays behind: it built in a scratch place.
    let listed = json(&baton(home.path(), &declared, &["env", "list", "--json"]));
    assert_eq!(listed, Value::Array(vec![]), "{listed}");
}

#[test]
fn build_reuses_a_snapshot_show_names_it_and_gc_collects_what_nothing_uses() {
    let port = package_index();
    let home = home(port);
    let repo = repo(port, "inputs = [\"requirements.txt\"]");
    let shown = json(&baton(home.path(), &repo, &["env", "show", "--json"]));
    assert_eq!(shown["built"], Value::Null, "{shown}");
    let key = shown["key"].as_str().unwrap().to_owned();

    let built = baton(home.path(), &repo, &["env", "build"]);
    assert!(built.status.success(), "{}", describe(&built));
    assert!(String::from_utf8_lossy(&built.stdout).contains(&format!("snapshot {} built in", &key[..12])));
    let again = baton(home.path(), &repo, &["env", "build"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("reused"), "{}", describe(&again));
    let shown = json(&baton(home.path(), &repo, &["env", "show", "--json"]));
    assert_eq!(shown["built"]["key"], key.as_str(), "{shown}");
    assert_eq!(shown["resolved"]["inputs"][0]["path"], "requirements.txt", "{shown}");

    let rebuilt = baton(home.path(), &repo, &["env", "rebuild", "--clean", "--json"]);
    assert!(rebuilt.status.success(), "{}", describe(&rebuilt));
    assert_eq!(json(&rebuilt)["key"], key.as_str());

    // Used just now: kept. Unused for no time at all: collected.
    let kept = json(&baton(home.path(), &repo, &["env", "gc", "--json"]));
    assert_eq!(kept, Value::Array(vec![]), "{kept}");
    // The rebuild retired the first snapshot rather than deleting it under whoever used it.
    assert_eq!(std::fs::read_dir(home.path().join("environments/retired")).unwrap().count(), 1);
    let collected = json(&baton(home.path(), &repo, &["env", "gc", "--unused-for", "0s", "--json"]));
    assert_eq!(collected.as_array().unwrap().len(), 1, "{collected}");
    assert_eq!(json(&baton(home.path(), &repo, &["env", "list", "--json"])), Value::Array(vec![]));
    assert_eq!(std::fs::read_dir(home.path().join("environments/retired")).unwrap().count(), 0);
}

#[test]
fn a_broken_environment_file_is_refused_with_its_reason() {
    let home = home(1);
    let repo = FixtureRepo::with_files(&[("baton.toml", "[environment]\ninputs = [\"../../etc/passwd\"]\n")]);
    let output = baton(home.path(), &repo, &["env", "show"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("beneath the repository's root"), "{}", describe(&output));
    std::fs::write(home.path().join("given.toml"), "[environment]\nbase = \"debian:bookworm\"\n").unwrap();
    let given = home.path().join("given.toml");
    let output = baton(home.path(), &repo, &["env", "show", "--env", given.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("base = \"debian:bookworm\" is not supported"),
        "{}",
        describe(&output)
    );
    let output = baton(home.path(), &repo, &["env", "build"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("beneath the repository's root"), "{}", describe(&output));
    // An input that is a symlink (here to the host's secrets) is refused by name, never followed.
    let linked =
        FixtureRepo::with_files(&[("baton.toml", "[environment]\ninitialize = \"true\"\ninputs = [\"lock\"]\n")]);
    std::os::unix::fs::symlink("/etc/shadow", linked.path().join("lock")).unwrap();
    linked.commit("a symlinked input");
    let output = baton(home.path(), &linked, &["env", "show"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("lock in "), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not a regular file (mode 120000)"),
        "{}",
        describe(&output)
    );

    // A secret named like the variable the configuration keeps a forge's token in is baton's own.
    std::fs::write(
        home.path().join("config.toml"),
        "[forges.work]\nkind = \"gitlab\"\nremote = \"https://git.work/\"\napi = \"https://git.work/api/v4\"\ntoken_env = \"WORK_TOKEN\"\n",
    )
    .unwrap();
    let asking = FixtureRepo::with_files(&[("baton.toml", "[environment]\nsecrets = [\"WORK_TOKEN\"]\n")]);
    let output = baton(home.path(), &asking, &["env", "show"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("WORK_TOKEN is one of baton's own credentials"),
        "{}",
        describe(&output)
    );
}

/// A secret `initialize` needs reaches it by name, from baton's environment, and never shows in
/// the report; one that is not set is named before anything runs.
#[test]
fn a_secret_reaches_initialize_and_never_its_report() {
    let home = home(1);
    let baton_toml = "[environment]\nsecrets = [\"TEST_INDEX_TOKEN\"]\ninitialize = \"echo using $TEST_INDEX_TOKEN; test -n \\\"$TEST_INDEX_TOKEN\\\" && exit 9\"\n";
    let repo = FixtureRepo::with_files(&[("baton.toml", baton_toml)]);
    let token = "s3cr3t-index-token-5f1a";
    let output = baton_with(home.path(), &repo, &["env", "build"], &[("TEST_INDEX_TOKEN", token)]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    // Exit code 9: the command saw the token; its output shows only its name.
    assert!(said.contains("exit code 9") && said.contains("using [secret TEST_INDEX_TOKEN]"), "{said}");
    assert!(!said.contains(token), "{said}");

    let output = baton(home.path(), &repo, &["env", "build"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("the secret TEST_INDEX_TOKEN that initialize needs is not set"), "{said}");
}
