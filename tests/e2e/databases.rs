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

/// A seeded database, a policy for it, and its first snapshot's id.
fn backed_up_postgres(prefix: &str) -> (PgDb, Install, String) {
    let db = PgDb::create(prefix);
    db.seed(&fixture("postgres.sql"));
    let install = postgres_install(&db);
    let id = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    (db, install, id)
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
    let (_db, install, id) = backed_up_postgres("backstop_e2e_pg_corrupt");
    install.corrupt_largest_pack();

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

fn catalog_query(install: &Install, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(install.path("data/catalog.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn every_backup_is_a_recorded_run_and_the_catalog_rebuilds_from_the_repository() {
    backstop_testkit::require_tool("sqlite3");
    let (_db, install, id) = backed_up_postgres("backstop_e2e_pg_runs");

    // A dump tool killed mid-stream: a failed run with its cause, no snapshot.
    let real = backstop_testkit::require_tool("pg_dump");
    let wrapper = install.path("bin/pg_dump");
    std::fs::create_dir_all(install.path("bin")).unwrap();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {real} --version;; esac\n{real} \"$@\" | head -c 100000\nkill -KILL $$\n",
            real = real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        install.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = install
        .command(&["backup", "orders"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pg_dump was killed by signal 9"),
        "{stderr}"
    );

    let runs = catalog_query(&install, "SELECT status, coalesce(snapshot_id, '-'), coalesce(error, '-') FROM runs ORDER BY started_at");
    let runs: Vec<&str> = runs.lines().collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], format!("succeeded|{id}|-"));
    assert!(
        runs[1].starts_with("failed|-|") && runs[1].contains("pg_dump was killed by signal 9"),
        "{}",
        runs[1]
    );
    assert_eq!(
        install.json(&["snapshots"]).as_array().unwrap().len(),
        1,
        "no snapshot from the failed run"
    );
    assert_eq!(catalog_query(&install, "SELECT id FROM snapshots"), id);
    let facts = catalog_query(&install, "SELECT facts FROM snapshots");
    assert!(facts.contains("\"public.order_events\":50000"), "{facts}");

    // Status: the failed run is the last outcome, the success and exposure are still known.
    let status = install.json(&["status"]);
    let orders = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["policy"] == "orders")
        .unwrap();
    assert_eq!(orders["last_backup_status"], "failed");
    assert!(orders["last_success"].is_string());
    assert!(orders["rpo_exposure_seconds"].as_u64().unwrap() < 600);
    assert_eq!(orders["rpo_breached"], false, "no objective set");
    let human = install.ok(&["status"]);
    assert!(
        human.contains("last error: ") && human.contains("signal 9"),
        "{human}"
    );

    // The catalog lost: rebuilt from the repository alone.
    std::fs::remove_file(install.path("data/catalog.db")).unwrap();
    let out = install.ok(&["catalog", "rebuild"]);
    assert!(out.contains("1 snapshot, 1 added"), "{out}");
    assert_eq!(
        catalog_query(&install, "SELECT id, policy, source_kind FROM snapshots"),
        format!("{id}|orders|postgres")
    );
}

/// A dump tool wrapper in `install/bin/NAME` running `body` (with the real tool on PATH).
fn wrapper(install: &Install, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let path = install.path(&format!("bin/{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Issue 15: a `pg_dump` that wrote half its archive and exited 0 was committed as a good
/// snapshot. The archive's table of contents says which data must follow; a stream that
/// ends before it has all of it fails the backup, and nothing is committed.
#[test]
fn a_pg_dump_that_exits_0_with_half_its_archive_fails_the_backup() {
    let db = PgDb::create("backstop_e2e_pg_half");
    db.seed(&fixture("postgres.sql"));
    let mut install =
        Install::new("url = \"file://./repo\"\n\n[tools]\npg_dump = \"./bin/pg_dump\"");
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n",
    );
    // The whole archive is bigger than this; the version check passes through.
    wrapper(&install, "pg_dump", "pg_dump \"$@\" | head -c 40000");
    let out = install.run(&["backup", "orders"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("exited 0 but its archive") && stderr.contains("TABLE DATA"),
        "{stderr}"
    );
    assert_eq!(install.json(&["snapshots"]), serde_json::json!([]));

    // The real tool's archive passes the same check.
    wrapper(&install, "pg_dump", "exec pg_dump \"$@\"");
    install.backup("orders");
}

/// Issue 15: a dump tool that silently dropped every row of one table gave a passing
/// MariaDB drill, because the row counts came from the dump stream itself. Counts taken on
/// the server around the dump catch it: a warning at backup, recorded in the snapshot's
/// facts, and a failed fidelity check. A stream without mariadb-dump's completion trailer
/// fails the backup.
#[test]
fn a_mariadb_dump_that_drops_a_tables_rows_fails_the_drill() {
    let db = MyDb::create("backstop_e2e_my_short");
    db.seed(&fixture("mysql.sql"));
    let mut install =
        Install::new("url = \"file://./repo\"\n\n[tools]\nmariadb_dump = \"./bin/mariadb-dump\"");
    install.env.push(("ORDERS_MYSQL_URL".into(), db.url()));
    install.env.push((
        "SCRATCH_MYSQL_URL".into(),
        format!("{}/", backstop_testkit::db::MY_SERVER),
    ));
    install.policy(
        "orders",
        "[source]\nkind = \"mysql\"\nurl_env = \"ORDERS_MYSQL_URL\"\n\n[drill]\ntarget = { kind = \"mysql\", url_env = \"SCRATCH_MYSQL_URL\" }\n",
    );
    // Every INSERT into `orders` dropped (each statement runs to a line ending in `);`).
    wrapper(
        &install,
        "mariadb-dump",
        "mariadb-dump \"$@\" | sed '/^INSERT INTO `orders`/,/);$/d'",
    );
    let backup = install.backup("orders");
    let warnings = backup["warnings"].to_string();
    assert!(
        warnings.contains("fewer rows than the server had")
            && warnings.contains("orders: 0 row(s)"),
        "{backup:#}"
    );
    let out = install.run(&["--json", "drill", "orders"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fidelity = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fidelity")
        .unwrap()
        .clone();
    assert_eq!(fidelity["status"], "failed", "{report:#}");
    let detail = fidelity["detail"].as_str().unwrap();
    assert!(
        detail.contains("table orders") && detail.contains("counted on the server"),
        "{detail}"
    );

    // A stream cut before mariadb-dump's last line, exiting 0: refused, nothing committed.
    let before = install.json(&["snapshots"]).as_array().unwrap().len();
    wrapper(
        &install,
        "mariadb-dump",
        "mariadb-dump \"$@\" | grep -v '^-- Dump completed'",
    );
    let out = install.run(&["backup", "orders"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("completion trailer"), "{stderr}");
    assert_eq!(
        install.json(&["snapshots"]).as_array().unwrap().len(),
        before
    );
}

/// Rows deleted between the server's first count and the dump's snapshot leave the dump
/// below that count but not below the server's second one, taken once the dump has its
/// snapshot: no warning, and the smaller count is the bound recorded. The second count is
/// taken only for such a table (a quiet table is counted once).
#[test]
fn rows_deleted_as_a_mariadb_dump_starts_are_bounded_by_the_second_count() {
    let db = MyDb::create("backstop_e2e_my_deleted");
    db.seed(&fixture("mysql.sql"));
    let audit_rows: u64 = db.sql("SELECT COUNT(*) FROM audit_log").parse().unwrap();
    let event_rows: u64 = db.sql("SELECT COUNT(*) FROM order_events").parse().unwrap();
    assert!(
        audit_rows >= 2,
        "the fixture's audit log: {audit_rows} rows"
    );
    let mut install =
        Install::new("url = \"file://./repo\"\n\n[tools]\nmariadb_dump = \"./bin/mariadb-dump\"");
    install.env.push(("ORDERS_MYSQL_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"mysql\"\nurl_env = \"ORDERS_MYSQL_URL\"\n",
    );
    // The first count's snapshot is open before the dump tool starts: two rows deleted here
    // are in it, and not in the dump.
    wrapper(
        &install,
        "mariadb-dump",
        &format!(
            "mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root {} -e 'DELETE FROM audit_log ORDER BY id LIMIT 2' || exit 1\nexec mariadb-dump \"$@\"",
            db.name
        ),
    );
    let backup = install.backup("orders");
    let warnings = backup["warnings"].as_array().cloned().unwrap_or_default();
    assert!(warnings.is_empty(), "{backup:#}");
    let facts = &backup["facts"];
    assert_eq!(facts["tables"]["audit_log"], audit_rows - 2, "{backup:#}");
    let minimums: std::collections::BTreeMap<String, u64> =
        serde_json::from_str(facts["extra"]["server_rows_min"].as_str().unwrap()).unwrap();
    assert_eq!(minimums["audit_log"], audit_rows - 2, "{minimums:?}");
    assert_eq!(minimums["order_events"], event_rows, "{minimums:?}");
}
