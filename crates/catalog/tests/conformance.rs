//! One conformance suite for the catalog, run on SQLite (a temporary file) and on the local
//! PostgreSQL (a uniquely named database, dropped afterwards).

use std::time::Duration;

use backstop_catalog::{
    Catalog, ChainStatus, DrillRecord, ErrorKind, Holder, RequestStatus, RestoreRequest, RunEnd,
    RunKind, RunStatus, Signoff, SnapshotRecord,
};
use backstop_testkit::db::PgDb;

/// A catalog of each kind, kept alive with whatever backs it.
enum Backing {
    Sqlite(tempfile::TempDir),
    Postgres(PgDb),
}

async fn open(kind: &str) -> (Catalog, Backing) {
    match kind {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let catalog = Catalog::open(None, dir.path()).await.unwrap();
            (catalog, Backing::Sqlite(dir))
        }
        _ => {
            let db = PgDb::create("backstop_test_catalog");
            let catalog = Catalog::open(Some(&db.url()), std::path::Path::new("/nonexistent"))
                .await
                .unwrap();
            (catalog, Backing::Postgres(db))
        }
    }
}

async fn reopen(backing: &Backing) -> Catalog {
    match backing {
        Backing::Sqlite(dir) => Catalog::open(None, dir.path()).await.unwrap(),
        Backing::Postgres(db) => {
            Catalog::open(Some(&db.url()), std::path::Path::new("/nonexistent"))
                .await
                .unwrap()
        }
    }
}

fn snapshot(id: &str, policy: &str, time: &str) -> SnapshotRecord {
    SnapshotRecord {
        id: id.into(),
        repository: "local".into(),
        policy: policy.into(),
        source_kind: "postgres".into(),
        time: time.parse().unwrap(),
        data_point: time.parse().unwrap(),
        hostname: "db1".into(),
        files: 2,
        bytes: 1234,
        digest: "ab".repeat(32),
        facts: serde_json::json!({"tables": {"public.orders": 2000}, "schema_fingerprint": "f00"}),
        summary: serde_json::json!({"bytes_added": 99}),
    }
}

