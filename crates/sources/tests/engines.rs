//! One suite for the database engines, run on PostgreSQL and on MariaDB against the local
//! servers (as the catalog's conformance suite runs on both of its dialects): a dump →
//! repository → scratch restore keeps every row and the facts, counts stay consistent while
//! writers are busy, nothing is left behind when a restore fails, is dropped or cancelled,
//! a scratch target that is the source is refused, and every tool failure is named with
//! nothing stored. What only one engine has stays in postgres.rs and mysql.rs.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backstop_sources::mysql::MysqlSpec;
use backstop_sources::postgres::{DumpFormat, PostgresSpec};
use backstop_sources::scratch::{self, ScratchOptions, ScratchSpec};
use backstop_sources::{DbUrl, SourceError, SourceSpec, Tools};
use backstop_testkit::db::{my_databases, pg_databases, MyDb, PgDb, MY_SERVER, PG_SERVER};
use common::{fake_tool, fixture, real_tool, TestRepo};
use sqlx::Connection;

/// Tests that make scratch databases take turns, so that each can see exactly which
/// `backstop_drill_` databases it left behind.
static SCRATCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test database of one engine.
trait TestDb {
    fn seed(&self, file: &std::path::Path);
    fn url(&self) -> String;
    fn sql(&self, sql: &str) -> String;
    fn checksums(&self) -> BTreeMap<String, String>;
}

impl TestDb for PgDb {
    fn seed(&self, file: &std::path::Path) {
        PgDb::seed(self, file)
    }
    fn url(&self) -> String {
        PgDb::url(self)
    }
    fn sql(&self, sql: &str) -> String {
        PgDb::sql(self, sql)
    }
    fn checksums(&self) -> BTreeMap<String, String> {
        PgDb::checksums(self)
    }
}

impl TestDb for MyDb {
    fn seed(&self, file: &std::path::Path) {
        MyDb::seed(self, file)
    }
    fn url(&self) -> String {
        MyDb::url(self)
    }
    fn sql(&self, sql: &str) -> String {
        MyDb::sql(self, sql)
    }
    fn checksums(&self) -> BTreeMap<String, String> {
        MyDb::checksums(self)
    }
}

