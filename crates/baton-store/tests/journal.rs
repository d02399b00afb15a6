//! The store's conformance suite, through its real paths: every test runs on SQLite (on disk, blobs
//! on disk) and on PostgreSQL (a database of its own in the test cluster, blobs in a table).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{Event, FoldError, Status, StopReason, TransitionError, fold};
use baton_store::{INLINE_PAYLOAD_LIMIT, SqlStore, Store, StoreError};
use common::{Backend, Place, Rng, at, created, next_valid_event, on_both_stores, store};

async fn appended_events_read_back_and_fold_to_the_summary(backend: Backend) {
    let (_place, store) = store(backend).await;
    let id = Rng(3).task_id();
    assert_eq!(store.append(&id, 0, at(10), &[created("fix it")]).await.unwrap(), 1);
    let next = store
        .append(
            &id,
            1,
            at(20),
            &[Event::Started, Event::Paused { reason: StopReason::BudgetExhausted, detail: "out".into() }],
        )
        .await
        .unwrap();
    assert_eq!(next, 3);

    let journal = store.events(&id, 0).await.unwrap();
    assert_eq!(journal.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(journal[1].at, at(20));
    assert_eq!(store.events(&id, 2).await.unwrap(), journal[2..]);

    // The summary row is kept in step with the journal: rebuilding from the journal agrees with it.
    let state = store.load(&id).await.unwrap();
    let summary = store.list(None).await.unwrap().remove(0);
    assert_eq!((summary.status, summary.stop_reason), (state.lifecycle.status, state.lifecycle.stop_reason));
    assert_eq!((summary.next_seq, summary.updated_at, summary.created_at), (3, at(20), at(10)));
    assert_eq!(state.stop.unwrap().detail, "out");
    assert_eq!(store.list(Some(Status::Paused)).await.unwrap().len(), 1);
    assert!(store.list(Some(Status::Running)).await.unwrap().is_empty());
}

async fn a_stale_writer_gets_a_conflict_and_writes_nothing(backend: Backend) {
    let (_place, store) = store(backend).await;
    let id = Rng(5).task_id();
    store.append(&id, 0, at(1), &[created("x")]).await.unwrap();
    store.append(&id, 1, at(2), &[Event::Started]).await.unwrap();

    let err = store.append(&id, 1, at(3), &[Event::Cancelled { detail: "late".into() }]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 1, actual: 2, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("task {id}: another writer appended first (expected to write seq 1, the journal is at 2)")
    );
    let err = store.append(&id, 0, at(3), &[created("again")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 0, actual: 2, .. }), "{err}");
    assert_eq!(store.events(&id, 0).await.unwrap().len(), 2);
}

async fn an_invalid_transition_is_refused_whole(backend: Backend) {
    let (_place, store) = store(backend).await;
    let id = Rng(7).task_id();
    store.append(&id, 0, at(1), &[created("x")]).await.unwrap();
    // The first event of the batch is fine, the second is not: neither may land.
    let err = store
        .append(
            &id,
            1,
            at(2),
            &[Event::Started, Event::Finished { reason: StopReason::Verified, detail: String::new() }],
        )
        .await
        .unwrap_err();
    match &err {
        StoreError::Rejected { seq: 2, source: FoldError::Transition { source, .. }, .. } => {
            assert_eq!(*source, TransitionError::NotAllowed { from: Status::Running, event: "finished" })
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        err.to_string(),
        format!("task {id}: event 2 was refused: event 2: a running task cannot take a `finished` event")
    );
    assert_eq!(store.events(&id, 0).await.unwrap().len(), 1);
    assert_eq!(store.list(None).await.unwrap()[0].status, Status::Queued);

    let other = Rng(8).task_id();
    let err = store.append(&other, 0, at(1), &[Event::Started]).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected { seq: 0, source: FoldError::NotCreatedFirst("started"), .. }), "{err}");
    let err = store.append(&other, 4, at(1), &[Event::Started]).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no task `{other}`"));
    assert!(store.list(None).await.unwrap().iter().all(|s| s.id != other));
}

