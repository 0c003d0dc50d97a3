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

#[test]
fn a_catalog_rewritten_wholesale_is_caught_by_the_repository_anchors() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "a").unwrap();
    install.files_policy(
        "site",
        &["./src"],
        "[[drill.checks]]\ncommand = [\"false\"]\n",
    );
    install.backup("site");
    let out = install.run(&["drill", "site"]);
    assert_eq!(out.status.code(), Some(1), "the drill fails");
    let anchored = install.json(&["audit", "anchor"]);
    let anchors = anchored["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), 1, "{anchored}");
    assert!(anchors[0].as_str().unwrap().starts_with("main:anchors/"));
    assert_eq!(install.json(&["audit", "verify"])["anchors"], 1);

    // Someone turns the failed drill into a passed one and recomputes every hash after it,
    // so that the catalog verifies by itself.
    let events = install.json(&["audit", "list"]);
    let events = events.as_array().unwrap();
    let at = events
        .iter()
        .position(|e| e["kind"] == "drill.recorded")
        .unwrap();
    let mut prev = if at == 0 {
        backstop_catalog::GENESIS.to_string()
    } else {
        events[at - 1]["hash"].as_str().unwrap().to_string()
    };
    let db = install.path("data/catalog.db");
    for (i, e) in events.iter().enumerate().skip(at) {
        let mut detail = e["detail"].clone();
        if i == at {
            detail["status"] = "passed".into();
            detail["error"] = serde_json::Value::Null;
        }
        let seq = e["seq"].as_i64().unwrap();
        let hash = backstop_catalog::event_hash(
            &prev,
            seq,
            e["time"].as_str().unwrap().parse().unwrap(),
            e["actor"].as_str().unwrap(),
            e["kind"].as_str().unwrap(),
            e["subject"].as_str().unwrap(),
            &detail,
        );
        sqlite(
            &db,
            &format!(
                "UPDATE audit_events SET detail = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE seq = {seq}",
                detail.to_string().replace('\'', "''")
            ),
        );
        prev = hash;
    }
    let out = install.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CONTRADICTED by the repositories' anchors")
            && stdout.contains("the catalog was rewritten"),
        "{stdout}"
    );

    // Evidence exported from that catalog says so too, rather than "intact".
    let out = install.path("pack");
    let exported = install.json(&[
        "evidence",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(exported["audit"], "contradicted", "{exported}");
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(evidence["audit"]["status"], "contradicted");
    assert_eq!(evidence["audit"]["anchors"], 1);
    let problems = evidence["audit"]["anchor_problems"].as_array().unwrap();
    assert!(
        problems.len() == 1
            && problems[0]
                .as_str()
                .unwrap()
                .contains("the catalog was rewritten"),
        "{problems:?}"
    );
    let html = std::fs::read_to_string(out.join("evidence.html")).unwrap();
    assert!(html.contains("CONTRADICTED"), "the page shows it");
}
