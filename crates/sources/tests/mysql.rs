//! MariaDB against the local server: dump → repository → scratch restore, with row counts
//! taken from the dump stream, consistency under load, cleanup, restore safety and tool
//! failures.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backstop_sources::mysql::MysqlSpec;
use backstop_sources::scratch::{self, ScratchOptions, ScratchSpec};
use backstop_sources::{DbUrl, SourceError, SourceSpec, Tools};
use backstop_testkit::db::{my_databases, MyDb, MY_SERVER};
use common::{fake_tool, fixture, real_tool, TestRepo};
use sqlx::Connection;

static SCRATCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn spec(t: &TestRepo, db: &MyDb) -> SourceSpec {
    SourceSpec::Mysql(MysqlSpec {
        url_env: None,
        url_file: Some(t.url_file(&format!("{}.url", db.name), &db.url())),
    })
}

fn scratch_server() -> ScratchSpec {
    ScratchSpec::Mysql(DbUrl::parse(MY_SERVER).unwrap())
}

fn seeded(prefix: &str) -> MyDb {
    let db = MyDb::create(prefix);
    db.seed(&fixture("mysql.sql"));
    db
}

/// A seeded database, backed up into a fresh repository, and a reader of the snapshot.
async fn backed_up(prefix: &str) -> (MyDb, TestRepo, backstop_repo::SnapshotReader) {
    let db = seeded(prefix);
    let t = TestRepo::new().await;
    let (id, _) = t.back_up(&spec(&t, &db), &Tools::default()).await.unwrap();
    let reader = t.reader(id).await;
    (db, t, reader)
}

#[tokio::test]
async fn round_trip_keeps_rows_objects_and_facts() {
    let _turn = SCRATCH.lock().await;
    let db = seeded("backstop_test_my_rt");
    db.sql("INSERT INTO customers (name, email) VALUES ('sentinel ✓ (it''s here)', 'sentinel@example.org')");
    let t = TestRepo::new().await;
    let (id, snapshot) = t.back_up(&spec(&t, &db), &Tools::default()).await.unwrap();
    let facts = &snapshot.facts;
    assert_eq!(facts.tables["order_events"], 50_000);
    assert_eq!(facts.tables["customers"], 201);
    assert_eq!(facts.tables["attachments"], 50);
    assert!(
        !facts.tables.contains_key("invoice_number_seq"),
        "a sequence is not a table"
    );
    assert!(facts.server_version.as_deref().unwrap().contains("MariaDB"));
    assert!(facts.extra["row_counts"].contains("dump stream"));

    let before = my_databases("backstop_drill_");
    let reader = t.reader(id).await;
    let scratch = scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    let restored = scratch.facts().await.unwrap();
    assert_eq!(restored.tables, facts.tables, "row counts per table");
    assert_eq!(restored.schema_fingerprint, facts.schema_fingerprint);
    let copy = MyDb::adopt(scratch.name());
    assert_eq!(copy.checksums(), db.checksums(), "content per table");
    assert_eq!(
        copy.sql("SELECT COUNT(*) FROM customers WHERE email = 'sentinel@example.org' AND name = 'sentinel ✓ (it''s here)'"),
        "1"
    );
    assert_eq!(copy.sql("SELECT order_total_eur(12345)"), "123.45");
    assert_eq!(copy.sql("SELECT COUNT(*) FROM customer_totals"), "201");
    assert_eq!(
        copy.sql("SELECT NEXT VALUE FOR invoice_number_seq >= 1000"),
        "1"
    );
    copy.sql("INSERT INTO orders (customer_id, total_cents) VALUES (1, 5)");
    assert_eq!(
        copy.sql("SELECT COUNT(*) FROM audit_log"),
        "2001",
        "the trigger works"
    );
    std::mem::forget(copy);
    scratch.discard().await.unwrap();
    assert_eq!(my_databases("backstop_drill_"), before);
}

