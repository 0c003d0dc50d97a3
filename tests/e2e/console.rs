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
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\nsession_lifetime = \"6s\""
    ));
    std::fs::create_dir_all(install.path("src/www")).unwrap();
    std::fs::write(install.path("src/www/index.html"), "<h1>Shop</h1>").unwrap();
    install.files_policy(
        "site",
        &["./src/www"],
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n\n[owners]\nrecovery = \"owner@example.com\"\n",
    );
    install.files_policy("never-backed-up", &["./src/www"], "");
    // A passed drill awaiting its owner's sign-off, which the browser gives.
    install.files_policy(
        "shop",
        &["./src/www"],
        "[owners]\nrecovery = \"owner@example.com\"\n",
    );
    install.backup("shop");
    install.ok(&["drill", "shop"]);
    install.backup("site");
    let drill = install.json(&["drill", "site"]);
    // Signed off, so that nothing about `site` is pending: green.
    let signed = install
        .command(&[
            "signoff",
            drill["drill_id"].as_str().unwrap(),
            "--comment",
            "reviewed",
        ])
        .env("BACKSTOP_PRINCIPAL", "owner@example.com")
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let tokens = serde_json::json!({
        "auditor": token(&install, "auditor@example.com", "auditor"),
        "operator": token(&install, "ops@example.com", "operator"),
        "recovery-owner": token(&install, "owner@example.com", "recovery-owner"),
        "approver": token(&install, "boss@example.com", "approver"),
    });
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
            serde_json::json!(["never-backed-up", "shop", "site"]),
            "{r:#}"
        );
        assert_eq!(
            r["states"],
            serde_json::json!(["amber", "amber", "green"]),
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
    assert_eq!(layout.len(), 6, "{seen:#}");
    for l in layout {
        assert!(
            l["scroll"].as_u64().unwrap() <= l["client"].as_u64().unwrap(),
            "a horizontal scrollbar on {l}"
        );
    }
    for shot in [
        "overview-1280",
        "overview-390",
        "evidence-1280",
        "evidence-390",
        "drill-1280",
        "drill-390",
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
}
