//! The real daemon: scheduled backups are recorded, SIGHUP with a broken policy keeps the
//! running set, and SIGTERM during a backup exits within the deadline leaving no snapshot.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backstop_testkit::db::PgDb;

use super::util::Install;

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_until(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(waited(timeout, check), "timed out waiting for {what}");
}

/// Whether `check` came true within `timeout`.
pub fn waited(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// A plain HTTP/1.1 GET; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn snapshots_of(install: &Install, policy: &str) -> usize {
    install
        .json(&["snapshots", policy])
        .as_array()
        .unwrap()
        .len()
}

pub fn catalog(install: &Install, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(install.path("data/catalog.db"))
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_daemon_runs_schedules_reloads_safely_and_stops_cleanly() {
    backstop_testkit::require_tool("sqlite3");
    let db = PgDb::create("backstop_e2e_daemon");
    let port = super::util::free_port();
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\nshutdown_deadline = \"10s\"\n\n[tools]\npg_dump = \"./bin/pg_dump\""
    ));
    install.env.push(("SLOW_PG_URL".into(), db.url()));
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "hello").unwrap();
    install.files_policy(
        "often",
        &["./src"],
        "[schedule]\nbackup = \"*/2 * * * * *\"\nprune = \"*/3 * * * * *\"\ncheck = \"*/5 * * * * *\"\n\n[retention]\nlast = 2\n",
    );
    // A pg_dump that starts a dump and then hangs: SIGTERM will find this backup running.
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let fake = install.path("bin/pg_dump");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in --version) echo 'pg_dump (PostgreSQL) 99.0'; exit 0;; esac\necho partial-dump\nexec sleep 3121\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let log = install.path("daemon.log");
    let mut daemon = super::Daemon(
        install
            .command(&["--log-format", "json", "daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_until("two scheduled backups", Duration::from_secs(30), || {
        snapshots_of(&install, "often") >= 2
    });
    let recorded = catalog(
        &install,
        "SELECT count(*) FROM runs WHERE policy = 'often' AND status = 'succeeded'",
    );
    assert!(recorded.parse::<u32>().unwrap() >= 2, "{recorded}");
    assert_eq!(http_get(port, "/healthz"), "ok\n");
    let metrics = http_get(port, "/metrics");
    let succeeded = metrics
        .lines()
        .find(|l| {
            l.starts_with("backstop_backup_runs_total{policy=\"often\",status=\"succeeded\"}")
        })
        .unwrap_or_else(|| panic!("no run count in:\n{metrics}"));
    assert!(
        succeeded.split(' ').nth(1).unwrap().parse::<u32>().unwrap() >= 2,
        "{succeeded}"
    );
    assert!(
        metrics.contains("backstop_backup_last_run_success{policy=\"often\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("backstop_rpo_exposure_seconds{policy=\"often\"}"),
        "{metrics}"
    );

    // Retention and checks on schedule: prunes keep the last two, checks pass.
    wait_until(
        "a prune that forgot snapshots, and a check",
        Duration::from_secs(30),
        || {
            let backed_up: u32 = catalog(
                &install,
                "SELECT count(*) FROM runs WHERE kind = 'backup' AND status = 'succeeded'",
            )
            .parse()
            .unwrap();
            catalog(
                &install,
                "SELECT count(*) FROM runs WHERE kind = 'check' AND status = 'succeeded'",
            ) != "0"
                && catalog(
                    &install,
                    "SELECT count(*) FROM runs WHERE kind = 'prune' AND status = 'succeeded'",
                ) != "0"
                && (snapshots_of(&install, "often") as u32) < backed_up
        },
    );
    let failed = catalog(
        &install,
        "SELECT kind, status, error FROM runs WHERE kind IN ('prune', 'check') AND status NOT IN ('succeeded', 'running')",
    );
    assert_eq!(failed, "", "every prune and check succeeded");

    // SIGHUP with a broken policy: the old set keeps running, and the log says why.
    std::fs::write(
        install.path("policies/broken.toml"),
        "name = \"broken\"\nrepository = \n",
    )
    .unwrap();
    signal(&daemon.0, "HUP");
    wait_until(
        "the reload refusal in the log",
        Duration::from_secs(10),
        || read_log().contains("SIGHUP: policies not reloaded"),
    );
    assert!(
        read_log().contains("broken.toml"),
        "the log names the file:\n{}",
        read_log()
    );
    let before = snapshots_of(&install, "often");
    wait_until("backups to go on", Duration::from_secs(20), || {
        snapshots_of(&install, "often") > before
    });

    // SIGHUP with valid policies: the slow postgres policy joins.
    std::fs::remove_file(install.path("policies/broken.toml")).unwrap();
    install.policy(
        "slow",
        "[source]\nkind = \"postgres\"\nurl_env = \"SLOW_PG_URL\"\n\n[schedule]\nbackup = \"*/2 * * * * *\"\n",
    );
    signal(&daemon.0, "HUP");
    wait_until(
        "the slow backup to be running",
        Duration::from_secs(20),
        || {
            catalog(
                &install,
                "SELECT count(*) FROM runs WHERE policy = 'slow' AND status = 'running'",
            ) == "1"
        },
    );

    // SIGTERM during that backup: a clean exit within the deadline, nothing visible.
    let stopping = Instant::now();
    signal(&daemon.0, "TERM");
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "the daemon did not stop within its deadline"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", read_log());
    for line in read_log().lines() {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
    }
    assert_eq!(
        snapshots_of(&install, "slow"),
        0,
        "no partial snapshot became visible"
    );
    assert_eq!(
        catalog(&install, "SELECT status FROM runs WHERE policy = 'slow'"),
        "cancelled"
    );
    let leftover = Command::new("pgrep")
        .args(["-f", "sleep 3121"])
        .output()
        .unwrap();
    assert!(leftover.stdout.is_empty(), "the dump tool was stopped");
}

/// Each request a receiver got: its first line and its body.
pub type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A local HTTP receiver: records each request's first line and body, answers 200.
pub fn receiver() -> (u16, Requests) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Requests::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().unwrap().push((
                first.trim().to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[test]
fn a_failing_backup_sends_the_webhook_and_the_fail_ping() {
    let (port, seen) = receiver();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\njitter = \"0s\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\n"
    ));
    install.files_policy(
        "broken-source",
        &["./does-not-exist"],
        &format!(
            "[schedule]\nbackup = \"*/2 * * * * *\"\n\n[objectives]\nrpo = \"3s\"\n\n[notify]\nping_fail = \"http://127.0.0.1:{port}/fail\"\n"
        ),
    );
    // A policy with its own Slack-compatible webhook, and a healthy one that pings around
    // each backup.
    install.files_policy(
        "broken-slack",
        &["./also-missing"],
        &format!(
            "[schedule]\nbackup = \"*/2 * * * * *\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{port}/slack\"\nformat = \"slack\"\n"
        ),
    );
    std::fs::create_dir_all(install.path("fine")).unwrap();
    std::fs::write(install.path("fine/a.txt"), "a").unwrap();
    install.files_policy(
        "fine",
        &["./fine"],
        &format!(
            "[schedule]\nbackup = \"*/2 * * * * *\"\n\n[notify]\nping_start = \"http://127.0.0.1:{port}/start\"\nping_success = \"http://127.0.0.1:{port}/ok\"\n"
        ),
    );
    let mut daemon = install.daemon(None);
    let got = |what: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(line, _)| line.starts_with(what))
    };
    // The policy's RPO period starts at its first backup; with every backup failing, its
    // exposure passes the 3 s objective, and the next objectives check (every 15 s) alerts.
    let breached = || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(line, body)| line.starts_with("POST /hook") && body.contains("rpo.breached"))
    };
    wait_until(
        "the failure webhooks, the fail ping, the start and success pings, and the breach",
        Duration::from_secs(45),
        || {
            got("POST /hook")
                && got("GET /fail")
                && got("POST /slack")
                && got("GET /start")
                && got("GET /ok")
                && breached()
        },
    );
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().unwrap().success());
    let requests = seen.lock().unwrap().clone();
    let failed: serde_json::Value = requests
        .iter()
        .filter(|(line, _)| line.starts_with("POST /hook"))
        .map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).unwrap())
        .find(|body| body["event"] == "backup.failed")
        .expect("a backup.failed event");
    assert_eq!(failed["policy"], "broken-source");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("does-not-exist"),
        "{failed}"
    );
    let breach = requests
        .iter()
        .filter(|(line, _)| line.starts_with("POST /hook"))
        .filter(|(_, body)| body.contains("rpo.breached"))
        .count();
    assert_eq!(
        breach, 1,
        "an objective breach is reported once: {requests:?}"
    );
    let slack: serde_json::Value = requests
        .iter()
        .find(|(line, _)| line.starts_with("POST /slack"))
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with("backstop: backup.failed for policy `broken-slack`")
            && text.contains("also-missing"),
        "{slack}"
    );
    assert_eq!(slack.as_object().unwrap().len(), 1, "only text: {slack}");
    // The healthy policy only pinged: no webhook post names it.
    assert!(!requests
        .iter()
        .any(|(line, body)| line.starts_with("POST") && body.contains("\"fine\"")));

    // Issue 14: a restart alerted the same breach again. The catalog remembers it.
    let failures = |seen: &Requests| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(line, body)| line.starts_with("POST /hook") && body.contains("backup.failed"))
            .count()
    };
    let before = failures(&seen);
    let mut again = install.daemon(None);
    wait_until(
        "a backup failure after the restart",
        Duration::from_secs(30),
        || failures(&seen) > before,
    );
    // The objectives are checked as the daemon starts, then every 15 s.
    std::thread::sleep(Duration::from_secs(2));
    signal(&again.0, "TERM");
    assert!(again.0.wait().unwrap().success());
    let breaches = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(line, body)| line.starts_with("POST /hook") && body.contains("rpo.breached"))
        .count();
    assert_eq!(
        breaches, 1,
        "the breach is not alerted again after a restart"
    );
}

