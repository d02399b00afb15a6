//! A repository's declared environment (`baton.toml`): what the clean machine runs before the
//! checks, the named commands the agent is told about, and declarations baton cannot honour,
//! refused by name. The task's machines are built from the base commit's declaration; the checks
//! run on the one the agent's commit declares, and a change to it is named to the reviewer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Status, StopReason, TaskState};
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Expect, Reply, Script, Turn};
use common::{Harness, call, stopped, turn};
use serde_json::json;

/// Tests that import `settings.py`, which only `gen.py` makes (and git ignores).
fn generated_settings(baton_toml: Option<&str>) -> FixtureRepo {
    let mut files = vec![
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        ("gen.py", "open('settings.py', 'w').write('OFFSET = 0\\n')\n"),
        (
            "test_calc.py",
            "import settings\nfrom calc import add\n\nassert add(2, 3) + settings.OFFSET == 5, f\"add(2, 3) gave {add(2, 3)}\"\nprint(\"all tests passed\")\n",
        ),
        (".gitignore", "settings.py\n__pycache__/\n"),
    ];
    files.extend(baton_toml.map(|text| ("baton.toml", text)));
    FixtureRepo::with_files(&files)
}

const DECLARED: &str =
    "[environment]\nafter_checkout = [\"python3 gen.py\"]\n\n[environment.commands]\ntest = \"python3 test_calc.py\"\n";

/// The agent makes the settings in its own machine, fixes `add`, sees the tests pass and finishes;
/// `more` comes before the finish.
fn fixing(more: Vec<Reply>) -> Vec<Turn> {
    let mut replies = vec![
        call("g", "shell", json!({"command": "python3 gen.py"})),
        call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
        call("t", "shell", json!({"command": "python3 test_calc.py"})),
    ];
    replies.extend(more);
    replies.push(call("f", "finish", json!({"summary": "add() adds."})));
    replies.into_iter().map(|reply| turn(None, reply)).collect()
}

async fn run(repo: FixtureRepo, turns: Vec<Turn>) -> (Harness, TaskState, Vec<String>) {
    let h = Harness::with_repo(Script { turns, ..Script::default() }, repo).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    (h, state, kinds)
}

