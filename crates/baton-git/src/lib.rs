//! The one wrapper around the `git` CLI.
//!
//! Every task gets its own branch and worktree, created from a pinned base commit in baton's data
//! directory; the user's checkout (files, index, HEAD) is never written. Every git process runs with
//! inherited `GIT_*` variables removed, no terminal and no prompts, without the system's and the
//! user's configuration, and with hooks, fsmonitor, external diff and textconv off, so neither the
//! caller's environment nor configuration can redirect, hang, or run code through it.
//!
//! A worktree is written by an untrusted agent. The one way it could still name code for git to
//! run is a repository of its own inside it, whose configuration git would read when it looks into
//! it (`git add` checks an embedded repository's status): every call over the worktree refuses to
//! run while one is there ([`GitError::EmbeddedRepositories`]). And in case git has a way to run a
//! program that all this misses, a caller can have every call over a worktree run somewhere without
//! privileges ([`Confinement`], [`Worktree::confined`]).

mod remote;

pub use remote::{Mirror, Remotes, TOKEN_VARIABLE, USERNAME_VARIABLE};

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(io::Error),
    #[error("{0} does not exist")]
    MissingPath(PathBuf),
    #[error("{path} is not a git repository with a working tree ({detail})")]
    NotARepo { path: PathBuf, detail: String },
    #[error("unknown ref `{rev}` in {repo}{hint}")]
    UnknownRef { rev: String, repo: PathBuf, hint: &'static str },
    #[error("branch `{0}` already exists")]
    BranchExists(String),
    #[error("{path} is inside the checkout of {root}; task worktrees must live outside it")]
    InsideCheckout { path: PathBuf, root: PathBuf },
    #[error("worktree path {0} already exists")]
    WorktreeExists(PathBuf),
    #[error(
        "git repositories inside the worktree are refused (git would run what their configuration names): {}; remove their `.git` or add their files as plain files",
        .0.join(", ")
    )]
    EmbeddedRepositories(Vec<String>),
    #[error("cannot read the worktree at {path}: {source}")]
    Walk { path: PathBuf, source: io::Error },
    #[error("cannot lock {path} to change the repository's worktrees: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed { args: String, dir: PathBuf, stderr: String },
}

/// Configuration given on every command line, overriding whatever the repository or user set.
const OVERRIDES: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "diff.external=",
    "-c",
    "submodule.recurse=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "user.name=baton",
    "-c",
    "user.email=baton@localhost",
];

/// The environment of every git process: no prompts, no system or user configuration.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    ("LC_ALL", "C"),
];

/// Runs `git -C dir args...` on the host with the [`OVERRIDES`] and then `overrides`, and returns
/// its output, whatever the exit code.
fn run<I, S>(dir: &Path, overrides: &[String], args: I) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new("git");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GIT_") {
            command.env_remove(name);
        }
    }
    command.envs(ENVIRONMENT.iter().copied()).arg("-C").arg(dir).args(OVERRIDES).args(overrides).args(args);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().map_err(GitError::Spawn)
}

/// Runs git and returns its trimmed stdout, or a [`GitError::Failed`] with its stderr.
fn run_ok(dir: &Path, overrides: &[String], args: &[&str]) -> Result<String, GitError> {
    checked(run(dir, overrides, args)?, dir, args)
}

/// `output`'s trimmed stdout if git succeeded, else a [`GitError::Failed`] with its stderr.
fn checked(output: Output, dir: &Path, args: &[&str]) -> Result<String, GitError> {
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
}

/// Whether a git call over a worktree writes its files (a checkout) or only reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorktreeAccess {
    ReadOnly,
    Writable,
}

/// Somewhere without privileges for baton's git over a worktree the agent wrote (a sandbox): git
/// and anything it might start sit behind the same walls as the agent's own commands.
pub trait Confinement: Send + Sync + std::fmt::Debug {
    /// Runs `argv` to its end with `env` and no input, the worktree at [`CONFINED_WORKTREE`] and
    /// the repository's git directory at its own path, writable; the worktree itself is writable
    /// only where `access` says so. Its output whatever the exit code.
    fn output(&self, argv: &[String], env: &[(String, String)], access: WorktreeAccess) -> io::Result<Output>;
}

