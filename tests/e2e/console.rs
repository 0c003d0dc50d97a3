//! The web console (issue 19) in real headless Chromium, driven by playwright-core
//! (tests/browser/console.mjs): without a session only the sign-in shows; each role signs
//! in with its token and sees the overview (every policy, its state, a legend) under its
//! own name; the session cookie is HttpOnly, SameSite=Strict, expiring and holds no token;
//! the overview and evidence pages fit 1280 px and 390 px without a horizontal scrollbar;
//! an action without the session's CSRF token, or from another origin, is refused; an
//! expired session is refused; the sign-in works from the keyboard.

use std::time::Duration;

use super::daemon::wait_until;
use super::util::Install;

fn token(install: &Install, principal: &str, role: &str) -> String {
    let out = install.ok(&["token", "create", "--principal", principal, "--role", role]);
    out.lines().last().unwrap().trim().to_string()
}

#[test]
fn the_console_signs_in_each_role_and_fits_a_laptop_and_a_phone() {
    backstop_testkit::require_tool("node");
    backstop_testkit::require_tool("chromium");
    let browser_tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_tests.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser: scripts/test runs `npm ci` there"
    );
    let port = super::util::free_port();
    // A second repository for the slow backup below, so that it does not hold the
    // restore request back (one job per repository at a time).
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[repositories.slow]\nurl = \"file://./slow-repo\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\nsession_lifetime = \"6s\"\n\n\
         [daemon]\njitter = \"0s\"\nshutdown_deadline = \"10s\""
    ));
    std::fs::create_dir_all(install.path("src/www")).unwrap();
    std::fs::write(install.path("src/www/index.html"), "<h1>Shop</h1>").unwrap();
    install.files_policy(
        "site",
        &["./src/www"],
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n\n[owners]\nrecovery = \"owner@example.com\"\n",
    );
    install.files_policy("never-backed-up", &["./src/www"], "");
    // A scheduled backup that is still running while the overview is looked at: its
    // export writes 8 MB, then holds its stream open.
    std::fs::create_dir_all(install.path("bin")).unwrap();
    let export = install.path("bin/slow-export.sh");
    std::fs::write(
        &export,
        "#!/bin/sh\nhead -c 8000000 /dev/urandom\nsleep 300\n",
    )
    .unwrap();
    std::fs::set_permissions(&export, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        install.path("policies/slow.toml"),
        "name = \"slow\"\nrepository = \"slow\"\n\n[source]\nkind = \"command\"\n\
         backup_command = [\"./bin/slow-export.sh\"]\nrestore_command = [\"true\"]\n\n\
         [schedule]\nbackup = \"*/2 * * * * *\"\n",
    )
    .unwrap();
    // A passed drill awaiting its owner's sign-off, which the browser gives.
    // Its recovery owner is also among its approvers, so that four eyes is what refuses
    // them when they try to approve their own request.
    install.files_policy(
        "shop",
        &["./src/www"],
        "[owners]\nrecovery = \"owner@example.com\"\napprovers = [\"boss@example.com\", \"owner@example.com\"]\n",
    );
    install.backup("shop");
    install.ok(&["drill", "shop"]);
    install.backup("site");
    let drill = install.json(&["drill", "site"]);
    // Signed off, so that nothing about `site` is pending: green.
    install.ok_as(
        "owner@example.com",
        &[
            "signoff",
            drill["drill_id"].as_str().unwrap(),
            "--comment",
            "reviewed",
        ],
    );
    let tokens = serde_json::json!({
        "auditor": token(&install, "auditor@example.com", "auditor"),
        "operator": token(&install, "ops@example.com", "operator"),
        "recovery-owner": token(&install, "owner@example.com", "recovery-owner"),
        "approver": token(&install, "boss@example.com", "approver"),
    });
    let same_person_approver = token(&install, "owner@example.com", "approver");
    let restore_target = install.path("restored-shop");
    let daemon = install.daemon(Some("daemon.log"));
    wait_until("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let shots = install.path("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let run = std::process::Command::new("node")
        .arg(browser_tests.join("console.mjs"))
        .env("BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("TOKENS", tokens.to_string())
        .env("SHOTS", &shots)
        .env("SESSION_SECONDS", "6")
        .env("RESTORE_TARGET", &restore_target)
        .env("SAME_PERSON_APPROVER", &same_person_approver)
        .output()
        .unwrap();
    daemon.stop();
    assert!(
        run.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // To look at the pages: CONSOLE_SHOTS=DIR keeps the screenshots there.
    if let Ok(keep) = std::env::var("CONSOLE_SHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        for shot in std::fs::read_dir(&shots).unwrap().flatten() {
            std::fs::copy(
                shot.path(),
                std::path::Path::new(&keep).join(shot.file_name()),
            )
            .unwrap();
        }
    }

    let anonymous = &seen["anonymous"];
    assert_eq!(anonymous["status"], 401, "{seen:#}");
    assert_eq!(anonymous["form"], 1, "{seen:#}");
    assert_eq!(
        anonymous["overview"], 0,
        "nothing but the sign-in: {seen:#}"
    );
    assert_eq!(anonymous["evidence_status"], 401, "{seen:#}");

    for (role, principal) in [
        ("auditor", "auditor@example.com"),
        ("operator", "ops@example.com"),
        ("recovery-owner", "owner@example.com"),
        ("approver", "boss@example.com"),
    ] {
        let r = &seen["roles"][role];
        assert_eq!(r["heading"], 1, "{role}: {r:#}");
        assert_eq!(
            r["header"].as_str().unwrap(),
            format!("{principal} ({role})"),
            "{r:#}"
        );
        assert_eq!(
            r["policies"],
            serde_json::json!(["never-backed-up", "shop", "site", "slow"]),
            "{r:#}"
        );
        assert_eq!(
            r["states"],
            serde_json::json!(["amber", "amber", "green", "amber"]),
            "{r:#}"
        );
        assert_eq!(r["legend"], 1);
        let cookie = &r["cookie"];
        assert_eq!(cookie["httpOnly"], true, "{r:#}");
        assert_eq!(cookie["sameSite"], "Strict", "{r:#}");
        assert_eq!(cookie["path"], "/ui");
        let expires_in = cookie["expiresIn"].as_f64().unwrap();
        assert!(expires_in > 0.0 && expires_in <= 6.5, "{r:#}");
        assert_eq!(r["token_in_page"], false, "a page showed the token");
        assert_eq!(r["token_in_cookie"], false, "the cookie holds the token");
    }

    // The running backup, with what it has read so far.
    let progress = seen["progress"].as_str().unwrap_or_default();
    assert!(
        progress.contains("backup of slow") && progress.contains("MiB read"),
        "no progress for the running backup: {progress:?}"
    );

    let signoff = &seen["signoff"];
    assert_eq!(signoff["auditor_form"], 0, "{signoff:#}");
    assert_eq!(signoff["auditor_post"], 403, "{signoff:#}");
    let checks = signoff["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c == "integrity") && checks.iter().any(|c| c == "fidelity"),
        "{signoff:#}"
    );
    assert!(
        signoff["breakdown"].as_str().unwrap().contains("fetch"),
        "{signoff:#}"
    );
    assert!(
        signoff["after"]
            .as_str()
            .unwrap()
            .contains("Signed off by owner@example.com"),
        "{signoff:#}"
    );
    // The sign-off is the catalog's, under the owner's name.
    let drills = install.json(&["drills", "shop"]);
    let shown = install.json(&["drill", "show", drills[0]["drill_id"].as_str().unwrap()]);
    assert_eq!(
        shown["signoff"]["principal"], "owner@example.com",
        "{shown:#}"
    );

    let layout = seen["layout"].as_array().unwrap();
    assert_eq!(layout.len(), 14, "{seen:#}");
    for l in layout {
        assert!(
            l["scroll"].as_u64().unwrap() <= l["client"].as_u64().unwrap(),
            "a horizontal scrollbar on {l}"
        );
        // Every text is readable: WCAG AA's contrast for body text.
        assert!(
            l["contrast"]["ratio"].as_f64().unwrap() >= 4.5,
            "text below 4.5:1 contrast on {l}"
        );
    }
    for shot in [
        "overview-1280",
        "overview-390",
        "evidence-1280",
        "evidence-390",
        "drill-1280",
        "drill-390",
        "policy-1280",
        "policy-390",
        "requests-1280",
        "requests-390",
        "request-1280",
        "request-390",
        "audit-1280",
        "audit-390",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).is_file(),
            "no screenshot {shot}"
        );
    }

    let security = &seen["security"];
    assert_eq!(security["without_csrf"], 403, "{security:#}");
    assert_eq!(security["wrong_csrf"], 403, "{security:#}");
    assert_eq!(security["cross_site"], 403, "{security:#}");
    assert_eq!(security["still_signed_in"], 1, "{security:#}");
    assert_eq!(security["after_sign_out_form"], 1, "{security:#}");
    assert_eq!(security["keyboard_sign_in"], 1, "{security:#}");
    assert!(
        security["bad_token"]
            .as_str()
            .unwrap()
            .contains("not known"),
        "{security:#}"
    );
    assert_eq!(security["bad_token_cookie"], 0, "{security:#}");
    assert_eq!(security["expired_status"], 401, "{security:#}");
    assert_eq!(security["expired_form"], true, "{security:#}");

    requests_from_the_browser(&install, &seen, &restore_target);
}

