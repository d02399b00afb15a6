//! The walk for embedded repositories over trees an agent makes to defeat it: wider than baton may
//! hold descriptors open, deeper than a path the kernel opens in one go. In a process of their own,
//! since one lowers the process's limit on open files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;

use baton_git::Repo;
use baton_testkit::FixtureRepo;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

#[test]
fn a_tree_of_thousands_of_directories_is_walked_with_a_few_descriptors() {
    let repo = FixtureRepo::with_files(&[("a.txt", "a\n")]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let worktree = Repo::open(repo.path()).unwrap().create_worktree("baton/w", &data.path().join("wt"), &base).unwrap();
    let wide = worktree.path().join("wide");
    for n in 0..5000 {
        fs::create_dir_all(wide.join(n.to_string())).unwrap();
    }
    fs::create_dir(wide.join("4999/.git")).unwrap();
    let before = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(256), maximum: before.maximum }).unwrap();
    let found = worktree.embedded_repositories();
    setrlimit(Resource::Nofile, before).unwrap();
    assert_eq!(found.unwrap(), ["wide/4999/.git"]);
}

/// A repository below a path longer than the kernel opens in one go cannot hide from the walk: the
/// walk refuses rather than skip what it cannot open.
#[test]
fn a_repository_below_a_path_too_long_to_open_is_not_skipped() {
    use rustix::fs::{Mode, OFlags};
    let repo = FixtureRepo::with_files(&[("a.txt", "a\n")]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let worktree = Repo::open(repo.path()).unwrap().create_worktree("baton/l", &data.path().join("wt"), &base).unwrap();
    let name = "d".repeat(200);
    let mut dir = rustix::fs::open(worktree.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    // 25 levels of 201 bytes: past PATH_MAX (4096), built one directory at a time.
    for _ in 0..25 {
        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, name.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    rustix::fs::mkdirat(&dir, ".git", Mode::from_raw_mode(0o755)).unwrap();
    let found = worktree.embedded_repositories();
    assert!(found.is_err(), "the repository was skipped: {found:?}");
    assert!(worktree.commit_all("work").is_err());
    // Let the temporary directory go: remove the deep tree from the bottom.
    drop(dir);
    std::process::Command::new("rm").arg("-rf").arg(worktree.path().join(&name)).status().unwrap();
}
