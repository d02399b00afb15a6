//! Schedules fired by a real `baton serve` process: the runs they start are real tasks (sandbox,
//! checks, the scripted model over HTTP); their limits hold; a server killed across a firing time
//! honours the catch-up policy and never fires twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_testkit::model::{Expect, Rule, Script, ScriptedServer};
use common::served::{baton, save_template, serve};
use serde_json::{Value, json};

fn finishing() -> Script {
    Script { rules: vec![Rule { when: Expect::default(), reply: common::finish("done") }], ..Script::default() }
}

/// Runs `baton ARGS` on `home`; its standard output, which must be a success.
fn cli(home: &Path, args: &[&str]) -> String {
    let output = baton(home).args(args).output().unwrap();
    assert!(output.status.success(), "baton {args:?}: {}", common::describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// Saves template `name` on `repo` whose tasks run `check`.
fn template(home: &Path, repo: &Path, name: &str, check: &str) {
    save_template(home, repo, name, "Tidy up", &["--check", check]);
}

/// The schedule's firings, oldest first.
fn firings(home: &Path, name: &str) -> Vec<Value> {
    let text = cli(home, &["--json", "schedule", "runs", name, "--limit", "1000"]);
    let mut firings: Vec<Value> = serde_json::from_str(&text).unwrap();
    firings.reverse();
    firings
}

fn with_outcome<'a>(firings: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    firings.iter().filter(|firing| firing["outcome"] == outcome).collect()
}

/// Waits (up to three minutes) until the schedule's firings satisfy `done`; them.
fn until(home: &Path, name: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let firings = firings(home, name);
        if done(&firings) {
            return firings;
        }
        assert!(Instant::now() < deadline, "never {what}: {firings:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task_status(home: &Path, id: &str) -> String {
    let task: Value = serde_json::from_str(&cli(home, &["--json", "task", "show", id])).unwrap();
    task["lifecycle"]["status"].as_str().unwrap().to_owned()
}

/// A fixed-offset zone in which it is now about noon, so that a test's runs never straddle the
/// schedule's midnight (when its count of today's runs starts again).
fn zone_at_noon() -> String {
    let hour = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 3600 % 24) as i64;
    // Etc/GMT-N is N hours ahead of UTC (POSIX signs).
    match 12 - hour {
        ahead if ahead >= 0 => format!("Etc/GMT-{ahead}"),
        behind => format!("Etc/GMT+{}", -behind),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_every_two_seconds_runs_three_times_a_day_and_records_the_rest_as_skipped() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    template(home.path(), repo.path(), "quick", "true");
    let zone = zone_at_noon();
    let made = cli(
        home.path(),
        &["schedule", "create", "--template", "quick", "--cron", "*/2 * * * * *", "--tz", &zone, "--runs-per-day", "3"],
    );
    assert!(made.contains("per day   3 runs") && made.contains("next"), "{made}");
    let _served = serve(home.path(), &model, "2");

    let firings = until(home.path(), "quick", "three runs and two skipped for the day's limit", |firings| {
        let limited = firings.iter().filter(|firing| {
            firing["detail"].as_str().is_some_and(|detail| detail.contains("runs today already (at most 3 a day)"))
        });
        limited.count() >= 2
    });
    let started = with_outcome(&firings, "started");
    assert_eq!(started.len(), 3, "exactly three runs: {firings:#?}");
    assert!(with_outcome(&firings, "claimed").is_empty() && with_outcome(&firings, "unstartable").is_empty());
    // Every firing from the third run on is skipped, each one recorded.
    let third = firings.iter().position(|firing| firing["task"] == started[2]["task"]).unwrap();
    assert!(firings[third + 1..].iter().all(|firing| firing["outcome"] == "skipped"), "{firings:#?}");
    let ats: Vec<i64> = firings.iter().map(|firing| firing["at"].as_i64().unwrap()).collect();
    assert!(ats.windows(2).all(|pair| pair[1] - pair[0] == 2000), "one record per firing, 2 s apart: {ats:?}");
    for run in &started {
        let id = run["task"].as_str().unwrap();
        assert!(run["detail"].as_str().unwrap().contains(id));
        let deadline = Instant::now() + Duration::from_secs(120);
        while task_status(home.path(), id) != "done" {
            assert!(Instant::now() < deadline, "task {id} never done");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_while_the_last_run_is_still_going_is_skipped() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    // Its check takes longer than the two seconds between firings.
    template(home.path(), repo.path(), "slow", "sleep 6");
    cli(home.path(), &["schedule", "create", "--template", "slow", "--cron", "*/2 * * * * *"]);
    let _served = serve(home.path(), &model, "2");

    let firings = until(home.path(), "slow", "a firing skipped for overlap", |firings| {
        firings.iter().any(|firing| firing["detail"].as_str().is_some_and(|detail| detail.starts_with("no overlap")))
    });
    cli(home.path(), &["schedule", "pause", "slow"]);
    let first = with_outcome(&firings, "started")[0]["task"].as_str().unwrap().to_owned();
    let overlap = firings.iter().find(|firing| firing["outcome"] == "skipped").unwrap();
    let detail = overlap["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("no overlap: task {first} is still ")), "{firings:#?}");
    assert_eq!(with_outcome(&firings, "started").len(), 1, "one run at a time: {firings:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_runs_keep_failing_pauses_itself_after_three() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    template(home.path(), repo.path(), "broken", "false");
    cli(home.path(), &["schedule", "create", "--template", "broken", "--cron", "*/2 * * * * *"]);
    let _served = serve(home.path(), &model, "2");

    let deadline = Instant::now() + Duration::from_secs(240);
    let paused = loop {
        let saved: Value = serde_json::from_str(&cli(home.path(), &["--json", "schedule", "show", "broken"])).unwrap();
        if let Some(reason) = saved["paused"].as_str() {
            break reason.to_owned();
        }
        assert!(Instant::now() < deadline, "never paused: {:#?}", firings(home.path(), "broken"));
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(paused.starts_with("3 failed runs in a row: task "), "{paused}");
    let firings = firings(home.path(), "broken");
    let started = with_outcome(&firings, "started");
    assert_eq!(started.len(), 3, "{firings:#?}");
    for run in &started {
        let id = run["task"].as_str().unwrap();
        assert_eq!(task_status(home.path(), id), "failed");
        assert!(paused.contains(id), "{paused} names {id}");
    }
    // Paused: nothing more fires.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(self::firings(home.path(), "broken").len(), firings.len());
    let listed = cli(home.path(), &["schedule", "list"]);
    assert!(listed.contains("paused: 3 failed runs in a row"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_across_a_firing_catches_it_up_once_or_skips_it_as_told() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    template(home.path(), repo.path(), "nightly", "true");
    // A rule that falls due once a minute, at a second some way off.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let second = (now.as_secs() + 12) % 60;
    let due = Duration::from_secs(now.as_secs() + 12);
    let rule = format!("{second} * * * * *");
    let served = serve(home.path(), &model, "2");
    for (name, policy) in [("once", "once"), ("skip", "skip")] {
        cli(
            home.path(),
            &["schedule", "create", "--name", name, "--template", "nightly", "--cron", &rule, "--catch-up", policy],
        );
    }
    let until_due = |offset: i64| {
        let at = due.as_millis() as i64 + offset;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        std::thread::sleep(Duration::from_millis((at - now).max(0) as u64));
    };
    // Killed before the firing time, started again after it.
    until_due(-3000);
    served.kill();
    until_due(2000);
    let served = serve(home.path(), &model, "2");
    let once =
        until(home.path(), "once", "the missed firing run", |firings| !with_outcome(firings, "started").is_empty());
    // Killed and started again once more: the firing is not taken again.
    served.kill();
    let _served = serve(home.path(), &model, "2");
    std::thread::sleep(Duration::from_secs(4));
    let once_after = firings(home.path(), "once");
    assert_eq!(once_after.len(), 1, "fired once: {once_after:#?}");
    assert_eq!(once_after[0]["at"], once[0]["at"]);
    assert_eq!(once_after[0]["at"].as_i64(), Some(due.as_millis() as i64));
    assert_eq!(once_after[0]["outcome"], "started");
    let detail = once_after[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("started task ") && detail.ends_with(", caught up after downtime"), "{detail}");
    let skip = firings(home.path(), "skip");
    assert_eq!(skip.len(), 1, "{skip:#?}");
    assert_eq!(
        (skip[0]["outcome"].as_str(), skip[0]["detail"].as_str()),
        (Some("skipped"), Some("missed: no server was running (catch-up: skip)"))
    );
    assert!(
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() < due + Duration::from_secs(55),
        "the test ran into the next firing; its counts would not mean what they say"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuing_schedule_runs_on_the_previous_runs_branch() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    template(home.path(), repo.path(), "line", "true");
    let zone = zone_at_noon();
    let args = ["--cron", "*/2 * * * * *", "--tz", &zone, "--mode", "continue", "--runs-per-day", "2"];
    cli(home.path(), &[&["schedule", "create", "--template", "line"][..], &args].concat());
    let _served = serve(home.path(), &model, "2");

    let firings = until(home.path(), "line", "two runs", |firings| with_outcome(firings, "started").len() == 2);
    let started = with_outcome(&firings, "started");
    let (first, second) = (started[0]["task"].as_str().unwrap(), started[1]["task"].as_str().unwrap());
    assert!(started[1]["detail"].as_str().unwrap().ends_with(&format!("continuing task {first}")), "{firings:#?}");
    let show =
        |id: &str| -> Value { serde_json::from_str(&cli(home.path(), &["--json", "task", "show", id])).unwrap() };
    let (earlier, later) = (show(first), show(second));
    assert_eq!(later["branch"], earlier["branch"], "the same branch");
    assert_eq!(later["spec"]["continues"]["task"], first);
    assert_eq!(earlier["work"]["continued_by"], second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_over_the_api_and_in_the_ui() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    template(home.path(), repo.path(), "weekly", "true");
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    let body = json!({"name": "weekly", "template": "weekly", "cron": "0 3 * * 1", "timezone": "Europe/Berlin",
        "mode": "continue", "runs_per_day": 1, "month_budget": 20000000});
    let made = http.post(api("/schedules")).json(&body).send().await.unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(
        (made["schedule"]["mode"].as_str(), made["schedule"]["max_failures"].as_u64()),
        (Some("continue"), Some(3))
    );
    let next = made["next"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{made}");
    assert!(next.windows(2).all(|pair| pair[1].as_i64().unwrap() - pair[0].as_i64().unwrap() == 7 * 86_400_000));
    assert_eq!(http.post(api("/schedules")).json(&body).send().await.unwrap().status(), 409, "a taken name");
    for (field, value) in
        [("cron", json!("61 * * * *")), ("timezone", json!("Mars/Olympus")), ("template", json!("gone"))]
    {
        let mut bad = body.clone();
        bad["name"] = json!("other");
        bad[field] = value;
        let refused = http.post(api("/schedules")).json(&bad).send().await.unwrap();
        assert_eq!(refused.status(), 422, "{field}");
    }
    let unknown = http
        .post(api("/schedules"))
        .json(&json!({"name": "x", "template": "weekly", "cron": "* * * * *", "every": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400, "an unknown field");

    let paused = http.post(api("/schedules/weekly/pause")).json(&json!({"reason": "holidays"})).send().await.unwrap();
    let paused: Value = paused.json().await.unwrap();
    assert_eq!((paused["paused"].as_str(), paused["next"].as_array().map(Vec::len)), (Some("holidays"), Some(0)));
    let listed: Value = http.get(api("/schedules")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["schedules"][0]["paused"], "holidays");

    // The UI shows it paused, with a button to resume, which resumes it.
    let signed_in = reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::COOKIE, format!("baton_session={}", served.token).parse().unwrap())]
                .into_iter()
                .collect(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = signed_in.get(format!("{}/schedules", served.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<strong>Paused:</strong> holidays") && page.contains("/schedules/weekly/resume"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let resumed = signed_in
        .post(format!("{}/schedules/weekly/resume", served.url))
        .header(reqwest::header::ORIGIN, &served.url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 303, "{}", resumed.text().await.unwrap());
    let shown: Value = http.get(api("/schedules/weekly")).send().await.unwrap().json().await.unwrap();
    assert_eq!((shown["paused"].as_str(), shown["firings"].as_array().map(Vec::len)), (None, Some(0)), "{shown}");
    assert_eq!(http.post(api("/schedules/weekly/resume")).send().await.unwrap().status(), 409, "not paused");
    let page = signed_in.get(format!("{}/schedules", served.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Next: ") && page.contains("/schedules/weekly/pause"), "{page}");
    let hooks = signed_in.get(format!("{}/hooks", served.url)).send().await.unwrap();
    assert_eq!(hooks.status(), 200);

    assert_eq!(http.delete(api("/schedules/weekly")).send().await.unwrap().status(), 204);
    assert_eq!(http.get(api("/schedules/weekly")).send().await.unwrap().status(), 404);
}