/// Where a [`Confinement`] shows the worktree.
pub const CONFINED_WORKTREE: &str = "/workspace";

/// A user's repository, opened at its top level.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    /// Turns off the filter drivers the repository's configuration defines, for every call: a
    /// worktree's files are the agent's, and a checkout that ran a smudge filter would be committed
    /// without its clean one.
    overrides: Vec<String>,
}

/// `-c` settings that turn off every filter driver configured for the repository at `dir`.
fn filter_overrides(dir: &Path) -> Result<Vec<String>, GitError> {
    let pattern = r"^filter\..*\.(clean|smudge|process|required)$";
    // Exit code 1 means no filter is configured.
    let listed = run(dir, &[], ["config", "--get-regexp", pattern])?;
    Ok(String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .flat_map(|key| {
            let off = if key.ends_with(".required") { "false" } else { "" };
            ["-c".to_owned(), format!("{key}={off}")]
        })
        .collect())
}

/// Why baton's worktrees are locked: git must not prune a worktree whose directory looks gone.
const LOCK_REASON: &str =
    "a baton task's worktree: its directory may be on the task's disk, mounted only while baton works on it";

/// A file's content in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// git's object id for it: the same content has the same id anywhere.
    pub object: String,
    pub text: String,
}

/// The size of a change, as `git diff --shortstat` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shortstat {
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// Which files of a commit [`Worktree::export_command`] checks out.
#[derive(Debug, Clone, Copy)]
pub enum Export<'a> {
    All,
    /// These paths (literal, relative to the root), each of which the commit has.
    Only(&'a [String]),
}

/// A task's worktree: a checkout of the task branch that only baton writes.
#[derive(Debug, Clone)]
pub struct Worktree {
    path: PathBuf,
    /// As the repository's.
    overrides: Vec<String>,
    /// Where git runs over it: the host until [`Worktree::confined`].
    confinement: Option<std::sync::Arc<dyn Confinement>>,
}

/// One entry of `git worktree list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    pub path: PathBuf,
    pub head: String,
    /// The short branch name, `None` for a detached HEAD.
    pub branch: Option<String>,
}

/// Lines added and removed in one file; binary files count neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub path: String,
    pub added: u64,
    pub removed: u64,
}

/// The files of `git diff --numstat -z` output (binary files count no lines).
fn file_stats(numstat: &str) -> Vec<FileStat> {
    numstat
        .split('\0')
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let mut fields = entry.splitn(3, '\t');
            let (added, removed, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some(FileStat {
                path: path.to_owned(),
                added: added.parse().unwrap_or(0),
                removed: removed.parse().unwrap_or(0),
            })
        })
        .collect()
}

