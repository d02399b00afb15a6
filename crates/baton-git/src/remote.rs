//! Remotes: a bare mirror per remote that task worktrees come from, and pushes of task branches.
//!
//! Credentials never appear in a URL, a command line, the journal or a sandbox: git asks a helper
//! baton names on the command line, which answers from `BATON_GIT_TOKEN` in baton's own
//! environment or from a credential store file in git's `store` format. Every other helper is
//! turned off, and only the `https`, `ssh` and `file` transports are allowed (`ext::` would run a
//! command).
//!
//! A mirror's git directory is shown, writable, to baton's confined git over a task's worktree, so
//! its configuration could have been written by something running there: it is rewritten to
//! baton's own before every fetch. A push runs in a git directory of its own that no sandbox ever
//! sees, borrowing the objects of the repository the commit is in.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{GitError, Repo, run, run_ok};

/// The environment variable holding a token for https remotes (a password to git).
pub const TOKEN_VARIABLE: &str = "BATON_GIT_TOKEN";
/// The user name sent with the token; `x-access-token` when it is not set (what GitHub expects of
/// app tokens, and any name does for personal ones).
pub const USERNAME_VARIABLE: &str = "BATON_GIT_USERNAME";

/// The `-c` settings of every command that talks to a remote.
#[derive(Debug, Clone)]
pub struct Remotes {
    /// A credential store file (`https://user:token@host` per line), used after the environment.
    credential_store: Option<PathBuf>,
}

/// A remote's bare mirror in baton's data directory.
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
    url: String,
}

/// The configuration of a mirror: nothing but a bare repository's.
const MIRROR_CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n\tbare = true\n";

/// What a fetch brings into a mirror: the remote's branches beside the mirror's own (the task
/// branches), its default branch, and its tags.
const FETCH_REFSPECS: &[&str] =
    &["+refs/heads/*:refs/remotes/origin/*", "+HEAD:refs/remotes/origin/HEAD", "+refs/tags/*:refs/tags/*"];

impl Remotes {
    /// With the credential store at `store`, when that file exists.
    pub fn new(store: &Path) -> Remotes {
        Remotes { credential_store: store.is_file().then(|| store.to_owned()) }
    }

    fn overrides(&self) -> Vec<String> {
        let mut settings = vec![
            "protocol.allow=never".to_owned(),
            "protocol.https.allow=always".to_owned(),
            "protocol.ssh.allow=always".to_owned(),
            "protocol.file.allow=always".to_owned(),
            // An empty value clears the helpers configured anywhere else.
            "credential.helper=".to_owned(),
            format!(
                "credential.helper=!f() {{ test \"$1\" = get && test -n \"${TOKEN_VARIABLE}\" && printf 'username=%s\\npassword=%s\\n' \"${{{USERNAME_VARIABLE}:-x-access-token}}\" \"${TOKEN_VARIABLE}\"; }}; f"
            ),
        ];
        if let Some(store) = &self.credential_store {
            settings.push(format!("credential.helper=store --file={}", shell_quoted(store)));
        }
        settings.into_iter().flat_map(|setting| ["-c".to_owned(), setting]).collect()
    }

    /// `error` with the token, should git ever print it, replaced by its variable's name.
    fn redacted(&self, error: GitError) -> GitError {
        let Ok(token) = std::env::var(TOKEN_VARIABLE) else { return error };
        match error {
            GitError::Failed { args, dir, stderr } if !token.is_empty() => {
                GitError::Failed { args, dir, stderr: stderr.replace(&token, TOKEN_VARIABLE) }
            }
            other => other,
        }
    }

    /// Pushes `commit` to `branch` of the remote at `url` (never forced: a branch moved by someone
    /// else is refused). `objects` is the git directory that has the commit; the push itself runs
    /// in `publisher`, a git directory baton keeps for it.
    pub fn push(
        &self,
        objects: &Path,
        publisher: &Path,
        url: &str,
        commit: &str,
        branch: &str,
    ) -> Result<(), GitError> {
        let held = lock_beside(publisher)?;
        if !publisher.join("HEAD").exists() {
            init_bare(publisher)?;
        }
        let alternates = publisher.join("objects/info/alternates");
        let objects = objects.join("objects");
        std::fs::write(&alternates, format!("{}\n", objects.display()))
            .map_err(|source| GitError::Walk { path: alternates, source })?;
        drop(held);
        let refspec = format!("{commit}:refs/heads/{branch}");
        let args = ["push", "--quiet", "--no-verify", "--end-of-options", url, &refspec];
        run_ok(publisher, &self.overrides(), &args).map(drop).map_err(|error| self.redacted(error))
    }
}

impl Mirror {
    /// The mirror of `url` at `dir` (which need not exist yet).
    pub fn at(dir: &Path, url: &str) -> Mirror {
        Mirror { dir: dir.to_owned(), url: url.to_owned() }
    }

    /// Creates the mirror if it is missing and fetches the remote's branches and tags into it.
    pub fn fetch(&self, remotes: &Remotes) -> Result<Repo, GitError> {
        let _held = lock_beside(&self.dir)?;
        if !self.dir.join("HEAD").exists() {
            init_bare(&self.dir)?;
        }
        write_atomically(&self.dir.join("config"), MIRROR_CONFIG)?;
        let args: Vec<&str> = ["fetch", "--quiet", "--prune", "--no-recurse-submodules", "--end-of-options", &self.url]
            .into_iter()
            .chain(FETCH_REFSPECS.iter().copied())
            .collect();
        run_ok(&self.dir, &remotes.overrides(), &args).map_err(|error| remotes.redacted(error))?;
        self.repo()
    }

