//! Which role may call which tool: one table, read both for what a leg is offered and for whether
//! a call it makes anyway is run. A tool the table does not name is refused to every role.

use baton_core::{LegRole, ToolReach};

use crate::{ASK_HUMAN, RECALL, REPORT_FINDINGS, REQUEST_CREDENTIAL, RESOLVE_FINDING, SUBMIT_PLAN};

const EVERY_ROLE: &[LegRole] = &[LegRole::Build, LegRole::Review, LegRole::Captain];

/// Each tool and the roles that may call it. Reviewers and captains only read: their commands run
/// where the worktree is mounted read-only, and no tool of theirs writes.
const GRANTS: &[(&str, &[LegRole])] = &[
    ("read_file", EVERY_ROLE),
    ("search", EVERY_ROLE),
    ("list_dir", EVERY_ROLE),
    ("shell", EVERY_ROLE),
    (RECALL, EVERY_ROLE),
    ("write_file", &[LegRole::Build]),
    ("edit_file", &[LegRole::Build]),
    ("apply_patch", &[LegRole::Build]),
    ("update_plan", &[LegRole::Build]),
    ("finish", &[LegRole::Build]),
    (REQUEST_CREDENTIAL, &[LegRole::Build]),
    (RESOLVE_FINDING, &[LegRole::Build]),
    (ASK_HUMAN, &[LegRole::Build, LegRole::Captain]),
    (REPORT_FINDINGS, &[LegRole::Review]),
    (SUBMIT_PLAN, &[LegRole::Captain]),
];

pub fn may_call(role: LegRole, tool: &str) -> bool {
    GRANTS.iter().any(|(name, roles)| *name == tool && roles.contains(&role))
}

/// Whether `role` may call a tool of an MCP server the repository declares, which reaches as far
/// as `reach`: builders any; roles that only read, only tools declared read-only.
pub fn may_call_served(role: LegRole, reach: ToolReach) -> bool {
    role == LegRole::Build || reach == ToolReach::ReadOnly
}

/// The tools `role` may call, in the table's order.
pub fn tools_of(role: LegRole) -> impl Iterator<Item = &'static str> {
    GRANTS.iter().filter(move |(_, roles)| roles.contains(&role)).map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use baton_core::LegRole;

    use baton_core::ToolReach;

    use super::{may_call, may_call_served, tools_of};

    #[test]
    fn only_builders_write_and_each_role_has_its_own_tools() {
        for writer in ["write_file", "edit_file", "apply_patch", "finish", "resolve_finding", "request_credential"] {
            assert!(may_call(LegRole::Build, writer), "{writer}");
            assert!(!may_call(LegRole::Review, writer) && !may_call(LegRole::Captain, writer), "{writer}");
        }
        assert!(may_call(LegRole::Review, "report_findings") && !may_call(LegRole::Build, "report_findings"));
        assert!(may_call(LegRole::Captain, "submit_plan") && !may_call(LegRole::Review, "submit_plan"));
        assert!(!may_call(LegRole::Build, "no_such_tool"), "unknown tools are refused");
        for role in [LegRole::Build, LegRole::Review, LegRole::Captain] {
            assert!(may_call_served(role, ToolReach::ReadOnly), "{role:?}");
        }
        assert!(may_call_served(LegRole::Build, ToolReach::Writes));
        assert!(
            !may_call_served(LegRole::Review, ToolReach::Writes)
                && !may_call_served(LegRole::Captain, ToolReach::Writes)
        );
        let review: Vec<&str> = tools_of(LegRole::Review).collect();
        assert_eq!(review, ["read_file", "search", "list_dir", "shell", "recall", "report_findings"]);
    }
}
