//! `apply_patch`: several files changed in one call, all or nothing, in the patch format coding
//! models are trained on (`*** Begin Patch` … `*** End Patch`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::workspace::Workspace;
use crate::{Effect, ToolError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchArgs {
    patch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Context(String),
    Removed(String),
    Added(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Hunk {
    /// The text after `@@`, a line to find before the hunk's lines (a function signature, say).
    anchor: String,
    lines: Vec<Line>,
    at_end_of_file: bool,
}

impl Hunk {
    /// The lines the hunk expects to find (`before`), or the lines it leaves in their place.
    fn side(&self, before: bool) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                Line::Context(text) => Some(text.clone()),
                Line::Removed(text) if before => Some(text.clone()),
                Line::Added(text) if !before => Some(text.clone()),
                Line::Removed(_) | Line::Added(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    Add { path: String, content: String },
    Delete { path: String },
    Update { path: String, move_to: Option<String>, hunks: Vec<Hunk> },
}

fn error(number: usize, message: String) -> ToolError {
    ToolError::new(format!("patch line {number}: {message}"))
}

fn parse(patch: &str) -> Result<Vec<Operation>, ToolError> {
    let lines: Vec<&str> = patch.trim().lines().collect();
    if lines.first().map(|l| l.trim_end()) != Some("*** Begin Patch") {
        return Err(ToolError::new("the patch must start with `*** Begin Patch`".to_owned()));
    }
    if lines.last().map(|l| l.trim_end()) != Some("*** End Patch") {
        return Err(ToolError::new("the patch must end with `*** End Patch`".to_owned()));
    }
    let mut operations = Vec::new();
    let body = &lines[1..lines.len() - 1];
    let mut i = 0;
    while i < body.len() {
        let number = i + 2;
        let line = body[i];
        i += 1;
        if let Some(path) = line.strip_prefix("*** Add File: ") {
            let mut content = String::new();
            while i < body.len() && !body[i].starts_with("*** ") {
                let added = body[i]
                    .strip_prefix('+')
                    .ok_or_else(|| error(i + 2, "every line of an added file starts with +".into()))?;
                content.push_str(added);
                content.push('\n');
                i += 1;
            }
            operations.push(Operation::Add { path: path.trim().to_owned(), content });
        } else if let Some(path) = line.strip_prefix("*** Delete File: ") {
            operations.push(Operation::Delete { path: path.trim().to_owned() });
        } else if let Some(path) = line.strip_prefix("*** Update File: ") {
            let mut move_to = None;
            if let Some(target) = body.get(i).and_then(|l| l.strip_prefix("*** Move to: ")) {
                move_to = Some(target.trim().to_owned());
                i += 1;
            }
            let mut hunks: Vec<Hunk> = Vec::new();
            while i < body.len() && (!body[i].starts_with("*** ") || body[i].trim_end() == "*** End of File") {
                let line = body[i];
                let number = i + 2;
                i += 1;
                if let Some(anchor) = line.strip_prefix("@@") {
                    hunks.push(Hunk { anchor: anchor.trim().to_owned(), ..Hunk::default() });
                    continue;
                }
                if hunks.is_empty() {
                    // A first hunk may omit its `@@` line.
                    hunks.push(Hunk::default());
                }
                let hunk = hunks.last_mut().ok_or_else(|| error(number, "a hunk line outside a hunk".into()))?;
                if line.trim_end() == "*** End of File" {
                    hunk.at_end_of_file = true;
                    continue;
                }
                let parsed = match line.chars().next() {
                    Some(' ') => Line::Context(line[1..].to_owned()),
                    Some('-') => Line::Removed(line[1..].to_owned()),
                    Some('+') => Line::Added(line[1..].to_owned()),
                    None => Line::Context(String::new()),
                    Some(_) => {
                        return Err(error(number, format!("`{line}` starts with neither space, -, + nor @@")));
                    }
                };
                hunk.lines.push(parsed);
            }
            if hunks.iter().all(|h| h.lines.is_empty()) && move_to.is_none() {
                return Err(error(number, format!("`{}` has no changes", path.trim())));
            }
            operations.push(Operation::Update { path: path.trim().to_owned(), move_to, hunks });
        } else if line.trim().is_empty() {
            continue;
        } else {
            return Err(error(
                number,
                format!("expected `*** Add File:`, `*** Update File:` or `*** Delete File:`, found `{line}`"),
            ));
        }
    }
    if operations.is_empty() {
        return Err(ToolError::new("the patch changes no file".to_owned()));
    }
    Ok(operations)
}

/// Where `wanted` occurs in `lines` at or after `from`: exactly, else ignoring trailing whitespace,
/// else ignoring all surrounding whitespace. At the end of the file if `at_end`.
fn find(lines: &[String], wanted: &[String], from: usize, at_end: bool) -> Option<usize> {
    let comparisons: [fn(&str, &str) -> bool; 3] =
        [|a, b| a == b, |a, b| a.trim_end() == b.trim_end(), |a, b| a.trim() == b.trim()];
    for same in comparisons {
        let matches = |start: usize| wanted.iter().enumerate().all(|(k, w)| same(&lines[start + k], w));
        if wanted.len() > lines.len() {
            return None;
        }
        if at_end {
            let start = lines.len() - wanted.len();
            if start >= from && matches(start) {
                return Some(start);
            }
        }
        if let Some(start) = (from..=lines.len() - wanted.len()).find(|&s| matches(s)) {
            return Some(start);
        }
    }
    None
}

/// `text` with `hunks` applied, in the file's own line endings (CRLF stays CRLF) and with a final
/// newline only where it had one.
fn apply_hunks(path: &str, text: &str, hunks: &[Hunk]) -> Result<String, ToolError> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let final_newline = text.is_empty() || text.ends_with('\n');
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut cursor = 0;
    for (n, hunk) in hunks.iter().enumerate() {
        let fail =
            |what: String| ToolError::new(format!("hunk {} of `{path}`: {what}; read the file again and retry", n + 1));
        if !hunk.anchor.is_empty() {
            let anchor = lines[cursor..]
                .iter()
                .position(|l| l.contains(&hunk.anchor) || l.trim() == hunk.anchor.trim())
                .ok_or_else(|| fail(format!("cannot find the `@@ {}` line", hunk.anchor)))?;
            cursor += anchor + 1;
        }
        let (old, new) = (hunk.side(true), hunk.side(false));
        let start = if old.is_empty() {
            if hunk.at_end_of_file { lines.len() } else { cursor }
        } else {
            find(&lines, &old, cursor, hunk.at_end_of_file).ok_or_else(|| {
                let preview: Vec<&str> = old.iter().take(3).map(String::as_str).collect();
                fail(format!("cannot find the lines it changes, starting `{}`", preview.join("⏎")))
            })?
        };
        lines.splice(start..start + old.len(), new.iter().cloned());
        cursor = start + new.len();
    }
    let mut result = lines.join(eol);
    if !lines.is_empty() && final_newline {
        result.push_str(eol);
    }
    Ok(result)
}

pub(crate) fn apply_patch(workspace: &Workspace, args: PatchArgs) -> Result<(String, Effect), ToolError> {
    let operations = parse(&args.patch)?;
    // Everything is worked out before anything is written, so a bad hunk changes nothing.
    let mut writes: Vec<(PathBuf, Option<String>)> = Vec::new();
    let mut summary = Vec::new();
    for operation in &operations {
        match operation {
            Operation::Add { path, content } => {
                let relative = workspace.relative(path)?;
                if workspace.file_type(&relative).is_ok() {
                    return Err(ToolError::new(format!(
                        "`{path}` already exists; use `*** Update File:` to change it"
                    )));
                }
                writes.push((relative, Some(content.clone())));
                summary.push(format!("added {path}"));
            }
            Operation::Delete { path } => {
                let relative = workspace.relative(path)?;
                workspace.read(&relative)?;
                writes.push((relative, None));
                summary.push(format!("deleted {path}"));
            }
            Operation::Update { path, move_to, hunks } => {
                let relative = workspace.relative(path)?;
                let bytes = workspace.read(&relative)?;
                let text =
                    String::from_utf8(bytes).map_err(|_| ToolError::new(format!("`{path}` is not UTF-8 text")))?;
                let updated = apply_hunks(path, &text, hunks)?;
                match move_to {
                    Some(target) => {
                        let target_relative = workspace.relative(target)?;
                        if target_relative != relative && workspace.file_type(&target_relative).is_ok() {
                            return Err(ToolError::new(format!(
                                "`{target}` already exists; delete it first if it should be replaced"
                            )));
                        }
                        writes.push((target_relative, Some(updated)));
                        writes.push((relative, None));
                        summary.push(format!("updated {path} and moved it to {target}"));
                    }
                    None => {
                        writes.push((relative, Some(updated)));
                        summary.push(format!("updated {path}"));
                    }
                }
            }
        }
    }
    // What each path held, so a write that fails half-way is undone: the patch applies whole or
    // not at all.
    let before: Vec<Option<Vec<u8>>> = writes.iter().map(|(relative, _)| workspace.read(relative).ok()).collect();
    let mut changed = Vec::new();
    for (done, (relative, content)) in writes.iter().enumerate() {
        let written = match content {
            Some(text) => workspace.write(relative, text.as_bytes()),
            None => workspace.remove(relative),
        };
        if let Err(error) = written {
            let undone = writes[..done].iter().zip(&before).rev().all(|((relative, _), was)| match was {
                Some(bytes) => workspace.write(relative, bytes).is_ok(),
                None => workspace.remove(relative).is_ok(),
            });
            let state = if undone { "nothing was changed" } else { "undoing the earlier changes failed too" };
            return Err(ToolError::new(format!("{error}; the patch was not applied ({state})")));
        }
        changed.push(Workspace::display(relative));
    }
    Ok((summary.join("\n"), Effect::Changed(changed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_apply_with_anchors_and_loose_whitespace() {
        let text = "fn a() {\n    1\n}\n\nfn b() {\n    1\n}\n";
        let hunks = vec![Hunk {
            anchor: "fn b()".into(),
            lines: vec![Line::Removed("    1".into()), Line::Added("    2".into())],
            at_end_of_file: false,
        }];
        assert_eq!(apply_hunks("x", text, &hunks).unwrap(), "fn a() {\n    1\n}\n\nfn b() {\n    2\n}\n");
        let loose =
            vec![Hunk { lines: vec![Line::Removed("1   ".into()), Line::Added("    3".into())], ..Hunk::default() }];
        assert_eq!(apply_hunks("x", "a\n  1\n", &loose).unwrap(), "a\n    3\n");
    }

    #[test]
    fn malformed_patches_are_named_precisely() {
        let err = |p: &str| parse(p).unwrap_err().0;
        assert_eq!(err("hello"), "the patch must start with `*** Begin Patch`");
        assert_eq!(err("*** Begin Patch\n*** Add File: a\n+x"), "the patch must end with `*** End Patch`");
        assert_eq!(err("*** Begin Patch\n*** End Patch"), "the patch changes no file");
        assert_eq!(
            err("*** Begin Patch\n*** Frobnicate: a\n*** End Patch"),
            "patch line 2: expected `*** Add File:`, `*** Update File:` or `*** Delete File:`, found `*** Frobnicate: a`"
        );
        assert_eq!(
            err("*** Begin Patch\n*** Add File: a\nx\n*** End Patch"),
            "patch line 3: every line of an added file starts with +"
        );
        assert_eq!(
            err("*** Begin Patch\n*** Update File: a\n@@\n*x\n*** End Patch"),
            "patch line 4: `*x` starts with neither space, -, + nor @@"
        );
    }
}
