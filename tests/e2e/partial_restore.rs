//! Partial restore of files (issue 18, item 1): `restore --include GLOB` writes only the
//! matching paths (a directory that matches brings its content) and the directories above
//! them; `--exclude GLOB` leaves paths out; a pattern that matches nothing, or one given for
//! a database snapshot, is refused without writing anything.

use super::util::Install;

fn listing(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    super::util::walk_files(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn include_and_exclude_restore_just_the_paths_asked_for() {
    let install = Install::local();
    for (path, body) in [
        ("app/static/site.css", "css"),
        ("app/static/img/logo.svg", "svg"),
        ("app/data/customers.csv", "a,b"),
        ("app/data/orders.csv", "c,d"),
        ("app/logs/app.log", "log"),
        ("app/README.txt", "readme"),
    ] {
        let path = install.path(&format!("src/{path}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    install.files_policy("app", &["./src/app"], "");
    let id = install.backup("app")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        "one",
        "--include",
        "app/static",
    ]);
    assert_eq!(
        listing(&install.path("one")),
        ["app/static/img/logo.svg", "app/static/site.css"]
    );
    assert_eq!(
        std::fs::read_to_string(install.path("one/app/static/site.css")).unwrap(),
        "css"
    );

    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        "two",
        "--include",
        "**/*.csv",
        "--include",
        "app/logs",
        "--exclude",
        "app/data/orders.csv",
    ]);
    assert_eq!(
        listing(&install.path("two")),
        ["app/data/customers.csv", "app/logs/app.log"]
    );

    install.ok(&[
        "restore",
        &id[..12],
        "--to",
        "three",
        "--exclude",
        "app/static",
    ]);
    assert_eq!(
        listing(&install.path("three")),
        [
            "app/README.txt",
            "app/data/customers.csv",
            "app/data/orders.csv",
            "app/logs/app.log"
        ]
    );

    let err = install.fails(&[
        "restore",
        &id[..12],
        "--to",
        "four",
        "--include",
        "nothing/*",
    ]);
    assert!(
        err.contains("no path of snapshot") && err.contains("--include nothing/*"),
        "{err}"
    );
    assert!(!install.path("four").exists(), "nothing was written");
    let err = install.fails(&["restore", &id[..12], "--to", "five", "--include", "a[b"]);
    assert!(err.contains("--include `a[b`"), "{err}");

    // A database snapshot is not a tree of files to pick from.
    let db = install.path("orders.sqlite");
    backstop_testkit::db::sqlite_seed(
        &db,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/databases/sqlite.sql"),
    );
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n",
    );
    let db_id = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = install.fails(&["restore", &db_id[..12], "--to", "six", "--include", "x"]);
    assert!(err.contains("sqlite"), "{err}");
}

/// `[drill] paths`: the monthly partial restore. Only the paths asked for are restored and
/// checked (the fidelity check counts just them), with an RTO of their own, and the report
/// says which paths it covered.
#[test]
fn a_partial_drill_restores_and_checks_only_its_paths() {
    let install = Install::local();
    for (path, body) in [
        ("app/static/site.css", "css"),
        ("app/static/img/logo.svg", "svg"),
        ("app/data/customers.csv", "a,b"),
    ] {
        let path = install.path(&format!("src/{path}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    install.files_policy(
        "app",
        &["./src/app"],
        "[drill]\npaths = [\"app/static\"]\n[[drill.checks]]\nfile = \"app/static/site.css\"\nmin_size = 3\n",
    );
    install.backup("app");
    let report = install.json(&["drill", "app"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["paths"], serde_json::json!(["app/static"]));
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    let fidelity = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("every file's SHA-256 equals")
        })
        .expect("the fidelity check");
    assert_eq!(fidelity["status"], "passed");
    assert!(
        fidelity["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 file(s), 6 bytes"),
        "{fidelity}"
    );

    install.files_policy(
        "app",
        &["./src/app"],
        "[drill]\npaths = [\"app/nowhere\"]\n",
    );
    let out = install.run(&["--json", "drill", "app"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("app/nowhere"),
        "{report:#}"
    );

    install.policy(
        "db",
        "[source]\nkind = \"sqlite\"\npath = \"./x.sqlite\"\n[drill]\npaths = [\"x\"]\n",
    );
    let err = install.fails(&["policy", "check"]);
    assert!(err.contains("[drill] paths select files"), "{err}");
}
