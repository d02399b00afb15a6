//! `read_file`, `write_file`, `edit_file` and `list_dir`.

use std::fmt::Write as _;
use std::path::Path;

use rustix::fs::FileType;
use serde::Deserialize;

use crate::workspace::Workspace;
use crate::{Effect, Span, ToolError};

/// Lines shown by one `read_file` call unless the caller asks for a range.
const PAGE_LINES: usize = 2000;
/// A page also stops at this many bytes, so a file of very long lines cannot flood the context.
const PAGE_BYTES: usize = 100 * 1024;
/// Characters of one line shown before it is cut.
const MAX_LINE_CHARS: usize = 2000;
/// Entries `list_dir` shows before it stops.
const MAX_ENTRIES: usize = 1000;

type FileToolResult = Result<(String, Effect), ToolError>;

/// The file's text, or why it has none.
fn text(workspace: &Workspace, relative: &Path) -> Result<String, ToolError> {
    let bytes = workspace.read(relative)?;
    let shown = Workspace::display(relative);
    let binary = |size: usize| {
        ToolError::new(format!("`{shown}` is a binary file ({size} bytes); it cannot be shown or edited as text"))
    };
    if bytes[..bytes.len().min(8000)].contains(&0) {
        return Err(binary(bytes.len()));
    }
    String::from_utf8(bytes).map_err(|e| binary(e.as_bytes().len()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadArgs {
    path: String,
    start_line: Option<u64>,
    end_line: Option<u64>,
}

pub(crate) fn read_file(workspace: &Workspace, args: ReadArgs) -> FileToolResult {
    let relative = workspace.relative(&args.path)?;
    let shown = Workspace::display(&relative);
    let text = text(workspace, &relative)?;
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    if total == 0 {
        return Ok((format!("`{shown}` is empty"), Effect::Read(Span { path: shown, first: 1, last: 0 })));
    }
    let start = args.start_line.unwrap_or(1);
    if start == 0 || start > total as u64 {
        return Err(ToolError::new(format!("`{shown}` has {total} lines; start_line {start} is outside 1..={total}")));
    }
    let start = start as usize;
    let last = match args.end_line {
        Some(end) if (end as usize) < start => {
            return Err(ToolError::new(format!("end_line {end} is before start_line {start}")));
        }
        Some(end) => (end as usize).min(total),
        None => (start + PAGE_LINES - 1).min(total),
    };
    let mut output = String::with_capacity(text.len().min(PAGE_BYTES) + 8 * (last - start + 1));
    let mut shown_last = start - 1;
    for (number, line) in (start..=last).zip(&lines[start - 1..last]) {
        if output.len() > PAGE_BYTES {
            break;
        }
        // Bytes bound characters, so only a line longer in bytes than the limit needs counting.
        match line.char_indices().nth(MAX_LINE_CHARS).filter(|_| line.len() > MAX_LINE_CHARS) {
            None => {
                let _ = write!(output, "{number:>6}\t{line}");
            }
            Some((cut, _)) => {
                let total = line.chars().count();
                let _ = write!(
                    output,
                    "{number:>6}\t{} … (line cut at {MAX_LINE_CHARS} of {total} characters)",
                    &line[..cut]
                );
            }
        }
        output.push('\n');
        shown_last = number;
    }
    if shown_last < total {
        let _ =
            write!(output, "… lines {}-{total} not shown; continue with start_line={}", shown_last + 1, shown_last + 1);
    }
    Ok((output, Effect::Read(Span { path: shown, first: start as u64, last: shown_last as u64 })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteArgs {
    path: String,
    content: String,
}

pub(crate) fn write_file(workspace: &Workspace, args: WriteArgs) -> FileToolResult {
    let relative = workspace.relative(&args.path)?;
    let shown = Workspace::display(&relative);
    workspace.write(&relative, args.content.as_bytes())?;
    let lines = args.content.lines().count();
    Ok((format!("wrote `{shown}`: {lines} lines, {} bytes", args.content.len()), Effect::Changed(vec![shown])))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditArgs {
    path: String,
    old: String,
    new: String,
    #[serde(default)]
    replace_all: bool,
}

/// Line numbers (1-based) where each occurrence of `needle` starts.
fn lines_of(haystack: &str, needle: &str) -> Vec<usize> {
    haystack.match_indices(needle).map(|(at, _)| haystack[..at].matches('\n').count() + 1).collect()
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn edit_file(workspace: &Workspace, args: EditArgs) -> FileToolResult {
    let relative = workspace.relative(&args.path)?;
    let shown = Workspace::display(&relative);
    if args.old.is_empty() {
        return Err(ToolError::new("`old` is empty; to create or replace a whole file use write_file".to_owned()));
    }
    if args.old == args.new {
        return Err(ToolError::new("`old` and `new` are the same; nothing would change".to_owned()));
    }
    let text = text(workspace, &relative)?;
    let found = lines_of(&text, &args.old);
    match (found.len(), args.replace_all) {
        (0, _) => {
            let hint = if squash(&text).contains(&squash(&args.old)) {
                "; it does match if whitespace is ignored, so copy the exact text, indentation included, from read_file"
            } else {
                "; read the file again, it may have changed"
            };
            return Err(ToolError::new(format!("`old` was not found in `{shown}`{hint}")));
        }
        (1, _) | (_, true) => {}
        (n, false) => {
            let at: Vec<String> = found.iter().map(usize::to_string).collect();
            return Err(ToolError::new(format!(
                "`old` occurs {n} times in `{shown}` (lines {}); add surrounding lines to make it unique, or set replace_all",
                at.join(", ")
            )));
        }
    }
    let edited = text.replace(&args.old, &args.new);
    workspace.write(&relative, edited.as_bytes())?;
    let count = found.len();
    let noun = if count == 1 { "occurrence" } else { "occurrences" };
    Ok((format!("edited `{shown}`: replaced {count} {noun} (line {})", found[0]), Effect::Changed(vec![shown])))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    path: String,
    depth: Option<u32>,
}

pub(crate) fn list_dir(workspace: &Workspace, args: ListArgs) -> FileToolResult {
    let relative = workspace.relative(&args.path)?;
    let depth = args.depth.unwrap_or(1);
    if !(1..=5).contains(&depth) {
        return Err(ToolError::new(format!("depth {depth} is outside 1..=5")));
    }
    if workspace.file_type(&relative)? != FileType::Directory {
        return Err(ToolError::new(format!("`{}` is not a directory; use read_file", Workspace::display(&relative))));
    }
    let mut lines = Vec::new();
    let mut omitted = 0;
    walk(workspace, &relative, depth, 0, &mut lines, &mut omitted)?;
    let mut output = if lines.is_empty() { "(empty directory)".to_owned() } else { lines.join("\n") };
    if omitted > 0 {
        let _ = write!(output, "\n… {omitted} more entries not shown; list a subdirectory");
    }
    Ok((output, Effect::None))
}

fn walk(
    workspace: &Workspace,
    relative: &Path,
    depth: u32,
    level: usize,
    lines: &mut Vec<String>,
    omitted: &mut usize,
) -> Result<(), ToolError> {
    let dir = workspace.open_dir(relative)?;
    let reader = rustix::fs::Dir::read_from(&dir).map_err(|e| ToolError::new(format!("cannot list: {e}")))?;
    let mut entries: Vec<(String, FileType)> = reader
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.file_type()))
        .filter(|(name, _)| name != "." && name != ".." && name != ".git")
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        if lines.len() >= MAX_ENTRIES {
            *omitted += 1;
            continue;
        }
        let indent = "  ".repeat(level);
        match kind {
            FileType::Directory => {
                lines.push(format!("{indent}{name}/"));
                if (level as u32) + 1 < depth {
                    walk(workspace, &relative.join(&name), depth, level + 1, lines, omitted)?;
                }
            }
            FileType::Symlink => lines.push(format!("{indent}{name}@")),
            _ => lines.push(format!("{indent}{name}")),
        }
    }
    Ok(())
}