/// What the suite needs to know of an engine.
trait Engine {
    type Db: TestDb + Send + 'static;
    /// Test database names start `backstop_test_<PREFIX>_`.
    const PREFIX: &'static str;
    /// The fixture under fixtures/databases.
    const FIXTURE: &'static str;
    const DUMP_TOOL: &'static str;
    const RESTORE_TOOL: &'static str;
    /// The fixture's tables are named so in the facts: `public.orders`, `orders`.
    fn table(name: &str) -> String;
    fn create(name: &str) -> Self::Db;
    fn adopt(name: &str) -> Self::Db;
    fn spec_for(t: &TestRepo, file: &str, url: &str) -> SourceSpec;
    fn scratch_server() -> ScratchSpec;
    /// The same database as `url`, named so that only identity resolution can tell.
    fn same_as(url: &str) -> ScratchSpec;
    fn scratch_databases() -> Vec<String>;
    fn with_dump_tool(path: std::path::PathBuf) -> Tools;
    fn with_restore_tool(path: std::path::PathBuf) -> Tools;
    /// A wrapper around the real dump tool that writes some of the dump and is killed.
    fn killed_dump(real: &std::path::Path) -> String;
    /// A user the server does not know, and a port nothing listens on, each with the
    /// secret that must not show.
    fn bad_urls() -> [(&'static str, &'static str); 2];
    /// Inserts orders until `stop`; returns how many.
    fn write_orders(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64>;
}

struct Pg;
struct My;

impl Engine for Pg {
    type Db = PgDb;
    const PREFIX: &'static str = "pg";
    const FIXTURE: &'static str = "postgres.sql";
    const DUMP_TOOL: &'static str = "pg_dump";
    const RESTORE_TOOL: &'static str = "pg_restore";
    fn table(name: &str) -> String {
        format!("public.{name}")
    }
    fn create(name: &str) -> PgDb {
        PgDb::create(name)
    }
    fn adopt(name: &str) -> PgDb {
        PgDb::adopt(name)
    }
    fn spec_for(t: &TestRepo, file: &str, url: &str) -> SourceSpec {
        SourceSpec::Postgres(PostgresSpec {
            url_env: None,
            url_file: Some(t.url_file(file, url)),
            format: DumpFormat::Custom,
            jobs: None,
        })
    }
    fn scratch_server() -> ScratchSpec {
        ScratchSpec::Postgres(DbUrl::parse(&format!("{PG_SERVER}/postgres")).unwrap())
    }
    fn same_as(url: &str) -> ScratchSpec {
        ScratchSpec::Postgres(DbUrl::parse(&url.replace("127.0.0.1", "localhost")).unwrap())
    }
    fn scratch_databases() -> Vec<String> {
        pg_databases("backstop_drill_")
    }
    fn with_dump_tool(path: std::path::PathBuf) -> Tools {
        Tools {
            pg_dump: Some(path),
            ..Tools::default()
        }
    }
    fn with_restore_tool(path: std::path::PathBuf) -> Tools {
        Tools {
            pg_restore: Some(path),
            ..Tools::default()
        }
    }
    fn killed_dump(real: &std::path::Path) -> String {
        format!(
            "case \"$1\" in --version) exec {real} --version;; esac\n{real} \"$@\" | head -c 300000\nkill -KILL $$",
            real = real.display()
        )
    }
    fn bad_urls() -> [(&'static str, &'static str); 2] {
        [
            (
                "postgres://no_such_role:pw-must-not-show@127.0.0.1:5432/postgres",
                "no_such_role",
            ),
            (
                "postgres://postgres:pw-must-not-show@127.0.0.1:1/postgres",
                "127.0.0.1:1",
            ),
        ]
    }
    fn write_orders(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
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
    }
}

impl Engine for My {
    type Db = MyDb;
    const PREFIX: &'static str = "my";
    const FIXTURE: &'static str = "mysql.sql";
    const DUMP_TOOL: &'static str = "mariadb-dump";
    const RESTORE_TOOL: &'static str = "mariadb";
    fn table(name: &str) -> String {
        name.to_string()
    }
    fn create(name: &str) -> MyDb {
        MyDb::create(name)
    }
    fn adopt(name: &str) -> MyDb {
        MyDb::adopt(name)
    }
    fn spec_for(t: &TestRepo, file: &str, url: &str) -> SourceSpec {
        SourceSpec::Mysql(MysqlSpec {
            url_env: None,
            url_file: Some(t.url_file(file, url)),
        })
    }
    fn scratch_server() -> ScratchSpec {
        ScratchSpec::Mysql(DbUrl::parse(MY_SERVER).unwrap())
    }
    fn same_as(url: &str) -> ScratchSpec {
        ScratchSpec::Mysql(DbUrl::parse(url).unwrap())
    }
    fn scratch_databases() -> Vec<String> {
        my_databases("backstop_drill_")
    }
    fn with_dump_tool(path: std::path::PathBuf) -> Tools {
        Tools {
            mariadb_dump: Some(path),
            ..Tools::default()
        }
    }
    fn with_restore_tool(path: std::path::PathBuf) -> Tools {
        Tools {
            mariadb: Some(path),
            ..Tools::default()
        }
    }
    fn killed_dump(real: &std::path::Path) -> String {
        format!("{} \"$@\" | head -c 200000\nkill -KILL $$", real.display())
    }
    fn bad_urls() -> [(&'static str, &'static str); 2] {
        [
            (
                "mysql://no_such_user:pw-must-not-show@127.0.0.1:3306/mysql",
                "no_such_user",
            ),
            (
                "mysql://root:pw-must-not-show@127.0.0.1:1/mysql",
                "127.0.0.1:1",
            ),
        ]
    }
    fn write_orders(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
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
    }
}

fn seeded<E: Engine>(what: &str) -> E::Db {
    let db = E::create(&format!("backstop_test_{}_{what}", E::PREFIX));
    db.seed(&fixture(E::FIXTURE));
    db
}

fn spec<E: Engine>(t: &TestRepo, db: &E::Db) -> SourceSpec {
    E::spec_for(t, "source.url", &db.url())
}

/// A seeded database, backed up into a fresh repository, and a reader of the snapshot.
async fn backed_up<E: Engine>(what: &str) -> (E::Db, TestRepo, backstop_repo::SnapshotReader) {
    let db = seeded::<E>(what);
    let t = TestRepo::new().await;
    let (id, _) = t
        .back_up(&spec::<E>(&t, &db), &Tools::default())
        .await
        .unwrap();
    let reader = t.reader(id).await;
    (db, t, reader)
}

async fn round_trip_keeps_rows_and_facts<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let db = seeded::<E>("rt");
    let t = TestRepo::new().await;
    let (id, snapshot) = t
        .back_up(&spec::<E>(&t, &db), &Tools::default())
        .await
        .unwrap();
    let facts = &snapshot.facts;
    assert_eq!(facts.tables[&E::table("order_events")], 50_000);
    assert_eq!(facts.tables[&E::table("customers")], 200);
    assert_eq!(facts.tables[&E::table("audit_log")], 2_000);
    assert!(facts.schema_fingerprint.is_some());
    assert!(!snapshot.roots[0].source.contains("password"));

