//! Restore requests run as jobs of the daemon (issue 14): `request run` starts one (the API
//! answers 202 with its run) and follows it to its end; a daemon stopped with SIGTERM, or
//! killed with SIGKILL, while one runs leaves it `failed` (interrupted), its requester told,
//! the audit log holding it, and no target database behind.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use backstop_testkit::db::{pg_databases, PgDb};

use super::daemon::{catalog, receiver, wait_until, Requests};
use super::util::Install;

/// A PostgreSQL policy backed up once, a daemon configuration with a webhook, and a
/// `pg_restore` that hangs while `bin/hang` exists.
struct Setup {
    install: Install,
    port: u16,
    heard: Requests,
    snapshot: String,
    owner: String,
    approver: String,
    operator: String,
    _source: PgDb,
}

fn setup(prefix: &str) -> Setup {
    backstop_testkit::require_tool("sqlite3");
    let port = super::util::free_port();
    let (hook, heard) = receiver();
    let source = PgDb::create(prefix);
    source
        .sql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 500) g");
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\n\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n\n[tools]\npg_restore = \"./bin/pg_restore\""
    ));
    install.env.push(("JOBS_PG_URL".into(), source.url()));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"JOBS_PG_URL\"\n\n[owners]\nrecovery = \"dba@example.com\"\napprovers = [\"boss@example.com\"]\n",
    );
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let wrapper = install.path("bin/pg_restore");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ -e \"$(dirname \"$0\")/hang\" ] && [ \"$1\" != --version ]; then exec sleep 3124; fi\nexec pg_restore \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let snapshot = install.backup("orders")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |principal: &str, role: &str| {
        let out = install.ok(&["token", "create", "--principal", principal, "--role", role]);
        out.lines().last().unwrap().trim().to_string()
    };
    Setup {
        owner: token("dba@example.com", "recovery-owner"),
        approver: token("boss@example.com", "approver"),
        operator: token("ops@example.com", "operator"),
        install,
        port,
        heard,
        snapshot,
        _source: source,
    }
}

impl Setup {
    fn daemon(&self, log: &str) -> super::Daemon {
        self.install.daemon(Some(log))
    }

    fn api(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = self.install.command(args);
        cmd.env_remove("BACKSTOP_API_URL")
            .env("BACKSTOP_TOKEN", token);
        cmd.output().unwrap()
    }

    fn api_json(&self, token: &str, args: &[&str]) -> serde_json::Value {
        let out = self.api(token, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// An approved request to restore the snapshot into a new database `target`.
    fn approved_request(&self, target: &str) -> String {
        let created = self.api_json(
            &self.owner,
            &[
                "--json",
                "request",
                "create",
                "--policy",
                "orders",
                "--snapshot",
                &self.snapshot,
                "--to",
                &format!("{}/{target}", backstop_testkit::db::PG_SERVER),
                "--reason",
                "check last night's orders",
            ],
        );
        let id = created["request_id"].as_str().unwrap().to_string();
        let approved = self.api_json(&self.approver, &["--json", "request", "approve", &id]);
        assert_eq!(approved["status"], "approved");
        id
    }

    fn count(&self, sql: &str) -> u32 {
        catalog(&self.install, sql).parse().unwrap_or(0)
    }

    /// The request's status and outcome, as the catalog holds them.
    fn request(&self, id: &str) -> (String, String) {
        let row = catalog(
            &self.install,
            &format!("SELECT status || '|' || coalesce(outcome, '') FROM restore_requests WHERE id = '{id}'"),
        );
        let (status, outcome) = row.split_once('|').unwrap_or((&row, ""));
        (status.to_string(), outcome.to_string())
    }

    fn heard_failed(&self, id: &str) -> bool {
        self.heard.lock().unwrap().iter().any(|(line, body)| {
            line.starts_with("POST /hook")
                && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|b| {
                    b["event"] == "request.failed"
                        && b["recipient"] == "dba@example.com"
                        && b["detail"].as_str().is_some_and(|d| d.contains(id))
                })
        })
    }
}

fn target_name(prefix: &str) -> String {
    backstop_testkit::db::unique_name(prefix)
}

fn stop_hung_tools() {
    let _ = Command::new("pkill").args(["-f", "sleep 3124"]).status();
}

/// Issue 14: a restore request ran inside the HTTP handler; SIGTERM made the daemon exit
/// at once, the request stayed `running` for ever, nobody was told, and the half-loaded
/// target database stayed behind.
#[test]
fn sigterm_during_a_restore_request_fails_it_as_interrupted_and_drops_its_target() {
    let setup = setup("backstop_e2e_reqterm");
    let target = target_name("backstop_e2e_reqterm_to");
    let _guard = PgDb::adopt(&target);
    std::fs::write(setup.install.path("bin/hang"), "").unwrap();
    let daemon = setup.daemon("daemon.log");
    wait_until("the API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", setup.port)).is_ok()
    });
    let id = setup.approved_request(&target);

    // The API answers at once, 202, with the run that carries the request.
    let started = setup.api_json(
        &setup.operator,
        &["--json", "request", "run", &id, "--no-wait"],
    );
    assert_eq!(started["status"], "running", "{started}");
    let run_id = started["run_id"].as_str().expect("a run id").to_string();
    assert_eq!(
        setup.count(&format!(
            "SELECT count(*) FROM runs WHERE id = '{run_id}' AND kind = 'restore' AND status = 'running'"
        )),
        1
    );
    wait_until(
        "the target database created",
        Duration::from_secs(30),
        || pg_databases(&target).contains(&target),
    );

    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut daemon = daemon;
    let exit = daemon.0.wait().unwrap();
    stop_hung_tools();
    assert!(exit.success(), "the daemon stopped cleanly: {exit:?}");

    let (status, outcome) = setup.request(&id);
    assert_eq!(status, "failed", "{outcome}");
    assert!(outcome.contains("interrupted"), "{outcome}");
    assert!(
        outcome.contains(&format!("database `{target}` it created was dropped")),
        "{outcome}"
    );
    assert!(
        !pg_databases(&target).contains(&target),
        "no target database is left"
    );
    assert_eq!(
        setup.count(&format!(
            "SELECT count(*) FROM runs WHERE id = '{run_id}' AND status = 'cancelled'"
        )),
        1
    );
    assert_eq!(
        setup.count(&format!(
            "SELECT count(*) FROM audit_events WHERE kind = 'request.executed' AND subject = '{id}' AND detail LIKE '%\"status\":\"failed\"%' AND detail LIKE '%interrupted%'"
        )),
        1
    );
    // Told before the daemon exited.
    assert!(setup.heard_failed(&id), "the requester told");
}

