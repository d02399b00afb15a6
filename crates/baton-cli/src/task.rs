//! `baton task ...`: thin glue from the command line to the store, the core and git.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use baton_core::{
    Answer, Budget, Continued, Credits, DecisionKind, Event, FindingStatus, Handoff, LegRole, Pick, RemoteUrl,
    RepoSource, Status, TaskId, TaskSpec, TaskState, Template, Timestamp, branch_name,
};
use baton_git::Repo;
use baton_server::{FollowedUp, Refused};
use baton_store::{Store, StoreError};

use crate::backend::{self, Backend};
use crate::cli::{CreateArgs, FindingCommand, TaskArgs, TaskCommand};
use crate::show;

/// How often `task events --follow` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub async fn run(
    home: &dyn Fn() -> anyhow::Result<PathBuf>,
    server: Option<&str>,
    command: TaskCommand,
    json: bool,
) -> anyhow::Result<()> {
    let backend = || backend::open(home, server);
    match command {
        TaskCommand::Create(args) => {
            if server.is_some() {
                bail!("`task create` works on this machine's data directory; over the API use POST /api/v1/tasks");
            }
            create(&home()?, *args, json).await
        }
        TaskCommand::List { status } => {
            let tasks = backend().await?.list(status).await?;
            if json { show::json(&tasks) } else { show::summaries(&tasks) }
        }
        TaskCommand::Show { id } => {
            let backend = backend().await?;
            let state = backend.load(&backend.resolve(&id).await?).await?;
            show::state(&state, json)?;
            // A parent's subtasks spend in their own journals: the total, with the parent's own.
            let mut children = Credits::ZERO;
            for task in state.work.subtasks.iter().filter_map(|s| s.task.as_deref()) {
                let child = backend.load(&TaskId::parse(task)?).await?;
                children = Credits::from_micros(children.micros() + child.money.spent.micros());
            }
            if !json && !state.work.subtasks.is_empty() {
                let all = Credits::from_micros(children.micros() + state.money.spent.micros());
                println!("total    {all} credits with the subtasks ({children} in subtasks)");
            }
            Ok(())
        }
        TaskCommand::Events { id, follow } => {
            let backend = backend().await?;
            events(backend.as_ref(), &backend.resolve(&id).await?, follow, json).await
        }
        TaskCommand::Message { id, text } => {
            let backend = backend().await?;
            let id = backend.resolve(&id).await?;
            let sent = backend.follow_up(&id, &text).await?;
            match (sent, json) {
                (FollowedUp::Delivered { task, number }, true) => {
                    show::json(&serde_json::json!({ "task": task, "number": number }))
                }
                (FollowedUp::Continued { task }, true) => {
                    show::json(&serde_json::json!({ "task": task, "continues": id }))
                }
                (FollowedUp::Delivered { task, number }, false) => {
                    println!("task {task}: follow-up {number} sent");
                    Ok(())
                }
                (FollowedUp::Continued { task }, false) => {
                    println!("task {id} has ended; task {task} continues its branch with this follow-up (queued)");
                    Ok(())
                }
            }
        }
        TaskCommand::Cancel { id, reason } => {
            let backend = backend().await?;
            let id = backend.resolve(&id).await?;
            let state = backend.cancel(&id, reason.as_deref().unwrap_or("cancelled by user")).await?;
            if json {
                show::json(&state)
            } else {
                println!("cancelled task {id}; branch {} is kept", state.branch);
                Ok(())
            }
        }
    }
}

pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

fn new_task_id() -> anyhow::Result<TaskId> {
    let entropy = getrandom::u64().map_err(|e| anyhow::anyhow!("cannot draw a random task id: {e}"))?;
    Ok(TaskId::from_entropy(entropy))
}

async fn create(home: &Path, args: CreateArgs, json: bool) -> anyhow::Result<()> {
    let state = create_task(home, args.request, args.task).await?;
    if json {
        show::json(&state)
    } else {
        println!(
            "created task {} on branch {} from {} ({})",
            state.id,
            state.branch,
            state.spec.base_ref,
            &state.base_commit[..12]
        );
        Ok(())
    }
}

