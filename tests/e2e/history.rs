//! The history in the repositories (issue 16): with the data directory deleted entirely, a
//! `catalog rebuild` from the repositories and their keys alone brings back the runs,
//! drills, sign-offs and the audit chain; `audit verify` passes against the anchors, and an
//! evidence pack for the same period gives the same drills, sign-offs and objectives.

use serde_json::Value;

use super::util::Install;

#[test]
fn the_whole_history_comes_back_from_the_repositories_after_the_data_directory_is_lost() {
    let mut install = Install::new("url = \"file://./repo\"\nkey_file = \"./main.key\"");
    install
        .env
        .push(("BACKSTOP_PRINCIPAL".into(), "owner@example.com".into()));
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/orders.csv"), "id,total\n1,10\n").unwrap();
    install.files_policy(
        "app",
        &["./src"],
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n[owners]\nrecovery = \"owner@example.com\"\n\
         [drill]\n[[drill.checks]]\nfile = \"src/orders.csv\"\nmin_size = 5\n",
    );
    let from = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    install.backup("app");
    let first = install.json(&["drill", "app"]);
    assert_eq!(first["status"], "passed", "{first}");
    let first_id = first["drill_id"].as_str().unwrap().to_string();
    install.ok(&["signoff", &first_id, "--comment", "rows reviewed"]);
    std::fs::write(install.path("src/orders.csv"), "id,total\n1,10\n2,20\n").unwrap();
    install.backup("app");
    let second = install.json(&["drill", "app"]);
    assert_eq!(second["status"], "passed");
    install.ok(&["audit", "verify"]);
    let to = jiff::Timestamp::now().to_string();
    let before = install.evidence(&from, &to, "before");
    let drills_before = install.json(&["drills"]);
    let events_before = install.json(&["audit", "list", "--limit", "1000"]);
    assert!(
        events_before.as_array().unwrap().len() >= 6,
        "{events_before}"
    );
    assert!(
        std::fs::read_dir(install.path("repo/history")).is_ok(),
        "the history is in the repository"
    );

    // The host is lost: nothing of the data directory is left.
    std::fs::remove_dir_all(install.path("data")).unwrap();
    let rebuilt = install.json(&["catalog", "rebuild"]);
    let added = &rebuilt["history"]["added"];
    assert_eq!(added["drills"], 2, "{rebuilt}");
    assert_eq!(added["signoffs"], 1, "{rebuilt}");
    assert!(added["runs"].as_u64().unwrap() >= 4, "{rebuilt}");
    assert!(added["audit_events"].as_u64().unwrap() >= 6, "{rebuilt}");
    assert_eq!(rebuilt["history"]["audit_refused"], Value::Null);

    // The chain checks against the anchors the repository holds.
    install.ok(&["audit", "verify"]);
    let events_after = install.json(&["audit", "list", "--limit", "1000"]);
    let n = events_before.as_array().unwrap().len();
    assert_eq!(
        events_after.as_array().unwrap()[..n],
        events_before.as_array().unwrap()[..],
        "the events before the loss, unchanged"
    );
    assert_eq!(install.json(&["drills"]), drills_before);

    let after = install.evidence(&from, &to, "after");
    assert_eq!(before["audit"]["status"], "intact");
    assert_eq!(
        after["audit"]["status"], "intact",
        "the rebuilt chain agrees with the anchors"
    );
    let (b, a) = (&before["policies"][0], &after["policies"][0]);
    assert_eq!(a["drills"], b["drills"], "same drills and sign-offs");
    assert_eq!(
        a["drills"][0]["signoff"]["principal"], "owner@example.com",
        "{a}"
    );
    assert_eq!(a["objectives"], b["objectives"]);
    assert_eq!(a["backups"], b["backups"]);
    assert_eq!(a["rpo"]["worst"], b["rpo"]["worst"]);
}

/// A repository that cannot be reached neither keeps the history from the others nor holds
/// a command up for its whole retry budget: the closing write gives each repository a bounded
/// time and names the one it could not write to.
#[test]
fn an_unreachable_repository_neither_blocks_the_history_of_the_others_nor_holds_the_command() {
    let mut install = Install::new(
        "url = \"file://./repo\"\n\n[repositories.a-offsite]\nurl = \"s3://backups/backstop\"\n\
         endpoint = \"http://127.0.0.1:1\"\nregion = \"us-east-1\"\npath_style = true\nretry_budget = \"90s\"",
    );
    install.use_s3(backstop_testkit::client_env());
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "a").unwrap();
    install.files_policy("app", &["./src"], "");
    let started = std::time::Instant::now();
    let out = install.run(&["backup", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the closing write waited out the 90 s retry budget: {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("a-offsite") && stderr.contains("could not write the history"),
        "{stderr}"
    );
    let history = std::fs::read_dir(install.path("repo/history/runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(history >= 1, "the reachable repository holds the history");
}
