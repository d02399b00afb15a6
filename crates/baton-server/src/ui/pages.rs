//! The UI's pages: the task list, a task, its diff, a new task's form, the budget, and the login.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use baton_core::{Credits, EntryKind, Event, Recorded, Status, TaskState};
use baton_store::StoreError;
use serde::Deserialize;

use super::session::Session;
use super::timeline::{self, Entry};
use crate::{Api, now};

/// Why a page or a form failed, shown as a page.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: String) -> Failure {
        Failure { status, message }
    }

    pub fn store(error: StoreError) -> Failure {
        let status = match error {
            StoreError::NotFound(_) | StoreError::NoSuchTemplate(_) => StatusCode::NOT_FOUND,
            StoreError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, error.to_string())
    }
}

impl From<crate::Refused> for Failure {
    fn from(refused: crate::Refused) -> Failure {
        Failure::from(crate::ApiError::from(refused))
    }
}

impl From<crate::ApiError> for Failure {
    fn from(error: crate::ApiError) -> Failure {
        let (status, message) = error.parts();
        Failure::new(status, message.to_owned())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    status: &'a str,
    message: &'a str,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = self.status.to_string();
        let page = ErrorPage { me: None, csrf: String::new(), notice: None, status: &status, message: &self.message };
        (self.status, render(&page)).into_response()
    }
}

/// A template as a page, or a plain error if it cannot be rendered.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be made: {error}")).into_response()
        }
    }
}

/// `12m 5s`.
fn span(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, s / 60 % 60),
    }
}

/// The first line of `text`, at most `width` characters.
pub(crate) fn headline(text: &str, width: usize) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    match line.char_indices().nth(width) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// How long the task has run: from its start to its last event once it has stopped, to now while
/// it runs.
fn elapsed(state: &TaskState) -> Option<i64> {
    let started = state.work.started_at?;
    let until = if state.status().is_active() { now() } else { state.updated_at };
    Some(until.as_millis() - started.as_millis())
}

/// Why a task that is not moving waits: its question, or its stop.
fn why(state: &TaskState) -> Option<String> {
    if let Some(question) = &state.question {
        return Some(format!("decision: {}", headline(question, 60)));
    }
    state.stop.as_ref().map(|stop| stop.reason.to_string())
}

pub(crate) struct Row {
    id: String,
    status: &'static str,
    why: Option<String>,
    request: String,
    repo: String,
    branch: String,
    model: String,
    elapsed: String,
    steps: u32,
    cost: String,
    checks: String,
    open_findings: usize,
}

fn row(state: &TaskState) -> Row {
    let checks = &state.work.last_checks;
    Row {
        id: state.id.to_string(),
        status: state.status().as_str(),
        why: why(state),
        request: headline(&state.spec.request, 80),
        repo: state.spec.repo.to_string(),
        branch: state.branch.clone(),
        model: state.spec.model.clone().unwrap_or_default(),
        elapsed: elapsed(state).map(span).unwrap_or_default(),
        steps: state.work.steps,
        cost: state.money.spent_in_all().to_string(),
        checks: if checks.is_empty() {
            String::new()
        } else {
            format!("{}/{} passed", checks.iter().filter(|c| c.passed).count(), checks.len())
        },
        open_findings: state.work.findings.iter().filter(|f| f.status == baton_core::FindingStatus::Open).count(),
    }
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    statuses: Vec<&'static str>,
    status: String,
    text: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "_rows.html")]
struct RowsFragment {
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    text: String,
    /// Only the rows, for the live list.
    #[serde(default)]
    rows: bool,
    notice: Option<String>,
}

/// The most tasks the list shows.
const LISTED: usize = 100;

/// `GET /`: the tasks, newest first, filtered by status and text.
pub(crate) async fn tasks(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Query(query): Query<ListQuery>,
) -> Result<Response, Failure> {
    let status = match query.status.as_str() {
        "" => None,
        name => Some(name.parse::<Status>().map_err(|error| Failure::new(StatusCode::BAD_REQUEST, error.to_string()))?),
    };
    let text = query.text.to_lowercase();
    let mut rows = Vec::new();
    for summary in api.store.list(status).await.map_err(Failure::store)? {
        let matches = [summary.request.as_str(), summary.id.as_str(), summary.branch.as_str()]
            .iter()
            .any(|field| field.to_lowercase().contains(&text));
        if !matches {
            continue;
        }
        rows.push(row(&api.store.load(&summary.id).await.map_err(Failure::store)?));
        if rows.len() == LISTED {
            break;
        }
    }
    if query.rows {
        return Ok(render(&RowsFragment { rows }));
    }
    Ok(render(&TasksPage {
        me: session.name,
        csrf: session.csrf,
        notice: query.notice,
        statuses: Status::ALL.iter().map(|status| status.as_str()).collect(),
        status: query.status,
        text: query.text,
        rows,
    }))
}

