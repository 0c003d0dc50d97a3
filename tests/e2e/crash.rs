//! A backup killed with SIGKILL mid-run leaves no snapshot; the repository stays valid; the
//! next backup succeeds; prune collects the leftovers.

use std::time::{Duration, Instant};

use super::util::{snapshot_ids, Install};

#[test]
fn sigkill_mid_backup_leaves_no_snapshot_and_prune_collects_the_leftovers() {
    let install = Install::new("url = \"file://./repo\"\npack_size_mib = 1");
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(
            src.join(format!("f{i}.bin")),
            backstop_testkit::noise(2 * 1024 * 1024, 500 + i),
        )
        .unwrap();
    }
    install.files_policy("crash", &["./src"], "");

    let mut child = install.command(&["backup", "crash"]).spawn().unwrap();
    // Kill once packs have started to land, before the run can finish.
    let started = Instant::now();
    loop {
        let packs = install
            .repo_objects()
            .iter()
            .filter(|k| k.starts_with("data/") && !k.contains(".tmp-"))
            .count();
        if packs >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pack was written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(
        snapshot_ids(&install, "crash").is_empty(),
        "no snapshot is visible"
    );
    let check = install.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    let leftovers = check["repositories"][0]["report"]["unreferenced_packs"]
        .as_u64()
        .unwrap();
    assert!(leftovers >= 3, "{check}");
    assert!(check["repositories"][0]["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["severity"] == "info"));

    let backup = install.backup("crash");
    assert!(backup["snapshot_id"].is_string());
    // Some leftovers may have been rewritten byte for byte by the new backup (packs are
    // named by content), and so are referenced again; prune removes exactly the others.
    let unreferenced = install.json(&["check"])["repositories"][0]["report"]["unreferenced_packs"]
        .as_u64()
        .unwrap();
    // The stale lock of the killed process (same host, dead pid) does not block prune.
    let pruned = install.json(&["prune"]);
    assert_eq!(pruned[0]["report"]["stale_locks_removed"], 1, "{pruned}");
    assert_eq!(
        pruned[0]["report"]["packs_removed"].as_u64().unwrap(),
        unreferenced,
        "{pruned}"
    );
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(
        check["repositories"][0]["report"]["unreferenced_packs"], 0,
        "{check}"
    );
    assert_eq!(check["ok"], true, "{check}");
}

/// Issue 14: the daemon was killed with SIGKILL in the middle of a backup and started
/// again. The run stayed `running` for ever, and the job's lease (alive for the job timeout
/// plus the shutdown deadline, six hours by default) skipped every later fire. Now the run
/// becomes `abandoned`, with an audit event and a notification, and the next fire runs on
/// time.
#[test]
fn a_daemon_killed_mid_backup_leaves_an_abandoned_run_and_the_next_fire_runs_on_time() {
    use super::daemon::{catalog, http_get, receiver, wait_until};

    backstop_testkit::require_tool("sqlite3");
    let (hook, seen) = receiver();
    let db = backstop_testkit::db::PgDb::create("backstop_e2e_killed");
    let port = super::util::free_port();
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n\n[tools]\npg_dump = \"./bin/pg_dump\""
    ));
    install.env.push(("KILLED_PG_URL".into(), db.url()));
    install.policy(
        "killed",
        "[source]\nkind = \"postgres\"\nurl_env = \"KILLED_PG_URL\"\n\n[schedule]\nbackup = \"*/2 * * * * *\"\n",
    );
    // The real pg_dump, except that it hangs while `bin/hang` exists.
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let wrapper = install.path("bin/pg_dump");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ -e \"$(dirname \"$0\")/hang\" ] && [ \"$1\" != --version ]; then exec sleep 3123; fi\nexec pg_dump \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(install.path("bin/hang"), "").unwrap();

    let start = |log: &str| install.daemon(Some(log));
    let count = |sql: &str| catalog(&install, sql).parse::<u32>().unwrap_or(0);
    let mut first = start("first.log");
    wait_until("a running backup", Duration::from_secs(30), || {
        count("SELECT count(*) FROM runs WHERE policy = 'killed' AND status = 'running'") == 1
    });
    first.0.kill().unwrap(); // SIGKILL: no chance to record anything
    first.0.wait().unwrap();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 3123"])
        .status();
    assert!(snapshot_ids(&install, "killed").is_empty());

    std::fs::remove_file(install.path("bin/hang")).unwrap();
    let restarted = Instant::now();
    let second = start("second.log");
    wait_until(
        "the killed run abandoned and the next fire's backup saved",
        Duration::from_secs(30),
        || count("SELECT count(*) FROM runs WHERE policy = 'killed' AND status = 'succeeded'") >= 1,
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(20),
        "the next fire ran on time, not after a lease expired"
    );
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE policy = 'killed' AND status = 'abandoned'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE kind = 'run.abandoned'"),
        1
    );
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("backstop_backup_runs_total{policy=\"killed\",status=\"abandoned\"} 1"),
        "{metrics}"
    );
    wait_until(
        "the abandoned notification",
        Duration::from_secs(10),
        || {
            seen.lock().unwrap().iter().any(|(line, body)| {
                line.starts_with("POST /hook")
                    && serde_json::from_str::<serde_json::Value>(body)
                        .is_ok_and(|b| b["event"] == "backup.abandoned" && b["policy"] == "killed")
            })
        },
    );
    second.stop();
    let check = install.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert!(!snapshot_ids(&install, "killed").is_empty());
}