async fn large_payloads_go_to_the_blob_store_and_come_back_whole(backend: Backend) {
    let (place, store) = store(backend).await;
    let id = Rng(9).task_id();
    let request = "λ".repeat(INLINE_PAYLOAD_LIMIT);
    store.append(&id, 0, at(1), &[created(&request)]).await.unwrap();

    let (payload, blob): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT payload, blob FROM events WHERE seq = 0").fetch_one(store.pool()).await.unwrap();
    assert_eq!(payload, None, "a large event must not be inline");
    let hash = blob.unwrap();
    assert!(place.holds_blob(&store, &hash).await);
    assert_eq!(store.load(&id).await.unwrap().spec.request, request);
}

async fn a_corrupt_row_is_named_and_the_rest_of_the_store_stays_usable(backend: Backend) {
    let (place, store) = store(backend).await;
    let mut rng = Rng(11);
    let (broken, healthy, big) = (rng.task_id(), rng.task_id(), rng.task_id());
    for id in [&broken, &healthy] {
        store.append(id, 0, at(1), &[created("x"), Event::Started]).await.unwrap();
    }
    sqlx::query(
        "UPDATE events SET payload = '{\"type\":\"paused\",\"reason\":\"bored\"}' WHERE task_id = $1 AND seq = 1",
    )
    .bind(broken.as_str())
    .execute(store.pool())
    .await
    .unwrap();

    let err = store.load(&broken).await.unwrap_err();
    assert!(matches!(&err, StoreError::CorruptEvent { task, seq: 1, .. } if *task == broken), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("task {broken}: event 1 is corrupt: payload is not a valid event")),
        "{message}"
    );

    assert_eq!(store.load(&healthy).await.unwrap().status(), Status::Running);
    assert_eq!(store.list(None).await.unwrap().len(), 2);
    // The slot is taken: a writer continues after it rather than over it.
    assert_eq!(store.append(&broken, 2, at(3), &[Event::Cancelled { detail: "give up".into() }]).await.unwrap(), 3);

    // A blob that rots on disk is caught by its hash and named by its event.
    store.append(&big, 0, at(1), &[created(&"y".repeat(INLINE_PAYLOAD_LIMIT + 1))]).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT blob FROM events WHERE task_id = $1")
        .bind(big.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    place.rot_blob(&store, &hash).await;
    let err = store.events(&big, 0).await.unwrap_err();
    assert!(err.to_string().contains("content does not match its hash"), "{err}");
    assert!(matches!(err, StoreError::CorruptEvent { seq: 0, .. }));

    // A kind column that disagrees with its payload is caught too.
    sqlx::query("UPDATE events SET kind = 'resumed' WHERE task_id = $1 AND seq = 1")
        .bind(healthy.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.events(&healthy, 0).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("task {healthy}: event 1 is corrupt: the row says `resumed` but the payload is `started`")
    );
}

async fn prefixes_resolve_to_one_task_or_say_why_not(backend: Backend) {
    let (_place, store) = store(backend).await;
    let ids: Vec<_> = (0..40).map(|i| baton_core::TaskId::from_entropy(i * 0x0123_4567_89ab)).collect();
    for id in &ids {
        store.append(id, 0, at(1), &[created("x")]).await.unwrap();
    }
    assert_eq!(store.resolve(ids[5].as_str()).await.unwrap(), ids[5]);
    assert!(matches!(store.resolve("zzzz").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.resolve("%").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.resolve("").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.resolve("0").await, Err(StoreError::Ambiguous { .. })));
}

async fn a_newer_schema_is_refused_not_guessed_at(backend: Backend) {
    let (place, store) = store(backend).await;
    sqlx::query("INSERT INTO baton_schema (version, applied_at) VALUES (99, 0)").execute(store.pool()).await.unwrap();
    store.pool().close().await;
    let err = common::open_at(&place.location()).await.unwrap_err();
    let known = match backend {
        Backend::Sqlite => 10,
        Backend::Postgres => 1,
    };
    assert_eq!(
        err.to_string(),
        format!("the journal database has schema version 99, newer than this baton knows ({known}); upgrade baton")
    );
    if backend == Backend::Postgres {
        // Nor does `baton migrate` guess.
        let err = SqlStore::migrate(&place.location()).await.unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { found: 99, known: 1 }), "{err}");
    }
}

