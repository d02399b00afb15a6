//! The walk for embedded repositories over a tree wider than baton may hold descriptors open: alone
//! in its process, since it lowers the process's limit on open files.

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