async fn runs_are_recorded_with_their_outcome(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let ok = catalog.start_run(RunKind::Backup, "orders").await.unwrap();
    let failed = catalog.start_run(RunKind::Backup, "orders").await.unwrap();
    let other = catalog.start_run(RunKind::Prune, "files").await.unwrap();
    assert_ne!(ok, failed);
    catalog
        .finish_run(
            &ok,
            RunStatus::Succeeded,
            &RunEnd {
                bytes: Some(42),
                snapshot_id: Some("abc".into()),
                error: None,
                warnings: vec!["anomaly: rows of public.orders went from 2000 to 150".into()],
            },
        )
        .await
        .unwrap();
    catalog
        .finish_run(
            &failed,
            RunStatus::Failed,
            &RunEnd {
                error: Some("pg_dump was killed by signal 9".into()),
                ..RunEnd::default()
            },
        )
        .await
        .unwrap();
    let runs = catalog.runs(Some("orders"), 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    let by_id = |id: &str| runs.iter().find(|r| r.id == id).unwrap().clone();
    let ok_run = by_id(&ok);
    assert_eq!(ok_run.status, RunStatus::Succeeded);
    assert_eq!(ok_run.bytes, Some(42));
    assert_eq!(ok_run.snapshot_id.as_deref(), Some("abc"));
    assert_eq!(
        ok_run.warnings,
        ["anomaly: rows of public.orders went from 2000 to 150"]
    );
    assert!(ok_run.finished_at.unwrap() >= ok_run.started_at);
    let failed_run = by_id(&failed);
    assert_eq!(failed_run.status, RunStatus::Failed);
    assert_eq!(
        failed_run.error.as_deref(),
        Some("pg_dump was killed by signal 9")
    );
    assert_eq!(failed_run.snapshot_id, None);
    let all = catalog.runs(None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().find(|r| r.id == other).unwrap().status,
        RunStatus::Running
    );
    assert_eq!(
        catalog.runs(None, 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    assert!(catalog
        .finish_run("no-such-run", RunStatus::Failed, &RunEnd::default())
        .await
        .is_err());
}

async fn snapshots_round_trip_and_are_idempotent(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let a = snapshot("a1", "orders", "2026-11-24T10:00:00Z");
    let b = snapshot("b2", "orders", "2026-11-25T10:00:00.25Z");
    let c = snapshot("c3", "files", "2026-11-25T09:00:00Z");
    assert!(catalog.record_snapshot(&b).await.unwrap());
    assert!(catalog.record_snapshot(&a).await.unwrap());
    assert!(catalog.record_snapshot(&c).await.unwrap());
    assert!(
        !catalog.record_snapshot(&a).await.unwrap(),
        "the same snapshot twice is one row"
    );
    let orders = catalog.snapshots(Some("orders")).await.unwrap();
    assert_eq!(
        orders,
        vec![a.clone(), b.clone()],
        "oldest first, every field kept"
    );
    assert_eq!(catalog.snapshots(None).await.unwrap().len(), 3);
    assert_eq!(
        catalog
            .backup_stats("orders")
            .await
            .unwrap()
            .newest_data_point,
        Some(b.data_point)
    );
    let forgotten = catalog
        .forget_snapshots_except("local", &["b2".to_string(), "c3".to_string()])
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    assert_eq!(
        catalog.snapshots(Some("orders")).await.unwrap(),
        vec![b.clone()]
    );

    // A copy into a repository of the same key has the same id: it is a second record, and
    // forgetting it in one repository leaves the other.
    let copy = SnapshotRecord {
        repository: "offsite".into(),
        ..b.clone()
    };
    assert!(catalog.record_snapshot(&copy).await.unwrap());
    assert_eq!(
        catalog.snapshots(Some("orders")).await.unwrap(),
        vec![b.clone(), copy.clone()]
    );
    catalog
        .forget_snapshots_except("offsite", &[])
        .await
        .unwrap();
    assert_eq!(catalog.snapshots(Some("orders")).await.unwrap(), vec![b]);
}

/// Another process's identity on `host` (this host's name for a local one).
fn holder(host: &str, pid: u32, nonce: &str) -> Holder {
    Holder {
        host: host.into(),
        pid,
        nonce: nonce.into(),
    }
}

/// A holder on another host: only its heartbeat says whether it lives.
fn remote(name: &str) -> Holder {
    holder(&format!("{name}.elsewhere"), 1, name)
}

async fn leases_let_one_holder_run_each_fire_once(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let a = catalog.clone().with_holder(remote("daemon-a"));
    let b = catalog.clone().with_holder(remote("daemon-b"));
    let fire: jiff::Timestamp = "2026-11-25T16:30:00Z".parse().unwrap();
    let next = fire + jiff::SignedDuration::from_secs(60);
    assert!(a.claim_fire("backup:orders", fire).await.unwrap());
    assert!(
        !b.claim_fire("backup:orders", fire).await.unwrap(),
        "held by another"
    );
    assert!(
        !b.claim_fire("backup:orders", next).await.unwrap(),
        "no overlap with a live lease, even for a later fire"
    );
    assert!(
        b.claim_fire("backup:files", fire).await.unwrap(),
        "another job"
    );
    b.release_lease("backup:orders").await.unwrap();
    assert!(
        !b.claim_fire("backup:orders", next).await.unwrap(),
        "only the holder releases"
    );
    a.release_lease("backup:orders").await.unwrap();
    assert!(
        !b.claim_fire("backup:orders", fire).await.unwrap(),
        "a fire already run is not run again after the lease is released"
    );
    assert!(
        !a.claim_fire("backup:orders", fire).await.unwrap(),
        "not even by the daemon that ran it"
    );
    let short = b.clone().with_lease_ttl(Duration::ZERO);
    assert!(short.claim_fire("backup:orders", next).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = next + jiff::SignedDuration::from_secs(60);
    assert!(
        a.claim_fire("backup:orders", later).await.unwrap(),
        "an expired lease is taken over for the next fire"
    );
}

/// Issue 14: a daemon killed mid-job left its run `running` for ever and its lease blocked
/// the job for hours. Leases now live seconds past their last heartbeat, and a run whose
/// holder is gone becomes `abandoned`.
async fn runs_of_a_gone_holder_are_abandoned_and_their_leases_freed(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let now = jiff::Timestamp::now();
    let ttl = backstop_catalog::LEASE_TTL;
    let this_host = backstop_catalog::Holder::this_process().host.clone();

    // A daemon on another host that stopped renewing: gone once its heartbeat is stale.
    let silent = catalog.clone().with_holder(remote("silent"));
    let silent_run = silent.start_run(RunKind::Backup, "orders").await.unwrap();
    assert!(silent.claim_fire("backup:orders", now).await.unwrap());
    // A live daemon on another host, renewing its heartbeat.
    let live = catalog.clone().with_holder(remote("live"));
    let live_run = live.start_run(RunKind::Drill, "orders").await.unwrap();
    // A process on this host whose pid no longer exists: gone at once.
    let dead_local = catalog
        .clone()
        .with_holder(holder(&this_host, u32::MAX - 7, "dead"));
    let dead_run = dead_local.start_run(RunKind::Prune, "files").await.unwrap();
    assert!(dead_local.claim_fire("prune:files", now).await.unwrap());
    // This process's own run is never abandoned while it lives.
    let own_run = catalog.start_run(RunKind::Check, "files").await.unwrap();

    assert!(
        catalog
            .reconcile_abandoned(now)
            .await
            .unwrap()
            .iter()
            .map(|r| &r.id)
            .eq([&dead_run]),
        "only the dead local process is known gone before any heartbeat ages"
    );
    let other = catalog.clone().with_holder(remote("other"));
    assert!(
        other
            .claim_fire("prune:files", now + jiff::SignedDuration::from_secs(1))
            .await
            .unwrap(),
        "the dead process's lease is free at once"
    );

    let later =
        now + jiff::SignedDuration::try_from(ttl).unwrap() + jiff::SignedDuration::from_secs(1);
    live.heartbeat(later).await.unwrap();
    let abandoned = catalog.reconcile_abandoned(later).await.unwrap();
    assert_eq!(
        abandoned.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [silent_run.as_str()],
        "the silent holder's run is abandoned; the live one and this process's are not"
    );
    assert_eq!(abandoned[0].status, RunStatus::Abandoned);
    assert!(
        abandoned[0].error.as_deref().unwrap().contains("silent"),
        "{:?}",
        abandoned[0]
    );
    assert!(abandoned[0].finished_at.is_some());
    assert!(
        other.claim_fire("backup:orders", later).await.unwrap(),
        "the silent holder's lease is free"
    );
    assert!(
        catalog.reconcile_abandoned(later).await.unwrap().is_empty(),
        "each run is abandoned once"
    );
    let runs = catalog.runs(None, 10).await.unwrap();
    let status = |id: &str| runs.iter().find(|r| r.id == id).unwrap().status;
    assert_eq!(status(&live_run), RunStatus::Running);
    assert_eq!(status(&own_run), RunStatus::Running);
    assert_eq!(status(&dead_run), RunStatus::Abandoned);
    let events = catalog.audit_events(0, u32::MAX).await.unwrap();
    let abandoned_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "run.abandoned")
        .map(|e| e.subject.clone())
        .collect();
    assert_eq!(abandoned_events, [dead_run.clone(), silent_run.clone()]);
    let about = catalog.audit_events_about(&dead_run, 100).await.unwrap();
    assert!(
        about.iter().all(|e| e.subject == dead_run) && about.len() >= 2,
        "the run's own events, from its start to its abandonment: {about:?}"
    );
    assert_eq!(about.last().unwrap().kind, "run.abandoned");
    assert!(matches!(
        catalog.verify_audit().await.unwrap(),
        ChainStatus::Intact { .. }
    ));
    let stats = catalog.backup_stats("orders").await.unwrap();
    assert_eq!(
        stats.last_finished.unwrap().status,
        RunStatus::Abandoned,
        "status sees it"
    );
    assert_eq!(stats.runs_by_status.get("abandoned"), Some(&1));
}

/// Issue 14: a restore request running when its daemon died stayed `running` for ever (and
/// `request run` answered 409). Now it ends `failed`, as interrupted, with its audit event.
async fn requests_left_running_by_a_gone_holder_fail_as_interrupted(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let now = jiff::Timestamp::now();
    let this_host = Holder::this_process().host.clone();
    let dead = catalog
        .clone()
        .with_holder(holder(&this_host, u32::MAX - 9, "dead"));
    for (id, by) in [("req-dead", &dead), ("req-own", &catalog)] {
        let r = request(id, "2026-11-25T09:00:00Z", "2999-01-01T00:00:00Z");
        catalog.create_request(&r).await.unwrap();
        catalog
            .transition_request(id, RequestStatus::Approved, "boss@example.com", None, now)
            .await
            .unwrap();
        by.transition_request(id, RequestStatus::Running, "ops", None, now)
            .await
            .unwrap();
    }
    let failed = catalog.reconcile_requests(now).await.unwrap();
    assert_eq!(
        failed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["req-dead"]
    );
    assert_eq!(failed[0].status, RequestStatus::Failed);
    let outcome = failed[0].outcome.as_deref().unwrap();
    assert!(outcome.starts_with("interrupted"), "{outcome}");
    assert_eq!(
        catalog.request("req-own").await.unwrap().status,
        RequestStatus::Running,
        "this live process's request goes on"
    );
    let own = catalog.fail_own_requests(now).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].id, "req-own");
    assert!(catalog.reconcile_requests(now).await.unwrap().is_empty());
    let executed = catalog
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "request.executed")
        .count();
    assert_eq!(executed, 2);
}

