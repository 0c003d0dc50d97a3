//! Size and content anomalies (issue 18, item 4): a backup is compared with the policy's
//! previous one; a table losing most of its rows, or a files source shrinking by more than
//! half, is a warning on the backup and its run, and a line in the evidence. A policy's
//! `[anomalies] band` widens or narrows what counts.

use std::path::Path;

use super::util::Install;

fn project(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn a_backup_that_loses_most_of_a_table_or_half_its_files_warns_and_the_evidence_says_so() {
    let install = Install::local();
    let from = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    std::fs::create_dir_all(install.path("src")).unwrap();
    for i in 0..40 {
        std::fs::write(install.path(&format!("src/f{i}.txt")), vec![b'x'; 1024]).unwrap();
    }
    install.files_policy("app", &["./src"], "");
    // The same change, within a wider band: no anomaly.
    install.files_policy("tolerant", &["./src"], "[anomalies]\nband = 0.9\n");
    let db = install.path("orders.sqlite");
    backstop_testkit::db::sqlite_seed(&db, &project("fixtures/databases/sqlite.sql"));
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n",
    );

    for policy in ["app", "tolerant", "orders"] {
        let first = install.backup(policy);
        assert_eq!(first["anomalies"], serde_json::json!([]), "{first}");
    }
    for i in 10..40 {
        std::fs::remove_file(install.path(&format!("src/f{i}.txt"))).unwrap();
    }
    let out = std::process::Command::new(backstop_testkit::require_tool("sqlite3"))
        .arg(&db)
        .arg("DELETE FROM orders WHERE id % 10 <> 0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let shrunk = install.backup("app");
    let anomalies: Vec<&str> = shrunk["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        anomalies,
        ["anomaly: files went from 40 to 10 (-75%) since the previous backup"],
        "{shrunk}"
    );
    assert_eq!(
        install.backup("tolerant")["anomalies"],
        serde_json::json!([])
    );
    let orders = install.backup("orders");
    let text = orders["anomalies"].to_string();
    assert!(
        text.contains("rows of") && text.contains("orders went from 2000 to 200 (-90%)"),
        "{orders}"
    );
    // On a terminal-less run the warning is on stderr, and the backup still succeeds.
    std::fs::remove_file(install.path("src/f0.txt")).unwrap();
    for i in 1..10 {
        std::fs::remove_file(install.path(&format!("src/f{i}.txt"))).unwrap();
    }
    std::fs::write(install.path("src/only.txt"), "one").unwrap();
    let out = install.run(&["backup", "app"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: anomaly: files went from 10 to 1"),
        "{stderr}"
    );

    let to = jiff::Timestamp::now().to_string();
    let evidence = install.evidence(&from, &to, "pack");
    let policy = |name: &str| {
        evidence["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["policy"] == name)
            .unwrap()
            .clone()
    };
    let app = policy("app");
    let lines = app["anomalies"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{app}");
    assert!(lines[0]["anomalies"][0]
        .as_str()
        .unwrap()
        .contains("files went from 40 to 10"));
    assert!(lines[0]["snapshot_id"].is_string());
    assert_eq!(policy("tolerant")["anomalies"], serde_json::json!([]));
    assert_eq!(policy("orders")["anomalies"].as_array().unwrap().len(), 1);
}

/// In the daemon: a table that loses 90% of its rows between two scheduled backups raises
/// the warning on the run, the `backup.anomaly` webhook event and the metric.
#[test]
fn the_daemon_reports_a_table_losing_most_of_its_rows_by_webhook_and_metric() {
    backstop_testkit::require_tool("sqlite3");
    let (hook, seen) = super::daemon::receiver();
    let port = super::util::free_port();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\n\n\
         [notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n"
    ));
    let sqlite = |sql: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(install.path("orders.db"))
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sqlite(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         INSERT INTO orders SELECT i, i * 7 FROM n;",
    );
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.db\"\n\n[schedule]\nbackup = \"*/5 * * * * *\"\n",
    );
    let daemon = install.daemon(Some("daemon.log"));
    let snapshots = || {
        install
            .json(&["snapshots", "orders"])
            .as_array()
            .unwrap()
            .len()
    };
    super::daemon::wait_until("a first backup", std::time::Duration::from_secs(30), || {
        snapshots() >= 1
    });
    sqlite("DELETE FROM orders WHERE id > 100;");
    let anomaly = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /hook"))
            .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
            .find(|e| e["event"] == "backup.anomaly")
    };
    super::daemon::wait_until(
        "the backup.anomaly event",
        std::time::Duration::from_secs(30),
        || anomaly().is_some(),
    );
    // The next backup (5 s on) finds nothing new to flag: the metric is read at once.
    let metrics = super::daemon::http_get(port, "/metrics");
    daemon.stop();
    let event = anomaly().unwrap();
    assert_eq!(event["policy"], "orders", "{event}");
    let detail = event["detail"].as_str().unwrap();
    assert!(
        detail.contains("rows of") && detail.contains("from 1000 to 100 (-90%)"),
        "{event}"
    );
    assert!(
        metrics.contains("backstop_backup_last_anomalies{policy=\"orders\"} 1"),
        "{metrics}"
    );
    let runs = super::daemon::catalog(
        &install,
        "SELECT warnings FROM runs WHERE policy = 'orders' AND warnings LIKE '%-90%%'",
    );
    assert!(
        runs.contains("rows of"),
        "the run carries the warning: {runs}"
    );
}