async fn reopening_keeps_everything(backend: Backend) {
    let place = Place::new(backend).await;
    let id = Rng(13).task_id();
    let mut status = Status::Queued;
    {
        let store = place.open().await;
        store.append(&id, 0, at(1), &[created("x")]).await.unwrap();
        for seq in 1..50 {
            let event = next_valid_event(status, format!("step {seq}"));
            store.append(&id, seq, at(seq as i64), &[event]).await.unwrap();
            status = store.list(None).await.unwrap()[0].status;
        }
        store.pool().close().await;
    }
    let store = place.open().await;
    let journal = store.events(&id, 0).await.unwrap();
    assert_eq!(journal.len(), 50);
    assert_eq!(fold(id.clone(), &journal).unwrap().status(), status);
}

async fn a_lease_has_one_holder_until_it_expires_and_a_holder_that_lost_it_cannot_write(backend: Backend) {
    let (_place, store) = store(backend).await;
    let id = Rng(7).task_id();
    store.append(&id, 0, at(0), &[created("leased")]).await.unwrap();
    assert!(matches!(store.claim(&Rng(8).task_id(), "a", at(0), 1000).await, Err(StoreError::NotFound(_))));

    let first = store.claim(&id, "a", at(100), 1000).await.unwrap().unwrap();
    assert_eq!((first.epoch, first.expires_at), (1, at(1100)));
    assert_eq!(store.claim(&id, "b", at(500), 1000).await.unwrap(), None, "held by a");
    let again = store.claim(&id, "a", at(600), 1000).await.unwrap().unwrap();
    assert_eq!((again.epoch, again.expires_at), (1, at(1600)), "a renews by claiming again");
    assert_eq!(store.append_leased(&first, 1, at(700), &[Event::Started]).await.unwrap(), 2);

    // a stops renewing (frozen); once the lease expires b takes it over, with a new epoch.
    let taken = store.claim(&id, "b", at(1601), 1000).await.unwrap().unwrap();
    assert_eq!(taken.epoch, 2);
    assert_eq!(store.renew(&first, at(1700), 1000).await.unwrap(), None, "a's renewal fails");
    let late = store.append_leased(&first, 2, at(1700), &[Event::Feedback { text: "late".into() }]).await;
    assert!(matches!(late, Err(StoreError::Fenced { epoch: 1, .. })), "{late:?}");
    assert_eq!(store.events(&id, 0).await.unwrap().len(), 2, "nothing of a's was written");
    assert_eq!(store.append_leased(&taken, 2, at(1700), &[Event::Feedback { text: "b".into() }]).await.unwrap(), 3);
    let renewed = store.renew(&taken, at(1800), 1000).await.unwrap().unwrap();
    assert_eq!(renewed.expires_at, at(2800));

    // Released, it is free at once; the epoch still grows.
    store.release(&renewed).await.unwrap();
    let third = store.claim(&id, "c", at(1900), 1000).await.unwrap().unwrap();
    assert_eq!(third.epoch, 3);
    assert!(matches!(store.append_leased(&renewed, 3, at(1900), &[]).await, Ok(3)), "an empty append writes nothing");

    // c is known dead: its lease is taken over before it expires, once.
    assert_eq!(store.lease(&id).await.unwrap(), Some(third.clone()));
    let over = store.take_over(&third, "d", at(2000), 1000).await.unwrap().unwrap();
    assert_eq!((over.holder.as_str(), over.epoch), ("d", 4));
    assert_eq!(store.take_over(&third, "e", at(2000), 1000).await.unwrap(), None, "the lease changed meanwhile");
}

async fn tokens_are_found_by_the_hash_of_their_secret_until_revoked_and_names_are_never_reused(backend: Backend) {
    use baton_core::{Scope, Timestamp, Token, TokenHash, token_secret};
    let (_place, store) = store(backend).await;
    let secret = token_secret([7; 32]);
    let token = Token { name: "ci".into(), scope: Scope::Write, created_at: Timestamp(5), revoked_at: None };
    store.add_token(&token, &TokenHash::of(&secret)).await.unwrap();
    assert_eq!(store.token(&TokenHash::of(&secret)).await.unwrap(), Some(token.clone()));
    assert_eq!(store.token(&TokenHash::of(&token_secret([8; 32]))).await.unwrap(), None);
    let again = store.add_token(&token, &TokenHash::of(&token_secret([9; 32]))).await;
    assert!(matches!(again, Err(StoreError::TokenExists(name)) if name == "ci"));

    let revoked = store.revoke_token("ci", Timestamp(9)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(Timestamp(9)));
    assert_eq!(store.token(&TokenHash::of(&secret)).await.unwrap(), None);
    assert!(matches!(store.revoke_token("ci", Timestamp(10)).await, Err(StoreError::NoSuchToken(_))));
    assert!(matches!(store.add_token(&token, &TokenHash::of(&secret)).await, Err(StoreError::TokenExists(_))));
    assert_eq!(store.tokens().await.unwrap(), vec![revoked]);
}

