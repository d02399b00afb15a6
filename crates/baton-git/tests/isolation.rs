//! The git wrapper against real repositories.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use baton_git::{FileStat, GitError, Repo, Shortstat};
use baton_testkit::{FixtureRepo, git};

/// A repository with one commit, then uncommitted, staged and untracked changes on top.
fn messy_checkout() -> FixtureRepo {
    let repo =
        FixtureRepo::with_files(&[("lib.rs", "fn a() {}\n"), ("staged.txt", "one\n"), ("docs/guide.md", "# Guide\n")]);
    repo.write(&[("lib.rs", "fn a() { /* edited, not committed */ }\n"), ("staged.txt", "one\ntwo\n")]);
    repo.git(&["add", "staged.txt"]);
    repo.write(&[("untracked.log", "scratch\n")]);
    // A hook that would scribble on the checkout if anything ran it.
    let hook = repo.path().join(".git/hooks/post-commit");
    fs::write(&hook, "#!/bin/sh\necho hooked > \"$(git rev-parse --show-toplevel)/HOOK_RAN\"\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    repo
}

/// Every file of the checkout with its bytes and mode, plus the index and HEAD: what the user sees.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_owned();
            if relative == Path::new(".git") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(relative, (fs::read(&path).unwrap(), meta.permissions().mode()));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    for name in [".git/index", ".git/HEAD"] {
        files.insert(PathBuf::from(name), (fs::read(root.join(name)).unwrap(), 0));
    }
    files
}