/// Validates the arguments, pins the base commit and journals a new task.
pub async fn create_task(home: &Path, request: String, args: TaskArgs) -> anyhow::Result<TaskState> {
    // Checked before the store is opened, which would already write into the checkout.
    if let RepoSource::Local(path) = RepoSource::parse(&args.repo)? {
        Repo::open(&path)?.ensure_outside(home)?;
    }
    let store = crate::store::open(home).await?;
    create_in(&store, home, request, args).await
}

/// Creates the task in `store` (open on `home`), queued.
pub async fn create_in(store: &dyn Store, home: &Path, request: String, args: TaskArgs) -> anyhow::Result<TaskState> {
    let owner = args.owner.clone();
    start(store, home, &definition(String::new(), request, args)?, owner).await
}

/// What `baton run` was given, as a definition a template keeps (`name` for a template; empty for
/// a task started at once): the repository's root, and the environment file's text, checked now.
pub fn definition(name: String, request: String, args: TaskArgs) -> anyhow::Result<Template> {
    let (repo, push) = source(&args)?;
    let environment = match &args.env {
        // Parsed now, so a broken file is refused before a task or a template exists; the variables
        // the configuration chose for its own credentials are refused when the task runs.
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let usual = baton_core::OwnCredentials::default();
            baton_core::Environment::parse(&text, &usual).with_context(|| format!("{}", file.display()))?;
            Some(text)
        }
        None => None,
    };
    Ok(Template {
        name,
        request,
        repo,
        push,
        base: args.base,
        checks: args.checks,
        check_timeout_secs: args.check_timeout.as_secs(),
        scope: args.scope,
        protect: args.protect,
        budget: Budget {
            credits: args.budget,
            wall_clock_secs: args.window.map(|w| w.as_secs()),
            steps: args.max_steps,
        },
        model: args.model,
        context_window: args.context_window,
        max_handoffs: args.max_handoffs,
        review: !args.no_review,
        plan: args.plan,
        approve_plan: args.approve_plan,
        role_models: [(LegRole::Captain, args.captain_model), (LegRole::Review, args.review_model)]
            .into_iter()
            .filter_map(|(role, model)| model.map(|m| (role, m)))
            .collect(),
        attempts: args.attempts,
        pick: args.pick,
        priority: args.priority,
        environment,
    })
}

/// Where the task's repository is (a local one by its root) and where its branch is pushed.
fn source(args: &TaskArgs) -> anyhow::Result<(RepoSource, Option<RemoteUrl>)> {
    match RepoSource::parse(&args.repo)? {
        RepoSource::Remote(url) => Ok((RepoSource::Remote(url.clone()), Some(url))),
        RepoSource::Local(path) => {
            let repo = Repo::open(&path)?;
            let push = match args.push {
                true => {
                    let setting = repo.remote_url(&args.push_remote)?;
                    Some(RemoteUrl::from_remote_setting(&setting, repo.root()).with_context(|| {
                        format!("the URL of remote {} of {}", args.push_remote, repo.root().display())
                    })?)
                }
                false => None,
            };
            Ok((RepoSource::Local(repo.root().to_owned()), push))
        }
    }
}

/// Starts a task from `template` for `owner`, queued: its base ref resolved now, its spec checked.
pub async fn start(
    store: &dyn Store,
    home: &Path,
    template: &Template,
    owner: Option<String>,
) -> anyhow::Result<TaskState> {
    start_as(store, home, template, owner, &new_task_id()?).await
}

/// As [`start`], as task `id`; when that task exists already (a start retried), that task.
pub async fn start_as(
    store: &dyn Store,
    home: &Path,
    template: &Template,
    owner: Option<String>,
    id: &TaskId,
) -> anyhow::Result<TaskState> {
    // A remote is fetched first, which may take a while: off the runtime that serves requests.
    let (source, base, at) = (template.repo.clone(), template.base.clone(), home.to_owned());
    let fetched = tokio::task::spawn_blocking(move || baton_engine::fetched_base(&at, &source, &base)).await?;
    let (repo, base_commit) = fetched?;
    repo.ensure_outside(home)?;
    let spec = template.spec(owner);
    spec.validate()?;
    let branch = branch_name(&spec.request, id);
    match store.append(id, 0, now(), &[Event::TaskCreated { spec: Box::new(spec), base_commit, branch }]).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(store.load(id).await?),
        Err(error) => Err(error.into()),
    }
}