    let before = E::scratch_databases();
    let reader = t.reader(id).await;
    let scratch = scratch::restore(
        &reader,
        &E::scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    assert!(scratch.name().starts_with("backstop_drill_"));
    let restored = scratch.facts().await.unwrap();
    assert_eq!(restored.tables, facts.tables, "row counts per table");
    assert_eq!(restored.schema_fingerprint, facts.schema_fingerprint);
    let copy = E::adopt(scratch.name());
    assert_eq!(copy.checksums(), db.checksums(), "content per table");
    // The trigger came back and works.
    copy.sql("INSERT INTO orders (customer_id, total_cents) VALUES (1, 5)");
    assert_eq!(copy.sql("SELECT count(*) FROM audit_log"), "2001");
    std::mem::forget(copy); // the scratch guard owns the drop
    scratch.discard().await.unwrap();
    assert_eq!(
        E::scratch_databases(),
        before,
        "the scratch database is gone"
    );
}

async fn counts_agree_with_the_dump_while_writers_are_busy<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let db = seeded::<E>("load");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = E::write_orders(db.url(), stop.clone());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let t = TestRepo::new().await;
    let backed = t.back_up(&spec::<E>(&t, &db), &Tools::default()).await;
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.await.unwrap();
    let (id, snapshot) = backed.unwrap();
    assert!(inserted > 0, "the writer ran during the backup");
    assert_eq!(
        snapshot.facts.tables[&E::table("orders")],
        snapshot.facts.tables[&E::table("audit_log")],
        "orders and their audit rows are counted in one snapshot"
    );
    let reader = t.reader(id).await;
    let scratch = scratch::restore(
        &reader,
        &E::scratch_server(),
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

async fn a_restore_that_fails_midway_leaves_no_scratch_database<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let (_db, t, reader) = backed_up::<E>("corrupt").await;
    let pack = t.corrupt_largest_pack();
    let before = E::scratch_databases();
    let err = scratch::restore(
        &reader,
        &E::scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        err.contains(&pack_name),
        "the error names the corrupt object: {err}"
    );
    assert_eq!(
        E::scratch_databases(),
        before,
        "no scratch database is left behind"
    );
}

async fn a_scratch_target_that_is_the_source_is_refused<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let (db, _t, reader) = backed_up::<E>("self").await;
    let before = E::scratch_databases();
    let err = scratch::restore(
        &reader,
        &E::same_as(&db.url()),
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
    assert_eq!(E::scratch_databases(), before, "nothing was created");
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "200",
        "the source is untouched"
    );
}

async fn dropping_a_scratch_without_discard_still_removes_it<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let (_db, _t, reader) = backed_up::<E>("drop").await;
    let before = E::scratch_databases();
    let scratch = scratch::restore(
        &reader,
        &E::scratch_server(),
        &Tools::default(),
        &ScratchOptions::default(),
    )
    .await
    .unwrap();
    assert_ne!(E::scratch_databases(), before);
    drop(scratch); // as a panic or a cancelled task would
    assert_eq!(E::scratch_databases(), before);
}

