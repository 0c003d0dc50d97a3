//! Issue 15, restore safety through the binary: a restore whose target is the source (any
//! spelling of the same database, the same file, a directory inside or above the source)
//! is refused with or without `--force`, in configured and in break-glass `--repo` mode,
//! and goes ahead only with `--replace-source`, which names what it replaces and is
//! audited. A drill's scratch target naming the source is refused in every spelling too,
//! and a `--force` restore replaces symlinks already in the target instead of writing
//! through them.

use std::path::Path;

use backstop_testkit::db::{my_checksums, pg_checksums, MyDb, PgDb};

use super::util::Install;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/databases")
        .join(name)
}

fn snapshot_id(backup: serde_json::Value) -> String {
    backup["snapshot_id"].as_str().unwrap().to_string()
}

/// The refusal names the source and the flag that allows it, and not `--force` as a way.
fn assert_refused_as_source(install: &Install, args: &[&str]) -> String {
    let err = install.fails(args);
    assert!(
        err.contains("the source of") && err.contains("--replace-source"),
        "{args:?}: {err}"
    );
    assert!(err.contains("--force never allows this"), "{args:?}: {err}");
    err
}

/// The same, run from an empty directory with only `--repo`: no configuration, so the
/// snapshot's recorded source is what the target is compared with.
fn refused_break_glass(install: &Install, id: &str, to: &str) {
    let fresh = tempfile::tempdir().unwrap();
    let repo = format!("file://{}", install.path("repo").display());
    let out = std::process::Command::new(super::util::bin())
        .current_dir(fresh.path())
        .env_remove("BACKSTOP_CONFIG")
        .args(["restore", id, "--to", to, "--force", "--repo", &repo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--repo restore into {to} ran: {err}");
    assert!(
        err.contains("the source of snapshot") && err.contains("--replace-source"),
        "{err}"
    );
}

fn audited_replacements(install: &Install) -> Vec<serde_json::Value> {
    install
        .json(&["audit", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "restore.source_replaced")
        .cloned()
        .collect()
}

#[test]
fn issue_15_postgres_restore_over_its_source_needs_replace_source() {
    let db = PgDb::create("backstop_e2e_safety_pg");
    db.seed(&fixture("postgres.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n",
    );
    let id = snapshot_id(install.backup("orders"));
    let at_backup = db.checksums();
    db.sql("INSERT INTO customers (name, email) VALUES ('after', 'after@backup.example')");
    let name = &db.name;
    let spellings = [
        db.url(),
        format!("postgres://postgres@localhost/{name}"),
        format!("postgres://postgres@LOCALHOST:5432/{name}"),
        format!("postgresql://postgres@127.0.0.1/{name}?sslmode=disable"),
        format!("postgres://postgres@localhost/{name}/"),
        format!("postgres://postgres@%2Fvar%2Frun%2Fpostgresql/{name}"),
        format!("postgres:///{name}?host=/var/run/postgresql"),
    ];
    for url in &spellings {
        assert_refused_as_source(&install, &["restore", &id, "--to", url]);
        assert_refused_as_source(&install, &["restore", &id, "--to", url, "--force"]);
    }
    refused_break_glass(
        &install,
        &id,
        &format!("postgres://postgres@localhost/{name}/"),
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customers WHERE name = 'after'"),
        "1",
        "the row written after the backup is still there"
    );
    assert!(audited_replacements(&install).is_empty());

    let out = install.ok(&[
        "restore",
        &id,
        "--to",
        &format!("postgres://postgres@localhost/{name}/"),
        "--replace-source",
    ]);
    assert!(
        out.contains("replaced") && out.contains(&format!("database `{name}`")),
        "{out}"
    );
    assert_eq!(
        pg_checksums(name),
        at_backup,
        "the source is back as backed up"
    );
    let audited = audited_replacements(&install);
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0]["detail"]["source"]
        .as_str()
        .unwrap()
        .contains(name.as_str()));
}

#[test]
fn issue_15_mariadb_restore_over_its_source_needs_replace_source() {
    let db = MyDb::create("backstop_e2e_safety_my");
    db.seed(&fixture("mysql.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_MYSQL_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"mysql\"\nurl_env = \"ORDERS_MYSQL_URL\"\n",
    );
    let id = snapshot_id(install.backup("orders"));
    let at_backup = db.checksums();
    db.sql("INSERT INTO customers (name, email) VALUES ('after', 'after@backup.example')");
    let name = &db.name;
    for url in [
        db.url(),
        format!("mariadb://root@localhost/{name}"),
        format!("mysql://root@LOCALHOST:3306/{name}/"),
        format!("mysql://root@localhost/{name}?socket=/run/mysqld/mysqld.sock"),
        format!("mariadb://root@%2Frun%2Fmysqld%2Fmysqld.sock/{name}"),
    ] {
        assert_refused_as_source(&install, &["restore", &id, "--to", &url]);
        assert_refused_as_source(&install, &["restore", &id, "--to", &url, "--force"]);
    }
    refused_break_glass(&install, &id, &format!("mariadb://root@localhost/{name}"));
    assert_eq!(
        db.sql("SELECT count(*) FROM customers WHERE name = 'after'")
            .lines()
            .last(),
        Some("1")
    );

    let out = install.ok(&[
        "restore",
        &id,
        "--to",
        &format!("mariadb://root@localhost/{name}"),
        "--replace-source",
    ]);
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(
        my_checksums(name),
        at_backup,
        "the source is back as backed up"
    );
    assert_eq!(audited_replacements(&install).len(), 1);
}

#[test]
fn issue_15_sqlite_restore_over_its_source_file_needs_replace_source() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    let source = install.path("orders.sqlite");
    backstop_testkit::db::sqlite_seed(&source, &fixture("sqlite.sql"));
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n",
    );
    let id = snapshot_id(install.backup("orders"));
    let checksums = backstop_testkit::db::sqlite_checksums;
    let at_backup = checksums(&source);
    let out = std::process::Command::new("sqlite3")
        .arg(&source)
        .arg("INSERT INTO customers (name, email) VALUES ('after', 'after@backup.example')")
        .output()
        .unwrap();
    assert!(out.status.success());
    let after = checksums(&source);
    assert_ne!(after, at_backup);
    std::os::unix::fs::symlink(&source, install.path("link.sqlite")).unwrap();
    let absolute = source.display().to_string();
    for to in [
        "orders.sqlite",
        "./orders.sqlite",
        &absolute,
        "link.sqlite",
        ".",
    ] {
        assert_refused_as_source(&install, &["restore", &id, "--to", to, "--force"]);
    }
    refused_break_glass(&install, &id, &absolute);
    assert_eq!(checksums(&source), after, "untouched");

    let out = install.ok(&[
        "restore",
        &id,
        "--to",
        "orders.sqlite",
        "--force",
        "--replace-source",
    ]);
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(checksums(&source), at_backup);
    assert_eq!(audited_replacements(&install).len(), 1);
}

#[test]
fn issue_15_files_restore_over_its_source_directory_needs_replace_source() {
    let install = Install::local();
    std::fs::create_dir_all(install.path("src/app")).unwrap();
    std::fs::write(install.path("src/app/data.csv"), "id\n1\n").unwrap();
    install.files_policy("site", &["./src"], "");
    let id = snapshot_id(install.backup("site"));
    std::fs::write(install.path("src/app/data.csv"), "id\n1\n2\n").unwrap();
    let root = install.path("").display().to_string();
    let src = install.path("src").display().to_string();
    let link = install.path("link");
    std::os::unix::fs::symlink(install.path(""), &link).unwrap();
    let via_link = link.join("src").display().to_string();
    for to in [
        root.as_str(),
        ".",
        "src",
        src.as_str(),
        "src/app",
        "src/app/new",
        via_link.as_str(),
    ] {
        let err = assert_refused_as_source(&install, &["restore", &id, "--to", to, "--force"]);
        assert!(err.contains("policy `site`"), "{err}");
    }
    refused_break_glass(&install, &id, &root);
    assert_eq!(
        std::fs::read_to_string(install.path("src/app/data.csv")).unwrap(),
        "id\n1\n2\n",
        "the edit made after the backup is still there"
    );
    // Another directory beside the source is no source.
    install.ok(&["restore", &id, "--to", "restored"]);

    let out = install.ok(&["restore", &id, "--to", &root, "--replace-source"]);
    assert!(
        out.contains("replaced") && out.contains("policy `site`"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(install.path("src/app/data.csv")).unwrap(),
        "id\n1\n",
        "restored in place"
    );
    let audited = audited_replacements(&install);
    assert_eq!(audited.len(), 1, "{audited:?}");
}

#[test]
fn issue_15_a_drill_scratch_server_naming_the_source_is_refused_in_every_spelling() {
    let db = PgDb::create("backstop_e2e_safety_drill");
    db.seed(&fixture("postgres.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n\n[drill]\ntarget = { kind = \"postgres\", url_env = \"SCRATCH_URL\" }\n",
    );
    install.backup("orders");
    let name = &db.name;
    for scratch in [
        format!("postgres://postgres@localhost/{name}/"),
        format!("postgres://postgres@%2Fvar%2Frun%2Fpostgresql/{name}"),
    ] {
        let out = install
            .command(&["drill", "orders"])
            .env("SCRATCH_URL", &scratch)
            .output()
            .unwrap();
        // A failed drill reports on stdout, a refused one on stderr: either says why.
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{scratch}: the drill ran");
        assert!(
            err.contains("refusing scratch target") && err.contains(&format!("database `{name}`")),
            "{scratch}: {err}"
        );
    }
    assert_eq!(
        backstop_testkit::db::pg_databases(&format!("{name}/")),
        Vec::<String>::new(),
        "no database named with a slash"
    );
}

#[test]
fn issue_15_restore_with_force_replaces_symlinks_in_the_target_instead_of_following_them() {
    let install = Install::local();
    std::fs::create_dir_all(install.path("src/sub")).unwrap();
    std::fs::write(install.path("src/a.txt"), "restored a\n").unwrap();
    std::fs::write(install.path("src/sub/b.txt"), "restored b\n").unwrap();
    install.files_policy("site", &["./src"], "");
    let id = snapshot_id(install.backup("site"));

    let outside = install.path("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("victim.txt"), "outside, untouched\n").unwrap();
    let target = install.path("restore/src");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(outside.join("victim.txt"), target.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), target.join("sub")).unwrap();

    install.ok(&["restore", &id, "--to", "restore", "--force"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("victim.txt")).unwrap(),
        "outside, untouched\n"
    );
    assert_eq!(
        std::fs::read_dir(outside.join("dir")).unwrap().count(),
        0,
        "the outside directory received nothing"
    );
    assert!(std::fs::symlink_metadata(target.join("a.txt"))
        .unwrap()
        .is_file());
    assert_eq!(
        std::fs::read_to_string(target.join("a.txt")).unwrap(),
        "restored a\n"
    );
    assert!(std::fs::symlink_metadata(target.join("sub"))
        .unwrap()
        .is_dir());
    assert_eq!(
        std::fs::read_to_string(target.join("sub/b.txt")).unwrap(),
        "restored b\n"
    );
}
