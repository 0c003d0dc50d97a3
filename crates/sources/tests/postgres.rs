//! What only PostgreSQL has, against the local server: its objects (functions, views,
//! sequences, triggers, globals) round trip, the directory format dumps and restores in
//! parallel consistently, old scratch databases are swept, and an old pg_dump is refused.
//! What every database engine must do is in engines.rs, run on each.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backstop_sources::postgres::{DumpFormat, PostgresSpec};
use backstop_sources::scratch::{self, ScratchOptions, ScratchSpec};
use backstop_sources::{DbUrl, SourceSpec, Tools};
use backstop_testkit::db::{pg_databases, PgDb, PG_SERVER};
use common::{fake_tool, fixture, logged, TestRepo};
use sqlx::Connection;

/// Tests that make scratch databases take turns, so that each can see exactly which
/// `backstop_drill_` databases it left behind.
static SCRATCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn spec(t: &TestRepo, db: &PgDb, format: DumpFormat, jobs: Option<u32>) -> SourceSpec {
    SourceSpec::Postgres(PostgresSpec {
        url_env: None,
        url_file: Some(t.url_file(&format!("{}.url", db.name), &db.url())),
        format,
        jobs,
    })
}

fn scratch_server() -> ScratchSpec {
    ScratchSpec::Postgres(DbUrl::parse(&format!("{PG_SERVER}/postgres")).unwrap())
}

fn seeded(prefix: &str) -> PgDb {
    let db = PgDb::create(prefix);
    db.seed(&fixture("postgres.sql"));
    db
}

/// A seeded database, backed up (custom format) into a fresh repository, and a reader of
/// the snapshot.
async fn backed_up(prefix: &str) -> (PgDb, TestRepo, backstop_repo::SnapshotReader) {
    let db = seeded(prefix);
    let t = TestRepo::new().await;
    let (id, _) = t
        .back_up(&spec(&t, &db, DumpFormat::Custom, None), &Tools::default())
        .await
        .unwrap();
    let reader = t.reader(id).await;
    (db, t, reader)
}

#[tokio::test]
async fn round_trip_keeps_rows_objects_and_facts() {
    let _turn = SCRATCH.lock().await;
    let db = seeded("backstop_test_pg_rt");
    db.sql("INSERT INTO customers (name, email) VALUES ('sentinel ✓', 'sentinel@example.org')");
    let t = TestRepo::new().await;
    let (id, snapshot) = t
        .back_up(&spec(&t, &db, DumpFormat::Custom, None), &Tools::default())
        .await
        .unwrap();

    let facts = &snapshot.facts;
    assert_eq!(facts.tables["public.order_events"], 50_000);
    assert_eq!(facts.tables["public.customers"], 201);
    assert_eq!(facts.tables["public.audit_log"], 2_000);
    assert!(facts
        .server_version
        .as_deref()
        .unwrap()
        .starts_with("PostgreSQL 15"));
    assert!(facts.schema_fingerprint.is_some());
    let names: Vec<&str> = snapshot.roots.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["database.pgdump", "globals.sql"]);
    assert!(!snapshot.roots[0].source.contains("password"));

    let before = pg_databases("backstop_drill_");
    let reader = t.reader(id).await;
    let scratch = scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    assert!(scratch.name().starts_with("backstop_drill_"));
    let restored = scratch.facts().await.unwrap();
    assert_eq!(restored.tables, facts.tables, "row counts per table");
    assert_eq!(restored.schema_fingerprint, facts.schema_fingerprint);
    let copy = PgDb::adopt(scratch.name());
    assert_eq!(copy.checksums(), db.checksums(), "content per table");
    assert_eq!(
        copy.sql("SELECT count(*) FROM customers WHERE email = 'sentinel@example.org' AND name = 'sentinel ✓'"),
        "1"
    );
    assert_eq!(copy.sql("SELECT order_total_eur(12345)"), "123.45");
    // Built after the data, with the comment that follows it in the archive.
    assert_eq!(
        copy.sql("SELECT obj_description('orders_customer_idx'::regclass, 'pg_class')"),
        "orders by customer"
    );
    assert_eq!(copy.sql("SELECT count(*) FROM customer_totals"), "201");
    assert_eq!(
        copy.sql("SELECT last_value >= 1000 FROM invoice_number_seq"),
        "t",
        "the sequence keeps its position"
    );
    // The trigger came back and works.
    copy.sql("INSERT INTO orders (customer_id, total_cents) VALUES (1, 5)");
    assert_eq!(copy.sql("SELECT count(*) FROM audit_log"), "2001");
    std::mem::forget(copy); // the scratch guard owns the drop
    scratch.discard().await.unwrap();
    assert_eq!(
        pg_databases("backstop_drill_"),
        before,
        "the scratch database is gone"
    );
}