fn first_request(h: &Harness) -> String {
    h.server.requests()[0].body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_environment_declares_runs_on_the_clean_machine_and_the_agent_is_told() {
    let (h, state, kinds) = run(generated_settings(Some(DECLARED)), fixing(vec![])).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    let setup = &state.work.last_checks[0];
    assert_eq!((setup.name.as_str(), setup.passed), ("after_checkout `python3 gen.py`", true));
    assert!(state.work.last_checks[1].output.contains("all tests passed"));
    let brief = first_request(&h);
    assert!(brief.contains("- `python3 gen.py`") && brief.contains("- test: `python3 test_calc.py`"), "{brief}");
    // Provenance: the task, the checks and the verified checkpoint name the environment's hash.
    let hash = state.work.environment.clone().expect("the task records its environment");
    assert!(state.work.last_checks.iter().all(|check| check.environment == hash), "{:?}", state.work.last_checks);
    let evidence = state.work.last_evidence.clone().unwrap();
    assert!(evidence.ends_with(&format!("(environment {})", &hash[..12])), "{evidence}");
    assert_eq!(kinds.iter().filter(|k| *k == "environment_prepared").count(), 1, "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_the_agents_machine_has_is_missing_on_the_clean_one_until_the_agent_declares_it() {
    // The first finish: the settings exist only in the agent's machine. Then the agent declares
    // the step that makes them; that change is part of its work, and the checks run on it.
    let mut turns = fixing(vec![]);
    turns.push(Turn {
        expect: Expect { body_contains: Some("No module named 'settings'".into()), ..Expect::default() },
        ..turn(None, call("d", "write_file", json!({"path": "baton.toml", "content": DECLARED})))
    });
    turns.push(turn(None, call("f2", "finish", json!({"summary": "add() adds; gen.py runs after checkout."}))));
    let h = Harness::with_repo(Script { turns, ..Script::default() }, generated_settings(None)).await;
    let id = h.create().await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    // The task's own environment (nothing declared), then the agent's, for its second verification.
    let hashes: Vec<String> = h
        .events_matching(&id, |event| match event {
            baton_core::Event::EnvironmentPrepared { hash, .. } => Some(hash),
            _ => None,
        })
        .await;
    assert_eq!(hashes.len(), 2, "{kinds:?}");
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(state.work.last_checks[0].name, "after_checkout `python3 gen.py`");
    assert!(state.work.last_checks.iter().all(|check| check.environment == hashes[1]));
    let evidence = state.work.last_evidence.clone().unwrap();
    let changed = format!("(environment {}, changed by the agent from {})", &hashes[1][..12], &hashes[0][..12]);
    assert!(evidence.ends_with(&changed), "{evidence}");
    let committed = h.repo.git(&["show", &format!("{}:baton.toml", state.work.last_commit.clone().unwrap())]);
    assert!(committed.contains("python3 gen.py"), "the verified commit is not the tree that was checked");
}

/// A reviewer reads a change the agent made to the environment, named in its brief: what runs
/// before the checks could decide whether they pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_environment_is_named_to_the_reviewer() {
    let declare = call("d", "write_file", json!({"path": "baton.toml", "content": DECLARED}));
    let mut turns = fixing(vec![declare]);
    turns.push(Turn {
        expect: Expect { body_contains: Some("## The environment changed".into()), ..Expect::default() },
        ..turn(None, call("r", "report_findings", json!({"findings": []})))
    });
    let h = Harness::with_repo(Script { turns, ..Script::default() }, generated_settings(None)).await;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_step_that_fails_is_reported_and_no_check_runs() {
    let failing = "[environment]\nafter_checkout = [\"python3 gen.py\", \"echo no index here >&2; exit 3\"]\n";
    let mut turns = fixing(vec![]);
    turns.push(Turn {
        expect: Expect { body_contains: Some("after_checkout `echo no index here".into()), ..Expect::default() },
        ..turn(None, call("f2", "finish", json!({"summary": "add() adds."})))
    });
    let (h, state, kinds) = run(generated_settings(Some(failing)), turns).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::ChecksFailed), "{kinds:?}");
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let results: Vec<(&str, bool)> = state.work.last_checks.iter().map(|c| (c.name.as_str(), c.passed)).collect();
    assert_eq!(results.len(), 2, "the checks never ran: {results:?}");
    assert!(!results[1].1 && state.work.last_checks[1].output.contains("no index here"), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declaration_baton_cannot_honour_pauses_the_task_with_its_name() {
    let unsupported = "[environment]\npackages = [\"python3-numpy\"]\n";
    let (h, state, kinds) = run(generated_settings(Some(unsupported)), vec![]).await;
    assert_eq!(stopped(&state), (Status::Paused, Some(StopReason::EnvironmentError)), "{kinds:?}");
    let detail = &state.stop.as_ref().unwrap().detail;
    assert!(detail.contains("baton.toml: [environment] `packages` is not supported: Debian packages need"), "{detail}");
    assert!(h.server.requests().is_empty(), "no model call was made");
}

/// `baton.toml` is the repository's, so it may be hostile: a symlink (to `/proc/self/environ`, say),
/// a huge file or a declaration asking for the variable baton's configuration keeps a provider's key
/// in is refused by name, read from the commit and never from a path on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_environment_file_is_refused_without_being_followed_or_read_whole() {
    let huge = format!("# {}\n", "x".repeat(100 * 1024));
    for (repo, says) in [
        (
            {
                let repo = generated_settings(None);
                std::os::unix::fs::symlink("/proc/self/environ", repo.path().join("baton.toml")).unwrap();
                repo.commit("a symlinked environment");
                repo
            },
            "is not a regular file (mode 120000)",
        ),
        (generated_settings(Some(huge.as_str())), "more than the 65536 baton reads"),
        (
            generated_settings(Some("[environment]\nsecrets = [\"SCRIPTED_PROVIDER_KEY\"]\n")),
            "SCRIPTED_PROVIDER_KEY is one of baton's own credentials",
        ),
    ] {
        let (h, state, kinds) = run(repo, vec![]).await;
        assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::EnvironmentError), "{kinds:?}");
        let detail = &state.stop.as_ref().unwrap().detail;
        assert!(detail.contains(says) && !detail.contains("PATH="), "{detail}");
        assert!(h.server.requests().is_empty());
    }
}
