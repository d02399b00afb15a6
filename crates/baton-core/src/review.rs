//! Roles of a leg, and what a reviewer finds: findings journaled as open, then resolved (with the
//! commit that fixed them) or declared irrelevant (with the reason), by a build leg or a human.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who works a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegRole {
    /// Plans and delegates; never edits.
    Captain,
    /// Implements.
    #[default]
    Build,
    /// Reads a diff and reports findings.
    Review,
}

impl LegRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LegRole::Captain => "captain",
            LegRole::Build => "build",
            LegRole::Review => "review",
        }
    }
}

impl fmt::Display for LegRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subtask of a captain's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtask {
    /// The plan's own name for it, like `s1`; `depends_on` refers to these.
    pub key: String,
    pub request: String,
    /// Paths the subtask may change.
    pub scope: Vec<String>,
    /// Acceptance commands the captain confirmed run.
    pub checks: Vec<String>,
    pub depends_on: Vec<String>,
    /// Percent of the parent's credit budget.
    pub budget_share: u8,
}

/// Where a subtask of the plan stands, as the parent's journal says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    pub plan: Subtask,
    /// The child task, once created.
    pub task: Option<String>,
    /// How it ended: verified or not, with the child's last commit and its stop detail.
    pub outcome: Option<SubtaskOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskOutcome {
    pub verified: bool,
    pub commit: Option<String>,
    pub detail: String,
    /// What the child task spent (its own children's spending included): the parent's credit
    /// limit holds over all of it.
    #[serde(default)]
    pub spent: crate::money::Credits,
    /// Review findings the child left open.
    #[serde(default)]
    pub open_findings: u32,
    /// The size of its change against its base, when it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffStat>,
    /// Its last checks and whether each passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckMark>,
}

/// How big a change is, as `git diff --shortstat` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStat {
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

impl DiffStat {
    /// Lines added plus lines removed.
    pub fn lines(&self) -> u64 {
        self.insertions + self.deletions
    }
}

/// A check by name and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckMark {
    pub name: String,
    pub passed: bool,
}

/// How bad a finding is: P0 breaks something that matters, P3 is a nit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    Open,
    Resolved,
    Irrelevant,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Resolved => "resolved",
            FindingStatus::Irrelevant => "irrelevant",
        }
    }
}

/// One thing a reviewer found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `f1`, `f2`, … in the order found, over the whole task.
    pub id: String,
    pub title: String,
    pub body: String,
    pub severity: Severity,
    /// The reviewer's confidence, in percent.
    pub confidence: u8,
    pub file: String,
    /// First and last line the finding is about.
    pub lines: (u32, u32),
    /// The review round that found it.
    pub round: u32,
    pub status: FindingStatus,
    /// Why it was resolved or is irrelevant, and who said so.
    pub note: String,
    /// The commit that resolved it.
    pub commit: Option<String>,
}

impl Finding {
    /// Whether a build leg must address it: open, and more than a nit.
    pub fn is_actionable(&self) -> bool {
        self.status == FindingStatus::Open && self.severity <= Severity::P2
    }
}
