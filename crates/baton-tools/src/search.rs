//! `search`: a regular expression over the workspace's files, honouring `.gitignore`, as ripgrep
//! would. Files are read through the [`Workspace`], so a symlink swapped in mid-walk cannot make the
//! search read outside it — the `.gitignore` files too: the walker's own reading would follow a
//! `.gitignore` that is a symlink out of the worktree (to `/dev/zero`, to a host file) or block on
//! one that is a FIFO.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::overrides::OverrideBuilder;
use ignore::{Match, WalkBuilder};
use serde::Deserialize;

use crate::workspace::Workspace;
use crate::{Effect, ToolError};

/// Matching lines shown before the search stops.
const MAX_MATCHES: usize = 200;
/// Characters of a matching line shown.
const MAX_LINE_CHARS: usize = 300;
/// The largest `.gitignore` honoured, and the most rules one search compiles from all of them: the
/// rules are the agent's text compiled in baton's own process, so a tree of huge rule files must not
/// cost it unbounded memory and time. Real ones are a few kilobytes.
const MAX_RULES_BYTES: u64 = 64 << 10;
const MAX_RULES_BYTES_IN_ALL: u64 = 1 << 20;
/// Rule files not honoured that the output names one by one.
const NAMED_RULE_FILES: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchArgs {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
}

pub(crate) fn search(workspace: &Workspace, args: SearchArgs) -> Result<(String, Effect), ToolError> {
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&args.pattern)
        .map_err(|e| ToolError::new(format!("invalid regular expression: {e}")))?;
    let relative = workspace.relative(args.path.as_deref().unwrap_or("."))?;
    workspace.file_type(&relative)?;
    let root = workspace.root();
    let ignores = Arc::new(Mutex::new(Ignores {
        workspace: workspace.try_clone()?,
        rules: HashMap::new(),
        budget: MAX_RULES_BYTES_IN_ALL,
        too_large: Vec::new(),
    }));
    let walked_ignores = Arc::clone(&ignores);
    let mut walk = WalkBuilder::new(root.join(&relative));
    let root_of_walk = root.to_owned();
    walk.standard_filters(false).follow_links(false).filter_entry(move |entry| {
        let Ok(inside) = entry.path().strip_prefix(&root_of_walk) else { return false };
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        entry.file_name() != ".git" && !walked_ignores.lock().unwrap_or_else(|e| e.into_inner()).ignored(inside, is_dir)
    });
    if let Some(glob) = &args.glob {
        let mut overrides = OverrideBuilder::new(root);
        overrides.add(glob).map_err(|e| ToolError::new(format!("invalid glob `{glob}`: {e}")))?;
        walk.overrides(overrides.build().map_err(|e| ToolError::new(format!("invalid glob `{glob}`: {e}")))?);
    }
    let mut searcher = SearcherBuilder::new().binary_detection(BinaryDetection::quit(0)).line_number(true).build();

    let mut output = String::new();
    let (mut matches, mut files) = (0usize, 0usize);
    for entry in walk.build().filter_map(Result::ok) {
        if !entry.file_type().is_some_and(|t| t.is_file()) || matches >= MAX_MATCHES {
            continue;
        }
        let Ok(inside) = entry.path().strip_prefix(root) else { continue };
        // Unreadable, binary and oversized files are skipped, as ripgrep does.
        let Ok(bytes) = workspace.read(inside) else { continue };
        let shown = inside.display().to_string();
        let mut found_here = false;
        let _ = searcher.search_slice(
            &matcher,
            &bytes,
            UTF8(|line_number, line| {
                let line = line.trim_end_matches(['\n', '\r']);
                let cut: String = line.chars().take(MAX_LINE_CHARS).collect();
                let marker = if cut.len() < line.len() { " …" } else { "" };
                let _ = writeln!(output, "{shown}:{line_number}: {cut}{marker}");
                matches += 1;
                found_here = true;
                Ok(matches < MAX_MATCHES)
            }),
        );
        files += usize::from(found_here);
    }
    if matches == 0 {
        let _ = write!(output, "no match for `{}`", args.pattern);
    } else if matches >= MAX_MATCHES {
        let _ = write!(output, "… stopped at {MAX_MATCHES} matches; narrow the pattern, the path or the glob");
    } else {
        let _ = write!(output, "{matches} matches in {files} files");
    }
    let too_large = std::mem::take(&mut ignores.lock().unwrap_or_else(|e| e.into_inner()).too_large);
    if !too_large.is_empty() {
        // Named up to a few: the directories are the agent's, and so is how many there are.
        let mut shown: Vec<String> =
            too_large.iter().take(NAMED_RULE_FILES).map(|dir| dir.join(".gitignore").display().to_string()).collect();
        if too_large.len() > NAMED_RULE_FILES {
            shown.push(format!("and {} more", too_large.len() - NAMED_RULE_FILES));
        }
        let _ = write!(
            output,
            "\n(not honoured, over the {MAX_RULES_BYTES}-byte limit for one rule file or {MAX_RULES_BYTES_IN_ALL} in all: {})",
            shown.join(", ")
        );
    }
    Ok((output, Effect::None))
}

/// The `.gitignore` rules of the worktree's directories, each read beneath the worktree when the
/// walk first needs it.
struct Ignores {
    workspace: Workspace,
    rules: HashMap<PathBuf, Option<Gitignore>>,
    /// Bytes of rules this search may still read.
    budget: u64,
    /// Directories whose `.gitignore` was over a limit, so the search did not honour it.
    too_large: Vec<PathBuf>,
}

impl Ignores {
    /// Whether `path` (relative to the worktree) is ignored: the nearest `.gitignore` with a rule
    /// for it decides, as in git. Directories an ignored directory holds are never walked.
    fn ignored(&mut self, path: &Path, is_dir: bool) -> bool {
        let full = self.workspace.root().join(path);
        for dir in path.ancestors().skip(1) {
            let Some(rules) = self.rules_of(dir) else { continue };
            match rules.matched(&full, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    /// The rules of `dir`'s `.gitignore`, when it has one that is a regular file reached with no
    /// symlink (as git reads it), never blocking, and within the limits. A file over a limit is not
    /// honoured at all: rules cut at a byte count could ignore more than the whole file does.
    fn rules_of(&mut self, dir: &Path) -> Option<&Gitignore> {
        if !self.rules.contains_key(dir) {
            let cap = MAX_RULES_BYTES.min(self.budget);
            let text = self.workspace.read_own(&dir.join(".gitignore"), cap + 1);
            let text = text.filter(|text| {
                let within = text.len() as u64 <= cap;
                if !within {
                    self.too_large.push(dir.to_owned());
                }
                within
            });
            let rules = text.and_then(|text| {
                self.budget -= text.len() as u64;
                let mut builder = GitignoreBuilder::new(self.workspace.root().join(dir));
                for line in text.lines() {
                    // A line git would not read either is skipped, not fatal.
                    let _ = builder.add_line(None, line);
                }
                builder.build().ok()
            });
            self.rules.insert(dir.to_owned(), rules);
        }
        self.rules.get(dir).and_then(Option::as_ref)
    }
}
