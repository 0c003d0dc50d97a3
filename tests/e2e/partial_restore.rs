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