/// Issue 19, item 4 and 5: a request made, refused to its requester as approver, approved
/// by a second person, run by the operator to `succeeded`, each step in the audit page; and
/// the evidence pack downloaded from the page verifies with `backstop evidence verify`.
fn requests_from_the_browser(
    install: &Install,
    seen: &serde_json::Value,
    target: &std::path::Path,
) {
    let r = &seen["requests"];
    let id = r["id"].as_str().expect("a request was made").to_string();
    assert_eq!(r["created"], "pending", "{r:#}");
    assert_eq!(
        r["forms"],
        serde_json::json!({"auditor": 0, "operator": 0, "recovery-owner": 1, "approver": 0}),
        "only the recovery owner may ask: {r:#}"
    );
    assert_eq!(
        r["decide_buttons"],
        serde_json::json!({"auditor": 0, "operator": 0, "recovery-owner": 0, "approver": 1}),
        "only an approver may decide: {r:#}"
    );
    let same = &r["same_person"];
    assert_eq!(same["buttons"], 0, "{same:#}");
    assert!(
        same["text"]
            .as_str()
            .unwrap()
            .contains("cannot also decide"),
        "{same:#}"
    );
    assert_eq!(
        same["post"], 403,
        "four eyes refused the forged approval: {same:#}"
    );
    assert!(
        same["post_text"]
            .as_str()
            .unwrap()
            .contains("another approver must"),
        "{same:#}"
    );
    assert_eq!(r["auditor_create"], 403, "{r:#}");
    assert_eq!(r["auditor_approve"], 403, "{r:#}");
    // The approval was given from the keyboard alone.
    assert!(r["tabs_to_comment"].as_u64().unwrap() < 30, "{r:#}");
    assert_eq!(r["focused_after_comment"], "Approve", "{r:#}");
    assert_eq!(r["approved"], "approved", "{r:#}");
    assert_eq!(r["approver_run_buttons"], 0, "{r:#}");
    assert_eq!(r["approver_run_post"], 403, "{r:#}");
    assert_eq!(r["ended"], "succeeded", "{r:#}");
    assert!(
        r["outcome"].as_str().unwrap().contains("restored snapshot"),
        "{r:#}"
    );
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "request.created",
            "request.approved",
            "request.started",
            "request.executed"
        ],
        "{r:#}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("src/www/index.html"))
            .or_else(|_| std::fs::read_to_string(target.join("index.html")))
            .or_else(|_| std::fs::read_to_string(target.join("www/index.html")))
            .unwrap_or_default(),
        "<h1>Shop</h1>",
        "the restore wrote the page back into {}",
        target.display()
    );
    // The request as the API sees it: the same state.
    backstop_testkit::require_tool("sqlite3");
    let recorded = super::daemon::catalog(
        install,
        &format!("SELECT status, requester, decided_by FROM restore_requests WHERE id = '{id}'"),
    );
    assert_eq!(recorded, "succeeded|owner@example.com|boss@example.com");

    let policy = &r["policy_page"];
    assert_eq!(policy["charts"], 3, "RPO, backups, drills: {policy:#}");
    let labels = |chart: &str| -> Vec<String> {
        policy[chart]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    // Labelled objectives and a dated time axis on both charts that have an objective.
    for chart in ["rpo_labels", "rto_labels"] {
        let labels = labels(chart);
        assert!(
            labels.iter().any(|t| t.starts_with("objective ")),
            "{chart}: {labels:?}"
        );
        assert!(
            labels.iter().filter(|t| t.ends_with(" UTC")).count() == 2,
            "{chart}: the period's ends are on its time axis: {labels:?}"
        );
    }
    assert!(
        labels("rpo_labels").contains(&"objective 1h".to_string()),
        "{policy:#}"
    );
    assert!(
        labels("rto_labels").contains(&"objective 10m".to_string()),
        "{policy:#}"
    );
    assert_eq!(policy["backup_bars"], 1, "{policy:#}");
    // Backups and drills; `site` has no restore request ("None.").
    assert_eq!(policy["tables"], 2, "{policy:#}");
    assert_eq!(policy["request_listed"], 1, "{policy:#}");

    let audit = &seen["audit"];
    assert_eq!(audit["chain"], "intact", "{audit:#}");
    let key = install.ok(&["evidence", "public-key"]);
    assert_eq!(
        audit["public_key"].as_str().unwrap(),
        key.trim(),
        "{audit:#}"
    );
    let events: Vec<(&str, &str)> = audit["request_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["what"].as_str().unwrap(), e["who"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events[..3],
        [
            ("request.created", "owner@example.com"),
            ("request.approved", "boss@example.com"),
            ("request.started", "ops@example.com"),
        ],
        "{audit:#}"
    );
    // Its end is the daemon's record: the job ran there.
    assert_eq!(events.len(), 4, "{audit:#}");
    assert_eq!(events[3].0, "request.executed");
    assert!(events[3].1.starts_with("daemon@"), "{audit:#}");
    assert!(
        audit["pack_name"].as_str().unwrap().ends_with(".tar"),
        "{audit:#}"
    );
    let pack = install.path("shots/pack.tar");
    let key_file = install.path("installation.pub");
    std::fs::write(&key_file, key.trim()).unwrap();
    let verified = install.json(&[
        "evidence",
        "verify",
        pack.to_str().unwrap(),
        "--public-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert_eq!(verified["key_trusted"], true, "{verified:#}");
    // The download is in the audit log, under the auditor's name.
    let log = install.json(&["audit", "list"]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "evidence.exported" && e["actor"] == "auditor@example.com"),
        "{log:#}"
    );
}
