use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs the real `git` in `dir` with a throwaway identity and returns its trimmed stdout; panics with
/// git's stderr on failure, since a fixture that cannot be built is a broken test.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=fixture", "-c", "user.email=fixture@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim_end().to_owned()
}

/// A temporary git repository on branch `main`, removed when dropped.
#[derive(Debug)]
pub struct FixtureRepo {
    dir: tempfile::TempDir,
}

impl FixtureRepo {
    /// An empty repository: no commits yet.
    pub fn empty() -> FixtureRepo {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary directory: {e}"));
        git(dir.path(), &["init", "--quiet"]);
        FixtureRepo { dir }
    }

    /// A repository whose first commit holds `files` (path, content).
    pub fn with_files(files: &[(&str, &str)]) -> FixtureRepo {
        let repo = FixtureRepo::empty();
        repo.write(files);
        repo.commit("first");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the repository on disk after this value is gone, and returns where it is.
    pub fn keep(self) -> std::path::PathBuf {
        self.dir.keep()
    }

    /// Writes files relative to the root, creating directories as needed.
    pub fn write(&self, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = self.path().join(path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
            }
            fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    /// Commits everything and returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "--all"]);
        git(self.path(), &["commit", "--quiet", "--message", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }
}
