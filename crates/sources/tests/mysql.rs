//! What only MariaDB has, against the local server: its objects (functions, views,
//! sequences, triggers) round trip and its row counts are taken from the dump stream.
//! What every database engine must do is in engines.rs, run on each.

mod common;

use backstop_repo::SourceFacts;
use backstop_sources::mysql::MysqlSpec;
use backstop_sources::scratch::{self, ScratchOptions, ScratchSpec};
use backstop_sources::{DbUrl, SourceSpec, Tools};
use backstop_testkit::db::{my_databases, MyDb, MY_SERVER};
use common::{fixture, logged, TestRepo};

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

/// What every load of the fixture must bring back, against the source `db`: the rows and
/// schema the backup recorded, the content per table, the function, the view, the sequence,
/// and the trigger, which fires once more on the copy.
fn assert_fixture_restored(copy: &MyDb, db: &MyDb, restored: &SourceFacts, recorded: &SourceFacts) {
    assert_eq!(restored.tables, recorded.tables, "row counts per table");
    assert_eq!(restored.schema_fingerprint, recorded.schema_fingerprint);
    assert_eq!(copy.checksums(), db.checksums(), "content per table");
    assert_eq!(copy.sql("SELECT order_total_eur(12345)"), "123.45");
    let view = "SELECT COUNT(*) FROM customer_totals";
    assert_eq!(copy.sql(view), db.sql(view));
    assert_eq!(
        copy.sql("SELECT NEXT VALUE FOR invoice_number_seq >= 1000"),
        "1"
    );
    let audited: u64 = db.sql("SELECT COUNT(*) FROM audit_log").parse().unwrap();
    copy.sql("INSERT INTO orders (customer_id, total_cents) VALUES (1, 5)");
    assert_eq!(
        copy.sql("SELECT COUNT(*) FROM audit_log"),
        (audited + 1).to_string(),
        "the trigger works"
    );
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
    let copy = MyDb::adopt(scratch.name());
    assert_eq!(
        copy.sql("SELECT COUNT(*) FROM customers WHERE email = 'sentinel@example.org' AND name = 'sentinel ✓ (it''s here)'"),
        "1"
    );
    assert_eq!(copy.sql("SELECT COUNT(*) FROM customer_totals"), "201");
    assert_fixture_restored(&copy, &db, &scratch.facts().await.unwrap(), facts);
    std::mem::forget(copy);
    scratch.discard().await.unwrap();
    assert_eq!(my_databases("backstop_drill_"), before);
}

/// Issue 17, item 2: a dump's tables load side by side, each whole through one of two
/// `mariadb` clients (one takes the first large table and falls behind the stream while the
/// other reads on to the next), and everything comes back: rows, a foreign key between the
/// two large tables, the fixture's view, function, sequence and trigger, which load after
/// every table.
#[tokio::test]
async fn tables_load_side_by_side_and_every_object_comes_back() {
    let _turn = SCRATCH.lock().await;
    let db = seeded("backstop_test_my_par");
    db.sql(
        "CREATE TABLE a_parents (id int PRIMARY KEY, pad text NOT NULL) ENGINE=InnoDB;
         INSERT INTO a_parents SELECT seq, repeat(md5(seq), 4) FROM seq_1_to_150000;
         CREATE TABLE b_children (id int PRIMARY KEY, parent int NOT NULL, pad text NOT NULL,
             CONSTRAINT b_parent_fk FOREIGN KEY (parent) REFERENCES a_parents (id)) ENGINE=InnoDB;
         INSERT INTO b_children SELECT seq, 1 + seq % 150000, repeat(md5(seq), 4) FROM seq_1_to_150000;",
    );
    let t = TestRepo::new().await;
    let (id, snapshot) = t.back_up(&spec(&t, &db), &Tools::default()).await.unwrap();
    let reader = t.reader(id).await;
    let before = my_databases("backstop_drill_");
    let options = ScratchOptions::default();
    assert_eq!(options.jobs, 2, "a drill loads with two clients by default");
    let (scratch, log) = logged(scratch::restore(
        &reader,
        &scratch_server(),
        &Tools::default(),
        &options,
    ))
    .await;
    let scratch = scratch.unwrap();
    let takers = |table: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("loading table") && l.contains(&format!("table={table} ")))
            .filter_map(|l| l.split("client=").nth(1).map(str::to_string))
            .collect()
    };
    let (a, b) = (takers("a_parents"), takers("b_children"));
    assert!(
        a.len() == 1 && b.len() == 1 && a != b,
        "the two large tables load through different clients: {log}"
    );

    let copy = MyDb::adopt(scratch.name());
    assert_eq!(
        copy.sql("SELECT COUNT(*) FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE() AND constraint_name = 'b_parent_fk'"),
        "1"
    );
    assert_fixture_restored(&copy, &db, &scratch.facts().await.unwrap(), &snapshot.facts);
    std::mem::forget(copy);
    scratch.discard().await.unwrap();
    assert_eq!(my_databases("backstop_drill_"), before);
}