async fn migrations_run_once_and_a_newer_schema_is_refused(kind: &str) {
    let (catalog, backing) = open(kind).await;
    let id = catalog.start_run(RunKind::Check, "x").await.unwrap();
    catalog.close().await;
    let again = reopen(&backing).await;
    assert_eq!(
        again.runs(None, 10).await.unwrap()[0].id,
        id,
        "reopening keeps the data"
    );
    match &backing {
        Backing::Sqlite(dir) => {
            let db = dir.path().join("catalog.db");
            std::process::Command::new("sqlite3")
                .arg(&db)
                .arg("INSERT INTO catalog_migrations VALUES (999, 'future', 'x')")
                .status()
                .unwrap();
        }
        Backing::Postgres(db) => {
            db.sql("INSERT INTO catalog_migrations VALUES (999, 'future', 'x')");
        }
    }
    again.close().await;
    let err = match &backing {
        Backing::Sqlite(dir) => Catalog::open(None, dir.path()).await.unwrap_err(),
        Backing::Postgres(db) => Catalog::open(Some(&db.url()), std::path::Path::new("/x"))
            .await
            .unwrap_err(),
    };
    assert!(
        err.to_string().contains("newer than this backstop"),
        "{err}"
    );
}

fn drill(id: &str, policy: &str, started: &str, status: &str) -> DrillRecord {
    DrillRecord {
        id: id.into(),
        policy: policy.into(),
        repository: "local".into(),
        snapshot_id: "cd".repeat(32),
        data_point: "2026-11-20T00:00:00Z".parse().unwrap(),
        target: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        status: status.into(),
        started_at: started.parse().unwrap(),
        finished_at: started.parse().unwrap(),
        rto_ms: Some(41_000),
        rto_objective_ms: Some(1_800_000),
        rpo_ms: Some(3_600_000),
        rpo_objective_ms: None,
        error: (status == "failed").then(|| "check `orders` failed".to_string()),
        report: serde_json::json!({"drill_id": id, "checks": [{"name": "integrity", "status": "passed"}]}),
    }
}

