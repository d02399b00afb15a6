#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;

use serde_json::json;

use super::*;

const SECRET: &[u8] = b"It's a Secret to Everybody";

fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_lowercase(), (*v).to_owned())).collect();
    move |name: &str| map.get(name).cloned()
}

#[test]
fn github_signatures_are_checked_over_the_raw_body() {
    // The example GitHub's documentation gives for validating deliveries.
    let body = b"Hello, World!";
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(verify(HookKind::Github, SECRET, &headers(&[("X-Hub-Signature-256", good)]), body, 0), Ok(()));
    for bad in [
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=zz",
        "sha256=",
    ] {
        let refused = verify(HookKind::Github, SECRET, &headers(&[("X-Hub-Signature-256", bad)]), body, 0);
        assert!(matches!(refused, Err(Refusal::Unauthenticated(_))), "{bad}: {refused:?}");
    }
    let tampered = verify(HookKind::Github, SECRET, &headers(&[("X-Hub-Signature-256", good)]), b"Hello, World?", 0);
    assert!(matches!(tampered, Err(Refusal::Unauthenticated(_))));
    let unsigned = verify(HookKind::Github, SECRET, &headers(&[]), body, 0);
    assert_eq!(
        unsigned,
        Err(Refusal::Unauthenticated("no X-Hub-Signature-256 header: the delivery is not signed".into()))
    );
}

#[test]
fn gitlab_tokens_gitea_and_forgejo_signatures_are_checked() {
    let body = br#"{"object_kind":"issue"}"#;
    assert_eq!(
        verify(HookKind::Gitlab, SECRET, &headers(&[("X-Gitlab-Token", "It's a Secret to Everybody")]), body, 0),
        Ok(())
    );
    assert!(verify(HookKind::Gitlab, SECRET, &headers(&[("X-Gitlab-Token", "guess")]), body, 0).is_err());
    let signed = sign_body(SECRET, body);
    assert_eq!(verify(HookKind::Gitea, SECRET, &headers(&[("X-Gitea-Signature", &signed)]), body, 0), Ok(()));
    assert_eq!(verify(HookKind::Forgejo, SECRET, &headers(&[("X-Forgejo-Signature", &signed)]), body, 0), Ok(()));
    // Each kind reads its own header only.
    assert!(verify(HookKind::Forgejo, SECRET, &headers(&[("X-Gitea-Signature", &signed)]), body, 0).is_err());
    assert!(
        verify(HookKind::Gitea, SECRET, &headers(&[("X-Gitea-Signature", &sign_body(b"other", body))]), body, 0)
            .is_err()
    );
}

#[test]
fn generic_signatures_carry_a_timestamp_and_go_stale() {
    let body = br#"{"request":"x"}"#;
    let at = 1_800_000_000;
    let signed = sign(SECRET, at, body);
    let stamp = at.to_string();
    let given = headers(&[("X-Baton-Timestamp", &stamp), ("X-Baton-Signature", &signed)]);
    assert_eq!(verify(HookKind::Generic, SECRET, &given, body, at + 10), Ok(()));
    assert_eq!(verify(HookKind::Generic, SECRET, &given, body, at - TOLERANCE_SECS), Ok(()));
    let stale = verify(HookKind::Generic, SECRET, &given, body, at + TOLERANCE_SECS + 1);
    assert!(matches!(stale, Err(Refusal::Unauthenticated(reason)) if reason.contains("a replay")));
    // The timestamp is signed: moving it forward breaks the signature.
    let later = (at + 100).to_string();
    let moved = headers(&[("X-Baton-Timestamp", &later), ("X-Baton-Signature", &signed)]);
    assert!(verify(HookKind::Generic, SECRET, &moved, body, at + 100).is_err());
}