#[test]
fn scheduled_drills_are_recorded_measured_and_alert_on_failure_and_overdue_signoff() {
    let (hook, seen) = receiver();
    let port = super::util::free_port();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n"
    ));
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "hello").unwrap();
    // Backups seldom: a fire while the same policy's job still runs is skipped, and with a
    // backup every 2 s that takes 2 s on a loaded machine, no drill ever found its policy
    // free.
    let schedule = "[schedule]\nbackup = \"*/20 * * * * *\"\ndrill = \"*/3 * * * * *\"\n\n[owners]\nrecovery = \"owner@example.com\"\n\n[objectives]\nrto = \"10m\"\n";
    install.files_policy(
        "good",
        &["./src"],
        &format!("{schedule}\n[drill]\nsignoff_within = \"1s\"\n"),
    );
    // The bad policy's RPO objective is one no snapshot can meet, so each of its drills
    // also reports the restored snapshot's age as a breach.
    install.files_policy(
        "bad",
        &["./src"],
        &format!(
            "{}\nrpo = \"1ms\"\n\n[drill]\n[[drill.checks]]\nname = \"workflow\"\ncommand = [\"false\"]\n",
            schedule.trim_end()
        ),
    );
    let mut daemon = install.daemon(Some("daemon.log"));
    let events = |event: &str| -> Vec<serde_json::Value> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /hook"))
            .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
            .filter(|body| body["event"] == event)
            .collect()
    };
    // Generous: the whole suite runs beside it on two cores.
    let both = waited(Duration::from_secs(120), || {
        let drills = install.json(&["drills"]);
        let of = |p: &str| drills.as_array().unwrap().iter().any(|d| d["policy"] == p);
        of("good") && of("bad")
    });
    if !both {
        let log = std::fs::read_to_string(install.path("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "timed out waiting for drills of both policies; drills: {}\nthe daemon's log ends:\n{}",
            install.json(&["drills"]),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    wait_until(
        "the drill failure and the overdue sign-off",
        // The first backups come at the next 20 s mark; the drills after them restore.
        Duration::from_secs(90),
        || {
            events("drill.failed")
                .iter()
                .any(|e| e["detail"].as_str().unwrap_or("").contains("workflow"))
                && !events("signoff.overdue").is_empty()
        },
    );
    let metrics = http_get(port, "/metrics");
    for line in [
        "backstop_drill_last_success{policy=\"good\"} 1",
        "backstop_drill_last_success{policy=\"bad\"} 0",
        "backstop_rto_objective_seconds{policy=\"good\"} 600",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    for series in [
        "backstop_drill_last_rto_seconds{policy=\"good\"}",
        "backstop_drill_since_last_pass_seconds{policy=\"good\"}",
        "backstop_signoffs_overdue{policy=\"good\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().unwrap().success());

    // A drill may fire before the policy's first backup (and fail for want of a snapshot);
    // the workflow check fails the bad policy's drills, and only those.
    let failed = events("drill.failed");
    let workflow: Vec<&serde_json::Value> = failed
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap()
                .contains("check `workflow` failed")
        })
        .collect();
    assert!(!workflow.is_empty(), "{failed:?}");
    assert!(workflow.iter().all(|e| e["policy"] == "bad"), "{failed:?}");
    assert!(
        failed
            .iter()
            .filter(|e| e["policy"] == "good")
            .all(|e| e["detail"].as_str().unwrap().contains("no snapshot")),
        "the good policy's drills fail only before its first backup: {failed:?}"
    );
    let breaches = events("rpo.breached");
    let by_drill: Vec<&serde_json::Value> = breaches
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap()
                .contains("the restored snapshot is")
        })
        .collect();
    assert!(!by_drill.is_empty(), "{breaches:?}");
    assert!(
        by_drill.iter().all(|e| e["policy"] == "bad"),
        "{breaches:?}"
    );
    let overdue = events("signoff.overdue");
    assert!(overdue.iter().all(|e| e["policy"] == "good"), "{overdue:?}");
    let mut drills: Vec<&str> = overdue
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    let before = drills.len();
    drills.dedup();
    assert_eq!(
        drills.len(),
        before,
        "each overdue drill is announced once: {overdue:?}"
    );
    assert!(drills[0].contains("owner@example.com"), "{drills:?}");
}