/// The top of a task's page.
pub(crate) struct Head {
    id: String,
    request_line: String,
    status: &'static str,
    stop: Option<String>,
    stop_detail: Option<String>,
    question: Option<String>,
    branch: String,
    repo: String,
    pull_request: Option<PullLink>,
    model: String,
    cost: String,
    elapsed: String,
    steps: u32,
    legs: u32,
    context: Option<String>,
    /// Whether it has ended.
    ended: bool,
    /// Whether it takes a follow-up: not cancelled.
    open: bool,
    next_seq: u64,
}

/// A task's pull request in its header.
pub(crate) struct PullLink {
    number: u64,
    url: String,
    /// Only a web address is made a link (the forge said what it is).
    linked: bool,
    /// `open, draft`, `merged`, …
    state: String,
}

fn head(state: &TaskState, events: &[Recorded]) -> Head {
    let budget = &state.spec.budget;
    let spent = state.money.spent_in_all();
    let cost = match budget.credits {
        Some(limit) => format!("{spent} of {limit} credits"),
        None => format!("{spent} credits (no limit)"),
    };
    let ran = elapsed(state).map(span).unwrap_or_else(|| "not started".into());
    let elapsed = match budget.wall_clock_secs {
        Some(window) => format!("{ran} of {}", span(window as i64 * 1000)),
        None => ran,
    };
    // The latest prompt's size against the room the window left it.
    let context = events.iter().rev().find_map(|recorded| match &recorded.event {
        Event::ModelCallStarted { prompt: Some(prompt), .. } if prompt.room > 0 => Some(format!(
            "{}% of the context window ({} of {} tokens)",
            prompt.tokens * 100 / prompt.room,
            prompt.tokens,
            prompt.room
        )),
        _ => None,
    });
    Head {
        id: state.id.to_string(),
        request_line: headline(&state.spec.request, 120),
        status: state.status().as_str(),
        stop: state.stop.as_ref().map(|stop| stop.reason.to_string()),
        stop_detail: state.stop.as_ref().map(|stop| stop.detail.clone()).filter(|detail| !detail.is_empty()),
        question: state.question.clone(),
        branch: state.branch.clone(),
        repo: state.spec.repo.to_string(),
        pull_request: state.work.pull_request.as_ref().map(|pull| PullLink {
            number: pull.number,
            url: pull.url.clone(),
            linked: pull.url.starts_with("https://") || pull.url.starts_with("http://"),
            state: if pull.draft { format!("{}, draft", pull.state) } else { pull.state.clone() },
        }),
        model: state.spec.model.clone().unwrap_or_default(),
        cost,
        elapsed,
        steps: state.work.steps,
        legs: state.work.leg,
        context,
        ended: state.status().is_terminal(),
        open: state.status() != Status::Cancelled,
        next_seq: state.next_seq,
    }
}

pub(crate) struct DecisionForm {
    id: String,
    question: String,
    why: String,
    options: Vec<String>,
    is_pick: bool,
}

pub(crate) struct SubtaskRow {
    key: String,
    task: Option<String>,
    state: String,
    change: String,
    open_findings: String,
    cost: String,
}

pub(crate) struct FindingRow {
    id: String,
    severity: String,
    title: String,
    status: &'static str,
    place: String,
    body: String,
    note: String,
}

pub(crate) struct Bar {
    label: String,
    amount: String,
    percent: u32,
}