async fn templates_are_kept_by_name_whole_and_a_name_is_taken_once(backend: Backend) {
    let (_place, store) = store(backend).await;
    let template = |name: &str, request: &str| baton_core::Template {
        name: name.into(),
        request: request.into(),
        repo: std::path::PathBuf::from("/repo").into(),
        push: None,
        base: "main".into(),
        checks: vec!["make test".into()],
        check_timeout_secs: 60,
        scope: vec!["src".into()],
        protect: Vec::new(),
        budget: baton_core::Budget { credits: Some("2.5".parse().unwrap()), wall_clock_secs: None, steps: Some(40) },
        model: Some("openai/gpt-5".into()),
        context_window: None,
        max_handoffs: None,
        review: false,
        plan: false,
        approve_plan: false,
        role_models: Default::default(),
        attempts: 3,
        pick: baton_core::Pick::Human,
        priority: 2,
        environment: Some("[environment]\n".into()),
    };
    let nightly = template("nightly", "Update the dependencies");
    store.add_template(&nightly, at(1)).await.unwrap();
    store.add_template(&template("docs", "Fix the docs"), at(2)).await.unwrap();
    assert_eq!(store.template("nightly").await.unwrap(), nightly, "every field comes back");
    let taken = store.add_template(&template("nightly", "Something else"), at(3)).await;
    assert!(matches!(taken, Err(StoreError::TemplateExists(name)) if name == "nightly"));
    assert_eq!(store.template("nightly").await.unwrap().request, "Update the dependencies", "kept as it was");
    let names: Vec<String> = store.templates().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["docs", "nightly"]);
    store.delete_template("docs").await.unwrap();
    assert!(matches!(store.template("docs").await, Err(StoreError::NoSuchTemplate(_))));
    assert!(matches!(store.delete_template("docs").await, Err(StoreError::NoSuchTemplate(_))));
}