#[tokio::test]
async fn counts_agree_with_the_dump_while_writers_are_busy() {
    let _turn = SCRATCH.lock().await;
    let db = seeded("backstop_test_my_load");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (db.url(), stop.clone());
        tokio::spawn(async move {
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let mut inserted = 0u64;
            while !stop.load(Ordering::SeqCst) {
                sqlx::query(
                    "INSERT INTO orders (customer_id, total_cents) VALUES (1 + ? % 200, ?)",
                )
                .bind(inserted as i64)
                .bind(inserted as i64)
                .execute(&mut conn)
                .await
                .unwrap();
                inserted += 1;
            }
            inserted
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let t = TestRepo::new().await;
    let backed = t.back_up(&spec(&t, &db), &Tools::default()).await;
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.await.unwrap();
    let (id, snapshot) = backed.unwrap();
    assert!(inserted > 0);
    assert_eq!(
        snapshot.facts.tables["orders"], snapshot.facts.tables["audit_log"],
        "orders and their audit rows come from one snapshot"
    );
    let reader = t.reader(id).await;
    let scratch = scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    let restored = scratch.facts().await.unwrap();
    scratch.discard().await.unwrap();
    assert_eq!(
        restored.tables, snapshot.facts.tables,
        "restored counts equal the recorded facts"
    );
}

#[tokio::test]
async fn a_restore_that_fails_midway_leaves_no_scratch_database() {
    let _turn = SCRATCH.lock().await;
    let (_db, t, reader) = backed_up("backstop_test_my_corrupt").await;
    t.corrupt_largest_pack();
    let before = my_databases("backstop_drill_");
    let err = scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(my_databases("backstop_drill_"), before);
}

#[tokio::test]
async fn a_scratch_target_that_is_the_source_is_refused() {
    let _turn = SCRATCH.lock().await;
    let (db, _t, reader) = backed_up("backstop_test_my_self").await;
    let same = ScratchSpec::Mysql(DbUrl::parse(&db.url()).unwrap());
    let err = scratch::restore(
        &reader,
        &same,
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SourceError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("the source of this snapshot"),
        "{err}"
    );
}

#[tokio::test]
async fn tool_failures_are_named_and_store_nothing() {
    let db = seeded("backstop_test_my_tools");
    let t = TestRepo::new().await;
    let missing = Tools {
        mariadb_dump: Some("/nonexistent/mariadb-dump".into()),
        ..Tools::default()
    };
    let err = t
        .back_up(&spec(&t, &db), &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("mariadb-dump"), "{err}");

    let real = real_tool("mariadb-dump");
    let killed = fake_tool(
        t.dir.path(),
        "mariadb-dump",
        &format!("{} \"$@\" | head -c 200000\nkill -KILL $$", real.display()),
    );
    let tools = Tools {
        mariadb_dump: Some(killed),
        ..Tools::default()
    };
    let err = t
        .back_up(&spec(&t, &db), &tools)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mariadb-dump") && err.contains("signal 9"),
        "{err}"
    );

    let failing = fake_tool(
        t.dir.path(),
        "failing-dump",
        "echo 'mariadb-dump: Got error: 1044' >&2\nexit 2",
    );
    let tools = Tools {
        mariadb_dump: Some(failing),
        ..Tools::default()
    };
    let err = t
        .back_up(&spec(&t, &db), &tools)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited with status 2") && err.contains("Got error: 1044"),
        "{err}"
    );
    assert_eq!(t.snapshot_count().await, 0);
}

#[tokio::test]
async fn bad_credentials_and_an_unreachable_server_are_named() {
    let t = TestRepo::new().await;
    for (url, named) in [
        (
            "mysql://no_such_user:pw-must-not-show@127.0.0.1:3306/mysql",
            "no_such_user",
        ),
        (
            "mysql://root:pw-must-not-show@127.0.0.1:1/mysql",
            "127.0.0.1:1",
        ),
    ] {
        let spec = SourceSpec::Mysql(MysqlSpec {
            url_env: None,
            url_file: Some(t.url_file("bad.url", url)),
        });
        let err = t
            .back_up(&spec, &Tools::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot connect") && err.contains(named),
            "{err}"
        );
        assert!(!err.contains("pw-must-not-show"), "{err}");
    }
    assert_eq!(t.snapshot_count().await, 0);
}

#[tokio::test]
async fn a_missing_mariadb_client_is_named_and_leaves_no_scratch_database() {
    let _turn = SCRATCH.lock().await;
    let (_db, _t, reader) = backed_up("backstop_test_my_noclient").await;
    let before = my_databases("backstop_drill_");
    let tools = Tools {
        mariadb: Some("/nonexistent/mariadb".into()),
        ..Tools::default()
    };
    let err = scratch::restore(
        &reader,
        &scratch_server(),
        &tools,
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mariadb") && err.contains("/nonexistent/mariadb"),
        "{err}"
    );
    assert_eq!(my_databases("backstop_drill_"), before);
}