async fn drills_and_signoffs_are_recorded(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let a = drill(
        "20261120T030000-aaaa0001",
        "orders",
        "2026-11-20T03:00:00Z",
        "passed",
    );
    let b = drill(
        "20261121T030000-bbbb0002",
        "orders",
        "2026-11-21T03:00:00Z",
        "failed",
    );
    let c = drill(
        "20261122T030000-cccc0003",
        "orders",
        "2026-11-22T03:00:00Z",
        "passed",
    );
    let other = drill(
        "20261122T040000-dddd0004",
        "files",
        "2026-11-22T04:00:00Z",
        "passed",
    );
    for d in [&a, &b, &c, &other] {
        catalog.record_drill(d).await.unwrap();
    }
    let listed = catalog.drills(Some("orders"), 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [&c.id, &b.id, &a.id]
    );
    assert_eq!(listed[2], a, "a drill reads back as it was written");
    assert_eq!(catalog.drills(None, 10).await.unwrap().len(), 4);
    assert_eq!(catalog.drill("20261121").await.unwrap().id, b.id);
    let ambiguous = catalog.drill("2026112").await.unwrap_err();
    assert!(ambiguous.to_string().contains("ambiguous"), "{ambiguous}");
    assert!(catalog
        .drill("1999")
        .await
        .unwrap_err()
        .to_string()
        .contains("no drill"));

    // Passed, unsigned drills await sign-off; failed ones are alerts, not evidence.
    let pending: Vec<String> = catalog
        .pending_signoffs("orders")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, [a.id.clone(), c.id.clone()]);
    let signoff = Signoff {
        drill_id: a.id.clone(),
        principal: "dba@example.com".into(),
        comment: "restored and checked".into(),
        signed_at: "2026-11-21T09:00:00Z".parse().unwrap(),
    };
    catalog.sign_off(&signoff).await.unwrap();
    assert_eq!(catalog.signoff(&a.id).await.unwrap(), Some(signoff.clone()));
    let again = catalog.sign_off(&signoff).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("already signed off by dba@example.com"),
        "{again}"
    );
    assert_eq!(catalog.pending_signoffs("orders").await.unwrap().len(), 1);

    let now = "2026-11-25T00:00:00Z".parse().unwrap();
    assert!(catalog.first_notice("overdue:x", now).await.unwrap());
    assert!(!catalog.first_notice("overdue:x", now).await.unwrap());
}