#[test]
fn a_task_worktree_never_touches_the_user_checkout() {
    let user = messy_checkout();
    let before = snapshot(user.path());
    let status_before = git(user.path(), &["status", "--porcelain"]);
    let data = tempfile::tempdir().unwrap();

    let repo = Repo::open(&user.path().join("docs")).unwrap();
    assert_eq!(repo.root(), user.path().canonicalize().unwrap());
    let base = repo.resolve_commit("HEAD").unwrap();
    let path = data.path().join("worktrees/task1");
    let worktree = repo.create_worktree("baton/fix-it-abcd1234", &path, &base).unwrap();

    // The worktree holds the base commit, not the user's uncommitted edits.
    assert_eq!(fs::read_to_string(path.join("lib.rs")).unwrap(), "fn a() {}\n");
    assert!(!path.join("untracked.log").exists());
    fs::write(path.join("lib.rs"), "fn a() {}\nfn b() {}\n").unwrap();
    fs::write(path.join("new.rs"), "fn c() {}\n").unwrap();
    fs::remove_file(path.join("docs/guide.md")).unwrap();
    let commit = worktree.commit_all("task work").unwrap().unwrap();
    assert_eq!(worktree.commit_all("nothing new").unwrap(), None);

    assert_eq!(
        worktree.diffstat(&base).unwrap(),
        [
            FileStat { path: "docs/guide.md".into(), added: 0, removed: 1 },
            FileStat { path: "lib.rs".into(), added: 1, removed: 0 },
            FileStat { path: "new.rs".into(), added: 1, removed: 0 },
        ]
    );
    let diff = worktree.diff(&base).unwrap();
    assert!(diff.contains("+fn b() {}") && diff.contains("+++ b/new.rs"), "{diff}");

    let listed = repo.worktrees().unwrap();
    let ours = listed.iter().find(|w| w.branch.as_deref() == Some("baton/fix-it-abcd1234")).unwrap();
    assert_eq!((ours.path.as_path(), ours.head.as_str()), (path.canonicalize().unwrap().as_path(), commit.as_str()));

    repo.remove_worktree(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(repo.worktrees().unwrap().len(), 1);
    // The branch and its commit outlive the worktree: they are the task's result.
    assert_eq!(repo.resolve_commit("baton/fix-it-abcd1234").unwrap(), commit);
    let author = git(user.path(), &["log", "-1", "--format=%an <%ae>", "baton/fix-it-abcd1234"]);
    assert_eq!(author.trim(), "baton <baton@localhost>");

    assert_eq!(snapshot(user.path()), before, "the user's checkout changed");
    assert_eq!(git(user.path(), &["status", "--porcelain"]), status_before);
    assert!(!user.path().join("HOOK_RAN").exists(), "a repository hook ran");
}

#[test]
fn bad_repositories_and_refs_get_precise_errors() {
    let plain = tempfile::tempdir().unwrap();
    let err = Repo::open(plain.path()).unwrap_err();
    assert!(matches!(err, GitError::NotARepo { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{} is not a git repository", plain.path().display())), "{err}");

    let missing = plain.path().join("nope");
    assert_eq!(Repo::open(&missing).unwrap_err().to_string(), format!("{} does not exist", missing.display()));

    let user = messy_checkout();
    let repo = Repo::open(user.path()).unwrap();
    for rev in ["no-such-branch", "--output=/tmp/x", "HEAD~5", ""] {
        let err = repo.resolve_commit(rev).unwrap_err();
        assert_eq!(err.to_string(), format!("unknown ref `{rev}` in {}", repo.root().display()));
    }

    let empty = FixtureRepo::empty();
    let err = Repo::open(empty.path()).unwrap().resolve_commit("HEAD").unwrap_err();
    assert!(err.to_string().ends_with("(a new repository needs a first commit)"), "{err}");
}

#[test]
fn a_branch_or_path_is_never_reused() {
    let user = messy_checkout();
    let repo = Repo::open(user.path()).unwrap();
    let base = repo.resolve_commit("main").unwrap();
    let data = tempfile::tempdir().unwrap();
    repo.create_worktree("baton/a-00000000", &data.path().join("a"), &base).unwrap();

    let err = repo.create_worktree("baton/a-00000000", &data.path().join("b"), &base).unwrap_err();
    assert_eq!(err.to_string(), "branch `baton/a-00000000` already exists");
    let err = repo.create_worktree("baton/b-00000000", &data.path().join("a"), &base).unwrap_err();
    assert!(matches!(err, GitError::WorktreeExists(_)), "{err}");
    let err = repo.create_worktree("baton/..bad", &data.path().join("c"), &base).unwrap_err();
    assert!(err.to_string().ends_with("not a valid branch name"), "{err}");

    let inside = repo.root().join("nested/worktree");
    let err = repo.create_worktree("baton/c-00000000", &inside, &base).unwrap_err();
    assert!(matches!(err, GitError::InsideCheckout { .. }), "{err}");
    assert!(!repo.root().join("nested").exists());
    // A symlink from outside into the checkout is seen through.
    std::os::unix::fs::symlink(repo.root(), data.path().join("link")).unwrap();
    let err = repo.create_worktree("baton/c-00000000", &data.path().join("link/sub"), &base).unwrap_err();
    assert!(matches!(err, GitError::InsideCheckout { .. }), "{err}");

    // A worktree whose directory vanished is pruned rather than an error.
    fs::remove_dir_all(data.path().join("a")).unwrap();
    repo.remove_worktree(&data.path().join("a")).unwrap();
    assert_eq!(repo.worktrees().unwrap().len(), 1);
}

/// The restore's list of files is taken a moment before it removes them; meanwhile the agent's
/// background loop may have swapped their directory for a symlink to a host directory holding a
/// file of the same name. The removal stays beneath the worktree: it fails, and the host file stays.
#[test]
fn a_restore_never_removes_through_a_directory_swapped_for_a_symlink() {
    let repo = FixtureRepo::with_files(&[("tests/test_a.py", "assert True\n")]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    fs::write(outside.path().join("planted.py"), "the host's\n").unwrap();
    let worktree = Repo::open(repo.path()).unwrap().create_worktree("baton/t", &data.path().join("wt"), &base).unwrap();
    fs::write(worktree.path().join("tests/planted.py"), "the agent's\n").unwrap();
    let listed = worktree.changed_since(&base, &["tests/**".into()]).unwrap();
    assert_eq!(listed, ["tests/planted.py"]);

    fs::remove_dir_all(worktree.path().join("tests")).unwrap();
    std::os::unix::fs::symlink(outside.path(), worktree.path().join("tests")).unwrap();
    let refused = worktree.restore(&base, &listed);
    assert!(matches!(refused, Err(GitError::Walk { .. })), "{refused:?}");
    assert_eq!(fs::read_to_string(outside.path().join("planted.py")).unwrap(), "the host's\n");
}

/// A repository the agent makes inside the worktree, in any letter case and at any depth, is found
/// without following symlinks, and every call over the worktree refuses while it is there.
#[test]
fn embedded_repositories_are_found_and_refused() {
    let repo = FixtureRepo::with_files(&[("a.txt", "a\n")]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let worktree = Repo::open(repo.path()).unwrap().create_worktree("baton/e", &data.path().join("wt"), &base).unwrap();
    assert_eq!(worktree.embedded_repositories().unwrap(), Vec::<String>::new());
    fs::create_dir_all(worktree.path().join("deep/er/.GIT")).unwrap();
    fs::create_dir_all(worktree.path().join("x")).unwrap();
    fs::write(worktree.path().join("x/.git"), "gitdir: /elsewhere\n").unwrap();
    // A symlink to a directory holding a repository is not walked into.
    std::os::unix::fs::symlink(repo.path(), worktree.path().join("link")).unwrap();
    assert_eq!(worktree.embedded_repositories().unwrap(), ["deep/er/.GIT", "x/.git"]);
    let refused = worktree.commit_all("work");
    assert!(matches!(&refused, Err(GitError::EmbeddedRepositories(found)) if found.len() == 2), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("deep/er/.GIT, x/.git"));
    assert!(matches!(worktree.changed_since(&base, &["**".into()]), Err(GitError::EmbeddedRepositories(_))));
}

/// Filter drivers are code the repository's configuration names, run over files the agent wrote:
/// baton's own git calls run none, even the user's (a git-lfs repository's work is committed as the
/// files themselves).
#[test]
fn no_filter_driver_runs_over_the_worktree() {
    let repo = FixtureRepo::with_files(&[("a.txt", "a\n"), (".gitattributes", "* filter=marker\n")]);
    let marker = repo.path().join("FILTER_RAN");
    let command = format!("sh -c 'touch {}; cat'", marker.display());
    repo.git(&["config", "filter.marker.clean", &command]);
    repo.git(&["config", "filter.marker.smudge", &command]);
    repo.git(&["config", "filter.marker.required", "true"]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let worktree = Repo::open(repo.path()).unwrap().create_worktree("baton/f", &data.path().join("wt"), &base).unwrap();
    fs::write(worktree.path().join("a.txt"), "changed\n").unwrap();
    fs::write(worktree.path().join("b.txt"), "new\n").unwrap();
    assert!(worktree.commit_all("work").unwrap().is_some());
    worktree.restore(&base, &["a.txt".into()]).unwrap();
    assert_eq!(worktree.changed_since(&base, &["*.txt".into()]).unwrap(), ["b.txt"]);
    assert!(!marker.exists(), "a filter driver ran");
}

#[test]
fn merges_are_committed_whole_and_a_conflict_is_committed_with_its_markers_named() {
    let user = FixtureRepo::with_files(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let base = user.git(&["rev-parse", "HEAD"]);
    let data = tempfile::tempdir().unwrap();
    let repo = Repo::open(user.path()).unwrap();
    // Two branches from the base: one changes a.txt, the other b.txt, a third a.txt differently.
    let branch = |name: &str, file: &str, text: &str| {
        let worktree = repo.create_worktree(name, &data.path().join(name), &base).unwrap();
        fs::write(worktree.path().join(file), text).unwrap();
        worktree.commit_all(name).unwrap().unwrap()
    };
    let (left, right, clash) =
        (branch("left", "a.txt", "ONE\n"), branch("right", "b.txt", "TWO\n"), branch("clash", "a.txt", "uno\n"));
    let target = repo.create_worktree("target", &data.path().join("target"), &base).unwrap();

    assert_eq!(target.merge(&left, "merge left").unwrap(), Vec::<String>::new(), "a fast-forward");
    assert_eq!(target.head().unwrap(), left);
    assert_eq!(target.merge(&right, "merge right").unwrap(), Vec::<String>::new(), "a clean merge");
    let merged = target.head().unwrap();
    assert_eq!(git(target.path(), &["rev-list", "--parents", "-n", "1", "HEAD"]).split(' ').count(), 3);
    assert_eq!(target.merge(&right, "again").unwrap(), Vec::<String>::new(), "already contained");
    assert_eq!(target.head().unwrap(), merged);

    assert_eq!(target.merge(&clash, "merge clash").unwrap(), ["a.txt"]);
    let text = fs::read_to_string(target.path().join("a.txt")).unwrap();
    assert!(text.contains("<<<<<<<") && text.contains("ONE") && text.contains("uno"), "{text}");
    assert_eq!(git(target.path(), &["status", "--porcelain"]), "", "committed, markers and all");
    assert!(git(target.path(), &["log", "-1", "--format=%s"]).ends_with("(conflicts left in a.txt)"));
    assert!(matches!(target.merge("no-such-commit", "m"), Err(GitError::Failed { .. })));

    // A merge a crash interrupted (MERGE_HEAD left behind) is committed on the next try.
    let other = repo.create_worktree("other", &data.path().join("other"), &left).unwrap();
    let stopped = std::process::Command::new("git")
        .args(["-c", "user.name=fixture", "-c", "user.email=fixture@localhost", "merge", "--no-edit", &clash])
        .current_dir(other.path())
        .output()
        .unwrap();
    assert!(!stopped.status.success() && other.path().join(".git").exists());
    assert_eq!(other.merge(&clash, "merge clash").unwrap(), ["a.txt"]);
    assert_eq!(git(other.path(), &["status", "--porcelain"]), "");
}

#[test]
fn a_change_is_sized_in_files_and_lines_whatever_the_repository_configures() {
    let user = FixtureRepo::with_files(&[("a.txt", "one\ntwo\nthree\n"), ("b.txt", "b\n")]);
    let base = user.git(&["rev-parse", "HEAD"]);
    // A configured external diff and word-diff defaults must not change what is counted.
    user.git(&["config", "diff.external", "false"]);
    let data = tempfile::tempdir().unwrap();
    let repo = Repo::open(user.path()).unwrap();
    let worktree = repo.create_worktree("sized", &data.path().join("sized"), &base).unwrap();
    assert_eq!(repo.shortstat(&base, &base).unwrap(), Shortstat::default(), "no change");
    fs::write(worktree.path().join("a.txt"), "one\n2\nthree\nfour\n").unwrap();
    fs::remove_file(worktree.path().join("b.txt")).unwrap();
    fs::write(worktree.path().join("image.bin"), [0_u8, 159, 146, 150, 0, 1]).unwrap();
    let head = worktree.commit_all("sized").unwrap().unwrap();
    let stat = repo.shortstat(&base, &head).unwrap();
    // a.txt: one line replaced and one added; b.txt: one removed; the binary file counts no lines.
    assert_eq!(stat, Shortstat { files: 3, insertions: 2, deletions: 2 });
    let files: Vec<(String, u64, u64)> =
        repo.numstat(&base, &head).unwrap().into_iter().map(|f| (f.path, f.added, f.removed)).collect();
    assert_eq!(files, [("a.txt".into(), 2, 1), ("b.txt".into(), 0, 1), ("image.bin".into(), 0, 0)]);
    assert!(matches!(repo.shortstat(&base, "no-such-rev"), Err(GitError::Failed { .. })));
}

#[test]
fn worktrees_added_and_removed_at_once_on_one_repository_all_succeed() {
    // As a server does: many tasks on one repository, every worktree directory named `worktree`.
    let fixture = FixtureRepo::with_files(&[("lib.rs", "fn a() {}\n")]);
    let repo = Repo::open(fixture.path()).unwrap();
    let base = repo.resolve_commit("HEAD").unwrap();
    let data = tempfile::tempdir().unwrap();
    // Each add reads every registered worktree, so the ones kept make another's half-made one seen.
    for round in 0..4 {
        std::thread::scope(|scope| {
            for n in 0..12 {
                let (repo, base, data) = (&repo, &base, data.path());
                scope.spawn(move || {
                    let path = data.join(format!("{round}-{n}")).join("worktree");
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    repo.create_worktree(&format!("baton/t{round}-{n}"), &path, base).unwrap();
                    if n % 2 == 0 {
                        repo.remove_worktree(&path).unwrap();
                    }
                });
            }
        });
    }
}