impl Repo {
    /// Opens the repository that contains `path`.
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        if !path.exists() {
            return Err(GitError::MissingPath(path.to_owned()));
        }
        let output = run(path, &[], ["rev-parse", "--show-toplevel"])?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let detail = stderr.trim().trim_start_matches("fatal: ").to_owned();
            return Err(GitError::NotARepo { path: path.to_owned(), detail });
        }
        let root = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim_end());
        let overrides = filter_overrides(&root)?;
        Ok(Repo { root, overrides })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full commit id that `rev` names.
    pub fn resolve_commit(&self, rev: &str) -> Result<String, GitError> {
        // `--end-of-options` keeps a rev such as `--output=x` from being read as an option.
        let spec = format!("{rev}^{{commit}}");
        let output = run(&self.root, &self.overrides, ["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])?;
        if !output.status.success() {
            let hint = if rev == "HEAD" { " (a new repository needs a first commit)" } else { "" };
            return Err(GitError::UnknownRef { rev: rev.to_owned(), repo: self.root.clone(), hint });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The change from `base` to `rev` (a task branch) as a unified diff, read from this repository's
    /// objects and refs alone: never through a task's worktree, whose files (its `.git` among them)
    /// the agent wrote. No external diff, no textconv.
    pub fn diff(&self, base: &str, rev: &str) -> Result<String, GitError> {
        let args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options", base, rev, "--"];
        checked(run(&self.root, &self.overrides, args)?, &self.root, &args)
    }

    /// Per-file line counts between `base` and `rev`: a line per file whatever the size of the
    /// change, where the diff itself could be as large as what the agent committed.
    pub fn numstat(&self, base: &str, rev: &str) -> Result<Vec<FileStat>, GitError> {
        let args = [
            "diff",
            "--numstat",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--end-of-options",
            base,
            rev,
            "--",
        ];
        Ok(file_stats(&checked(run(&self.root, &self.overrides, args)?, &self.root, &args)?))
    }

    /// How many files and lines changed between `base` and `rev` (binary files count no lines),
    /// from `--shortstat`: a few bytes whatever the size of the change.
    pub fn shortstat(&self, base: &str, rev: &str) -> Result<Shortstat, GitError> {
        let args = ["diff", "--shortstat", "--no-ext-diff", "--no-textconv", "--end-of-options", base, rev, "--"];
        let text = checked(run(&self.root, &self.overrides, args)?, &self.root, &args)?;
        // ` 2 files changed, 5 insertions(+), 1 deletion(-)`; empty for no change.
        let mut stat = Shortstat::default();
        for part in text.split(',') {
            let Some(count) = part.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) else { continue };
            if part.contains("file") {
                stat.files = count;
            } else if part.contains("insertion") {
                stat.insertions = count;
            } else if part.contains("deletion") {
                stat.deletions = count;
            }
        }
        Ok(stat)
    }

    /// The repository's git directory (its objects and refs; shared by its worktrees).
    pub fn common_dir(&self) -> Result<PathBuf, GitError> {
        let common = run_ok(&self.root, &self.overrides, &["rev-parse", "--git-common-dir"])?;
        Ok(self.root.join(common))
    }

    /// The URL the repository's configuration gives its remote `name`, as written there.
    pub fn remote_url(&self, name: &str) -> Result<String, GitError> {
        run_ok(&self.root, &self.overrides, &["remote", "get-url", "--end-of-options", name])
    }

    /// Refuses a path that is, or would be, inside the user's checkout, following symlinks.
    pub fn ensure_outside(&self, path: &Path) -> Result<(), GitError> {
        if resolve(path).starts_with(&self.root) {
            return Err(GitError::InsideCheckout { path: path.to_owned(), root: self.root.clone() });
        }
        Ok(())
    }

    /// Creates `branch` at `base_commit` and checks it out at `path`, which must not exist yet and
    /// must lie outside the user's checkout.
    pub fn create_worktree(&self, branch: &str, path: &Path, base_commit: &str) -> Result<Worktree, GitError> {
        self.ensure_outside(path)?;
        if path.exists() {
            return Err(GitError::WorktreeExists(path.to_owned()));
        }
        let check = run(&self.root, &self.overrides, ["check-ref-format", "--branch", branch])?;
        if !check.status.success() {
            return Err(GitError::Failed {
                args: format!("check-ref-format --branch {branch}"),
                dir: self.root.clone(),
                stderr: "not a valid branch name".into(),
            });
        }
        let exists =
            run(&self.root, &self.overrides, ["show-ref", "--verify", "--quiet", &format!("refs/heads/{branch}")])?;
        if exists.status.success() {
            return Err(GitError::BranchExists(branch.to_owned()));
        }
        let path_text = path.to_string_lossy();
        let add =
            ["worktree", "add", "--quiet", "--lock", "--reason", LOCK_REASON, "-b", branch, &path_text, base_commit];
        let held = self.worktree_lock()?;
        run_ok(&self.root, &self.overrides, &add)?;
        drop(held);
        Worktree::open(path)
    }

    /// Held while baton adds, removes or prunes worktrees of this repository: git's bookkeeping of
    /// worktrees is not safe against two such commands at once (one reads the other's half-made
    /// `.git/worktrees/<name>`), and a server runs many tasks on one repository. The lock file
    /// lives in the repository's git directory, so every baton process on the machine honours it.
    fn worktree_lock(&self) -> Result<std::fs::File, GitError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.common_dir()?.join("baton-worktrees.lock");
        let open = |options: &mut std::fs::OpenOptions| {
            options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(&path)
        };
        // Read-only is enough to lock, so a file another user made serves too.
        let locked = open(std::fs::OpenOptions::new().read(true))
            .or_else(|_| open(std::fs::OpenOptions::new().append(true).create(true)))
            .and_then(|file| {
                rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
                Ok(file)
            });
        locked.map_err(|source| GitError::Lock { path, source })
    }

    /// The task's worktree at `path`: opened if it is there, checked out again from its branch if
    /// only the branch is left, created at `start` otherwise (the base commit, or the last commit a
    /// task that lost its branch made: a mirror made afresh has only what was pushed). Resuming
    /// uses this.
    pub fn ensure_worktree(&self, branch: &str, path: &Path, start: &str) -> Result<Worktree, GitError> {
        if path.exists() {
            return Worktree::open(path);
        }
        let exists =
            run(&self.root, &self.overrides, ["show-ref", "--verify", "--quiet", &format!("refs/heads/{branch}")])?;
        if exists.status.success() {
            self.ensure_outside(path)?;
            self.forget_missing(path)?;
            let path_text = path.to_string_lossy();
            let held = self.worktree_lock()?;
            run_ok(
                &self.root,
                &self.overrides,
                &["worktree", "add", "--quiet", "--lock", "--reason", LOCK_REASON, &path_text, branch],
            )?;
            drop(held);
            return Worktree::open(path);
        }
        self.create_worktree(branch, path, start)
    }

    /// Removes a worktree, discarding uncommitted changes in it; its branch stays. A worktree whose
    /// directory is already gone is pruned instead.
    pub fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        if path.exists() {
            // Twice: once for the uncommitted changes, once for baton's lock.
            let path_text = path.to_string_lossy();
            let _held = self.worktree_lock()?;
            run_ok(&self.root, &self.overrides, &["worktree", "remove", "--force", "--force", &path_text])?;
        } else {
            self.forget_missing(path)?;
        }
        Ok(())
    }

    /// Drops the registration of a worktree whose directory is gone, lock and all.
    fn forget_missing(&self, path: &Path) -> Result<(), GitError> {
        // Fails when it is not registered or not locked, which is as good.
        let _held = self.worktree_lock()?;
        run(&self.root, &self.overrides, ["worktree", "unlock", &path.to_string_lossy()])?;
        run_ok(&self.root, &self.overrides, &["worktree", "prune"]).map(drop)
    }

    /// Every worktree of the repository, the main checkout first.
    pub fn worktrees(&self) -> Result<Vec<WorktreeInfo>, GitError> {
        let held = self.worktree_lock()?;
        let listing = run_ok(&self.root, &self.overrides, &["worktree", "list", "--porcelain"])?;
        drop(held);
        let mut worktrees = Vec::new();
        for block in listing.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut info = WorktreeInfo { path: PathBuf::new(), head: String::new(), branch: None };
            for line in block.lines() {
                if let Some(path) = line.strip_prefix("worktree ") {
                    info.path = PathBuf::from(path);
                } else if let Some(head) = line.strip_prefix("HEAD ") {
                    info.head = head.to_owned();
                } else if let Some(branch) = line.strip_prefix("branch ") {
                    info.branch = Some(branch.trim_start_matches("refs/heads/").to_owned());
                }
            }
            worktrees.push(info);
        }
        Ok(worktrees)
    }
}