fn raw_sql(backing: &Backing, sql: &str) {
    match backing {
        Backing::Sqlite(dir) => {
            let status = std::process::Command::new("sqlite3")
                .arg(dir.path().join("catalog.db"))
                .arg(sql)
                .status()
                .unwrap();
            assert!(status.success());
        }
        Backing::Postgres(db) => {
            db.sql(sql);
        }
    }
}

async fn every_change_is_in_the_audit_chain_and_tampering_is_named(kind: &str) {
    let (catalog, backing) = open(kind).await;
    let catalog = catalog.with_actor("ops@example.com");
    let run = catalog.start_run(RunKind::Backup, "orders").await.unwrap();
    catalog
        .record_snapshot(&snapshot("aa11", "orders", "2026-11-25T10:00:00Z"))
        .await
        .unwrap();
    // Recording the same snapshot again changes nothing, and appends nothing.
    catalog
        .record_snapshot(&snapshot("aa11", "orders", "2026-11-25T10:00:00Z"))
        .await
        .unwrap();
    catalog
        .finish_run(&run, RunStatus::Succeeded, &RunEnd::default())
        .await
        .unwrap();
    let d = drill(
        "20261125T110000-aaaa0001",
        "orders",
        "2026-11-25T11:00:00Z",
        "passed",
    );
    catalog.record_drill(&d).await.unwrap();
    catalog
        .sign_off(&Signoff {
            drill_id: d.id.clone(),
            principal: "dba@example.com".into(),
            comment: "ok".into(),
            signed_at: "2026-11-25T12:00:00Z".parse().unwrap(),
        })
        .await
        .unwrap();
    catalog
        .append_event(
            "policy.loaded",
            "orders",
            serde_json::json!({"sha256": "ab"}),
        )
        .await
        .unwrap();
    let events = catalog.audit_events(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "run.started",
            "snapshot.recorded",
            "run.finished",
            "drill.recorded",
            "drill.signed_off",
            "policy.loaded"
        ]
    );
    assert!(events.iter().all(|e| e.actor == "ops@example.com"));
    assert_eq!(events[1].prev_hash, events[0].hash);
    let ChainStatus::Intact {
        events: count,
        head,
    } = catalog.verify_audit().await.unwrap()
    else {
        panic!("the chain should be intact");
    };
    assert_eq!((count, head), (6, events[5].hash.clone()));

    catalog.close().await;
    raw_sql(
        &backing,
        "UPDATE audit_events SET detail = '{\"policy\":\"orders\",\"status\":\"passed\",\"snapshot_id\":\"forged\"}' WHERE seq = 4",
    );
    let catalog = reopen(&backing).await;
    match catalog.verify_audit().await.unwrap() {
        ChainStatus::Broken { seq, kind, reason } => {
            assert_eq!((seq, kind.as_str()), (4, "drill.recorded"));
            assert!(reason.contains("altered"), "{reason}");
        }
        other => panic!("tampering not caught: {other:?}"),
    }
    catalog.close().await;
    raw_sql(&backing, "DELETE FROM audit_events WHERE seq = 4");
    let catalog = reopen(&backing).await;
    match catalog.verify_audit().await.unwrap() {
        ChainStatus::Broken { seq, reason, .. } => {
            assert_eq!(seq, 5);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("a removed event not caught: {other:?}"),
    }
}

