//! The daemon's API end to end: tokens shown once and stored hashed, the roles, a restore
//! request approved by someone other than its requester, run, and the restored tree equal
//! to its source; approving one's own request and an overlapping target refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::util::{assert_same_tree, Install};

/// A raw HTTP/1.1 request; returns the status code and the body.
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_with(port, method, path, token, "")
}

/// The same, with a JSON body.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    status_and_body(&response)
}

/// An HTTP/1.1 response's status code and body.
pub fn status_and_body(response: &str) -> (u16, String) {
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub fn token(install: &Install, principal: &str, role: &str) -> String {
    let out = install.ok(&["token", "create", "--principal", principal, "--role", role]);
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("bst_"), "{out}");
    token
}

#[test]
fn a_restore_request_needs_another_approver_and_restores_what_was_asked() {
    let port = super::util::free_port();
    let (hook, heard) = super::daemon::receiver();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\nmetrics_token = true\n\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n"
    ));
    std::fs::create_dir_all(install.path("src/app")).unwrap();
    std::fs::write(install.path("src/app/index.html"), "<title>x</title>").unwrap();
    std::fs::write(install.path("src/app/data.csv"), "id\n1\n2\n").unwrap();
    install.files_policy(
        "site",
        &["./src"],
        "[objectives]\nrpo = \"1h\"\n\n[owners]\nrecovery = \"dba@example.com\"\napprovers = [\"boss@example.com\", \"dba@example.com\"]\n",
    );
    let snapshot = install.backup("site")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let drill = install.json(&["drill", "site"]);
    let drill_id = drill["drill_id"].as_str().unwrap().to_string();

    let owner = token(&install, "dba@example.com", "recovery-owner");
    let owner_as_approver = token(&install, "dba@example.com", "approver");
    let approver = token(&install, "boss@example.com", "approver");
    let operator = token(&install, "ops@example.com", "operator");
    let auditor = token(&install, "audit@example.com", "auditor");
    let stored = std::fs::read_to_string(install.path("data/access.toml")).unwrap();
    for t in [&owner, &approver, &operator, &auditor] {
        assert!(
            !stored.contains(t.as_str()),
            "tokens are stored hashed only"
        );
    }
    let err = install.fails(&["token", "create", "--principal", "x", "--role", "admin"]);
    assert!(err.contains("unknown role `admin`"), "{err}");

    let log = install.path("daemon.log");
    let daemon = super::Daemon(
        install
            .command(&["daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Authentication: none needed for /healthz, a known token for everything else.
    assert_eq!(http(port, "GET", "/healthz", None).0, 200);
    assert_eq!(
        http(port, "GET", "/metrics", None).0,
        401,
        "metrics_token = true"
    );
    assert_eq!(http(port, "GET", "/metrics", Some(&auditor)).0, 200);
    assert_eq!(http(port, "GET", "/openapi.json", None).0, 401);
    assert_eq!(
        http(port, "GET", "/api/v1/requests", Some("bst_nope")).0,
        401
    );
    let (code, doc) = http(port, "GET", "/openapi.json", Some(&auditor));
    assert_eq!(code, 200);
    assert!(doc.contains("\"/api/v1/requests/{id}/approve\""), "{doc}");
    // Every documented operation exists and asks for a token, except /healthz.
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{doc}");
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "x");
            let (code, _) = http(port, &method.to_uppercase(), &concrete, None);
            let expected = if path == "/healthz" { 200 } else { 401 };
            assert_eq!(code, expected, "{method} {path} without a token");
        }
    }
    assert!(
        doc["paths"]["/metrics"]["get"]["security"].is_array(),
        "metrics_token = true is documented"
    );
    // Sign-off through the API: the policy's recovery owner only, identified by the token.
    let signoff = format!("/api/v1/drills/{drill_id}/signoff");
    let comment = r#"{"comment": "reviewed through the API"}"#;
    assert_eq!(
        http_with(port, "POST", &signoff, Some(&approver), comment).0,
        403
    );
    assert_eq!(
        http_with(port, "POST", &signoff, Some(&auditor), comment).0,
        403
    );
    let (code, signed) = http_with(port, "POST", &signoff, Some(&owner), comment);
    assert_eq!(code, 200, "{signed}");
    assert!(
        signed.contains("\"principal\":\"dba@example.com\""),
        "{signed}"
    );
    let (code, drills) = http(port, "GET", "/api/v1/drills?policy=site", Some(&auditor));
    assert_eq!(code, 200);
    assert!(drills.contains(&drill_id), "{drills}");
    let (code, who) = http(port, "GET", "/api/v1/whoami", Some(&operator));
    assert_eq!(
        (code, who.contains("\"role\":\"operator\"")),
        (200, true),
        "{who}"
    );

    // The request commands find the daemon from `[api] listen` in backstop.toml.
    let api = |t: &str, args: &[&str]| {
        let mut cmd = install.command(args);
        cmd.env_remove("BACKSTOP_API_URL").env("BACKSTOP_TOKEN", t);
        cmd.output().unwrap()
    };
    let elsewhere = install
        .command(&["request", "list", "--api-url", "http://127.0.0.1:1"])
        .env("BACKSTOP_TOKEN", &auditor)
        .output()
        .unwrap();
    assert!(
        !elsewhere.status.success(),
        "--api-url overrides the configuration"
    );
    let ok_json = |t: &str, args: &[&str]| -> serde_json::Value {
        let out = api(t, args);
        assert!(
            out.status.success(),
            "{args:?}: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let refused = |t: &str, args: &[&str]| -> String {
        let out = api(t, args);
        assert!(!out.status.success(), "{args:?} should be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let target = install.path("restored");
    let create = |t: &str, to: &str, extra: &[&str]| {
        let mut args = vec![
            "--json",
            "request",
            "create",
            "--policy",
            "site",
            "--snapshot",
            &snapshot[..12],
            "--to",
            to,
            "--reason",
            "recover yesterday's site",
        ];
        args.extend_from_slice(extra);
        api(t, &args)
    };
    let relative = create(&owner, "restored-here", &[]);
    assert!(String::from_utf8_lossy(&relative.stderr).contains("give an absolute path"));
    // Only the policy's recovery owner may ask.
    for t in [&auditor, &approver, &operator] {
        let out = create(t, target.to_str().unwrap(), &[]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    }
    let out = create(&owner, target.to_str().unwrap(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(request["status"], "pending");
    let id = request["request_id"].as_str().unwrap().to_string();

    // Not approved yet: it cannot run. Its requester cannot approve it, even as an approver.
    assert!(refused(&operator, &["request", "run", &id]).contains("not approved"));
    let own = refused(&owner_as_approver, &["request", "approve", &id]);
    assert!(own.contains("cannot also decide it"), "{own}");
    assert!(refused(&auditor, &["request", "approve", &id]).contains("403"));
    let approved = ok_json(
        &approver,
        &["--json", "request", "approve", &id, "--comment", "ok"],
    );
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "boss@example.com");
    assert!(refused(&auditor, &["request", "run", &id]).contains("403"));
    let ran = ok_json(&operator, &["--json", "request", "run", &id]);
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_same_tree(&install.path("src"), &target.join("src"));
    let listed = ok_json(&auditor, &["--json", "request", "list"]);
    assert_eq!(listed[0]["request_id"], id.as_str());
    assert_eq!(listed[0]["status"], "succeeded");

    // A target that is the source (or inside it) is refused when the request is made,
    // unless the request asks for it.
    for to in [install.path("src"), install.path("src/app/new")] {
        let out = create(&owner, to.to_str().unwrap(), &[]);
        assert!(!out.status.success(), "{to:?} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("409") && err.contains("the source of policy `site`"),
            "{err}"
        );
        assert!(err.contains("allow_overlap"), "{err}");
    }
    let rejected = create(&owner, install.path("elsewhere").to_str().unwrap(), &[]);
    let rejected: serde_json::Value = serde_json::from_slice(&rejected.stdout).unwrap();
    let rejected_id = rejected["request_id"].as_str().unwrap();
    let done = ok_json(
        &approver,
        &[
            "--json",
            "request",
            "reject",
            rejected_id,
            "--comment",
            "not needed",
        ],
    );
    assert_eq!(done["status"], "rejected");
    assert!(refused(&operator, &["request", "run", rejected_id]).contains("rejected"));

    // A request with a window runs by itself once approved and the window is open.
    let windowed = create(
        &owner,
        install.path("windowed").to_str().unwrap(),
        &["--not-before", "2026-01-01T00:00:00Z"],
    );
    let windowed: serde_json::Value = serde_json::from_slice(&windowed.stdout).unwrap();
    let windowed_id = windowed["request_id"].as_str().unwrap().to_string();
    ok_json(&approver, &["--json", "request", "approve", &windowed_id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = ok_json(&auditor, &["--json", "request", "list"]);
        let this = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == windowed_id.as_str())
            .unwrap()
            .clone();
        if this["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the windowed request did not run: {this}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_same_tree(&install.path("src"), &install.path("windowed/src"));

    // Allowed explicitly and approved so, a restore over the source runs: the install's
    // root holds `src`, which gets the snapshot's content back in place.
    std::fs::write(install.path("src/app/data.csv"), "id\n1\n2\n3\n").unwrap();
    let root = install.path("");
    let out = create(&owner, root.to_str().unwrap(), &["--allow-overlap"]);
    let in_place: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let in_place_id = in_place["request_id"].as_str().unwrap();
    ok_json(&approver, &["--json", "request", "approve", in_place_id]);
    let ran = ok_json(&operator, &["--json", "request", "run", in_place_id]);
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_eq!(
        std::fs::read_to_string(install.path("src/app/data.csv")).unwrap(),
        "id\n1\n2\n",
        "restored in place"
    );

    // A point in time means the newest snapshot at or before it.
    let between = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(install.path("src/app/data.csv"), "id\n1\n2\n3\n4\n").unwrap();
    install.backup("site");
    let pit = install.path("pit");
    let out = api(
        &owner,
        &[
            "--json",
            "request",
            "create",
            "--policy",
            "site",
            "--at",
            &between.to_string(),
            "--to",
            pit.to_str().unwrap(),
            "--reason",
            "before the bad import",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pit_request: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pit_id = pit_request["request_id"].as_str().unwrap();
    ok_json(&approver, &["--json", "request", "approve", pit_id]);
    let ran = ok_json(&owner, &["--json", "request", "run", pit_id]);
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert!(
        ran["outcome"].as_str().unwrap().contains(&snapshot[..8]),
        "{ran}"
    );
    assert_eq!(
        std::fs::read_to_string(pit.join("src/app/data.csv")).unwrap(),
        "id\n1\n2\n",
        "the snapshot before the point in time, not the newer one"
    );

    // The live evidence view, for an auditor's script (the browser's sign-in is in
    // console.rs).
    let (code, page) = http(port, "GET", "/ui/evidence", Some(&auditor));
    assert_eq!(code, 200);
    assert!(
        page.contains(&id)
            && page.contains("boss@example.com")
            && page.contains("<svg class=\"rpo-chart\"")
    );
    assert_eq!(http(port, "GET", "/ui", None).0, 401);
    let shot = install.path("ui.png");
    let saved = install.path("ui.html");
    std::fs::write(&saved, &page).unwrap();
    super::util::screenshot(&format!("file://{}", saved.display()), &shot);
    // The charts are drawn: the passed drill's RTO bar is on screen. (The days before the
    // policy's first backup are no breach, so the RPO chart has no shading to look for.)
    let bar = super::evidence::count_color(&shot, [0x16, 0xa3, 0x4a]);
    assert!(
        bar > 1000,
        "no RTO chart in the /ui screenshot ({bar} pixels)"
    );

    daemon.stop();

    // The daemon anchored the audit chain in the repository when it started (a repository
    // existed then), and the catalog agrees with that anchor.
    let anchors = std::fs::read_dir(install.path("repo/anchors"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(anchors >= 1, "no anchor written by the daemon");
    let verified = install.json(&["audit", "verify"]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["anchors"].as_u64().unwrap() as usize, anchors);

    // The requester heard of each decision and each outcome, addressed to them.
    let told: Vec<serde_json::Value> = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(line, _)| line.starts_with("POST /hook"))
        .filter_map(|(_, body)| serde_json::from_str(body).ok())
        .filter(|e: &serde_json::Value| e["event"].as_str().unwrap().starts_with("request."))
        .collect();
    for (event, request) in [
        ("request.approved", id.as_str()),
        ("request.succeeded", id.as_str()),
        ("request.rejected", rejected_id),
        ("request.succeeded", windowed_id.as_str()),
    ] {
        assert!(
            told.iter().any(|e| e["event"] == event
                && e["recipient"] == "dba@example.com"
                && e["detail"].as_str().unwrap().contains(request)),
            "no {event} for {request} in {told:#?}"
        );
    }

    // The evidence pack names who asked and who approved.
    let pack = install.path("pack");
    install.ok(&[
        "evidence",
        "export",
        "--from",
        "2026-01-01",
        "--to",
        "2099-12-31",
        "--out",
        pack.to_str().unwrap(),
    ]);
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pack.join("evidence.json")).unwrap()).unwrap();
    let requests = evidence["policies"][0]["restore_requests"]
        .as_array()
        .unwrap();
    assert_eq!(requests.len(), 5);
    assert_eq!(requests[0]["request_id"], id.as_str());
    assert_eq!(requests[0]["requester"], "dba@example.com");
    assert_eq!(requests[0]["decided_by"], "boss@example.com");
    assert_eq!(requests[0]["status"], "succeeded");
    install.ok(&["evidence", "verify", pack.to_str().unwrap()]);

    // Every step is in the audit chain, which is intact.
    let events = install.json(&["audit", "list", "--limit", "1000"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "token.created",
        "request.created",
        "request.approved",
        "request.started",
        "request.executed",
        "request.rejected",
        "policy.loaded",
        "drill.signed_off",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    assert_eq!(install.json(&["audit", "verify"])["ok"], true);

    // A policy load records the digest of the file as it was loaded.
    let loaded = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "policy.loaded")
        .unwrap();
    let file = std::fs::read(install.path("policies/site.toml")).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(file))
    };
    assert_eq!(loaded["detail"]["sha256"], digest.as_str(), "{loaded}");

    // No token appears anywhere after its creation: not in the audit log, the daemon's log or
    // the evidence.
    let audit_text = events.to_string();
    let daemon_log = std::fs::read_to_string(&log).unwrap();
    let evidence_text = std::fs::read_to_string(pack.join("evidence.json")).unwrap();
    for t in [&owner, &owner_as_approver, &approver, &operator, &auditor] {
        let secret = &t[4..];
        for (what, text) in [
            ("audit log", &audit_text),
            ("daemon log", &daemon_log),
            ("evidence", &evidence_text),
        ] {
            assert!(!text.contains(secret), "a token is in the {what}");
        }
    }
}
