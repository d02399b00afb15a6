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

    /// The body, in Markdown. Text from the model is quoted as it is: the forge renders it, and
    /// nothing here is a link or a mention that baton made.
    pub fn body(&self) -> String {
        let mut body = format!("## Summary\n\n{}\n\n## Testing\n\n", self.summary.trim());
        body += &format!("baton ran the checks on a clean checkout of {}:\n\n", short(&self.commit));
        for check in &self.checks {
            let mark = if check.passed { "passed" } else { "failed" };
            body += &format!(
                "- `{}`: {mark} (exit code {}, {:.1} s)\n",
                check.command.replace('`', "'"),
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
                        finding.id, finding.status, finding.severity, finding.title
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

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_its_sections_and_the_title_fits() {
        let report = Report {
            task: "01abc".into(),
            request: format!("\n{}\nmore", "Make the parser accept trailing commas ".repeat(3)),
            summary: "Trailing commas parse.".into(),
            commit: "0123456789abcdef".into(),
            checks: vec![Check { command: "cargo `test`".into(), passed: true, exit_code: 0, duration_ms: 1234 }],
            findings: Some(vec![Finding {
                id: "F1".into(),
                severity: "major".into(),
                title: "no test".into(),
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
            "## Summary\n\nTrailing commas parse.",
            "## Testing",
            "clean checkout of 0123456789ab",
            "- `cargo 'test'`: passed (exit code 0, 1.2 s)",
            "- F1 **resolved** (major): no test in fedcba987654",
            "## Cost\n\n0.42 credits",
            "[01abc](https://baton.example/ui/tasks/01abc)",
        ] {
            assert!(body.contains(part), "{part:?} missing from\n{body}");
        }
    }
}
