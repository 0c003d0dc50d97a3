//! The audit log through the binary: every state change is a chained event, and a row
//! edited in the catalog is named by `audit verify`.

use std::path::Path;

use super::util::Install;

#[test]
fn audit_verify_passes_then_names_the_edited_event() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    std::fs::write(
        install.path("backstop.toml"),
        "data_dir = \"./data\"\npolicies = \"./policies\"\nprincipal = \"owner@example.com\"\n\n[repositories.main]\nurl = \"file://./repo\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "a").unwrap();
    install.files_policy(
        "site",
        &["./src"],
        "[owners]\nrecovery = \"owner@example.com\"\n",
    );
    install.backup("site");
    let drill = install.json(&["drill", "site"]);
    let id = drill["drill_id"].as_str().unwrap();
    install.ok(&["signoff", id, "--comment", "reviewed"]);

    let verified = install.json(&["audit", "verify"]);
    assert_eq!(verified["ok"], true, "{verified}");
    let events = install.json(&["audit", "list"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "run.started",
        "snapshot.recorded",
        "run.finished",
        "drill.recorded",
        "drill.signed_off",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(verified["events"], kinds.len());
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "owner@example.com"));

    // Someone rewrites a drill's result in the catalog.
    let drill_event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "drill.recorded")
        .unwrap();
    let seq = drill_event["seq"].as_i64().unwrap();
    let db = install.path("data/catalog.db");
    sqlite(
        &db,
        &format!("UPDATE audit_events SET actor = 'someone-else' WHERE seq = {seq}"),
    );
    let out = install.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("BROKEN at event #{seq} (drill.recorded)")),
        "{stdout}"
    );
}

fn sqlite(db: &Path, sql: &str) {
    let status = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .status()
        .unwrap();
    assert!(status.success());
}
