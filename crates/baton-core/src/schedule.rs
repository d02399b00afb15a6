//! Schedules: cron rules that start tasks from a template, each bounded by its own limits so that
//! automated work cannot run away. The core keeps the definition and what a firing came to; when
//! a cron rule falls due is the engine's to compute (it needs a calendar and time zones).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::template::check_name;
use crate::time::Timestamp;

/// Consecutive failed runs after which a schedule pauses itself, unless told otherwise.
pub const DEFAULT_MAX_FAILURES: u32 = 3;

/// A cron rule that starts tasks from a template, within limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    pub template: String,
    /// Five fields (minutes) or six (seconds first), as croner reads them.
    pub cron: String,
    /// An IANA time zone name: what the cron rule's hours and days, and a day's run count, mean.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub mode: ScheduleMode,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// At most this many runs start on one day (in the schedule's time zone).
    pub runs_per_day: Option<u32>,
    /// Each run's credit budget (lowered to the template's own, when that is smaller).
    pub run_budget: Option<Credits>,
    /// What all runs started in one month (in the schedule's time zone) may spend together.
    pub month_budget: Option<Credits>,
    /// The schedule pauses itself after this many failed runs in a row.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Whose tasks the runs are (for fairness and listing).
    pub owner: Option<String>,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_max_failures() -> u32 {
    DEFAULT_MAX_FAILURES
}

/// What a firing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// A new task from the template's base.
    #[default]
    Fresh,
    /// A run that continues the previous run's branch (the first run starts fresh).
    Continue,
}

/// What a schedule does with firings that fell due while no server ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// They are recorded as missed; the next firing on time runs.
    #[default]
    Skip,
    /// The latest of them runs once, as soon as a server is up; the others are recorded as missed.
    Once,
}

impl fmt::Display for ScheduleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleMode::Fresh => "fresh",
            ScheduleMode::Continue => "continue",
        })
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatchUp::Skip => "skip",
            CatchUp::Once => "once",
        })
    }
}

impl FromStr for ScheduleMode {
    type Err = String;

    fn from_str(text: &str) -> Result<ScheduleMode, String> {
        match text {
            "fresh" => Ok(ScheduleMode::Fresh),
            "continue" => Ok(ScheduleMode::Continue),
            _ => Err(format!("unknown mode `{text}` (expected fresh or continue)")),
        }
    }
}

impl FromStr for CatchUp {
    type Err = String;

    fn from_str(text: &str) -> Result<CatchUp, String> {
        match text {
            "skip" => Ok(CatchUp::Skip),
            "once" => Ok(CatchUp::Once),
            _ => Err(format!("unknown catch-up policy `{text}` (expected skip or once)")),
        }
    }
}

impl Schedule {
    /// What can be checked without a calendar: the names and the limits.
    pub fn check(&self) -> Result<(), String> {
        check_name("schedule", &self.name)?;
        check_name("template", &self.template)?;
        if self.max_failures == 0 {
            return Err("max failures must be at least 1".into());
        }
        if self.runs_per_day == Some(0) {
            return Err("runs per day must be at least 1 (pause the schedule to stop it)".into());
        }
        for (what, limit) in [("run budget", self.run_budget), ("month budget", self.month_budget)] {
            if limit.is_some_and(|credits| credits <= Credits::ZERO) {
                return Err(format!("the {what} must be more than zero"));
            }
        }
        Ok(())
    }
}

/// One time a schedule fell due, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub schedule: String,
    /// When the cron rule fell due.
    pub at: Timestamp,
    pub outcome: FiringOutcome,
    /// The task it started (or, while claimed, the one it is starting).
    pub task: Option<String>,
    /// Why it was skipped or could not start; what it started.
    pub detail: String,
    pub recorded_at: Timestamp,
}

/// What a firing came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FiringOutcome {
    /// Taken by a server, its task's id chosen: the task is being created. A server that finds one
    /// after a restart finishes creating that task, so no firing ever starts two.
    Claimed,
    Started,
    /// Its task could not be started (the template is gone, the repository moved, ...): a failed run.
    Unstartable,
    Skipped,
}

impl FiringOutcome {
    pub const ALL: [FiringOutcome; 4] =
        [FiringOutcome::Claimed, FiringOutcome::Started, FiringOutcome::Unstartable, FiringOutcome::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            FiringOutcome::Claimed => "claimed",
            FiringOutcome::Started => "started",
            FiringOutcome::Unstartable => "unstartable",
            FiringOutcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for FiringOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FiringOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<FiringOutcome, String> {
        FiringOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| format!("unknown firing outcome `{text}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            name: "nightly".into(),
            template: "deps".into(),
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            mode: ScheduleMode::Fresh,
            catch_up: CatchUp::Skip,
            runs_per_day: Some(1),
            run_budget: Some(Credits::from_micros(1)),
            month_budget: None,
            max_failures: DEFAULT_MAX_FAILURES,
            owner: None,
        }
    }

    #[test]
    fn a_schedule_is_checked_for_names_and_limits() {
        assert_eq!(schedule().check(), Ok(()));
        let bad = [
            Schedule { name: "no spaces".into(), ..schedule() },
            Schedule { template: "../x".into(), ..schedule() },
            Schedule { max_failures: 0, ..schedule() },
            Schedule { runs_per_day: Some(0), ..schedule() },
            Schedule { month_budget: Some(Credits::ZERO), ..schedule() },
            Schedule { run_budget: Some(Credits::from_micros(-5)), ..schedule() },
        ];
        for schedule in bad {
            assert!(schedule.check().is_err(), "{schedule:?} passed");
        }
    }

    #[test]
    fn modes_and_policies_read_as_written() {
        assert_eq!("continue".parse(), Ok(ScheduleMode::Continue));
        assert_eq!("fresh".parse(), Ok(ScheduleMode::Fresh));
        assert_eq!("once".parse(), Ok(CatchUp::Once));
        assert_eq!("skip".parse(), Ok(CatchUp::Skip));
        assert!("Fresh".parse::<ScheduleMode>().is_err());
        for mode in [ScheduleMode::Fresh, ScheduleMode::Continue] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for policy in [CatchUp::Skip, CatchUp::Once] {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
        assert!("always".parse::<CatchUp>().is_err());
    }

    #[test]
    fn outcomes_read_back_as_written() {
        for outcome in FiringOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<FiringOutcome>(), Ok(outcome));
        }
        assert!("fired".parse::<FiringOutcome>().is_err());
    }
}
