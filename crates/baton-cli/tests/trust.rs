//! The trust boundary, attacked through `baton run` as a user runs it: the real binary (its own
//! sandbox init), a fixture repository, and the scripted model server playing a hostile agent.
//! Each test reproduces a way around the sandbox that baton's own host-side work once opened.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Output;

mod common;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Script, ScriptedServer, Turn};
use common::{calc_repo, call, describe, package_index};
use serde_json::{Value, json};

fn shell(id: &str, command: &str) -> Turn {
    call(id, "shell", json!({ "command": command }))
}

/// `baton run` on `repo` with the scripted model; returns the process output and the run's events.
async fn run(home: &Path, repo: &FixtureRepo, server: &ScriptedServer, env: &[(&str, &str)]) -> (Output, Vec<Value>) {
    run_configured(home, repo, server, env, "").await
}

/// [`run`] with `config` as baton's configuration file.
async fn run_configured(
    home: &Path,
    repo: &FixtureRepo,
    server: &ScriptedServer,
    env: &[(&str, &str)],
    config: &str,
) -> (Output, Vec<Value>) {
    std::fs::write(home.join("no-config.toml"), config).unwrap();
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command
        .args(["run", "Make add() add", "--repo"])
        .arg(repo.path())
        .args(["--check", "python3 test_calc.py", "--model", "openai-compatible/scripted", "--no-review", "--json"])
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", home.join("no-config.toml"))
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))
        .env_remove("BATON_MODEL");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::process::Command::from(command).output().await.unwrap();
    let events = String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (output, events)
}

/// The result of tool call `call` among a run's events.
fn result(events: &[Value], output: &Output, call: &str) -> String {
    events
        .iter()
        .find(|e| e["event"]["type"] == "tool_call_finished" && e["event"]["call_id"] == call)
        .and_then(|e| e["event"]["output"].as_str())
        .unwrap_or_else(|| panic!("no result for {call}\n{}", describe(output)))
        .to_owned()
}

/// The one task of `home`: its id, its disk attached while `look` sees its worktree.
fn with_machine<T>(home: &Path, look: impl FnOnce(&str, &Path) -> T) -> T {
    let tasks: Vec<_> = std::fs::read_dir(home.join("machines")).unwrap().map(|t| t.unwrap().file_name()).collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let id = tasks[0].to_str().unwrap();
    let layout = baton_engine::TaskLayout::of(home, &baton_core::TaskId::parse(id).unwrap());
    let _disk = layout.attach_disk(None).unwrap();
    look(id, &layout.worktree())
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n"
}

/// The reviewer's proof of concept: a repository the agent makes inside the worktree, whose own
/// configuration defines a clean filter, gets that filter run by baton's `git add` on the host once
/// a checkpoint has recorded it and a file in it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_repository_never_gets_its_filter_run_on_the_host() {
    let repo = calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // A host path the sandbox sees read-only: only code running on the host can create it.
    let marker = home.path().join("host-code-ran");
    let git = "git -c user.name=a -c user.email=a@example.com";
    let plant = format!(
        "git init -q x && git -C x config filter.p.clean \"sh -c 'touch {marker} 2>/dev/null; cat'\" \
         && echo '* filter=p' > x/.gitattributes && echo a > x/f && {git} -C x add . && {git} -C x commit -qm m \
         && echo planted",
        marker = marker.display()
    );
    let mut turns = vec![shell("c1", &plant)];
    // Checkpoints come every ten steps: the first records the repository, the second re-reads it.
    turns.extend((2..=10).map(|n| shell(&format!("c{n}"), &format!("echo {n}"))));
    turns.push(shell("c11", "touch x/f && echo touched"));
    turns.extend((12..=20).map(|n| shell(&format!("c{n}"), &format!("echo {n}"))));
    turns.push(call("c21", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})));
    turns.push(call("c22", "finish", json!({"summary": "add() adds."})));
    // Told why the checks wait, the agent turns its repository into plain files.
    turns.push(shell("c23", "rm -rf x/.git && echo removed"));
    turns.push(call("c24", "finish", json!({"summary": "add() adds; x is plain files."})));
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();

    let (output, events) = run(home.path(), &repo, &server, &[]).await;
    assert!(!marker.exists(), "the agent's git filter ran on the host\n{}", describe(&output));
    assert!(output.status.success(), "{}", describe(&output));
    let told: Vec<&str> = events
        .iter()
        .filter(|e| e["event"]["type"] == "feedback")
        .filter_map(|e| e["event"]["text"].as_str())
        .filter(|text| text.contains("git repositories inside the worktree are refused") && text.contains("x/.git"))
        .collect();
    // Both checkpoints and the first verification refused, and said why.
    assert!(told.len() >= 3, "{told:?}\n{}", describe(&output));
    // What was verified holds x's file as a plain file, not as a link to a repository.
    let verified = events
        .iter()
        .rev()
        .find_map(|e| (e["event"]["type"] == "checkpointed").then(|| e["event"]["commit"].as_str().unwrap().to_owned()))
        .expect("a verified commit");
    let tree = std::process::Command::new("git")
        .args(["-C"])
        .arg(repo.path())
        .args(["ls-tree", "-r", &verified, "--", "x"])
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.starts_with("100644 blob") && tree.contains("\tx/f"), "{tree}");
}

