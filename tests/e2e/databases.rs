//! Database policies through the binary: backup, break-glass restore into a database URL
//! or a SQLite file, refusal of an occupied target, and a missing dump tool.

use backstop_testkit::db::{
    my_checksums, pg_checksums, pg_databases, MyDb, PgDb, MY_SERVER, PG_SERVER,
};

use super::util::Install;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/databases")
        .join(name)
}

fn postgres_install(db: &PgDb) -> Install {
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n",
    );
    install
}

#[test]
fn postgres_backup_and_break_glass_restore_into_a_new_database() {
    let db = PgDb::create("backstop_e2e_pg");
    db.seed(&fixture("postgres.sql"));
    let install = postgres_install(&db);
    let backup = install.backup("orders");
    let id = backup["snapshot_id"].as_str().unwrap().to_string();
    let snapshots = install.json(&["snapshots", "orders"]);
    assert_eq!(snapshots[0]["id"], id.as_str());

    let target = PgDb::adopt(&backstop_testkit::db::unique_name(
        "backstop_e2e_pg_restored",
    ));
    let url = format!("{PG_SERVER}/{}", target.name);
    let out = install.ok(&["restore", &id, "--to", &url]);
    assert!(out.contains("created and loaded"), "{out}");
    assert_eq!(pg_checksums(&target.name), db.checksums());

    // The target now holds tables: a second restore is refused unless forced.
    let err = install.fails(&["restore", &id, "--to", &url]);
    assert!(
        err.contains("already holds") && err.contains("--force"),
        "{err}"
    );
    target.sql("DELETE FROM order_events WHERE id <= 10");
    install.ok(&["restore", &id, "--to", &url, "--force"]);
    assert_eq!(
        pg_checksums(&target.name),
        db.checksums(),
        "--force replaced the objects"
    );
}

#[test]
fn a_corrupt_snapshot_restored_into_a_new_database_leaves_no_database() {
    let db = PgDb::create("backstop_e2e_pg_corrupt");
    db.seed(&fixture("postgres.sql"));
    let install = postgres_install(&db);
    let id = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut packs: Vec<std::path::PathBuf> = install
        .repo_objects()
        .into_iter()
        .filter(|o| o.starts_with("data/"))
        .map(|o| install.path(&format!("repo/{o}")))
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let largest = packs.last().unwrap();
    let mut bytes = std::fs::read(largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(largest, bytes).unwrap();

    let name = backstop_testkit::db::unique_name("backstop_e2e_pg_half");
    let _guard = PgDb::adopt(&name);
    let err = install.fails(&["restore", &id, "--to", &format!("{PG_SERVER}/{name}")]);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        pg_databases(&name).is_empty(),
        "the half-loaded database was dropped"
    );
}

#[test]
fn a_missing_dump_tool_is_named_and_no_snapshot_is_made() {
    let db = PgDb::create("backstop_e2e_pg_notool");
    let install = postgres_install(&db);
    let err = install
        .command(&["backup", "orders"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("pg_dump") && stderr.contains("not found on PATH"),
        "{stderr}"
    );
    assert!(
        stderr.contains("postgresql-client"),
        "says what to install: {stderr}"
    );
    assert_eq!(install.json(&["snapshots"]), serde_json::json!([]));
}

#[test]
fn mariadb_backup_and_restore_into_a_new_database() {
    let db = MyDb::create("backstop_e2e_my");
    db.seed(&fixture("mysql.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_MYSQL_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"mysql\"\nurl_env = \"ORDERS_MYSQL_URL\"\n",
    );
    let id = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = MyDb::adopt(&backstop_testkit::db::unique_name(
        "backstop_e2e_my_restored",
    ));
    let url = format!(
        "{}/{}",
        MY_SERVER.replace("mysql://", "mariadb://"),
        target.name
    );
    install.ok(&["restore", &id, "--to", &url]);
    assert_eq!(my_checksums(&target.name), db.checksums());
    let err = install.fails(&["restore", &id, "--to", &url]);
    assert!(err.contains("already holds"), "{err}");
}

#[test]
fn sqlite_backup_and_restore_into_a_file_and_a_directory() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    let source = install.path("orders.sqlite");
    backstop_testkit::db::sqlite_seed(&source, &fixture("sqlite.sql"));
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n",
    );
    let id = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    install.ok(&["restore", &id, "--to", "restored.sqlite"]);
    let checksums = backstop_testkit::db::sqlite_checksums;
    assert_eq!(
        checksums(&install.path("restored.sqlite")),
        checksums(&source)
    );
    let err = install.fails(&["restore", &id, "--to", "restored.sqlite"]);
    assert!(err.contains("--force"), "{err}");
    // An existing directory receives the raw database file instead.
    std::fs::create_dir(install.path("raw")).unwrap();
    install.ok(&["restore", &id, "--to", "raw"]);
    assert_eq!(
        checksums(&install.path("raw/orders.sqlite")),
        checksums(&source)
    );
}