    /// The mirror as it is, without fetching.
    pub fn repo(&self) -> Result<Repo, GitError> {
        if !self.dir.join("HEAD").exists() {
            return Err(GitError::MissingPath(self.dir.clone()));
        }
        Ok(Repo { root: self.dir.clone(), overrides: Vec::new() })
    }

    /// Whether the mirror has `commit` (and everything it needs).
    pub fn has(&self, commit: &str) -> bool {
        let spec = format!("{commit}^{{commit}}");
        run(&self.dir, &[], ["cat-file", "-e", &spec]).is_ok_and(|output| output.status.success())
    }

    /// The commit `rev` names on the remote as last fetched: a branch of it (`HEAD` for its
    /// default one), else a tag or a commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let repo = self.repo()?;
        let remote_branch = if rev.starts_with('-') { None } else { Some(format!("refs/remotes/origin/{rev}")) };
        if let Some(found) = remote_branch.and_then(|branch| repo.resolve_commit(&branch).ok()) {
            return Ok(found);
        }
        repo.resolve_commit(rev).map_err(|_| GitError::UnknownRef {
            rev: rev.to_owned(),
            repo: PathBuf::from(&self.url),
            hint: " (not a branch, tag or commit of the remote)",
        })
    }
}

fn init_bare(dir: &Path) -> Result<(), GitError> {
    std::fs::create_dir_all(dir).map_err(|source| GitError::Walk { path: dir.to_owned(), source })?;
    run_ok(dir, &[], &["init", "--quiet", "--bare"]).map(drop)
}

/// An exclusive lock on `<path>.lock`, held while a mirror or publisher is made or changed.
fn lock_beside(path: &Path) -> Result<std::fs::File, GitError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = PathBuf::from(name);
    let parent = lock.parent().unwrap_or(Path::new("/"));
    let locked = std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::OpenOptions::new().append(true).create(true).open(&lock))
        .and_then(|file| {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(file)
        });
    locked.map_err(|source| GitError::Lock { path: lock, source })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), GitError> {
    let temporary = path.with_extension("baton-new");
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|source| GitError::Walk { path: path.to_owned(), source })
}

/// `path` in single quotes for the shell git runs a helper with.
fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    /// What git's credential machinery answers for `url` with baton's settings and `env`.
    fn filled(remotes: &Remotes, url: &str, env: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("git");
        command.arg("-C").arg(dir.path()).args(remotes.overrides()).args(["credential", "fill"]);
        command.env("GIT_TERMINAL_PROMPT", "0").env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1");
        command.env_remove(TOKEN_VARIABLE).env_remove(USERNAME_VARIABLE).envs(env.iter().copied());
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("url={url}\n\n").as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn git_gets_the_token_from_the_environment_and_then_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("git-credentials");
        std::fs::write(&store, "https://robot:from-the-store@forge.example\n").unwrap();
        let remotes = Remotes::new(&store);
        let answer = filled(&remotes, "https://forge.example/o/r.git", &[(TOKEN_VARIABLE, "from-env")]);
        assert!(answer.contains("username=x-access-token\n") && answer.contains("password=from-env\n"), "{answer}");
        let named =
            filled(&remotes, "https://forge.example/o/r.git", &[(TOKEN_VARIABLE, "t"), (USERNAME_VARIABLE, "me")]);
        assert!(named.contains("username=me\n"), "{named}");
        let stored = filled(&remotes, "https://forge.example/o/r.git", &[]);
        assert!(stored.contains("username=robot\n") && stored.contains("password=from-the-store\n"), "{stored}");
        let nothing = filled(&Remotes::new(&dir.path().join("none")), "https://forge.example/o/r.git", &[]);
        assert!(!nothing.contains("password="), "no prompt, no password: {nothing}");
    }

    #[test]
    fn a_mirrors_configuration_written_by_someone_else_is_not_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir(&source).unwrap();
        let git = |dir: &Path, args: &[&str]| {
            let done = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
            assert!(done.status.success(), "{args:?}: {}", String::from_utf8_lossy(&done.stderr));
        };
        git(&source, &["init", "--quiet", "-b", "main"]);
        git(&source, &["-c", "user.name=a", "-c", "user.email=a@b", "commit", "--quiet", "--allow-empty", "-m", "one"]);
        let url = format!("file://{}", source.display());
        let mirror = Mirror::at(&dir.path().join("mirror.git"), &url);
        let remotes = Remotes::new(&dir.path().join("none"));
        mirror.fetch(&remotes).unwrap();
        // What a process with the mirror writable could leave: a redirection of the remote, and a
        // command for git to run.
        let marker = dir.path().join("ran");
        let config = format!(
            "[url \"file:///nonexistent/\"]\n\tinsteadOf = file://\n[core]\n\tfsmonitor = touch {}\n\tbare = true\n",
            marker.display()
        );
        std::fs::write(dir.path().join("mirror.git/config"), config).unwrap();
        git(&source, &["-c", "user.name=a", "-c", "user.email=a@b", "commit", "--quiet", "--allow-empty", "-m", "two"]);
        mirror.fetch(&remotes).expect("the fetch follows baton's configuration, not the planted one");
        let fetched = mirror.resolve("main").unwrap();
        let head = Command::new("git").arg("-C").arg(&source).args(["rev-parse", "HEAD"]).output().unwrap();
        assert_eq!(fetched, String::from_utf8_lossy(&head.stdout).trim(), "the second commit is fetched");
        assert_eq!(fetched, mirror.resolve("HEAD").unwrap());
        assert!(!marker.exists(), "the planted command ran");
        let config = std::fs::read_to_string(dir.path().join("mirror.git/config")).unwrap();
        assert_eq!(config, MIRROR_CONFIG);
        assert!(matches!(mirror.resolve("nonexistent"), Err(GitError::UnknownRef { .. })));
    }
}