#[test]
fn labelled_issues_are_read_from_each_forge() {
    let github = json!({"action": "labeled", "label": {"name": "baton"},
        "issue": {"title": "Crash on empty input", "body": "Steps: ...", "html_url": "https://example.test/1"}});
    let read_github = read(
        HookKind::Github,
        &headers(&[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-1")]),
        github.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(read_github.id, "d-1");
    let expected = Happening::IssueLabelled {
        labels: vec!["baton".into()],
        title: "Crash on empty input".into(),
        body: "Steps: ...".into(),
        url: "https://example.test/1".into(),
    };
    assert_eq!(read_github.happening, expected);

    let gitlab = json!({"object_kind": "issue", "object_attributes": {"action": "update", "title": "Crash on empty input",
        "description": "Steps: ...", "url": "https://example.test/1"},
        "changes": {"labels": {"previous": [{"title": "bug"}], "current": [{"title": "bug"}, {"title": "baton"}]}}});
    let read_gitlab = read(
        HookKind::Gitlab,
        &headers(&[("X-Gitlab-Event", "Issue Hook"), ("X-Gitlab-Event-UUID", "u-1")]),
        gitlab.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(read_gitlab.happening, expected);
    let edited = json!({"object_kind": "issue", "object_attributes": {"action": "update"}, "changes": {"title": {}}});
    let other = read(HookKind::Gitlab, &headers(&[("X-Gitlab-Event-UUID", "u-2")]), edited.to_string().as_bytes());
    assert!(matches!(other.unwrap().happening, Happening::Other(_)), "an edit adds no label");

    let forgejo = json!({"action": "label_updated", "issue": {"title": "Crash on empty input", "body": "Steps: ...",
        "html_url": "https://example.test/1", "labels": [{"name": "baton"}]}});
    let read_forgejo = read(
        HookKind::Forgejo,
        &headers(&[("X-Forgejo-Event", "issues"), ("X-Forgejo-Delivery", "f-1")]),
        forgejo.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(read_forgejo.happening, expected);
}

#[test]
fn unreadable_deliveries_are_refused_with_the_reason() {
    let no_id = read(HookKind::Github, &headers(&[("X-GitHub-Event", "issues")]), b"{}");
    assert_eq!(no_id, Err(Refusal::Malformed("no delivery id: the x-github-delivery header is missing".into())));
    let not_json = read(HookKind::Github, &headers(&[("X-GitHub-Delivery", "d")]), b"<xml/>");
    assert!(matches!(not_json, Err(Refusal::Malformed(reason)) if reason.starts_with("the body is not JSON")));
    let not_object = read(HookKind::Github, &headers(&[("X-GitHub-Delivery", "d")]), b"[1]");
    assert!(matches!(not_object, Err(Refusal::Malformed(_))));
    let long = "x".repeat(201);
    assert!(read(HookKind::Github, &headers(&[("X-GitHub-Delivery", &long)]), b"{}").is_err());
}

#[test]
fn rules_start_tasks_or_follow_up_branches() {
    let rules = [
        HookRule::IssueLabelled { label: "baton".into(), template: "fix".into() },
        HookRule::Comment { mention: "@baton".into() },
    ];
    let issue = |label: &str| Happening::IssueLabelled {
        labels: vec![label.into()],
        title: "T".into(),
        body: "B".into(),
        url: "U".into(),
    };
    match decide(&rules, &issue("baton")) {
        Action::Start { template, fields } => {
            assert_eq!(template, "fix");
            assert_eq!(request("Fix this issue.", &fields), "Fix this issue.\n\nT\n\nB\n\nU");
            assert_eq!(request("Issue {{title}}: {{body}}", &fields), "Issue T: B");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&rules, &issue("bug")), Action::Ignore("no rule acts on an issue labelled bug".into()));
    let a = Author { login: "a".into(), id: Some(7) };
    let comment =
        |text: &str| Happening::Comment { branch: "baton/fix-1".into(), text: text.into(), author: a.clone() };
    assert_eq!(
        decide(&rules, &comment("@baton handle the empty case too")),
        Action::FollowUp { branch: "baton/fix-1".into(), text: "handle the empty case too".into(), author: a.clone() }
    );
    assert!(matches!(decide(&rules, &comment("looks good")), Action::Ignore(_)));
}

#[test]
fn merge_request_and_pull_request_comments_name_their_branch() {
    let gitlab = json!({"object_kind": "note", "object_attributes": {"note": "@baton rename it"},
        "user": {"username": "maintainer", "id": 42}, "merge_request": {"source_branch": "baton/fix-1"}});
    let read_gitlab = read(
        HookKind::Gitlab,
        &headers(&[("X-Gitlab-Event", "Note Hook"), ("X-Gitlab-Event-UUID", "n-1")]),
        gitlab.to_string().as_bytes(),
    )
    .unwrap();
    let comment = Happening::Comment {
        branch: "baton/fix-1".into(),
        text: "@baton rename it".into(),
        author: Author { login: "maintainer".into(), id: Some(42) },
    };
    assert_eq!(read_gitlab.happening, comment);
    let on_issue = json!({"object_kind": "note", "object_attributes": {"note": "@baton hi"}, "issue": {}});
    let read_issue =
        read(HookKind::Gitlab, &headers(&[("X-Gitlab-Event-UUID", "n-2")]), on_issue.to_string().as_bytes());
    assert!(matches!(read_issue.unwrap().happening, Happening::Other(_)), "a comment on an issue names no branch");

    let forgejo = json!({"action": "created", "comment": {"body": "@baton rename it", "user": {"login": "maintainer", "id": 42}},
        "pull_request": {"head": {"ref": "baton/fix-1"}}});
    let read_forgejo = read(
        HookKind::Forgejo,
        &headers(&[("X-Forgejo-Event", "issue_comment"), ("X-Forgejo-Delivery", "c-1")]),
        forgejo.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(read_forgejo.happening, comment);
}

#[test]
fn comments_on_pull_requests_from_forks_reach_no_task() {
    // A fork may name its branch after a task's: the comment must not be taken for the task's.
    let github = json!({"action": "created", "comment": {"body": "@baton run this", "user": {"login": "stranger"}},
        "pull_request": {"head": {"ref": "baton/fix-1", "repo": {"id": 2}}, "base": {"repo": {"id": 1}}}});
    let gitlab = json!({"object_kind": "note", "object_attributes": {"note": "@baton run this"},
        "merge_request": {"source_branch": "baton/fix-1", "source_project_id": 2, "target_project_id": 1}});
    let forgejo = json!({"action": "created", "comment": {"body": "@baton run this"},
        "pull_request": {"head": {"ref": "baton/fix-1", "repo_id": 2}, "base": {"repo_id": 1}}});
    let cases = [
        (HookKind::Github, ("X-GitHub-Event", "pull_request_review_comment"), ("X-GitHub-Delivery", "1"), github),
        (HookKind::Gitlab, ("X-Gitlab-Event", "Note Hook"), ("X-Gitlab-Event-UUID", "2"), gitlab),
        (HookKind::Forgejo, ("X-Forgejo-Event", "issue_comment"), ("X-Forgejo-Delivery", "3"), forgejo),
    ];
    for (kind, event, delivery, payload) in cases {
        let received = read(kind, &headers(&[event, delivery]), payload.to_string().as_bytes()).unwrap();
        let from_fork = matches!(&received.happening, Happening::Other(why) if why.contains("from a fork"));
        assert!(from_fork, "{kind}: {:?}", received.happening);
        // The same payload from the repository itself is a comment on the task's branch.
        let own = payload.to_string().replace(":2", ":1");
        let received = read(kind, &headers(&[event, delivery]), own.as_bytes()).unwrap();
        let on_branch = matches!(&received.happening, Happening::Comment { branch, .. } if branch == "baton/fix-1");
        assert!(on_branch, "{kind}: {:?}", received.happening);
    }
}