/// `path` with symlinks resolved as far as it exists, so a path not yet created can be compared
/// with canonical ones.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            return rest.iter().rev().fold(canonical, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

impl Worktree {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an existing worktree (for a task that resumes).
    pub fn open(path: &Path) -> Result<Worktree, GitError> {
        Repo::open(path).map(|repo| Worktree { path: repo.root, overrides: repo.overrides, confinement: None })
    }

    /// The same worktree, with every later git call over it run in `confinement`.
    pub fn confined(self, confinement: std::sync::Arc<dyn Confinement>) -> Worktree {
        Worktree { confinement: Some(confinement), ..self }
    }

    /// Runs git over the worktree, where its [`Confinement`] says, and returns its output whatever
    /// the exit code.
    fn git(&self, access: WorktreeAccess, args: &[&str]) -> Result<Output, GitError> {
        let Some(confinement) = &self.confinement else {
            return run(&self.path, &self.overrides, args);
        };
        let argv = ["git", "-C", CONFINED_WORKTREE].into_iter().chain(OVERRIDES.iter().copied());
        let argv = argv.map(str::to_owned).chain(self.overrides.iter().cloned());
        let argv: Vec<String> = argv.chain(args.iter().map(|a| (*a).to_owned())).collect();
        let env: Vec<(String, String)> = ENVIRONMENT.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        confinement.output(&argv, &env, access).map_err(GitError::Spawn)
    }