fn request(id: &str, created: &str, expires: &str) -> RestoreRequest {
    RestoreRequest {
        id: id.into(),
        policy: "orders".into(),
        snapshot_id: Some("abcd1234".into()),
        point_in_time: None,
        target: "/restore/orders".into(),
        reason: "recover".into(),
        allow_overlap: false,
        requester: "dba@example.com".into(),
        status: RequestStatus::Pending,
        created_at: created.parse().unwrap(),
        expires_at: expires.parse().unwrap(),
        not_before: Some("2026-11-25T12:00:00Z".parse().unwrap()),
        decided_by: None,
        decided_at: None,
        decision_comment: None,
        finished_at: None,
        outcome: None,
        run_id: None,
        creates_target: false,
    }
}

async fn restore_requests_move_only_forward_and_never_by_their_requester(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
    let r = request("req-1", "2026-11-25T09:00:00Z", "2026-11-26T09:00:00Z");
    catalog.create_request(&r).await.unwrap();
    assert_eq!(
        catalog.request("req-1").await.unwrap(),
        r,
        "reads back as written"
    );

    let own = catalog
        .transition_request(
            "req-1",
            RequestStatus::Approved,
            "DBA@example.com",
            None,
            now,
        )
        .await
        .unwrap_err();
    assert!(own.to_string().contains("cannot also approve"), "{own}");
    assert_eq!(own.kind(), ErrorKind::Conflict);
    let early = catalog
        .transition_request("req-1", RequestStatus::Running, "ops", None, now)
        .await
        .unwrap_err();
    assert!(
        early.to_string().contains("is pending, not approved"),
        "{early}"
    );

    let approved = catalog
        .transition_request(
            "req-1",
            RequestStatus::Approved,
            "boss@example.com",
            Some("ok"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some("boss@example.com"));
    assert_eq!(approved.decided_at, Some(now));
    assert_eq!(approved.decision_comment.as_deref(), Some("ok"));
    assert_eq!(approved.finished_at, None);
    let again = catalog
        .transition_request(
            "req-1",
            RequestStatus::Rejected,
            "other@example.com",
            None,
            now,
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("is approved"), "{again}");

    catalog
        .transition_request("req-1", RequestStatus::Running, "ops", None, now)
        .await
        .unwrap();
    let done = catalog
        .transition_request(
            "req-1",
            RequestStatus::Succeeded,
            "ops",
            Some("restored 3 files"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Succeeded);
    assert_eq!(done.outcome.as_deref(), Some("restored 3 files"));
    assert_eq!(done.finished_at, Some(now));
    assert_eq!(
        done.decided_by.as_deref(),
        Some("boss@example.com"),
        "the decision is kept"
    );

    let stale = request("req-2", "2026-11-24T09:00:00Z", "2026-11-25T09:00:00Z");
    catalog.create_request(&stale).await.unwrap();
    let expired = catalog
        .transition_request(
            "req-2",
            RequestStatus::Expired,
            "backstop",
            Some("not approved in time"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(expired.status, RequestStatus::Expired);
    assert_eq!(expired.decided_by, None);
    let listed: Vec<String> = catalog
        .requests(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, ["req-1", "req-2"]);
    let missing = catalog.request("req-none").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let kinds: Vec<String> = catalog
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "request.created",
            "request.approved",
            "request.started",
            "request.executed",
            "request.created",
            "request.expired"
        ]
    );
    assert!(matches!(
        catalog.verify_audit().await.unwrap(),
        ChainStatus::Intact { .. }
    ));
}

async fn two_processes_opening_a_new_catalog_migrate_it_once(kind: &str) {
    let (first, backing) = open(kind).await;
    first.close().await;
    // A fresh store for the race: the backing's own is already migrated.
    let (a, b) = match &backing {
        Backing::Sqlite(_) => {
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = tokio::join!(
                Catalog::open(None, dir.path()),
                Catalog::open(None, dir.path())
            );
            (a.map(|_| ()), b.map(|_| ()))
        }
        Backing::Postgres(_) => {
            let db = PgDb::create("backstop_test_catalog_race");
            let url = db.url();
            let (a, b) = tokio::join!(
                Catalog::open(Some(&url), std::path::Path::new("/x")),
                Catalog::open(Some(&url), std::path::Path::new("/x"))
            );
            (a.map(|_| ()), b.map(|_| ()))
        }
    };
    a.unwrap();
    b.unwrap();
}

/// Issue 16: the history goes out row by row and comes back into a fresh catalog exactly,
/// audit chain included, adding no event of its own; importing twice adds nothing; a catalog
/// with a chain of its own refuses the history's events and says why.
async fn history_rows_come_back_into_a_fresh_catalog_exactly(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    let run = catalog.start_run(RunKind::Backup, "orders").await.unwrap();
    catalog
        .finish_run(
            &run,
            RunStatus::Succeeded,
            &RunEnd {
                bytes: Some(4096),
                snapshot_id: Some("ab".repeat(32)),
                ..RunEnd::default()
            },
        )
        .await
        .unwrap();
    let d = drill(
        "20261120T030000-aaaa0001",
        "orders",
        "2026-11-20T03:00:00Z",
        "passed",
    );
    catalog.record_drill(&d).await.unwrap();
    catalog
        .sign_off(&Signoff {
            drill_id: d.id.clone(),
            principal: "dba@example.com".into(),
            comment: "reviewed".into(),
            signed_at: "2026-11-20T09:00:00Z".parse().unwrap(),
        })
        .await
        .unwrap();
    let r = request("req-1", "2026-11-25T09:00:00Z", "2026-11-26T09:00:00Z");
    catalog.create_request(&r).await.unwrap();
    let rows = catalog.history_rows().await.unwrap();
    let tables: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.table.as_str()).collect();
    assert_eq!(
        tables.into_iter().collect::<Vec<_>>(),
        [
            "audit_events",
            "drills",
            "restore_requests",
            "runs",
            "signoffs"
        ]
    );
    let head = catalog.verify_audit().await.unwrap();

    let (fresh, _fresh_backing) = open(kind).await;
    let imported = fresh.import_history(&rows).await.unwrap();
    assert_eq!(imported.audit_refused, None);
    assert_eq!(imported.added["drills"], 1);
    assert_eq!(imported.added["signoffs"], 1);
    assert_eq!(imported.added["restore_requests"], 1);
    assert_eq!(imported.added["runs"], 1);
    assert_eq!(
        imported.added["audit_events"],
        rows.iter().filter(|r| r.table == "audit_events").count() as u64
    );
    assert_eq!(
        fresh.history_rows().await.unwrap(),
        rows,
        "every column back"
    );
    assert_eq!(
        fresh.verify_audit().await.unwrap(),
        head,
        "the same chain, no event added"
    );
    assert_eq!(fresh.drill(&d.id).await.unwrap(), d);
    assert_eq!(fresh.request("req-1").await.unwrap(), r);

    let again = fresh.import_history(&rows).await.unwrap();
    assert!(again.added.values().all(|n| *n == 0), "{again:?}");
    assert_eq!(again.audit_refused, None);

    let (other, _other_backing) = open(kind).await;
    other
        .append_event("policy.loaded", "billing", serde_json::json!({}))
        .await
        .unwrap();
    let refused = other.import_history(&rows).await.unwrap();
    assert!(
        refused
            .audit_refused
            .as_deref()
            .is_some_and(|why| why.contains("event #1 differs")),
        "{refused:?}"
    );
    assert_eq!(refused.added["drills"], 1, "the other rows are still taken");
}

/// Issue 18, item 5: pack reads are kept per repository, a read again moves forward, packs
/// gone are forgotten, and the coverage left by each reading check is what it says.
async fn verification_coverage_is_kept_per_repository(kind: &str) {
    let (catalog, _backing) = open(kind).await;
    assert_eq!(catalog.coverage("local").await.unwrap(), None);
    let packs: Vec<String> = ["aa", "bb", "cc"].iter().map(|p| p.repeat(32)).collect();
    let t1: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
    let t2: jiff::Timestamp = "2026-11-02T00:00:00Z".parse().unwrap();
    let first = catalog
        .record_verification("local", &packs, &packs[..1], 100, t1)
        .await
        .unwrap();
    assert_eq!((first.packs, first.packs_never_read), (3, 2));
    assert_eq!(first.oldest_read_at, Some(t1));
    assert_eq!(first.every_pack_within(t2), None, "two packs never read");
    // Another repository's reads are its own.
    catalog
        .record_verification("offsite", &packs, &packs, 300, t1)
        .await
        .unwrap();
    // The next check reads the other two; "cc" is then pruned and a new pack appears.
    let second = catalog
        .record_verification("local", &packs, &packs[1..], 200, t2)
        .await
        .unwrap();
    assert_eq!(second.packs_never_read, 0);
    assert_eq!(
        second.every_pack_within(t2),
        Some(std::time::Duration::from_secs(86_400))
    );
    assert_eq!(
        catalog.coverage("local").await.unwrap(),
        Some(second.clone())
    );
    let now_present = vec![packs[0].clone(), packs[1].clone(), "dd".repeat(32)];
    let third = catalog
        .record_verification("local", &now_present, &[], 0, t2)
        .await
        .unwrap();
    assert_eq!((third.packs, third.packs_never_read), (3, 1));
    let reads = catalog.pack_reads("local").await.unwrap();
    assert_eq!(
        reads.len(),
        2,
        "the pruned pack's read is forgotten: {reads:?}"
    );
    assert_eq!(reads[&packs[0]], t1);
    assert_eq!(reads[&packs[1]], t2);
    assert_eq!(catalog.pack_reads("offsite").await.unwrap().len(), 3);
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name("sqlite").await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name("postgres").await })*
        }
    };
}

