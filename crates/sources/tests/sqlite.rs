//! SQLite: a consistent copy of a live database, its facts, and restores into a scratch
//! file and a named file.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backstop_sources::scratch::{self, ScratchOptions, ScratchSpec};
use backstop_sources::sqlite::SqliteSpec;
use backstop_sources::{restore, SourceError, SourceSpec, Tools};
use backstop_testkit::db::{sqlite_checksums, sqlite_seed};
use common::{fixture, TestRepo};
use sqlx::{ConnectOptions, Connection};

fn seeded(t: &TestRepo) -> std::path::PathBuf {
    backstop_testkit::require_tool("sqlite3");
    let path = t.dir.path().join("orders.sqlite");
    sqlite_seed(&path, &fixture("sqlite.sql"));
    path
}

fn spec() -> SourceSpec {
    SourceSpec::Sqlite(SqliteSpec {
        path: "orders.sqlite".into(),
    })
}

#[tokio::test]
async fn a_copy_taken_while_writers_are_busy_restores_whole() {
    let t = TestRepo::new().await;
    let source = seeded(&t);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (source.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(std::time::Duration::from_secs(30))
                .connect()
                .await
                .unwrap();
            let mut inserted = 0u64;
            while !stop.load(Ordering::SeqCst) {
                sqlx::query("INSERT INTO orders (customer_id, total_cents) VALUES (1, ?)")
                    .bind(inserted as i64)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                inserted += 1;
            }
            conn.close().await.unwrap();
            inserted
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let backed = t.back_up(&spec(), &Tools::default()).await;
    stop.store(true, Ordering::SeqCst);
    assert!(writer.await.unwrap() > 0);
    let (id, snapshot) = backed.unwrap();
    let facts = &snapshot.facts;
    assert_eq!(facts.extra["integrity_check"], "ok");
    assert_eq!(facts.tables["order_events"], 50_000);
    assert_eq!(
        facts.tables["orders"], facts.tables["audit_log"],
        "one consistent point"
    );

    let reader = t.reader(id).await;
    let scratch_dir = t.dir.path().join("scratch");
    let spec = ScratchSpec::Sqlite {
        dir: Some(scratch_dir.clone()),
    };
    let scratch = scratch::restore(
        &reader,
        &spec,
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    let file = scratch.path().unwrap().to_path_buf();
    assert!(file.starts_with(scratch_dir.join(scratch.name())));
    let restored = scratch.facts().await.unwrap();
    assert_eq!(restored.tables, facts.tables);
    assert_eq!(restored.schema_fingerprint, facts.schema_fingerprint);
    assert_eq!(restored.extra["integrity_check"], "ok");
    scratch.discard().await.unwrap();
    assert!(!file.exists(), "the scratch file is removed");
    assert_eq!(std::fs::read_dir(&scratch_dir).unwrap().count(), 0);
}

#[tokio::test]
async fn restore_to_a_file_is_byte_for_byte_the_data() {
    let t = TestRepo::new().await;
    let source = seeded(&t);
    let sentinel =
        "INSERT INTO customers (name, email) VALUES ('sentinel ✓', 'sentinel@example.org')";
    std::process::Command::new("sqlite3")
        .arg(&source)
        .arg(sentinel)
        .status()
        .unwrap();
    let (id, _) = t.back_up(&spec(), &Tools::default()).await.unwrap();
    let reader = t.reader(id).await;
    let target = t.dir.path().join("restored/orders.sqlite");
    restore::sqlite_to_file(&reader, &target, false, &[])
        .await
        .unwrap();
    assert_eq!(sqlite_checksums(&target), sqlite_checksums(&source));
    let err = restore::sqlite_to_file(&reader, &target, false, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Refused(_)),
        "an existing file needs --force: {err}"
    );
    restore::sqlite_to_file(&reader, &target, true, &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_database_file_is_named() {
    let t = TestRepo::new().await;
    let err = t
        .back_up(&spec(), &Tools::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("orders.sqlite"), "{err}");
    assert_eq!(t.snapshot_count().await, 0);
}

#[tokio::test]
async fn a_failed_scratch_restore_leaves_no_file() {
    let t = TestRepo::new().await;
    seeded(&t);
    let (id, _) = t.back_up(&spec(), &Tools::default()).await.unwrap();
    let reader = t.reader(id).await;
    t.corrupt_largest_pack();
    let scratch_dir = t.dir.path().join("scratch");
    let spec = ScratchSpec::Sqlite {
        dir: Some(scratch_dir.clone()),
    };
    let err = scratch::restore(
        &reader,
        &spec,
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(std::fs::read_dir(&scratch_dir).unwrap().count(), 0);
}