/// The same with SIGKILL: nothing is recorded by the dying daemon, so the next one fails
/// the request as interrupted, drops the database it was creating and abandons its run. A
/// request run afterwards is followed by `request run` to its end.
#[test]
fn a_daemon_killed_during_a_restore_request_is_reconciled_by_the_next_one() {
    let setup = setup("backstop_e2e_reqkill");
    let target = target_name("backstop_e2e_reqkill_to");
    let _guard = PgDb::adopt(&target);
    std::fs::write(setup.install.path("bin/hang"), "").unwrap();
    let mut first = setup.daemon("first.log");
    wait_until("the API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", setup.port)).is_ok()
    });
    let id = setup.approved_request(&target);
    setup.api_json(
        &setup.operator,
        &["--json", "request", "run", &id, "--no-wait"],
    );
    wait_until(
        "the target database created",
        Duration::from_secs(30),
        || pg_databases(&target).contains(&target),
    );
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    stop_hung_tools();
    assert_eq!(
        setup.request(&id).0,
        "running",
        "nothing recorded by the dead daemon"
    );

    std::fs::remove_file(setup.install.path("bin/hang")).unwrap();
    let second = setup.daemon("second.log");
    wait_until(
        "the interrupted request failed",
        Duration::from_secs(30),
        || setup.request(&id).0 == "failed",
    );
    assert!(setup.request(&id).1.contains("interrupted"));
    wait_until(
        "its target database dropped",
        Duration::from_secs(10),
        || !pg_databases(&target).contains(&target),
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE kind = 'restore' AND status = 'abandoned'"),
        1
    );
    wait_until("the requester told", Duration::from_secs(10), || {
        setup.heard_failed(&id)
    });

    // A request run now is followed to its end by `request run`.
    let again = target_name("backstop_e2e_reqkill_again");
    let _guard = PgDb::adopt(&again);
    let id = setup.approved_request(&again);
    let ran = setup.api_json(&setup.operator, &["--json", "request", "run", &id]);
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert!(ran["run_id"].is_string(), "{ran}");
    assert_eq!(
        setup.count(&format!(
            "SELECT count(*) FROM runs WHERE id = '{}' AND status = 'succeeded'",
            ran["run_id"].as_str().unwrap()
        )),
        1
    );
    let restored = std::process::Command::new("psql")
        .args([
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &again,
            "-c",
            "SELECT count(*) FROM t",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&restored.stdout).trim(), "500");
    second.stop();
}