/// Issue 17, item 1: tables' data loads side by side (the blocks shared out by size: one
/// `pg_restore` takes b_children, the largest, the other a_parents and c_small), each loader
/// reads only its own blocks, a table's keys and indexes are built while another table
/// still loads (a_parents' loader is done long before b_children's), and every row, key and
/// foreign key comes back: the keys built early hold every row, and a foreign key waits for
/// both of its tables.
#[tokio::test]
async fn keys_built_while_later_tables_load_hold_every_row() {
    let _turn = SCRATCH.lock().await;
    let db = PgDb::create("backstop_test_pg_early");
    db.sql(
        "CREATE TABLE a_parents (id int PRIMARY KEY, pad text NOT NULL);
         INSERT INTO a_parents SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 100000) i;
         CREATE INDEX a_parents_pad ON a_parents (pad);
         COMMENT ON INDEX a_parents_pad IS 'parents by pad';
         CREATE TABLE b_children (id int PRIMARY KEY,
             parent int NOT NULL REFERENCES a_parents (id), pad text NOT NULL);
         INSERT INTO b_children
             SELECT i, 1 + i % 100000, repeat(md5(i::text), 4) FROM generate_series(1, 300000) i;
         CREATE TABLE c_small (id int PRIMARY KEY, child int REFERENCES b_children (id));
         INSERT INTO c_small SELECT i, i FROM generate_series(1, 100) i;",
    );
    let t = TestRepo::new().await;
    let (id, snapshot) = t
        .back_up(&spec(&t, &db, DumpFormat::Custom, None), &Tools::default())
        .await
        .unwrap();
    let reader = t.reader(id).await;

    let (restored, log) = logged(scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    ))
    .await;
    let restored = restored.unwrap();
    assert!(
        log.contains("building post-data objects while the data loads"),
        "a_parents' key and index are built while b_children loads: {log}"
    );
    // Once both loaders are done, b_children's key and the foreign keys that wait for it are
    // built with both jobs.
    let batches: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("building post-data objects while the data loads"))
        .collect();
    assert!(
        batches.iter().any(|l| l.contains("jobs=2")),
        "a batch built with the jobs the loaders left free: {log}"
    );
    let loaders: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("loading a table's data"))
        .filter_map(|l| l.split("loader=").nth(1))
        .collect();
    assert_eq!(
        loaders.len(),
        2,
        "one loader takes b_children, the other a_parents: {log}"
    );
    // Issue 17, item 1: each loader fetched and decoded only the blocks it took, which the
    // backup recorded; between them they read the dump's data once.
    let spans = backstop_sources::pg_archive::decode_spans(
        &snapshot.facts.extra[backstop_sources::pg_archive::SPANS_FACT],
    )
    .unwrap();
    let dump = reader
        .file(backstop_sources::postgres::DUMP_FILE)
        .await
        .unwrap()
        .unwrap();
    let read: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("the loader's blocks are read"))
        .filter_map(|l| {
            l.split("read=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(read.len(), 2, "{log}");
    assert_eq!(
        read.iter().sum::<u64>(),
        dump.size - spans[0].start,
        "{log}"
    );

    let facts = restored.facts().await.unwrap();
    assert_eq!(facts.tables, snapshot.facts.tables);
    assert_eq!(facts.schema_fingerprint, snapshot.facts.schema_fingerprint);
    let copy = PgDb::adopt(restored.name());
    assert_eq!(copy.checksums(), db.checksums(), "content per table");
    assert_eq!(
        copy.sql("SELECT count(*) FROM pg_constraint WHERE contype IN ('p', 'f') AND convalidated AND connamespace = 'public'::regnamespace"),
        "5",
        "three keys and two foreign keys, all valid"
    );
    assert_eq!(
        copy.sql("SELECT obj_description('a_parents_pad'::regclass, 'pg_class')"),
        "parents by pad"
    );
    std::mem::forget(copy); // the scratch guard owns the drop
    restored.discard().await.unwrap();
}

#[tokio::test]
async fn counts_agree_with_the_dump_while_writers_are_busy() {
    let _turn = SCRATCH.lock().await;
    let db = seeded("backstop_test_pg_load");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (db.url(), stop.clone());
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut inserted = 0u64;
            while !stop.load(Ordering::SeqCst) {
                sqlx::query(
                    "INSERT INTO orders (customer_id, total_cents) VALUES (1 + $1 % 200, $1)",
                )
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
    let backed = t
        .back_up(
            &spec(&t, &db, DumpFormat::Directory, Some(2)),
            &Tools::default(),
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.await.unwrap();
    let (id, snapshot) = backed.unwrap();
    assert!(inserted > 0, "the writer ran during the backup");
    assert_eq!(
        snapshot.facts.tables["public.orders"], snapshot.facts.tables["public.audit_log"],
        "orders and their audit rows are counted in one snapshot"
    );
    let reader = t.reader(id).await;
    assert!(reader
        .entries()
        .await
        .unwrap()
        .iter()
        .any(|e| e.path == "database.pgdir/toc.dat"));
    let options = ScratchOptions {
        jobs: 2,
        ..ScratchOptions::default()
    };
    let scratch = scratch::restore(&reader, &scratch_server(), &Tools::default(), &options)
        .await
        .unwrap();
    let restored = scratch.facts().await.unwrap();
    scratch.discard().await.unwrap();
    assert_eq!(
        restored.tables, snapshot.facts.tables,
        "restored counts equal the recorded facts"
    );
    assert_eq!(
        restored.schema_fingerprint,
        snapshot.facts.schema_fingerprint
    );
}

#[tokio::test]
async fn sweep_drops_old_leftovers_and_keep_leaves_one() {
    let _turn = SCRATCH.lock().await;
    let old = PgDb::adopt("backstop_drill_20200101t000000_abcdef");
    backstop_testkit::db::pg_drop(&old.name);
    let server = scratch_server();
    let ScratchSpec::Postgres(url) = &server else {
        unreachable!()
    };
    backstop_sources::postgres::create_database(url, &old.name)
        .await
        .unwrap();
    let (_db, _t, reader) = backed_up("backstop_test_pg_keep").await;
    let keep = ScratchOptions {
        keep: true,
        ..ScratchOptions::default()
    };
    // Making a scratch target sweeps first: the 2020 leftover goes.
    let scratch = scratch::restore(&reader, &server, &Tools::default(), &keep)
        .await
        .unwrap();
    let name = scratch.name().to_string();
    let _cleanup = PgDb::adopt(&name);
    assert!(
        !pg_databases("backstop_drill_").contains(&old.name),
        "the old leftover was swept"
    );
    scratch.discard().await.unwrap();
    assert!(
        pg_databases("backstop_drill_").contains(&name),
        "kept for investigation"
    );
    // A young one survives a sweep with the default age.
    let swept = scratch::sweep(&server, scratch::SWEEP_AFTER).await.unwrap();
    assert!(!swept.contains(&name));
}

#[tokio::test]
async fn a_pg_dump_older_than_the_server_is_refused() {
    let db = PgDb::create("backstop_test_pg_old");
    let t = TestRepo::new().await;
    let fake = fake_tool(t.dir.path(), "pg_dump", "echo 'pg_dump (PostgreSQL) 14.11'");
    let tools = Tools {
        pg_dump: Some(fake),
        ..Tools::default()
    };
    let err = t
        .back_up(&spec(&t, &db, DumpFormat::Custom, None), &tools)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pg_dump 14.11 is older than the server"),
        "{err}"
    );
    assert_eq!(t.snapshot_count().await, 0);
}