/// Bars for `(label, amount)` pairs, each as a share of the largest.
fn bars(amounts: Vec<(String, Credits)>) -> Vec<Bar> {
    let most = amounts.iter().map(|(_, amount)| amount.micros()).max().unwrap_or(0).max(1);
    amounts
        .into_iter()
        .map(|(label, amount)| Bar {
            label,
            amount: amount.to_string(),
            percent: (amount.micros() * 100 / most) as u32,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    head: Head,
    decision: Option<DecisionForm>,
    entries: Vec<Entry>,
    earlier: Option<u64>,
    /// Where the window of events ends (the task's `next_seq` for the latest).
    end_seq: u64,
    live: bool,
    changes: Vec<baton_core::FileChange>,
    checkpoints: Vec<(String, String)>,
    plan: Vec<(String, &'static str)>,
    subtasks: Vec<SubtaskRow>,
    attempts: Vec<SubtaskRow>,
    picked: Option<String>,
    findings: Vec<FindingRow>,
    bars: Vec<Bar>,
    bars_label: &'static str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TaskQuery {
    /// Events before this seq instead of the latest.
    before: Option<u64>,
    notice: Option<String>,
}

/// Events a task page shows at once; earlier ones are a link away.
pub(crate) const WINDOW: u64 = 200;

/// The open decision of a waiting task, as a form.
fn decision_form(state: &TaskState) -> Option<DecisionForm> {
    state.work.decisions.iter().find(|(_, answer)| answer.is_none()).map(|(asked, _)| DecisionForm {
        id: asked.id.clone(),
        question: asked.question.clone(),
        why: asked.why.clone(),
        options: asked.options.clone(),
        is_pick: matches!(asked.kind, baton_core::DecisionKind::Pick { .. }),
    })
}

fn subtask_row(subtask: &baton_core::SubtaskState) -> SubtaskRow {
    let outcome = subtask.outcome.as_ref();
    SubtaskRow {
        key: subtask.plan.key.clone(),
        task: subtask.task.clone(),
        state: match (outcome, &subtask.task) {
            (Some(outcome), _) if outcome.verified => "verified".into(),
            (Some(outcome), _) => format!("stopped: {}", headline(&outcome.detail, 100)),
            (None, Some(_)) => "running".into(),
            (None, None) => "not started".into(),
        },
        change: outcome
            .and_then(|o| o.diff)
            .map_or(String::new(), |d| format!("{} files, +{} −{}", d.files, d.insertions, d.deletions)),
        open_findings: outcome.map_or(String::new(), |o| o.open_findings.to_string()),
        cost: outcome.map_or(String::new(), |o| format!("{} credits", o.spent)),
    }
}

/// `GET /tasks/{id}`: the task, live.
pub(crate) async fn task(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(query): Query<TaskQuery>,
) -> Result<Response, Failure> {
    let id = api.store.resolve(&id).await.map_err(Failure::store)?;
    let state = api.store.load(&id).await.map_err(Failure::store)?;
    let end = query.before.unwrap_or(state.next_seq).min(state.next_seq);
    let start = end.saturating_sub(WINDOW);
    let events = api.store.events(&id, start).await.map_err(Failure::store)?;
    let shown: Vec<&Recorded> = events.iter().filter(|recorded| recorded.seq < end).collect();
    // Read from git (a line per file, however large the change): a task with no commit has none.
    let changes = if state.work.last_commit.is_some() { api.tasks.changed_files(&id).await? } else { Vec::new() };
    let decision = decision_form(&state);
    let checkpoints = state
        .work
        .checkpoints
        .iter()
        .map(|commit| (commit.clone(), commit[..commit.len().min(12)].to_owned()))
        .collect();
    let rows: Vec<SubtaskRow> = state.work.subtasks.iter().map(subtask_row).collect();
    let (attempts, subtasks) = if state.spec.attempts > 1 { (rows, Vec::new()) } else { (Vec::new(), rows) };
    let page = TaskPage {
        me: session.name,
        csrf: session.csrf,
        notice: query.notice,
        head: head(&state, &events),
        decision,
        entries: shown.iter().filter_map(|recorded| timeline::entry(recorded)).collect(),
        earlier: (start > 0).then_some(start),
        end_seq: end,
        // An ended task's page has nothing more to follow.
        live: end == state.next_seq && !state.status().is_terminal(),
        changes,
        checkpoints,
        plan: state.work.plan.iter().map(|step| (step.title.clone(), step.status.as_str())).collect(),
        subtasks,
        attempts,
        picked: state.work.picked.clone(),
        findings: state
            .work
            .findings
            .iter()
            .map(|finding| FindingRow {
                id: finding.id.clone(),
                severity: format!("{:?}", finding.severity),
                title: finding.title.clone(),
                status: finding.status.as_str(),
                place: format!("{}:{}-{}", finding.file, finding.lines.0, finding.lines.1),
                body: finding.body.clone(),
                note: finding.note.clone(),
            })
            .collect(),
        bars: bars(state.money.by_kind.iter().map(|(kind, amount)| (kind.as_str().to_owned(), *amount)).collect()),
        bars_label: "Kind",
    };
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "_header.html")]
struct HeaderFragment {
    csrf: String,
    head: Head,
    decision: Option<DecisionForm>,
}

/// `GET /ui/tasks/{id}/header`: the top of the task's page with its forms, for the live view.
pub(crate) async fn header(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let id = api.store.resolve(&id).await.map_err(Failure::store)?;
    let state = api.store.load(&id).await.map_err(Failure::store)?;
    let events = api.store.events(&id, state.next_seq.saturating_sub(WINDOW)).await.map_err(Failure::store)?;
    Ok(render(&HeaderFragment { csrf: session.csrf, head: head(&state, &events), decision: decision_form(&state) }))
}

#[derive(Template)]
#[template(path = "_entries.html")]
pub(crate) struct EntriesFragment {
    pub entries: Vec<Entry>,
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    id: String,
    scope: String,
    lines: Vec<(&'static str, String)>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DiffQuery {
    commit: Option<String>,
}

/// The most lines of a diff a page shows: a page the browser can still lay out, whatever the
/// agent committed.
const DIFF_LINES: usize = 20_000;

/// `GET /tasks/{id}/diff`: the change, coloured.
pub(crate) async fn diff(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Result<Response, Failure> {
    let id = api.store.resolve(&id).await.map_err(Failure::store)?;
    let text = api.tasks.diff(&id, query.commit.as_deref()).await?;
    let total = text.lines().count();
    let lines = text
        .lines()
        .take(DIFF_LINES)
        .map(|line| {
            let class = match line.as_bytes().first() {
                _ if line.starts_with("diff ") || line.starts_with("+++ ") || line.starts_with("--- ") => "file",
                Some(b'+') => "add",
                Some(b'-') => "del",
                Some(b'@') => "hunk",
                _ => "ctx",
            };
            (class, line.to_owned())
        })
        .collect();
    let mut scope = match &query.commit {
        Some(commit) => format!("From the base commit to checkpoint {commit}."),
        None => "From the base commit to the branch's head.".to_owned(),
    };
    if total > DIFF_LINES {
        scope.push_str(&format!(
            " Its first {DIFF_LINES} of {total} lines: `baton diff {id}` or GET /api/v1/tasks/{id}/diff gives all of it."
        ));
    }
    Ok(render(&DiffPage { me: session.name, csrf: session.csrf, notice: None, id: id.to_string(), scope, lines }))
}

/// What the new-task form holds: empty, or what was sent when it was refused.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct TaskForm {
    pub request: String,
    pub repo: String,
    pub checks: String,
    pub base: String,
    pub model: String,
    pub scope: String,
    pub protect: String,
    pub budget: String,
    pub window_secs: String,
    pub max_steps: String,
    pub check_timeout_secs: String,
    pub context_window: String,
    pub priority: String,
    pub attempts: String,
    pub pick: String,
    pub captain_model: String,
    pub review_model: String,
    /// Given: the form saves a template under this name instead of starting a task.
    pub template_name: String,
    #[serde(deserialize_with = "checkbox")]
    pub plan: bool,
    #[serde(deserialize_with = "checkbox")]
    pub approve_plan: bool,
    #[serde(deserialize_with = "checkbox")]
    pub no_review: bool,
}

/// A checkbox: sent (as `on`) when ticked, absent otherwise.
fn checkbox<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(!String::deserialize(deserializer)?.is_empty())
}

#[derive(Template)]
#[template(path = "new_task.html")]
pub(crate) struct NewTaskPage {
    pub me: Option<String>,
    pub csrf: String,
    pub notice: Option<String>,
    pub form: TaskForm,
}

/// `GET /tasks/new`: the form of `baton run`.
pub(crate) async fn new_task(Extension(session): Extension<Session>) -> Response {
    render(&NewTaskPage { me: session.name, csrf: session.csrf, notice: None, form: TaskForm::default() })
}

pub(crate) struct EntryRow {
    at: String,
    kind: String,
    amount: String,
    task: Option<String>,
    what: String,
}

#[derive(Template)]
#[template(path = "budget.html")]
struct BudgetPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    admin: bool,
    balance: String,
    held: String,
    available: String,
    month: String,
    spent: String,
    cap: Option<String>,
    reload: Option<String>,
    reloads: u32,
    overage: bool,
    cap_value: String,
    threshold: String,
    target: String,
    max_per_month: String,
    bars: Vec<Bar>,
    bars_label: &'static str,
    entries: Vec<EntryRow>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoticeQuery {
    pub notice: Option<String>,
}

/// Ledger entries the budget page reads: its table shows the newest, its chart the month's days.
const LEDGER: u32 = 2000;

/// `GET /budget`: the account, its spend per day this month and its ledger.
pub(crate) async fn budget(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, Failure> {
    let position = api.store.account(now()).await.map_err(Failure::store)?;
    let entries = api.store.entries(LEDGER).await.map_err(Failure::store)?;
    let month_start = position.month.start();
    let mut days: std::collections::BTreeMap<(i32, u32, u32), Credits> = Default::default();
    for entry in entries.iter().filter(|entry| entry.at >= month_start) {
        if let EntryKind::Charge(_) = entry.kind {
            let day = days.entry(entry.at.date()).or_insert(Credits::ZERO);
            // Charges are negative entries; the chart shows what was spent.
            *day = Credits::from_micros(day.micros() - entry.amount.micros());
        }
    }
    let policy = &position.policy;
    let reload = policy.auto_reload;
    let page = BudgetPage {
        me: session.name,
        admin: session.scope.covers(baton_core::Scope::Admin),
        csrf: session.csrf,
        notice: query.notice,
        balance: position.balance.to_string(),
        held: position.reserved.to_string(),
        available: position.available().to_string(),
        month: position.month.to_string(),
        spent: position.spent_this_month.to_string(),
        cap: policy.monthly_cap.map(|cap| cap.to_string()),
        reload: reload.map(|r| {
            format!("below {} available, up to {}, at most {} a month", r.threshold, r.target, r.max_per_month)
        }),
        reloads: position.reloads_this_month,
        overage: policy.overage,
        cap_value: policy.monthly_cap.map(|cap| cap.to_string()).unwrap_or_default(),
        threshold: reload.map(|r| r.threshold.to_string()).unwrap_or_default(),
        target: reload.map(|r| r.target.to_string()).unwrap_or_default(),
        max_per_month: reload.map(|r| r.max_per_month.to_string()).unwrap_or_default(),
        bars: bars(days.into_iter().map(|((y, m, d), spent)| (format!("{y:04}-{m:02}-{d:02}"), spent)).collect()),
        bars_label: "Day",
        entries: entries
            .iter()
            .take(50)
            .map(|entry| EntryRow {
                at: entry.at.to_string(),
                kind: entry.kind.to_string(),
                amount: entry.amount.to_string(),
                task: entry.task.clone(),
                what: entry.key.clone().unwrap_or_else(|| entry.note.clone()),
            })
            .collect(),
    };
    Ok(render(&page))
}

pub(crate) struct TemplateRow {
    name: String,
    request: String,
    repo: String,
    base: String,
    checks: String,
    limits: String,
}

#[derive(Template)]
#[template(path = "templates.html")]
struct TemplatesPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    templates: Vec<TemplateRow>,
}

/// `GET /templates`: the saved definitions, each with a button that starts a task.
pub(crate) async fn templates(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, Failure> {
    let rows = api
        .store
        .templates()
        .await
        .map_err(Failure::store)?
        .into_iter()
        .map(|template| {
            let budget = template.budget;
            let limits: Vec<String> = [
                budget.credits.map(|c| format!("{c} credits")),
                budget.wall_clock_secs.map(|s| format!("{} window", span(s as i64 * 1000))),
                budget.steps.map(|s| format!("{s} steps")),
            ]
            .into_iter()
            .flatten()
            .collect();
            TemplateRow {
                name: template.name,
                request: headline(&template.request, 80),
                repo: template.repo.to_string(),
                base: template.base,
                checks: template.checks.join("; "),
                limits: if limits.is_empty() { "none".into() } else { limits.join(", ") },
            }
        })
        .collect();
    Ok(render(&TemplatesPage { me: session.name, csrf: session.csrf, notice: query.notice, templates: rows }))
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub error: Option<String>,
}

/// `GET /login`.
pub(crate) async fn login() -> Response {
    render(&LoginPage { error: None })
}