async fn a_schedule_moves_its_cursor_once_per_claim_and_pauses_and_resumes(backend: Backend) {
    use baton_core::{Firing, FiringOutcome, Schedule, Timestamp};
    use baton_store::Firings;
    let (_place, store) = store(backend).await;
    let schedule = Schedule {
        name: "nightly".into(),
        template: "deps".into(),
        cron: "0 3 * * *".into(),
        timezone: "Europe/Berlin".into(),
        mode: baton_core::ScheduleMode::Continue,
        catch_up: baton_core::CatchUp::Once,
        runs_per_day: Some(2),
        run_budget: Some("1.5".parse().unwrap()),
        month_budget: Some("20".parse().unwrap()),
        max_failures: 4,
        owner: Some("ci".into()),
    };
    store.add_schedule(&schedule, at(10)).await.unwrap();
    assert!(matches!(store.add_schedule(&schedule, at(11)).await, Err(StoreError::ScheduleExists(_))));
    let saved = store.schedule("nightly").await.unwrap();
    assert_eq!(
        (saved.schedule, saved.paused, saved.cursor),
        (schedule.clone(), None, at(10)),
        "every field comes back"
    );
    let firing = |when: i64, outcome| Firing {
        schedule: "nightly".into(),
        at: at(when),
        outcome,
        task: None,
        detail: String::new(),
        recorded_at: at(20),
    };
    let claimed = [firing(12, FiringOutcome::Skipped), firing(15, FiringOutcome::Claimed)];
    store.advance_schedule("nightly", at(10), at(20), &claimed).await.unwrap();
    // The same firings again (another server, or a retry): refused, nothing recorded twice.
    let again = store.advance_schedule("nightly", at(10), at(20), &claimed).await;
    assert!(matches!(again, Err(StoreError::ScheduleChanged(_))), "{again:?}");
    store.settle_firing("nightly", at(15), FiringOutcome::Started, "started task x").await.unwrap();
    let settled_twice = store.settle_firing("nightly", at(15), FiringOutcome::Unstartable, "no").await;
    assert!(matches!(settled_twice, Err(StoreError::ScheduleChanged(_))), "only a claim is settled");
    let all = store.firings("nightly", Firings::All, Timestamp(0), 10).await.unwrap();
    assert_eq!(
        all.iter().map(|f| (f.at, f.outcome)).collect::<Vec<_>>(),
        [(at(15), FiringOutcome::Started), (at(12), FiringOutcome::Skipped)]
    );
    let runs = store.firings("nightly", Firings::Runs, Timestamp(0), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(store.firings("nightly", Firings::All, at(13), 10).await.unwrap().iter().all(|f| f.at >= at(13)));

    // Paused, its cursor cannot move; resumed, it fires from the resume on.
    assert!(matches!(store.resume_schedule("nightly", at(30)).await, Err(StoreError::ScheduleNotPaused(_))));
    assert_eq!(store.pause_schedule("nightly", "by hand", at(25)).await.unwrap().paused.as_deref(), Some("by hand"));
    // Subscribers hear of it: the notice is written with the pause.
    let told = store.notices(0, 10).await.unwrap();
    assert_eq!(
        told.iter().map(|n| (n.kind, n.detail.as_str(), n.at)).collect::<Vec<_>>(),
        [(baton_core::NoticeKind::SchedulePaused, "schedule nightly paused: by hand", at(25))]
    );
    let paused = store.advance_schedule("nightly", at(20), at(40), &[]).await;
    assert!(matches!(paused, Err(StoreError::ScheduleChanged(_))), "{paused:?}");
    let resumed = store.resume_schedule("nightly", at(50)).await.unwrap();
    assert_eq!((resumed.paused, resumed.cursor, resumed.resumed_at), (None, at(50), at(50)));
    store.delete_schedule("nightly").await.unwrap();
    assert!(matches!(store.schedule("nightly").await, Err(StoreError::NoSuchSchedule(_))));
    assert!(store.firings("nightly", Firings::All, Timestamp(0), 10).await.unwrap().is_empty(), "firings go with it");
    assert!(matches!(store.pause_schedule("nightly", "x", at(60)).await, Err(StoreError::NoSuchSchedule(_))));
}

async fn notices_are_kept_with_their_events_and_subscriptions_take_them_once(backend: Backend) {
    use baton_core::{Format, NoticeKind, Notification, NotificationState, Subscription};
    let (_place, store) = store(backend).await;
    let id = Rng(11).task_id();
    store.append(&id, 0, at(1), &[created("x")]).await.unwrap();
    let subscription =
        Subscription { name: "ops".into(), url: "http://127.0.0.1:9/".into(), format: Format::Json, events: vec![] };
    store.subscribe(&subscription, "secret", at(2)).await.unwrap();
    assert!(matches!(store.subscribe(&subscription, "secret", at(2)).await, Err(StoreError::SubscriptionExists(_))));
    let paused = Event::Paused { reason: StopReason::BudgetExhausted, detail: "out".into() };
    store.append(&id, 1, at(3), &[Event::Started, paused]).await.unwrap();
    // A refused append keeps no notice: the event is not kept either.
    let finished = Event::Finished { reason: StopReason::Verified, detail: "x".into() };
    let refused = store.append(&id, 3, at(4), &[finished, Event::Started]).await;
    assert!(refused.is_err());
    let notices = store.notices(0, 10).await.unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(
        (notices[0].kind, notices[0].task.as_deref(), notices[0].detail.as_str()),
        (NoticeKind::Paused, Some(id.as_str()), "budget_exhausted: out")
    );

    let saved = store.subscription("ops").await.unwrap();
    assert_eq!(saved.cursor, 0, "subscribed before the notice");
    let queued = |notice: i64| Notification {
        seq: 0,
        subscription: "ops".into(),
        notice,
        kind: NoticeKind::Paused,
        payload: "{}".into(),
        state: NotificationState::Pending,
        attempts: 0,
        next_at: at(5),
        last_error: None,
        created_at: at(5),
        delivered_at: None,
    };
    store.enqueue("ops", 0, notices[0].seq, &[queued(notices[0].seq)]).await.unwrap();
    let again = store.enqueue("ops", 0, notices[0].seq, &[queued(notices[0].seq)]).await;
    assert!(matches!(again, Err(StoreError::SubscriptionChanged(_))), "taken once");
    assert!(store.due_notifications(at(4), 10).await.unwrap().is_empty(), "not due yet");
    let due = store.due_notifications(at(5), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    store.notification_attempted(due[0].seq, NotificationState::Pending, at(9), Some("503"), at(5), 3).await.unwrap();
    store.notification_attempted(due[0].seq, NotificationState::Delivered, at(9), None, at(9), 3).await.unwrap();
    let log = store.notifications(Some("ops"), 10).await.unwrap();
    assert_eq!(
        (log[0].state, log[0].attempts, log[0].last_error.as_deref(), log[0].delivered_at),
        (NotificationState::Delivered, 2, Some("503"), Some(at(9)))
    );

    // Three notifications given up in a row disable the subscription.
    for notice in [100, 101, 102] {
        let from = store.subscription("ops").await.unwrap().cursor;
        store.enqueue("ops", from, notice, &[queued(notice)]).await.unwrap();
    }
    for pending in store.due_notifications(at(10), 10).await.unwrap() {
        assert_eq!(store.subscription("ops").await.unwrap().disabled, None);
        store
            .notification_attempted(pending.seq, NotificationState::Failed, at(10), Some("gone"), at(10), 3)
            .await
            .unwrap();
    }
    let disabled = store.subscription("ops").await.unwrap();
    assert_eq!(
        (disabled.failures, disabled.disabled.as_deref()),
        (3, Some("disabled after 3 notifications failed in a row"))
    );
    store.unsubscribe("ops").await.unwrap();
    assert!(matches!(store.subscription("ops").await, Err(StoreError::NoSuchSubscription(_))));
    assert_eq!(store.notifications(Some("ops"), 10).await.unwrap().len(), 4, "the log stays");
}

async fn follow_ups_are_numbered_per_task_and_read_after_a_number(backend: Backend) {
    let (_place, store) = store(backend).await;
    let (first, second) = (Rng(7).task_id(), Rng(8).task_id());
    for id in [&first, &second] {
        store.append(id, 0, at(1), &[created("x")]).await.unwrap();
    }
    assert_eq!(store.send_follow_up(&first, at(2), "one").await.unwrap(), 1);
    assert_eq!(store.send_follow_up(&second, at(2), "other").await.unwrap(), 1);
    assert_eq!(store.send_follow_up(&first, at(3), "two").await.unwrap(), 2);
    let texts = |list: Vec<baton_store::FollowUp>| list.into_iter().map(|f| (f.number, f.text)).collect::<Vec<_>>();
    assert_eq!(texts(store.follow_ups(&first, 0).await.unwrap()), [(1, "one".to_owned()), (2, "two".to_owned())]);
    assert_eq!(texts(store.follow_ups(&first, 1).await.unwrap()), [(2, "two".to_owned())]);
    assert!(store.follow_ups(&first, 2).await.unwrap().is_empty());
    let nowhere = Rng(9).task_id();
    assert!(matches!(store.send_follow_up(&nowhere, at(4), "lost").await, Err(StoreError::NotFound(_))));
}

fn created_by(request: &str, owner: Option<&str>, priority: i32) -> Event {
    let mut event = created(request);
    if let Event::TaskCreated { spec, .. } = &mut event {
        spec.owner = owner.map(str::to_owned);
        spec.priority = priority;
    }
    event
}

async fn the_next_claim_takes_interrupted_tasks_then_priority_then_owners_in_turn(backend: Backend) {
    let (_place, store) = store(backend).await;
    let mut rng = Rng(21);
    let mut make = async |request: &str, owner: Option<&str>, priority: i32, clock: i64| {
        let id = rng.task_id();
        store.append(&id, 0, at(clock), &[created_by(request, owner, priority)]).await.unwrap();
        id
    };
    let a1 = make("a1", Some("ann"), 0, 1).await;
    let a2 = make("a2", Some("ann"), 0, 2).await;
    let a3 = make("a3", Some("ann"), 0, 3).await;
    let b1 = make("b1", Some("bob"), 0, 4).await;
    let urgent = make("urgent", Some("ann"), 5, 5).await;
    let anonymous = make("anonymous", None, 0, 6).await;
    // Left running by a holder whose lease expired at 50.
    let interrupted = make("interrupted", Some("bob"), -3, 7).await;
    store.claim(&interrupted, "dead", at(40), 10).await.unwrap().unwrap();
    store.append(&interrupted, 1, at(41), &[Event::Started]).await.unwrap();
    // Held by someone alive: never offered.
    let held = make("held", Some("cat"), 9, 8).await;
    store.claim(&held, "alive", at(90), 1_000_000).await.unwrap().unwrap();

    let next = |skip: &'static [baton_core::TaskId]| baton_store::NextClaim {
        holder: "me",
        at: at(100),
        ttl_ms: 1000,
        per_owner: None,
        skip,
    };
    let mut order = Vec::new();
    while let Some(lease) = store.claim_next(&next(&[])).await.unwrap() {
        assert_eq!((lease.holder.as_str(), lease.expires_at), ("me", at(1100)));
        order.push(lease.task);
    }
    // Then ann and bob (the interrupted task is his) have one live each, the owner-less none: its
    // task first, then a1 and b1 (one before each), oldest first, then ann's others.
    let expected = [&interrupted, &urgent, &anonymous, &a1, &b1, &a2, &a3];
    assert_eq!(order.iter().collect::<Vec<_>>(), expected, "the order of claims");
    assert_eq!(store.lease(&interrupted).await.unwrap().unwrap().epoch, 2, "taken from the dead holder");
    assert!(store.claim_next(&next(&[])).await.unwrap().is_none(), "every task is held now");

    // Per owner: a queued task of an owner with that many live leases waits; skipped ones too.
    let (_place, store) = self::store(backend).await;
    let mut rng = Rng(22);
    let mut ids = Vec::new();
    for (n, owner) in ["ann", "ann", "bob"].into_iter().enumerate() {
        let id = rng.task_id();
        store.append(&id, 0, at(n as i64), &[created_by("x", Some(owner), 0)]).await.unwrap();
        ids.push(id);
    }
    let limited = |skip| baton_store::NextClaim { per_owner: Some(1), skip, ..next(&[]) };
    let skip = [ids[2].clone()];
    assert_eq!(store.claim_next(&limited(&skip)).await.unwrap().unwrap().task, ids[0]);
    assert!(store.claim_next(&limited(&skip)).await.unwrap().is_none(), "ann has one running; bob's is skipped");
    assert_eq!(store.claim_next(&limited(&[])).await.unwrap().unwrap().task, ids[2]);
    let live = store.live_leases(at(100)).await.unwrap();
    assert_eq!(live.iter().map(|l| &l.task).collect::<Vec<_>>().len(), 2);
    assert!(store.live_leases(at(5000)).await.unwrap().is_empty(), "all expired by then");
}

/// Eight claimants at once (one process; PostgreSQL's SKIP LOCKED, SQLite's single writer): each
/// of 40 tasks is claimed exactly once.
async fn claimants_at_once_never_take_the_same_task(backend: Backend) {
    let (_place, store) = store(backend).await;
    let store = std::sync::Arc::new(store);
    let mut rng = Rng(23);
    for n in 0..40 {
        store.append(&rng.task_id(), 0, at(n), &[created("x")]).await.unwrap();
    }
    let claimants = (0..8).map(|k| {
        let store = store.clone();
        tokio::spawn(async move {
            let holder = format!("claimant-{k}");
            let next =
                baton_store::NextClaim { holder: &holder, at: at(100), ttl_ms: 60_000, per_owner: None, skip: &[] };
            let mut won = Vec::new();
            while let Some(lease) = store.claim_next(&next).await.unwrap() {
                won.push(lease.task);
            }
            won
        })
    });
    let mut all = Vec::new();
    for claimant in claimants {
        all.extend(claimant.await.unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (40, 40), "each task once");
}

#[tokio::test]
async fn an_sqlite_store_from_before_priorities_were_columns_gets_them_from_its_journals() {
    let (place, store) = store(Backend::Sqlite).await;
    let id = Rng(24).task_id();
    store.append(&id, 0, at(1), &[created_by("old", Some("ann"), 4)]).await.unwrap();
    // As the store was at schema version 9.
    sqlx::raw_sql(
        "DROP INDEX tasks_by_status; ALTER TABLE tasks DROP COLUMN priority; ALTER TABLE tasks DROP COLUMN owner; \
         DELETE FROM baton_schema WHERE version = 10;",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.pool().close().await;
    let store = place.open().await;
    let (priority, owner): (i64, Option<String>) =
        sqlx::query_as("SELECT priority, owner FROM tasks").fetch_one(store.pool()).await.unwrap();
    assert_eq!((priority, owner.as_deref()), (4, Some("ann")));
}

/// No polling here: only PostgreSQL's NOTIFY, sent when the other pool's transactions commit, can
/// wake the listener.
#[tokio::test]
async fn a_task_made_runnable_through_one_connection_wakes_the_listener_of_another() {
    let (place, store) = store(Backend::Postgres).await;
    let other = place.open().await;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    store.watch_runnable(wake.clone()).await;
    let woken = |what: &'static str| {
        let wake = wake.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(20), wake.notified())
                .await
                .unwrap_or_else(|_| panic!("never woken: {what}"))
        }
    };
    woken("listening").await;
    let id = Rng(25).task_id();
    other.append(&id, 0, at(1), &[created("x")]).await.unwrap();
    woken("a task was created").await;
    let lease = other.claim(&id, "a", at(2), 1000).await.unwrap().unwrap();
    other.append_leased(&lease, 1, at(3), &[Event::Started]).await.unwrap();
    woken("it started").await;
    other.release(&lease).await.unwrap();
    woken("its lease was let go").await;
}

