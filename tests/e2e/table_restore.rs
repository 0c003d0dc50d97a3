//! Partial restore of databases (issue 18, item 1): `restore SNAP --table` restores one
//! table of the PostgreSQL, MariaDB and SQLite fixtures alone, equal to the source's table,
//! with its indexes and triggers and without the other tables; a table the snapshot does not
//! hold is refused before anything is made; a drill with `[drill] tables` restores only
//! those and measures its own RTO.

use backstop_testkit::db::{my_checksums, pg_checksums, MyDb, PgDb, MY_SERVER, PG_SERVER};

use super::util::Install;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/databases")
        .join(name)
}

fn snapshot_id(install: &Install, policy: &str) -> String {
    install.backup(policy)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn one_postgres_table_restores_alone_and_equals_the_source() {
    let db = PgDb::create("backstop_e2e_pg_table");
    db.seed(&fixture("postgres.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_PG_URL".into(), format!("{PG_SERVER}/postgres")));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n\n\
         [drill]\ntarget = { kind = \"postgres\", url_env = \"SCRATCH_PG_URL\" }\ntables = [\"public.orders\"]\n\n\
         [[drill.checks]]\nsql = \"SELECT count(*) FROM orders\"\nexpect = \">= 1\"\n",
    );
    let id = snapshot_id(&install, "orders");

    let target = PgDb::adopt(&backstop_testkit::db::unique_name(
        "backstop_e2e_pg_table_to",
    ));
    let url = format!("{PG_SERVER}/{}", target.name);
    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        &url,
        "--table",
        "public.orders",
    ]);
    let restored = pg_checksums(&target.name);
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        ["public.orders"],
        "only the table asked for"
    );
    assert_eq!(restored["public.orders"], db.checksums()["public.orders"]);
    // Its own parts came with it: the primary key, the index, the trigger and the sequence
    // behind its id (a new row takes the next number).
    let parts = target.sql(
        "SELECT string_agg(name, ',' ORDER BY name) FROM (\
           SELECT indexname AS name FROM pg_indexes WHERE tablename = 'orders' \
           UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal) p",
    );
    assert!(
        parts.contains("orders_pkey")
            && parts.contains("orders_customer_idx")
            && parts.contains("orders_audit"),
        "{parts}"
    );
    let next = target.sql(
        "SELECT nextval(pg_get_serial_sequence('orders', 'id')) > (SELECT max(id) FROM orders)",
    );
    assert!(next.contains('t'), "{next}");

    // A table the snapshot does not hold: refused, nothing made.
    let missing = PgDb::adopt(&backstop_testkit::db::unique_name(
        "backstop_e2e_pg_table_none",
    ));
    let err = install.fails(&[
        "restore",
        &id[..12],
        "--to",
        &format!("{PG_SERVER}/{}", missing.name),
        "--table",
        "public.nope",
    ]);
    assert!(err.contains("holds no table public.nope"), "{err}");
    assert!(
        backstop_testkit::db::pg_databases(&missing.name).is_empty(),
        "the database made for the restore was dropped"
    );

    // A partial drill: only the table, checked, with its own RTO.
    let drill = install.json(&["drill", "orders"]);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    assert!(drill["rto_seconds"].as_f64().unwrap() > 0.0, "{drill:#}");
    assert_eq!(
        drill["tables"],
        serde_json::json!(["public.orders"]),
        "{drill:#}"
    );
}

#[test]
fn one_mariadb_table_restores_alone_and_equals_the_source() {
    let db = MyDb::create("backstop_e2e_my_table");
    db.seed(&fixture("mysql.sql"));
    let mut install = Install::local();
    install.env.push(("SHOP_MY_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_MY_URL".into(), format!("{MY_SERVER}/mysql")));
    install.policy(
        "shop",
        "[source]\nkind = \"mysql\"\nurl_env = \"SHOP_MY_URL\"\n\n\
         [drill]\ntarget = { kind = \"mysql\", url_env = \"SCRATCH_MY_URL\" }\ntables = [\"order_events\"]\n",
    );
    let id = snapshot_id(&install, "shop");
    let target = MyDb::adopt(&backstop_testkit::db::unique_name(
        "backstop_e2e_my_table_to",
    ));
    let url = format!("{MY_SERVER}/{}", target.name);
    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        &url,
        "--table",
        "order_events",
    ]);
    let restored = my_checksums(&target.name);
    assert_eq!(restored.len(), 1, "only the table asked for: {restored:?}");
    let (name, sum) = restored.iter().next().unwrap();
    assert!(name.ends_with("order_events"), "{name}");
    let source = db.checksums();
    let (_, expected) = source
        .iter()
        .find(|(n, _)| n.ends_with("order_events"))
        .unwrap();
    assert_eq!(sum, expected);

    let err = install.fails(&[
        "restore",
        &id[..12],
        "--to",
        &url,
        "--table",
        "nope",
        "--force",
    ]);
    assert!(err.contains("holds no table nope"), "{err}");

    // A partial drill: the table alone passes fidelity (its rows against the backup's).
    let drill = install.json(&["drill", "shop"]);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    let fidelity = drill["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fidelity")
        .unwrap()
        .clone();
    assert_eq!(fidelity["status"], "passed", "{fidelity:#}");
}

#[test]
fn one_sqlite_table_restores_alone_into_a_file() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    let source = install.path("orders.sqlite");
    backstop_testkit::db::sqlite_seed(&source, &fixture("sqlite.sql"));
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n",
    );
    let id = snapshot_id(&install, "orders");
    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        "one.sqlite",
        "--table",
        "orders",
    ]);
    let checksums = backstop_testkit::db::sqlite_checksums;
    let restored = checksums(&install.path("one.sqlite"));
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        ["orders"],
        "{restored:?}"
    );
    assert_eq!(restored["orders"], checksums(&source)["orders"]);
    let objects = std::process::Command::new("sqlite3")
        .arg(install.path("one.sqlite"))
        .arg("SELECT group_concat(name) FROM sqlite_master WHERE type IN ('index', 'trigger')")
        .output()
        .unwrap();
    let objects = String::from_utf8_lossy(&objects.stdout);
    assert!(
        objects.contains("orders_customer_idx") && objects.contains("orders_audit"),
        "{objects}"
    );
    // A files selection is not for a database, nor a table for files.
    let err = install.fails(&["restore", &id[..12], "--to", "x.sqlite", "--table", "nope"]);
    assert!(err.contains("holds no table nope"), "{err}");
    assert!(
        !install.path("x.sqlite").exists(),
        "nothing written for a missing table"
    );
}
