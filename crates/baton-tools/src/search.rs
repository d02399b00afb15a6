//! `search`: a regular expression over the workspace's files, honouring `.gitignore`, as ripgrep
//! would. Files are read through the [`Workspace`], so a symlink swapped in mid-walk cannot make the
//! search read outside it.

use std::fmt::Write as _;

use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use ignore::WalkBuilder;
use ignore::overrides::OverrideBuilder;
use serde::Deserialize;

use crate::workspace::Workspace;
use crate::{Effect, ToolError};

/// Matching lines shown before the search stops.
const MAX_MATCHES: usize = 200;
/// Characters of a matching line shown.
const MAX_LINE_CHARS: usize = 300;

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
    let mut walk = WalkBuilder::new(root.join(&relative));
    walk.hidden(false).require_git(false).follow_links(false).filter_entry(|entry| entry.file_name() != ".git");
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
        return Ok((format!("no match for `{}`", args.pattern), Effect::None));
    }
    if matches >= MAX_MATCHES {
        let _ = write!(output, "… stopped at {MAX_MATCHES} matches; narrow the pattern, the path or the glob");
    } else {
        let _ = write!(output, "{matches} matches in {files} files");
    }
    Ok((output, Effect::None))
}