    /// [`Worktree::git`], its trimmed stdout if it succeeded.
    fn git_ok(&self, access: WorktreeAccess, args: &[&str]) -> Result<String, GitError> {
        checked(self.git(access, args)?, &self.path, args)
    }

    /// The repository's shared git directory (objects, refs), which the worktree's `.git` file
    /// points into; a sandbox shows it read-only.
    pub fn common_dir(&self) -> Result<PathBuf, GitError> {
        let dir = PathBuf::from(self.git_ok(WorktreeAccess::ReadOnly, &["rev-parse", "--git-common-dir"])?);
        Ok(if dir.is_absolute() { dir } else { self.path.join(dir) })
    }

    /// The regular file `path` in `commit`, if it has one there, at most `cap` bytes: read from the
    /// commit, never from the worktree's files.
    pub fn file_at(&self, commit: &str, path: &str, cap: u64) -> Result<Option<Blob>, GitError> {
        let Some(object) = self.object_at(commit, path)? else { return Ok(None) };
        let size: u64 =
            self.git_ok(WorktreeAccess::ReadOnly, &["cat-file", "-s", &object])?.parse().unwrap_or(u64::MAX);
        if size > cap {
            return Err(self.refuse_at(commit, path, format!("holds {size} bytes, more than the {cap} baton reads")));
        }
        let text = self.git_ok(WorktreeAccess::ReadOnly, &["cat-file", "blob", &object])?;
        Ok(Some(Blob { object, text }))
    }

    /// The git object of the regular file `path` in `commit`, if it has one there: what names its
    /// content, without reading it.
    pub fn object_at(&self, commit: &str, path: &str) -> Result<Option<String>, GitError> {
        let listed = self.git_ok(WorktreeAccess::ReadOnly, &["ls-tree", "-z", commit, "--", path])?;
        let Some((meta, _)) = listed.split_once('\t') else { return Ok(None) };
        let fields: Vec<&str> = meta.split(' ').collect();
        let [mode, "blob", object] = fields.as_slice() else {
            return Err(self.refuse_at(commit, path, "is not a file".into()));
        };
        if !matches!(*mode, "100644" | "100755") {
            return Err(self.refuse_at(commit, path, format!("is not a regular file (mode {mode})")));
        }
        Ok(Some((*object).to_owned()))
    }

    fn refuse_at(&self, commit: &str, path: &str, what: String) -> GitError {
        GitError::Failed {
            args: format!("ls-tree {commit} -- {path}"),
            dir: self.path.clone(),
            stderr: format!("{path} in {commit} {what}"),
        }
    }

    /// The worktree's own git directory (its `HEAD` and index, in the repository's).
    pub fn git_dir(&self) -> Result<PathBuf, GitError> {
        self.git_ok(WorktreeAccess::ReadOnly, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from)
    }