#[tokio::test]
async fn a_postgres_database_is_used_only_once_migrated_and_only_by_url() {
    let url = baton_testkit::postgres::database().await;
    let err = SqlStore::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::OlderSchema { found: 0, known: 1 }), "{err}");
    assert!(err.to_string().ends_with("run `baton migrate --store URL` first"), "{err}");
    assert_eq!(SqlStore::migrate(&url).await.unwrap(), baton_store::Migrated { from: 0, to: 1 });
    assert_eq!(SqlStore::migrate(&url).await.unwrap(), baton_store::Migrated { from: 1, to: 1 }, "once");
    SqlStore::connect(&url).await.unwrap();

    let err = SqlStore::connect("mysql://someone:hunter2@db/baton").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "`mysql://someone:***@db/baton` is not a PostgreSQL URL (postgres://user@host:port/database)"
    );
    // A cluster that is not there is named, without its password.
    let err = SqlStore::connect("postgres://baton:hunter2@127.0.0.1:1/x").await.unwrap_err();
    assert!(
        err.to_string().starts_with("cannot reach the PostgreSQL store postgres://baton:***@127.0.0.1:1/x: "),
        "{err}"
    );
}

on_both_stores!(
    appended_events_read_back_and_fold_to_the_summary,
    a_stale_writer_gets_a_conflict_and_writes_nothing,
    an_invalid_transition_is_refused_whole,
    large_payloads_go_to_the_blob_store_and_come_back_whole,
    a_corrupt_row_is_named_and_the_rest_of_the_store_stays_usable,
    prefixes_resolve_to_one_task_or_say_why_not,
    a_newer_schema_is_refused_not_guessed_at,
    reopening_keeps_everything,
    a_lease_has_one_holder_until_it_expires_and_a_holder_that_lost_it_cannot_write,
    tokens_are_found_by_the_hash_of_their_secret_until_revoked_and_names_are_never_reused,
    templates_are_kept_by_name_whole_and_a_name_is_taken_once,
    a_schedule_moves_its_cursor_once_per_claim_and_pauses_and_resumes,
    notices_are_kept_with_their_events_and_subscriptions_take_them_once,
    follow_ups_are_numbered_per_task_and_read_after_a_number,
    the_next_claim_takes_interrupted_tasks_then_priority_then_owners_in_turn,
    claimants_at_once_never_take_the_same_task,
);