/// Issue 14: the daemon killed with SIGKILL at random points of its backups, drills,
/// prunes and checks, and started again each time, twenty times over. Never a partial
/// snapshot, no run left `running` once the next daemon has looked, the next fire runs,
/// `check --read-data` stays clean and `status` tells the truth.
#[test]
fn twenty_sigkills_at_random_points_leave_nothing_running_and_nothing_partial() {
    use super::daemon::{catalog, wait_until};

    backstop_testkit::require_tool("sqlite3");
    let install = Install::new(
        "url = \"file://./repo\"\npack_size_mib = 1\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\njitter = \"0s\"\nmax_jobs = 4\nmax_jobs_per_repository = 4",
    );
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        std::fs::write(
            src.join(format!("f{i}.bin")),
            backstop_testkit::noise(512 * 1024, 900 + i),
        )
        .unwrap();
    }
    // A policy's jobs never overlap, so each kind of job has a policy of its own (all on
    // one repository, where they do run side by side).
    install.files_policy(
        "often",
        &["./src"],
        "[schedule]\nbackup = \"* * * * * *\"\n\n[retention]\nlast = 3\n",
    );
    install.files_policy(
        "drilled",
        &["./src"],
        "[schedule]\ndrill = \"*/2 * * * * *\"\n",
    );
    install.files_policy(
        "pruned",
        &["./src"],
        "[schedule]\nprune = \"*/3 * * * * *\"\n\n[retention]\nlast = 3\n",
    );
    install.files_policy(
        "checked",
        &["./src"],
        "[schedule]\ncheck = \"*/2 * * * * *\"\n",
    );
    let count = |sql: &str| catalog(&install, sql).parse::<u32>().unwrap_or(0);
    // One snapshot to begin with, for the drills.
    install.backup("often");
    install.backup("drilled");
    // A deterministic spread of kill points, from early in a job to well into it.
    let delays_ms = [
        700u64, 1300, 450, 2100, 900, 1650, 300, 2500, 1100, 600, 1900, 800, 1400, 350, 2300, 1000,
        550, 1750, 1200, 2000,
    ];
    for (round, delay) in delays_ms.iter().enumerate() {
        // Keep the tree changing, so that each backup has something to write.
        std::fs::write(
            src.join("changing.bin"),
            backstop_testkit::noise(8 * 1024 * 1024, 5000 + round as u64),
        )
        .unwrap();
        let spawned = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
            .to_string();
        let mut daemon = install.daemon(None);
        // Just after a backup, a drill, a prune or a check started, by turns (the others run
        // beside it; a check or prune of this small repository may already have ended, and
        // the kill lands between jobs), some milliseconds on.
        let kind = ["backup", "drill", "prune", "check"][round % 4];
        wait_until(
            &format!("a {kind} started"),
            Duration::from_secs(30),
            || {
                count(&format!(
                    "SELECT count(*) FROM runs WHERE kind = '{kind}' AND started_at > '{spawned}'"
                )) > 0
            },
        );
        std::thread::sleep(Duration::from_millis(delay % 150));
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        // Every snapshot that is visible is whole.
        let check = install.json(&["check", "--read-data"]);
        assert_eq!(check["ok"], true, "round {round}: {check}");
    }
    let before = count("SELECT count(*) FROM runs WHERE status = 'succeeded' AND kind = 'backup'");
    let restart = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string();
    let daemon = install.daemon(None);
    wait_until(
        "every run left by a killed daemon reconciled, and a new backup saved",
        Duration::from_secs(60),
        || {
            count("SELECT count(*) FROM runs WHERE status = 'succeeded' AND kind = 'backup'")
                > before
                && count(&format!(
                    "SELECT count(*) FROM runs WHERE status = 'running' AND started_at < '{restart}'"
                )) == 0
        },
    );
    daemon.stop();
    // Nothing was left `running` by the killed daemons: the last one's runs are reconciled
    // by `status` (no daemon is running now).
    let status = install.json(&["status"]);
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE status = 'running'"),
        0,
        "{status}"
    );
    let abandoned = count("SELECT count(*) FROM runs WHERE status = 'abandoned'");
    assert!(
        abandoned >= 5,
        "the kills landed in running jobs: {abandoned}"
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE kind = 'run.abandoned'"),
        abandoned
    );
    let often = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["policy"] == "often")
        .unwrap();
    assert!(often["last_success"].is_string(), "{status}");
    assert_ne!(often["last_backup_status"], "running", "{status}");
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert!(!snapshot_ids(&install, "often").is_empty());
}
