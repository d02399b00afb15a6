//! baton's own git over a task's worktree runs in a sandbox: whatever git might start (here an
//! alias stands in for a setting baton failed to turn off) has no more of the host than the
//! agent's commands, and baton's checkpoint, restore and checkout still work through it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use baton_engine::SandboxedGit;
use baton_git::{Confinement, Repo, WorktreeAccess};
use baton_sandbox::SandboxConfig;
use baton_testkit::FixtureRepo;

struct Fixture {
    _repo: FixtureRepo,
    data: tempfile::TempDir,
    worktree: baton_git::Worktree,
    git: Arc<SandboxedGit>,
}

fn fixture() -> Fixture {
    let repo = FixtureRepo::with_files(&[("kept.txt", "base\n")]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let opened = Repo::open(repo.path()).unwrap();
    let base = opened.resolve_commit("HEAD").unwrap();
    let worktree = opened.create_worktree("baton/t", &data.path().join("worktree"), &base).unwrap();
    let init = SandboxConfig::locate_init().expect("baton-sandbox-init is not built: run the workspace's tests");
    let config = SandboxConfig::new(init, data.path());
    let git_dir = worktree.common_dir().unwrap();
    let git = Arc::new(SandboxedGit::new(&config, &data.path().join("git"), worktree.path(), git_dir).unwrap());
    Fixture { _repo: repo, data, worktree, git }
}

/// Runs `script` as a git alias in the confinement, as anything git started would run.
fn through_git(git: &SandboxedGit, access: WorktreeAccess, script: &str) -> String {
    let argv = ["git", "-C", "/workspace", "-c", &format!("alias.probe=!sh -c '{script}'"), "probe"];
    let output = git.output(&argv.map(str::to_owned), &[], access).unwrap();
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn what_git_starts_has_no_more_of_the_host_than_the_agent() {
    let f = fixture();
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let host_file = outside.path().join("host-file");
    std::fs::write(&host_file, "host\n").unwrap();
    std::fs::write(f.data.path().join("baton-data"), "baton's own\n").unwrap();
    let script = format!(
        "cat /proc/self/uid_map; echo x >> {}; echo host=$?; echo x >> /workspace/kept.txt; echo worktree=$?; \
         cat {}/baton-data; echo data=$?",
        host_file.display(),
        f.data.path().display()
    );
    let seen = through_git(&f.git, WorktreeAccess::ReadOnly, &script);
    assert!(!seen.contains("4294967295"), "git runs with the host's ids: {seen}");
    assert!(seen.contains("host=2") && seen.contains("worktree=2"), "{seen}");
    assert!(seen.contains("data=1") && !seen.contains("baton's own"), "baton's data directory is hidden: {seen}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
    assert_eq!(std::fs::read_to_string(f.worktree.path().join("kept.txt")).unwrap(), "base\n");

    let writable = through_git(&f.git, WorktreeAccess::Writable, "echo x >> /workspace/kept.txt; echo worktree=$?");
    assert!(writable.contains("worktree=0"), "{writable}");
}

#[test]
fn checkpoints_restores_and_checkouts_work_through_the_confinement() {
    let f = fixture();
    let worktree = f.worktree.clone().confined(f.git.clone());
    let base = worktree.head().unwrap();
    // What the agent makes is root's on the host and may be private to it.
    let private = worktree.path().join("private.txt");
    std::fs::write(&private, "secret work\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(worktree.path().join("kept.txt"), "changed\n").unwrap();

    let commit = worktree.commit_all("checkpoint").unwrap().expect("there were changes to commit");
    assert_eq!(worktree.head().unwrap(), commit);
    let stats = worktree.diffstat(&base).unwrap();
    assert_eq!(stats.len(), 2, "{stats:?}");

    std::fs::write(worktree.path().join("kept.txt"), "tampered\n").unwrap();
    assert_eq!(worktree.changed_since(&commit, &["*.txt".to_owned()]).unwrap(), vec!["kept.txt".to_owned()]);
    worktree.restore(&commit, &["kept.txt".to_owned()]).unwrap();
    assert_eq!(std::fs::read_to_string(worktree.path().join("kept.txt")).unwrap(), "changed\n");
}