async fn a_cancelled_restore_leaves_no_scratch_database<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let (_db, _t, reader) = backed_up::<E>("cancel").await;
    let before = E::scratch_databases();
    let restoring = tokio::spawn(async move {
        scratch::restore(
            &reader,
            &E::scratch_server(),
            &Tools::default(),
            &ScratchOptions::default(),
        )
        .await
        .map(|s| s.name().to_string())
    });
    // Wait until the scratch database exists (the load is under way), then cancel.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while E::scratch_databases() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    restoring.abort();
    assert!(restoring.await.unwrap_err().is_cancelled());
    assert_eq!(E::scratch_databases(), before, "cancellation removed it");
}

async fn dump_tool_failures_are_named_and_store_nothing<E: Engine>() {
    let db = seeded::<E>("tools");
    let t = TestRepo::new().await;
    let missing = format!("/nonexistent/bin/{}", E::DUMP_TOOL);
    let err = t
        .back_up(
            &spec::<E>(&t, &db),
            &E::with_dump_tool(missing.clone().into()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(E::DUMP_TOOL) && err.contains(&missing),
        "{err}"
    );

    let real = real_tool(E::DUMP_TOOL);
    let killed = fake_tool(t.dir.path(), "killed-dump", &E::killed_dump(&real));
    let err = t
        .back_up(&spec::<E>(&t, &db), &E::with_dump_tool(killed))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(E::DUMP_TOOL) && err.contains("signal 9"),
        "{err}"
    );

    let failing = fake_tool(
        t.dir.path(),
        "failing-dump",
        "case \"$1\" in --version) echo 'pg_dump (PostgreSQL) 99.0'; exit 0;; esac\necho 'dump: Got error: 1044' >&2\nexit 2",
    );
    let err = t
        .back_up(&spec::<E>(&t, &db), &E::with_dump_tool(failing))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited with status 2") && err.contains("Got error: 1044"),
        "{err}"
    );
    assert_eq!(
        t.snapshot_count().await,
        0,
        "no truncated or failed snapshot"
    );
}

async fn bad_credentials_and_an_unreachable_server_are_named<E: Engine>() {
    let t = TestRepo::new().await;
    for (url, named) in E::bad_urls() {
        let err = t
            .back_up(&E::spec_for(&t, "bad.url", url), &Tools::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot connect") && err.contains(named),
            "{err}"
        );
        assert!(!err.contains("pw-must-not-show"), "no secret in: {err}");
    }
    assert_eq!(t.snapshot_count().await, 0);
}

async fn a_missing_restore_tool_is_named_and_leaves_no_scratch_database<E: Engine>() {
    let _turn = SCRATCH.lock().await;
    let (_db, _t, reader) = backed_up::<E>("norestore").await;
    let before = E::scratch_databases();
    let missing = format!("/nonexistent/{}", E::RESTORE_TOOL);
    let err = scratch::restore(
        &reader,
        &E::scratch_server(),
        &E::with_restore_tool(missing.clone().into()),
        &ScratchOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(E::RESTORE_TOOL) && err.contains(&missing),
        "{err}"
    );
    assert_eq!(E::scratch_databases(), before);
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name::<super::Pg>().await })*
        }
        mod mariadb {
            $(#[tokio::test] async fn $name() { super::$name::<super::My>().await })*
        }
    };
}

suite!(
    round_trip_keeps_rows_and_facts,
    counts_agree_with_the_dump_while_writers_are_busy,
    a_restore_that_fails_midway_leaves_no_scratch_database,
    a_scratch_target_that_is_the_source_is_refused,
    dropping_a_scratch_without_discard_still_removes_it,
    a_cancelled_restore_leaves_no_scratch_database,
    dump_tool_failures_are_named_and_store_nothing,
    bad_credentials_and_an_unreachable_server_are_named,
    a_missing_restore_tool_is_named_and_leaves_no_scratch_database
);
