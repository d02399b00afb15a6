//! Templates: task definitions saved under a name, from which schedules, triggers, the UI and the
//! API start tasks. A template holds what `baton run` is given; the base ref is resolved, and the
//! task's spec validated again, each time a task is started from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::review::LegRole;
use crate::source::{RemoteUrl, RepoSource};
use crate::spec::{Budget, CheckSpec, Pick, SpecError, TaskSpec};

/// A saved task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub request: String,
    /// The repository (an absolute path or a remote's URL).
    pub repo: RepoSource,
    /// Where each task's branch is pushed, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<RemoteUrl>,
    /// The ref each task starts from, resolved when it starts.
    pub base: String,
    /// Acceptance commands.
    pub checks: Vec<String>,
    pub check_timeout_secs: u64,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub protect: Vec<String>,
    /// Each task's limits.
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handoffs: Option<u32>,
    pub review: bool,
    #[serde(default)]
    pub plan: bool,
    #[serde(default)]
    pub approve_plan: bool,
    #[serde(default)]
    pub role_models: BTreeMap<LegRole, String>,
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default)]
    pub pick: Pick,
    #[serde(default)]
    pub priority: i32,
    /// The text of an environment file used instead of the repository's `baton.toml`.
    #[serde(default)]
    pub environment: Option<String>,
}

fn one() -> u32 {
    1
}

/// Why a name of something the API addresses by name (a token, a template) was refused: 1 to 64
/// of A-Z, a-z, 0-9, `-`, `_`, `.`, so that it is one segment of a path as it is.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!("{kind} name {name:?}: 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'"));
    }
    Ok(())
}

impl Template {
    /// The spec of a task started from it, for `owner`, from `base_ref` as written.
    pub fn spec(&self, owner: Option<String>) -> TaskSpec {
        TaskSpec {
            checks: self
                .checks
                .iter()
                .map(|command| CheckSpec {
                    name: command.trim().to_owned(),
                    command: command.clone(),
                    timeout_secs: self.check_timeout_secs,
                })
                .collect(),
            scope: self.scope.clone(),
            protect: self.protect.clone(),
            budget: self.budget,
            model: self.model.clone(),
            context_window: self.context_window,
            max_handoffs: self.max_handoffs,
            review: self.review,
            plan: self.plan,
            approve_plan: self.approve_plan,
            role_models: self.role_models.clone(),
            environment: self.environment.clone(),
            priority: self.priority,
            attempts: self.attempts,
            pick: self.pick,
            owner,
            base_ref: self.base.clone(),
            push: self.push.clone(),
            ..TaskSpec::new(&self.request, self.repo.clone())
        }
    }

    /// What can be checked without the repository: its name, and the spec of a task from it.
    pub fn check(&self) -> Result<(), String> {
        check_name("template", &self.name)?;
        if self.checks.is_empty() {
            return Err("give at least one check: baton only calls a task done when its checks pass".into());
        }
        self.spec(None).validate().map_err(|error: SpecError| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            name: "nightly-deps".into(),
            request: "Update the dependencies".into(),
            repo: RepoSource::Local("/repo".into()),
            push: None,
            base: "main".into(),
            checks: vec!["cargo test".into()],
            check_timeout_secs: 600,
            scope: Vec::new(),
            protect: vec!["tests/*".into()],
            budget: Budget { credits: None, wall_clock_secs: Some(3600), steps: None },
            model: Some("openai/gpt-5".into()),
            context_window: None,
            max_handoffs: None,
            review: true,
            plan: false,
            approve_plan: false,
            role_models: BTreeMap::new(),
            attempts: 1,
            pick: Pick::Rule,
            priority: 0,
            environment: None,
        }
    }

    #[test]
    fn a_template_gives_the_spec_of_its_tasks_and_refuses_what_no_task_could_be() {
        let spec = template().spec(Some("ci".into()));
        assert_eq!((spec.base_ref.as_str(), spec.owner.as_deref()), ("main", Some("ci")));
        assert_eq!(spec.checks[0].name, "cargo test");
        assert_eq!(spec.budget.wall_clock_secs, Some(3600));
        assert!(template().check().is_ok());
        let broken: [fn(&mut Template); 4] = [
            |t| t.name = "a b".into(),
            |t| t.checks.clear(),
            |t| t.repo = RepoSource::Local("relative".into()),
            |t| t.attempts = 11,
        ];
        for break_it in broken {
            let mut template = template();
            break_it(&mut template);
            assert!(template.check().is_err(), "{template:?}");
        }
    }
}