/// Instruction files are baton's own reads of the worktree: a repository (or an agent) that makes
/// `AGENTS.md` a symlink to baton's environment, or `.baton/BUILD.md` one to an endless device,
/// must get neither into the prompt nor baton's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruction_files_that_are_symlinks_are_never_followed() {
    let repo = calc_repo();
    std::fs::create_dir_all(repo.path().join(".baton")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", repo.path().join("AGENTS.md")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", repo.path().join(".baton/BUILD.md")).unwrap();
    std::fs::create_dir_all(repo.path().join("pkg")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", repo.path().join("pkg/AGENTS.md")).unwrap();
    repo.commit("instructions that lead out");
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let turns = vec![
        call("c1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("c2", "finish", json!({"summary": "add() adds."})),
    ];
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();
    let canary = "canary-4f1b9e-baton-environment";

    let (output, events) = run(home.path(), &repo, &server, &[("BATON_TEST_CANARY", canary)]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let journal = serde_json::to_string(&events).unwrap();
    assert!(!journal.contains(canary), "baton's environment reached the journal");
    for request in server.requests() {
        assert!(!request.body.to_string().contains(canary), "baton's environment reached the model");
    }
    let leg = events.iter().find(|e| e["event"]["type"] == "leg_started").expect("a leg");
    let system = leg["event"]["system"].as_str().unwrap();
    assert!(!system.contains("Repository instructions"), "a symlinked instruction file was read: {system}");
}

/// The attacks on the kernel an agent can make from its own shell: each refused, the task going on
/// to end verified, and nothing with a setuid bit left in the worktree on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_attacks_on_the_kernel_are_refused_and_the_task_goes_on() {
    let repo = calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let turns = vec![
        call("c1", "write_file", json!({"path": "attempts.py", "content": baton_testkit::hostile::KERNEL_ATTEMPTS})),
        shell("c2", "python3 attempts.py"),
        shell("c3", "cp /bin/true escalate; chmod 4755 escalate; echo chmod=$?; ls /dev; tty; echo done"),
        call("c4", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("c5", "finish", json!({"summary": "add() adds."})),
    ];
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();

    let (output, events) = run(home.path(), &repo, &server, &[]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let result = |call| result(&events, &output, call);
    let unrefused = baton_testkit::hostile::unrefused(&result("c2"));
    assert!(unrefused.is_empty(), "{unrefused:?}");
    let escalation = result("c3");
    assert!(escalation.contains("chmod=1") && escalation.contains("not a tty"), "{escalation}");
    assert!(!escalation.lines().any(|l| l == "tty"), "{escalation}");
    let mode = with_machine(home.path(), |_, worktree| std::fs::metadata(worktree.join("escalate")).unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(&mode.permissions());
    assert_eq!(mode & 0o6000, 0, "escalate has mode {mode:o}");
}

/// Filling the task's disk (the worktree and the task's home share it) is "no space left" for the
/// agent's command, which goes on to finish the task; the host's disk holds no more than the
/// quota, and the store keeps working. Loop devices are root's, so rootless baton has no disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_the_tasks_disk_stops_at_its_quota_and_the_task_goes_on() {
    if !is_root() {
        eprintln!("skipped: only root-mode baton gives a task a disk of its own");
        return;
    }
    let repo = calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let turns = vec![
        // ext4 keeps what a failed fallocate got: each attempt cleans up after itself.
        shell("c1", "fallocate -l 200M /workspace/big; echo worktree=$?; rm /workspace/big"),
        shell("c2", "fallocate -l 200M /root/big; echo home=$?; rm /root/big"),
        shell("c3", "fallocate -l 40M /workspace/a && fallocate -l 40M /root/b; echo shared=$?"),
        shell(
            "c4",
            "rm /workspace/a; dd if=/dev/zero of=/root/c bs=1M count=100; rm /root/c /root/b; df -m /workspace | tail -1",
        ),
        call("c5", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("c6", "finish", json!({"summary": "add() adds."})),
    ];
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();

    let (output, events) = run_configured(home.path(), &repo, &server, &[], "[sandbox]\ndisk_mib = 64\n").await;
    assert!(output.status.success(), "{}", describe(&output));
    let result = |call| result(&events, &output, call);
    for (call, failed) in [("c1", "worktree=1"), ("c2", "home=1"), ("c3", "shared=1"), ("c4", "dd")] {
        let text = result(call);
        assert!(text.contains("No space left on device") && text.contains(failed), "{call}: {text}");
    }
    let image = std::fs::read_dir(home.path().join("disks")).unwrap().next().unwrap().unwrap().path();
    let on_host = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&image).unwrap()) * 512;
    assert!(on_host <= 64 << 20, "the disk takes {on_host} bytes of the host's");
    let verified = with_machine(home.path(), |id, worktree| {
        assert!(!worktree.join("big").exists() && worktree.join("calc.py").is_file());
        let show = std::process::Command::cargo_bin("baton")
            .unwrap()
            .args(["task", "show", id, "--json"])
            .env("BATON_HOME", home.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&show.stdout).into_owned()
    });
    assert!(verified.contains("\"done\""), "{verified}");
}

/// A command that hogs the processors is held at the task's share, and the agent is told so in the
/// command's result (it is slowness the code is not to blame for). The cpu cgroup is root's here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_hog_is_held_at_the_tasks_share_and_the_agent_is_told() {
    if !is_root() {
        eprintln!("skipped: an ordinary user has no cpu cgroup here");
        return;
    }
    let repo = calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let turns = vec![
        shell("c1", "timeout 1 sh -c 'while :; do :; done'; echo hogged"),
        call("c2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("c3", "finish", json!({"summary": "add() adds."})),
    ];
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();

    let (output, events) = run_configured(home.path(), &repo, &server, &[], "[sandbox]\ncpus = 0.1\n").await;
    assert!(output.status.success(), "{}", describe(&output));
    let hog = result(&events, &output, "c1");
    assert!(hog.contains("hogged") && hog.contains("at the task's CPU share"), "{hog}");
}

/// The tests need a package the host lacks, from an index the network policy allows. Declared in
/// `baton.toml`, it is installed on the clean machine and the task is verified; installed only by
/// the agent in its own machine, the checks fail there and the agent is told what was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_from_an_allowed_index_counts_only_when_the_environment_declares_it() {
    let port = package_index();
    let install = format!(
        "python3 -m pip install -q --user --break-system-packages --no-cache-dir --disable-pip-version-check --no-index --trusted-host packages.test --find-links http://packages.test:{port}/"
    );
    let config =
        format!("[network]\nallow = [\"packages.test\"]\nresolve = {{ \"packages.test\" = \"127.0.0.1:{port}\" }}\n");
    let test = "from calcextra import double\nfrom calc import add\nassert add(2, 3) == 5 and double(2) == 4, 'wrong'\nprint('ok')\n";
    for declared in [true, false] {
        let initialize = format!("{install} -r requirements.txt");
        let baton_toml = format!("[environment]\ninitialize = {initialize:?}\ninputs = [\"requirements.txt\"]\n");
        let mut files = vec![
            ("calc.py", "def add(a, b):\n    return a - b\n"),
            ("test_calc.py", test),
            ("requirements.txt", "calcextra\n"),
        ];
        if declared {
            files.push(("baton.toml", baton_toml.as_str()));
        }
        let install = format!("{install} calcextra");
        let repo = FixtureRepo::with_files(&files);
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let turns = vec![
            shell("c1", &format!("{install} && echo installed")),
            call("c2", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            shell("c3", "python3 test_calc.py"),
            call("c4", "finish", json!({"summary": "add() adds."})),
            call("c5", "finish", json!({"summary": "add() adds."})),
            call("c6", "finish", json!({"summary": "add() adds."})),
        ];
        let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();
        let (output, events) = run_configured(home.path(), &repo, &server, &[], &config).await;
        assert!(result(&events, &output, "c1").contains("installed"), "{}", describe(&output));
        assert!(result(&events, &output, "c3").contains("ok"), "the agent's own machine has it: {}", describe(&output));
        let end = events.last().map(|e| e["event"]["reason"].clone()).unwrap_or_default();
        let checks: Vec<String> = events
            .iter()
            .filter(|e| e["event"]["type"] == "check_finished")
            .map(|e| e["event"]["output"].as_str().unwrap_or_default().to_owned())
            .collect();
        if declared {
            assert_eq!(end, "verified", "{}", describe(&output));
            // Provenance: the task and its verified checkpoint name the environment's hash.
            let hash = events
                .iter()
                .find(|e| e["event"]["type"] == "environment_prepared")
                .and_then(|e| e["event"]["hash"].as_str())
                .unwrap_or_else(|| panic!("no environment_prepared: {}", describe(&output)))
                .to_owned();
            let id = with_machine(home.path(), |id, _| id.to_owned());
            let shown = std::process::Command::cargo_bin("baton")
                .unwrap()
                .args(["task", "show", &id])
                .env("BATON_HOME", home.path())
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
            assert!(shown.contains(&format!("environment {}", &hash[..12])), "{shown}");
            assert!(shown.contains(&format!("(environment {})", &hash[..12])), "{shown}");
        } else {
            assert_eq!(end, "checks_failed", "{}", describe(&output));
            assert!(checks.iter().all(|c| c.contains("No module named 'calcextra'")), "{checks:?}");
        }
    }
}