/// `baton pr`: publishes the task's pull request and says where it is, or why not.
pub async fn pull_request(
    home: &Path,
    config: &crate::config::Config,
    id: &str,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let forges = baton_forge::Forges::read(&config.text).with_context(|| config.context())?;
    let store = crate::store::open(home).await?;
    let id = store.resolve(id).await?;
    let event = publish_pull_request(&store, &forges, &id).await.map_err(|refused| anyhow::anyhow!("{refused}"))?;
    if json {
        show::json(&event)?;
    }
    match event {
        Event::PullRequestPublished { pull_request, .. } => {
            if !json {
                println!("task {id}: pull request #{} {}", pull_request.number, pull_request.url);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Event::PullRequestFailed { error, .. } => bail!("task {id}: the pull request was not published: {error}"),
        _ => Ok(std::process::ExitCode::SUCCESS),
    }
}

/// Opens or updates the pull request of task `id`, which is not running, and journals what the
/// forge said. The journaled event, for the caller to show.
pub async fn publish_pull_request(
    store: &dyn Store,
    forges: &baton_forge::Forges,
    id: &TaskId,
) -> Result<Event, Refused> {
    let state = store.load(id).await.map_err(|error| Refused::Failed(error.to_string()))?;
    if matches!(state.status(), Status::Running | Status::Verifying | Status::Reviewing) {
        let why = format!("task {id} is {}: its pull request is published when it is verified", state.status());
        return Err(Refused::Conflict(why));
    }
    let Some(remote) = &state.spec.push else {
        let why = format!("task {id} is not pushed anywhere: create it on a URL, or with --push");
        return Err(Refused::Invalid(why));
    };
    if state.work.pushed.is_none() || state.work.pushed != state.work.last_commit {
        let why = format!("task {id}'s branch is not pushed to {remote} up to its last commit");
        return Err(Refused::Conflict(why));
    }
    let summary = state.stop.as_ref().map_or_else(|| state.spec.request.clone(), |stop| stop.detail.clone());
    let Some(event) = baton_engine::publish_event(forges, &state, &summary).await else {
        let why = format!("no forge is known for {remote}: declare it under [forges.NAME] in the configuration");
        return Err(Refused::Invalid(why));
    };
    store.append(id, state.next_seq, now(), std::slice::from_ref(&event)).await.map_err(|error| refusal(id, error))?;
    Ok(event)
}

pub async fn events(backend: &dyn Backend, id: &TaskId, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut next = 0;
    loop {
        let batch = backend.events(id, next).await?;
        for recorded in &batch {
            show::event(recorded, json)?;
        }
        next += batch.len() as u64;
        if !follow || backend.load(id).await?.status().is_terminal() && backend.events(id, next).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// `baton decide`: answers the task's open decision, whichever it is. Returns the task's id.
pub async fn answer(backend: &dyn Backend, id: &str, answer: String, deny: bool, json: bool) -> anyhow::Result<TaskId> {
    let id = backend.resolve(id).await?;
    let state = backend.load(&id).await?;
    let Some((decision, _)) = state.work.decisions.iter().find(|(_, answer)| answer.is_none()) else {
        bail!("task {id} is not waiting for a decision (it is {})", state.status());
    };
    backend.decide(&id, &decision.id, answer, !deny).await?;
    if !json {
        let verb = if deny { "denied" } else { "answered" };
        println!("task {id}: {} {verb}", decision.id);
    }
    Ok(id)
}

/// Journals the answer to the open decision `decision` of a waiting task (from the command line or
/// the API); the task is then running again, for whoever resumes it.
pub async fn decide(
    store: &dyn Store,
    id: &TaskId,
    decision: &str,
    answer: String,
    approved: bool,
) -> Result<(), Refused> {
    let state = store.load(id).await.map_err(|error| Refused::Failed(error.to_string()))?;
    let open = state.work.decisions.iter().find(|(asked, answer)| asked.id == decision && answer.is_none());
    let Some((asked, _)) = open.filter(|_| state.status() == Status::Waiting) else {
        let message = format!("task {id} has no open decision {decision:?} (it is {})", state.status());
        return Err(Refused::Conflict(message));
    };
    // A pick names one of the attempts offered; there is nothing to deny.
    if matches!(asked.kind, DecisionKind::Pick { .. }) && !(approved && asked.options.contains(&answer)) {
        return Err(Refused::Invalid(format!(
            "task {id} waits for a pick: answer one of {} (to drop every attempt, cancel the task)",
            asked.options.join(", ")
        )));
    }
    let made = Event::DecisionMade { id: decision.to_owned(), answer: Answer { answer, approved } };
    store.append(id, state.next_seq, now(), &[made]).await.map_err(|error| refusal(id, error))?;
    Ok(())
}

/// `baton pick`: picks the attempt that becomes the task's result. Returns the task's id.
pub async fn choose(backend: &dyn Backend, id: &str, attempt: &str, json: bool) -> anyhow::Result<TaskId> {
    let id = backend.resolve(id).await?;
    backend.pick(&id, attempt).await?;
    if !json {
        println!("task {id}: {attempt} picked");
    }
    Ok(id)
}

/// Answers the open pick of a task whose attempts have ended with `attempt` (from the command line
/// or the API); the task then merges it and runs its checks, for whoever resumes it.
pub async fn pick(store: &dyn Store, id: &TaskId, attempt: &str) -> Result<(), Refused> {
    let state = store.load(id).await.map_err(|error| Refused::Failed(error.to_string()))?;
    let open = state
        .work
        .decisions
        .iter()
        .find(|(asked, answer)| matches!(asked.kind, DecisionKind::Pick { .. }) && answer.is_none());
    let Some((asked, _)) = open.filter(|_| state.status() == Status::Waiting) else {
        let why = match (state.spec.attempts, state.spec.pick, &state.work.picked) {
            (1, _, _) => "it makes no attempts".to_owned(),
            (_, _, Some(picked)) => format!("{picked} is already picked"),
            (_, Pick::Rule, _) => "baton picks by its rule (the task was not started with --pick human)".to_owned(),
            (_, Pick::Human, None) => format!("its attempts have not all ended (it is {})", state.status()),
        };
        return Err(Refused::Conflict(format!("task {id} is not waiting for a pick: {why}")));
    };
    decide(store, id, &asked.id, attempt.to_owned(), true).await
}

/// `baton finding resolve|dismiss`: a human settles a finding.
pub async fn finding(backend: &dyn Backend, command: FindingCommand, json: bool) -> anyhow::Result<()> {
    let (args, status) = match command {
        FindingCommand::Resolve(args) => (args, FindingStatus::Resolved),
        FindingCommand::Dismiss(args) => (args, FindingStatus::Irrelevant),
    };
    let id = backend.resolve(&args.task).await?;
    let state = backend.settle(&id, &args.finding, status, args.note).await?;
    let updated = state.work.findings.iter().find(|f| f.id == args.finding);
    if json {
        show::json(&updated)
    } else {
        println!("task {id}: {} is now {status:?}", args.finding);
        Ok(())
    }
}

/// Journals a human's settling of finding `finding` of task `id` (from the command line or the
/// API): the task's state after it.
pub async fn settle_finding(
    store: &dyn Store,
    id: &TaskId,
    finding: &str,
    status: FindingStatus,
    note: String,
) -> Result<TaskState, Refused> {
    let failed = |error: StoreError| Refused::Failed(error.to_string());
    let state = store.load(id).await.map_err(failed)?;
    if !state.work.findings.iter().any(|f| f.id == finding) {
        return Err(Refused::Missing(format!("task {id} has no finding `{finding}`")));
    }
    let event = Event::FindingUpdated { id: finding.to_owned(), status, note, by: "human".to_owned() };
    store.append(id, state.next_seq, now(), &[event]).await.map_err(|error| refusal(id, error))?;
    store.load(id).await.map_err(failed)
}

/// The longest follow-up, in bytes.
const MAX_FOLLOW_UP: usize = 64 * 1024;

/// Sends the user's follow-up `text` to task `id` (from the command line or the API): its run
/// gives it to the agent before its next model call; a paused task is made runnable again. A task
/// that ended done or failed is continued instead: a new task on its branch takes the follow-up
/// as its request; later follow-ups to it go to the newest task of that line.
pub async fn follow_up(store: &dyn Store, id: &TaskId, text: &str) -> Result<FollowedUp, Refused> {
    if text.trim().is_empty() {
        return Err(Refused::Invalid("a follow-up needs text".into()));
    }
    if text.len() > MAX_FOLLOW_UP {
        return Err(Refused::Invalid(format!("a follow-up is at most {MAX_FOLLOW_UP} bytes, not {}", text.len())));
    }
    let failed = |error: StoreError| Refused::Failed(error.to_string());
    let mut id = id.clone();
    loop {
        let state = store.load(&id).await.map_err(failed)?;
        if state.status().is_terminal() {
            match &state.work.continued_by {
                Some(next) => id = TaskId::parse(next).map_err(|error| Refused::Failed(error.to_string()))?,
                None => {
                    let task = new_task_id().map_err(|error| Refused::Failed(format!("{error:#}")))?;
                    continue_as(store, &state, text, state.spec.budget, &task).await?;
                    return Ok(FollowedUp::Continued { task });
                }
            }
            continue;
        }
        let number = store.send_follow_up(&id, now(), text).await.map_err(failed)?;
        if state.status() == Status::Paused {
            let resumed = Event::Resumed { detail: "a follow-up from the user".into() };
            store.append(&id, state.next_seq, now(), &[resumed]).await.map_err(|error| refusal(&id, error))?;
        }
        // A run that ended between the read and the send never gives it to its agent: the task
        // is continued with it instead.
        let after = store.load(&id).await.map_err(failed)?;
        if !(after.status().is_terminal() && after.work.messages_delivered < number) {
            return Ok(FollowedUp::Delivered { task: id, number });
        }
    }
}

/// How long a follow-up waits for an ended task's run to let go of it.
const RUN_ENDING: Duration = Duration::from_secs(10);

/// Starts task `task`, which continues `earlier`'s branch (from its base, so that its diff is the
/// whole change) with `text` as its request and `budget` as its limits, queued for whoever runs
/// tasks. Retried with the same `task`, it finishes what an earlier call began.
pub async fn continue_as(
    store: &dyn Store,
    earlier: &TaskState,
    text: &str,
    budget: Budget,
    task: &TaskId,
) -> Result<(), Refused> {
    let id = &earlier.id;
    if earlier.status() == Status::Cancelled {
        return Err(Refused::Conflict(format!(
            "task {id} was cancelled; a follow-up reaches a task that has not ended, or continues one that ended done or failed"
        )));
    }
    if let Some(parent) = &earlier.spec.parent {
        return Err(Refused::Conflict(format!("task {id} is a part of task {parent}: send the follow-up there")));
    }
    // Its run releases the lease just after the end; the new task's machine then takes the branch.
    let failed = |error: StoreError| Refused::Failed(error.to_string());
    let waited = std::time::Instant::now();
    while store.lease(id).await.map_err(failed)?.is_some_and(|lease| lease.expires_at > now()) {
        if waited.elapsed() > RUN_ENDING {
            return Err(Refused::Conflict(format!("task {id}'s run is still ending; send the follow-up again")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended =
        earlier.stop.as_ref().map_or(earlier.status().to_string(), |stop| format!("{}: {}", stop.reason, stop.detail));
    let spec = TaskSpec {
        request: text.to_owned(),
        budget,
        continues: Some(Continued { task: id.to_string(), request: earlier.spec.request.clone(), ended }),
        plan: false,
        approve_plan: false,
        attempts: 1,
        pick: Pick::Rule,
        merges: Vec::new(),
        ..earlier.spec.clone()
    };
    spec.validate().map_err(|error| Refused::Invalid(error.to_string()))?;
    // On the earlier task first: of two follow-ups at once, one continues it and the other is
    // refused as a conflict, and finds the new task when it tries again.
    if earlier.work.continued_by.as_deref() != Some(task.as_str()) {
        let continued = Event::Continued { task: task.to_string() };
        store.append(id, earlier.next_seq, now(), &[continued]).await.map_err(|error| refusal(id, error))?;
    }
    let created = Event::TaskCreated {
        spec: Box::new(spec),
        base_commit: earlier.base_commit.clone(),
        branch: earlier.branch.clone(),
    };
    match store.append(task, 0, now(), &[created]).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(error) => Err(failed(error)),
    }
}

/// A failed append to task `id`, as a refusal: a writer that got there first is a conflict the
/// client may retry.
pub fn refusal(id: &TaskId, error: StoreError) -> Refused {
    match error {
        StoreError::Conflict { .. } => Refused::Conflict(format!("task {id} changed meanwhile; try again")),
        other => Refused::Failed(other.to_string()),
    }
}

/// `baton handoffs ID`: every handoff of the task, oldest first.
pub async fn handoffs(home: &Path, id: &str, json: bool) -> anyhow::Result<()> {
    let store = crate::store::open(home).await?;
    let id = store.resolve(id).await?;
    let handoffs: Vec<Handoff> = store
        .events(&id, 0)
        .await?
        .into_iter()
        .filter_map(|recorded| match recorded.event {
            Event::HandoffWritten { handoff } => Some(*handoff),
            _ => None,
        })
        .collect();
    if json { show::json(&handoffs) } else { show::handoffs(&handoffs) }
}

/// Cancels task `id` (from the command line or the API), and with it its subtasks and attempts
/// that have not ended: each is journaled as cancelled at once; a run in progress stops at its
/// next journal write and takes the machine down then, and a machine nothing runs on goes now. The
/// task's state after.
pub async fn cancel(store: &dyn Store, home: &Path, id: &TaskId, reason: &str) -> Result<TaskState, Refused> {
    let failed = |error: StoreError| Refused::Failed(error.to_string());
    let state = match mark_cancelled(store, id, reason).await.map_err(failed)? {
        Cancelling::From(state) => state,
        Cancelling::AlreadyEnded(status) => {
            return Err(Refused::Conflict(format!("task {id} has already ended ({status})")));
        }
    };
    let held = store.lease(id).await.map_err(failed)?.is_some_and(|lease| lease.expires_at > now());
    if !held {
        let (home, state) = (home.to_owned(), state.clone());
        match tokio::task::spawn_blocking(move || baton_engine::discard(&home, &state)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Refused::Failed(format!("task {id} is cancelled, but {error}"))),
            Err(error) => return Err(Refused::Failed(error.to_string())),
        }
    }
    for child in state.work.subtasks.iter().filter_map(|subtask| subtask.task.as_deref()) {
        let child = TaskId::parse(child).map_err(|error| Refused::Failed(error.to_string()))?;
        match Box::pin(cancel(store, home, &child, &format!("its parent task {id} was cancelled"))).await {
            // One that ended before stays as it ended.
            Ok(_) | Err(Refused::Conflict(_)) => {}
            Err(error) => return Err(error),
        }
    }
    store.load(id).await.map_err(failed)
}

/// What journaling a cancellation came to.
enum Cancelling {
    /// Cancelled; the state it was cancelled from.
    From(Box<TaskState>),
    AlreadyEnded(Status),
}

/// Journals the task as cancelled. Another writer (its run) may append between the read and the
/// write: then it reads again.
async fn mark_cancelled(store: &dyn Store, id: &TaskId, detail: &str) -> Result<Cancelling, StoreError> {
    loop {
        let state = store.load(id).await?;
        if state.status().is_terminal() {
            return Ok(Cancelling::AlreadyEnded(state.status()));
        }
        let cancelled = Event::Cancelled { detail: detail.to_owned() };
        match store.append(id, state.next_seq, now(), &[cancelled]).await {
            Ok(_) => return Ok(Cancelling::From(Box::new(state))),
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
}
