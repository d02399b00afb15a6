//! What a task's pull request says: a summary, what was checked, the review's findings, the cost
//! and where the task is seen.

/// What a pull request reports of a task.
#[derive(Debug, Clone)]
pub struct Report {
    pub task: String,
    pub request: String,
    /// The agent's summary of its work.
    pub summary: String,
    /// The commit the checks judged.
    pub commit: String,
    pub checks: Vec<Check>,
    /// `None`: the task is not reviewed.
    pub findings: Option<Vec<Finding>>,
    /// What the task spent, as it is shown elsewhere (`0.42 credits`).
    pub cost: String,
    /// Where the task is seen, when there is such a place.
    pub link: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub command: String,
    pub passed: bool,
    pub exit_code: i32,
    pub duration_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    pub title: String,
    /// `open`, `resolved`, `dismissed`.
    pub status: String,
    /// The commit that resolved it.
    pub commit: Option<String>,
}

/// At most this many characters of the request make the title.
const TITLE_CHARS: usize = 72;

impl Report {
    /// The first line of the request, shortened to fit a title.
    pub fn title(&self) -> String {
        let line = self.request.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("baton task");
        if line.chars().count() <= TITLE_CHARS {
            return line.to_owned();
        }
        let cut: String = line.chars().take(TITLE_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }

    /// The body, in Markdown. What the model, a check or a repository wrote is shown as code, never
    /// as Markdown: the forge would otherwise render its links and images, notify its mentions,
    /// and close the issues its "Fixes #N" names when the pull request is merged.
    pub fn body(&self) -> String {
        let mut body = format!("## Summary\n\n{}\n## Testing\n\n", fenced(&self.summary));
        body += &format!("baton ran the checks on a clean checkout of {}:\n\n", short(&self.commit));
        for check in &self.checks {
            let mark = if check.passed { "passed" } else { "failed" };
            body += &format!(
                "- {}: {mark} (exit code {}, {:.1} s)\n",
                code(&check.command),
                check.exit_code,
                check.duration_ms as f64 / 1000.0
            );
        }
        body += "\n## Review\n\n";
        match &self.findings {
            None => body += "Not reviewed.\n",
            Some(findings) if findings.is_empty() => body += "The reviewer found nothing to change.\n",
            Some(findings) => {
                for finding in findings {
                    let by = finding.commit.as_deref().map(|c| format!(" in {}", short(c))).unwrap_or_default();
                    body += &format!(
                        "- {} **{}** ({}): {}{by}\n",
                        finding.id,
                        finding.status,
                        finding.severity,
                        code(&finding.title)
                    );
                }
            }
        }
        body += &format!("\n## Cost\n\n{}\n\n---\n", self.cost);
        body += &match &self.link {
            Some(link) => format!("Task [{}]({link}), by baton.\n", self.task),
            None => format!("Task {} (`baton task show {}`), by baton.\n", self.task, self.task),
        };
        body
    }
}

/// The comment that answers `follow_ups` on a pull request: the commit that addressed them, and
/// what they and the `summary` said, as code.
pub fn reply(commit: &str, follow_ups: &[String], summary: &str) -> String {
    let asked: String = follow_ups.iter().map(|text| fenced(text)).collect();
    format!("Addressed in {commit}.\n\nAsked:\n\n{asked}\nDone:\n\n{}", fenced(summary))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `text` as a fenced code block, its fence longer than any run of backticks inside.
fn fenced(text: &str) -> String {
    let fence = "`".repeat(longest_backticks(text).max(2) + 1);
    format!("{fence}text\n{}\n{fence}\n", text.trim_end())
}

/// `text` on one line as an inline code span, its delimiters longer than any run of backticks
/// inside (spaces pad it, which the forge trims).
fn code(text: &str) -> String {
    let line = text.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_backticks(&line) + 1);
    format!("{ticks} {} {ticks}", line.trim())
}

fn longest_backticks(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_its_sections_and_the_title_fits() {
        let report = Report {
            task: "01abc".into(),
            request: format!("\n{}\nmore", "Make the parser accept trailing commas ".repeat(3)),
            summary:
                "Trailing commas parse.\nFixes #1, cc @everyone ![x](http://tracker.example/p.png)\n```\nbreak out"
                    .into(),
            commit: "0123456789abcdef".into(),
            checks: vec![Check {
                command: "cargo `test`\nrm -rf ~".into(),
                passed: true,
                exit_code: 0,
                duration_ms: 1234,
            }],
            findings: Some(vec![Finding {
                id: "F1".into(),
                severity: "major".into(),
                title: "no test for @maintainer's case".into(),
                status: "resolved".into(),
                commit: Some("fedcba9876543210".into()),
            }]),
            cost: "0.42 credits".into(),
            link: Some("https://baton.example/ui/tasks/01abc".into()),
        };
        let title = report.title();
        assert!(title.starts_with("Make the parser") && title.ends_with('…') && title.chars().count() <= 72, "{title}");
        let body = report.body();
        for part in [
            "## Summary\n\n````text\nTrailing commas parse.\nFixes #1, cc @everyone ![x](http://tracker.example/p.png)\n```\nbreak out\n````\n",
            "## Testing",
            "clean checkout of 0123456789ab",
            "- `` cargo `test` rm -rf ~ ``: passed (exit code 0, 1.2 s)",
            "- F1 **resolved** (major): ` no test for @maintainer's case ` in fedcba987654",
            "## Cost\n\n0.42 credits",
            "[01abc](https://baton.example/ui/tasks/01abc)",
        ] {
            assert!(body.contains(part), "{part:?} missing from\n{body}");
        }
        // Outside code, nothing the model wrote: no mention, issue reference or image.
        let outside: String = outside_code(&body);
        for made in ["@everyone", "@maintainer", "#1", "![x]"] {
            assert!(!outside.contains(made), "{made} is live Markdown in\n{body}");
        }
        let answer = reply("fedcba9876543210", &["Also @team: fixes #7".into()], "Done; closes #8");
        assert!(!outside_code(&answer).contains('#') && !outside_code(&answer).contains('@'), "{answer}");
        assert!(answer.starts_with("Addressed in fedcba9876543210."), "{answer}");
    }

    /// `markdown` without its fenced blocks and code spans.
    fn outside_code(markdown: &str) -> String {
        let mut outside = String::new();
        let mut fence: Option<String> = None;
        for line in markdown.lines() {
            let ticks: String = line.chars().take_while(|c| *c == '`').collect();
            match &fence {
                Some(open) if ticks.len() >= open.len() && line.trim_end() == ticks => fence = None,
                Some(_) => {}
                None if ticks.len() >= 3 => fence = Some(ticks),
                None => {
                    // Code spans: the parts between equal runs of backticks, outside them the rest.
                    let mut rest = line;
                    while let Some(start) = rest.find('`') {
                        outside.push_str(&rest[..start]);
                        let run = rest[start..].chars().take_while(|c| *c == '`').count();
                        let after = &rest[start + run..];
                        let close = "`".repeat(run);
                        rest = after.find(&close).map_or("", |end| &after[end + run..]);
                    }
                    outside.push_str(rest);
                    outside.push('\n');
                }
            }
        }
        outside
    }
}