/// A raw HTTP/1.1 POST with a content type of our choosing; the status and the body.
fn raw(port: u16, path: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    raw_declared(port, path, token, content_type, body, body.len())
}

/// The same, declaring a body of `declared` bytes (more than is sent, so that a server
/// that refuses it part-way has read everything that came).
fn raw_declared(
    port: u16,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
    declared: usize,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    super::governance::status_and_body(&String::from_utf8_lossy(&response))
}

/// Issue 15: a request whose snapshot did not exist or belonged to another policy was
/// accepted (200, pending) and could be approved; only `run` refused it. Now it is refused
/// at creation, with a JSON error, as is every other API error (400, 404, 405, 413, 415,
/// 422); the request keeps the snapshot's full id; the audit log names the caller.
#[test]
fn requests_are_validated_at_creation_and_every_api_error_is_json() {
    let setup = setup("backstop_e2e_reqvalid");
    std::fs::create_dir_all(setup.install.path("site")).unwrap();
    std::fs::write(setup.install.path("site/index.html"), "<p>hi</p>").unwrap();
    setup.install.files_policy("site", &["./site"], "");
    let other = setup.install.backup("site")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let daemon = setup.daemon("daemon.log");
    wait_until("the API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", setup.port)).is_ok()
    });
    let target = format!(
        "{}/{}",
        backstop_testkit::db::PG_SERVER,
        target_name("backstop_e2e_reqvalid_to")
    );
    let create = |snapshot: &str, to: &str| {
        let body = serde_json::json!({
            "policy": "orders", "snapshot": snapshot, "target": to, "reason": "audit sample",
        });
        raw(
            setup.port,
            "/api/v1/requests",
            &setup.owner,
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    let error_of = |(code, body): (u16, String)| -> (u16, String) {
        let parsed: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{code}: not JSON ({e}): {body}"));
        (
            code,
            parsed["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_string(),
        )
    };

    let (code, message) = error_of(create("deadbeef", &target));
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("deadbeef"), "{message}");
    let (code, message) = error_of(create(&other[..12], &target));
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("belongs to policy `site`"), "{message}");
    let (code, message) = error_of(create(&setup.snapshot[..12], "/srv/restore/orders"));
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("postgres:// URL"), "{message}");
    assert_eq!(
        setup.count("SELECT count(*) FROM restore_requests"),
        0,
        "nothing refused was recorded"
    );

    // Bodies the API cannot take: each answered as JSON with its own status.
    let path = "/api/v1/requests";
    let (code, message) = error_of(raw(
        setup.port,
        path,
        &setup.owner,
        "application/json",
        b"{",
    ));
    assert_eq!(code, 400, "{message}");
    let (code, message) = error_of(raw(setup.port, path, &setup.owner, "text/plain", b"{}"));
    assert_eq!(code, 415, "{message}");
    let (code, message) = error_of(raw(
        setup.port,
        path,
        &setup.owner,
        "application/json",
        br#"{"policy": 5}"#,
    ));
    assert_eq!(code, 422, "{message}");
    // One byte over the API's 2 MiB limit is sent (all of which the server reads before
    // it refuses), of a body declared larger.
    let over_limit = vec![b' '; 2 * 1024 * 1024 + 1];
    let (code, message) = error_of(raw_declared(
        setup.port,
        path,
        &setup.owner,
        "application/json",
        &over_limit,
        3 * 1024 * 1024,
    ));
    assert_eq!(code, 413, "{message}");
    let (code, message) = error_of(super::governance::http(
        setup.port,
        "GET",
        "/api/v1/nothing-here",
        Some(&setup.owner),
    ));
    assert_eq!(code, 404, "{message}");
    let (code, message) = error_of(super::governance::http(
        setup.port,
        "DELETE",
        "/api/v1/requests",
        Some(&setup.owner),
    ));
    assert_eq!(code, 405, "{message}");

    // A good one keeps the snapshot's full id, and the audit log names who did what.
    let (code, body) = create(&setup.snapshot[..12], &target);
    assert_eq!(code, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["snapshot_id"], setup.snapshot.as_str());
    let id = created["request_id"].as_str().unwrap();
    setup.api_json(&setup.approver, &["--json", "request", "approve", id]);
    let actor = |kind: &str| {
        catalog(
            &setup.install,
            &format!("SELECT actor FROM audit_events WHERE kind = '{kind}' AND subject = '{id}'"),
        )
    };
    assert_eq!(actor("request.created"), "dba@example.com");
    assert_eq!(actor("request.approved"), "boss@example.com");
    daemon.stop();
}