#[test]
fn a_job_stopped_by_its_timeout_is_recorded_cancelled_and_notified() {
    let (hook, seen) = receiver();
    let db = PgDb::create("backstop_e2e_timeout");
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\njitter = \"0s\"\njob_timeout = \"2s\"\nshutdown_deadline = \"5s\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n\n[tools]\npg_dump = \"./bin/pg_dump\""
    ));
    install.env.push(("SLOW_PG_URL".into(), db.url()));
    install.policy(
        "slow",
        "[source]\nkind = \"postgres\"\nurl_env = \"SLOW_PG_URL\"\n\n[schedule]\nbackup = \"*/3 * * * * *\"\n",
    );
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let fake = install.path("bin/pg_dump");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in --version) echo 'pg_dump (PostgreSQL) 99.0'; exit 0;; esac\necho partial-dump\nexec sleep 3122\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = install.daemon(None);
    let timed_out = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /hook"))
            .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
            .find(|body| body["event"] == "backup.timed_out")
    };
    wait_until("the timeout notification", Duration::from_secs(40), || {
        timed_out().is_some()
    });
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().unwrap().success());
    let event = timed_out().unwrap();
    assert_eq!(event["policy"], "slow");
    assert!(event["detail"].as_str().unwrap().contains("2s"), "{event}");
    let cancelled = catalog(
        &install,
        "SELECT count(*) FROM runs WHERE policy = 'slow' AND status = 'cancelled'",
    );
    assert!(cancelled.parse::<u32>().unwrap() >= 1, "{cancelled}");
    assert_eq!(snapshots_of(&install, "slow"), 0);
}