suite!(
    runs_are_recorded_with_their_outcome,
    snapshots_round_trip_and_are_idempotent,
    leases_let_one_holder_run_each_fire_once,
    runs_of_a_gone_holder_are_abandoned_and_their_leases_freed,
    requests_left_running_by_a_gone_holder_fail_as_interrupted,
    migrations_run_once_and_a_newer_schema_is_refused,
    drills_and_signoffs_are_recorded,
    every_change_is_in_the_audit_chain_and_tampering_is_named,
    restore_requests_move_only_forward_and_never_by_their_requester,
    two_processes_opening_a_new_catalog_migrate_it_once,
    history_rows_come_back_into_a_fresh_catalog_exactly,
    verification_coverage_is_kept_per_repository
);

/// A daemon started beside commands polling `backstop drills` on a fresh data directory died
/// at once with "database is locked" in two starts of five: its first audit event (a
/// transaction that reads the chain's head, then appends) met another process's write
/// (a command applying the catalog's migrations). SQLite refuses, without waiting, a reader
/// that wants to write while another writer commits; a write transaction must take the
/// write lock at its start and wait for it.
#[tokio::test]
async fn a_write_waits_for_another_processs_write_instead_of_failing() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(None, dir.path()).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let mut other = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let committing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut other).await
    });
    catalog
        .append_event("policy.loaded", "orders", serde_json::json!({}))
        .await
        .expect("the event waits for the other writer");
    committing.await.unwrap().expect("the other writer commits");
}