    /// The command (and its environment) that checks `commit` out into the empty directory
    /// `work_tree`, run wherever the caller runs it (a clean machine) with the repository's git
    /// directory `git_dir` readable there: baton's settings as for every call, an index of its own
    /// at `index`, nothing written to the repository.
    pub fn export_command(
        &self,
        git_dir: &Path,
        commit: &str,
        files: Export<'_>,
        work_tree: &str,
        index: &str,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let git_dir = git_dir.to_string_lossy().into_owned();
        let argv =
            ["git", "--git-dir", &git_dir, "--work-tree", work_tree].into_iter().chain(OVERRIDES.iter().copied());
        let argv = argv.map(str::to_owned).chain(self.overrides.iter().cloned());
        let argv: Vec<String> = match files {
            Export::All => argv.chain(["read-tree", "--reset", "-u", commit].map(str::to_owned)).collect(),
            Export::Only(paths) => {
                let checkout = ["--literal-pathspecs", "checkout", commit, "--"].map(str::to_owned);
                argv.chain(checkout).chain(paths.iter().cloned()).collect()
            }
        };
        let env = ENVIRONMENT.iter().copied().chain([("GIT_INDEX_FILE", index)]);
        (argv, env.map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
    }

    pub fn head(&self) -> Result<String, GitError> {
        self.git_ok(WorktreeAccess::ReadOnly, &["rev-parse", "HEAD"])
    }

    /// Paths below the worktree named `.git` (in any case): repositories the agent embedded.
    /// Walked beneath a descriptor of the worktree, no symlink followed anywhere on a path, so a
    /// tree that changes while it is read cannot lead the walk outside; one directory is open at a
    /// time, so no tree the agent makes can run baton out of descriptors.
    pub fn embedded_repositories(&self) -> Result<Vec<String>, GitError> {
        use rustix::fs::{Dir, FileType, Mode, OFlags, ResolveFlags};
        let walk = |source: rustix::io::Errno| GitError::Walk { path: self.path.clone(), source: source.into() };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let root = rustix::fs::open(&self.path, flags, Mode::empty()).map_err(walk)?;
        let mut found = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let dir = if relative.as_os_str().is_empty() {
                rustix::fs::openat2(&root, ".", flags, Mode::empty(), resolve)
            } else {
                rustix::fs::openat2(&root, &relative, flags, Mode::empty(), resolve)
            };
            let dir = match dir {
                Ok(dir) => dir,
                // Gone, or swapped for a symlink or a file, since it was listed: nothing to walk.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => continue,
                // Anything else (a path too long to open, say) could hide a repository: refuse.
                Err(other) => return Err(walk(other)),
            };
            for entry in Dir::read_from(&dir).map_err(walk)? {
                let entry = entry.map_err(walk)?;
                let name = entry.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                let path = relative.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                // The worktree's own `.git` file at the top is baton's.
                if name.to_bytes().eq_ignore_ascii_case(b".git") && !relative.as_os_str().is_empty() {
                    found.push(path.display().to_string());
                    continue;
                }
                let is_dir = match entry.file_type() {
                    FileType::Unknown => rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory),
                    kind => kind == FileType::Directory,
                };
                if is_dir {
                    pending.push(path);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn refuse_embedded_repositories(&self) -> Result<(), GitError> {
        let found = self.embedded_repositories()?;
        if found.is_empty() { Ok(()) } else { Err(GitError::EmbeddedRepositories(found)) }
    }

    /// Commits every change in the worktree, untracked files included, as baton. Returns the new
    /// commit, or `None` when there was nothing to commit.
    pub fn commit_all(&self, message: &str) -> Result<Option<String>, GitError> {
        self.refuse_embedded_repositories()?;
        self.git_ok(WorktreeAccess::ReadOnly, &["add", "--all"])?;
        let staged = self.git(WorktreeAccess::ReadOnly, &["diff", "--cached", "--quiet"])?;
        if staged.status.success() {
            return Ok(None);
        }
        self.git_ok(WorktreeAccess::ReadOnly, &["commit", "--quiet", "--no-verify", "--message", message])?;
        self.head().map(Some)
    }

    /// Moves the branch forward to `commit`, which must descend from HEAD (the result of work that
    /// started from this branch), and checks it out. For a worktree with no work of its own (a
    /// parent whose subtasks did the work): what is not committed is dropped, ignored files too —
    /// build caches made from the old files (a `.pyc` whose source kept its size and second) would
    /// otherwise be taken for the new ones.
    pub fn fast_forward(&self, commit: &str) -> Result<(), GitError> {
        self.git_ok(WorktreeAccess::ReadOnly, &["merge-base", "--is-ancestor", "HEAD", commit])?;
        self.git_ok(WorktreeAccess::Writable, &["reset", "--hard", "--quiet", commit])?;
        self.git_ok(WorktreeAccess::Writable, &["clean", "-d", "-x", "--force", "--quiet"]).map(|_| ())
    }

    /// Merges `commit` into the branch and commits the result, also when it conflicts: the
    /// conflicted files are committed with git's markers in them, for an agent to resolve, and
    /// returned (none for a clean merge, a fast-forward, or a commit already in the branch). A merge
    /// a crash left half done is committed the same way.
    pub fn merge(&self, commit: &str, message: &str) -> Result<Vec<String>, GitError> {
        let merging = || -> Result<bool, GitError> {
            let head = self.git(WorktreeAccess::ReadOnly, &["rev-parse", "--quiet", "--verify", "MERGE_HEAD"])?;
            Ok(head.status.success())
        };
        if !merging()? {
            let contained = self.git(WorktreeAccess::ReadOnly, &["merge-base", "--is-ancestor", commit, "HEAD"])?;
            if contained.status.success() {
                return Ok(Vec::new());
            }
            let args = ["merge", "--quiet", "--no-edit", "--no-verify", "--message", message, commit];
            let merged = self.git(WorktreeAccess::Writable, &args)?;
            if merged.status.success() {
                return Ok(Vec::new());
            }
            if !merging()? {
                // Not a conflict: git refused the merge itself (an unknown commit, a dirty worktree).
                return checked(merged, &self.path, &args).map(|_| Vec::new());
            }
        }
        let listed = self.git_ok(WorktreeAccess::ReadOnly, &["diff", "--name-only", "--diff-filter=U", "-z"])?;
        let conflicted: Vec<String> = listed.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        let message = format!("{message} (conflicts left in {})", conflicted.join(", "));
        self.git_ok(WorktreeAccess::ReadOnly, &["add", "--all"])?;
        self.git_ok(WorktreeAccess::ReadOnly, &["commit", "--quiet", "--no-verify", "--message", &message])?;
        Ok(conflicted)
    }

    /// Files matching `globs` (git glob pathspecs) that differ from `base` in the working tree,
    /// untracked ones included.
    pub fn changed_since(&self, base: &str, globs: &[String]) -> Result<Vec<String>, GitError> {
        if globs.is_empty() {
            return Ok(Vec::new());
        }
        self.refuse_embedded_repositories()?;
        let specs: Vec<String> = globs.iter().map(|g| format!(":(glob){g}")).collect();
        let mut args = vec!["diff", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv", base, "--"];
        args.extend(specs.iter().map(String::as_str));
        let mut changed: Vec<String> =
            self.git_ok(WorktreeAccess::ReadOnly, &args)?.lines().map(str::to_owned).collect();
        let mut untracked = vec!["ls-files", "--others", "--exclude-standard", "--"];
        untracked.extend(specs.iter().map(String::as_str));
        changed.extend(self.git_ok(WorktreeAccess::ReadOnly, &untracked)?.lines().map(str::to_owned));
        changed.sort();
        changed.dedup();
        Ok(changed)
    }

    /// Puts `paths` back as they are in `base`: changed files restored, files `base` lacks removed.
    pub fn restore(&self, base: &str, paths: &[String]) -> Result<(), GitError> {
        self.refuse_embedded_repositories()?;
        for path in paths {
            let exists = self.git(WorktreeAccess::ReadOnly, &["cat-file", "-e", &format!("{base}:{path}")])?;
            if exists.status.success() {
                self.git_ok(WorktreeAccess::Writable, &["checkout", base, "--", path])?;
            } else {
                self.remove_beneath(path)?;
                // Out of the index too, if it was staged; a path it does not hold is no error.
                self.git_ok(WorktreeAccess::ReadOnly, &["rm", "--cached", "--quiet", "--ignore-unmatch", "--", path])?;
            }
        }
        Ok(())
    }

    /// Removes the file at `relative`, its directory reached beneath the worktree with no symlink on
    /// the way: a directory the agent swapped for a symlink cannot aim the removal at a host file.
    fn remove_beneath(&self, relative: &str) -> Result<(), GitError> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let failed =
            |source: rustix::io::Errno| GitError::Walk { path: self.path.join(relative), source: source.into() };
        let path = Path::new(relative);
        let name = path.file_name().ok_or_else(|| failed(rustix::io::Errno::INVAL))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let root = rustix::fs::open(&self.path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(failed)?;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let dir = rustix::fs::openat2(
            &root,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(failed)?;
        match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    /// The committed changes of the branch since `base`, as a unified diff.
    pub fn diff(&self, base: &str) -> Result<String, GitError> {
        self.git_ok(
            WorktreeAccess::ReadOnly,
            &["diff", "--no-color", "--no-ext-diff", "--no-textconv", base, "HEAD", "--"],
        )
    }

    /// Per-file line counts of the committed changes since `base`.
    pub fn diffstat(&self, base: &str) -> Result<Vec<FileStat>, GitError> {
        let numstat = self.git_ok(
            WorktreeAccess::ReadOnly,
            &["diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", base, "HEAD", "--"],
        )?;
        Ok(file_stats(&numstat))
    }
}
