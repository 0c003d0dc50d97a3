//! The first hour of a new operator (issue 20): what they met, each as a test. One broken
//! repository never hides the others; a snapshot id that cannot be one is a usage error;
//! logs carry no colour codes off a terminal; `status` says whether a daemon runs and
//! shows a policy never backed up without a red flag; no configuration is said plainly;
//! completions and a man page generate; `/ui` sends a browser to a sign-in page.

use std::time::Duration;

use super::daemon::wait_until;
use super::util::Install;

/// A local repository `main` with one snapshot of `site`, and `offsite`, an S3 repository
/// whose endpoint refuses every connection (retried for one second only).
fn with_unreachable_offsite() -> Install {
    let install = Install::new(
        "url = \"file://./repo\"\n\n[repositories.offsite]\nurl = \"s3://backups/backstop\"\nendpoint = \"http://127.0.0.1:1\"\nregion = \"us-east-1\"\npath_style = true\nretry_budget = \"1s\"",
    );
    std::fs::create_dir_all(install.path("site")).unwrap();
    std::fs::write(install.path("site/index.html"), "<p>hi</p>").unwrap();
    install.files_policy("site", &["./site"], "");
    install
}

/// A local installation with `site`, a files policy of one small file.
fn site() -> Install {
    let install = Install::local();
    std::fs::create_dir_all(install.path("site")).unwrap();
    std::fs::write(install.path("site/a.txt"), "a").unwrap();
    install.files_policy("site", &["./site"], "");
    install
}

#[test]
fn an_unreachable_repository_does_not_hide_the_others() {
    let mut install = with_unreachable_offsite();
    install.env.push(("AWS_ACCESS_KEY_ID".into(), "x".into()));
    install
        .env
        .push(("AWS_SECRET_ACCESS_KEY".into(), "y".into()));
    let id = install.backup("site")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = install.run(&["snapshots"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains(&id[..8]),
        "the local snapshot is listed: {stdout}"
    );
    assert!(stdout.contains("1 snapshot\n"), "{stdout}");
    let failures: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        failures.len(),
        1,
        "one line for the broken repository: {stderr}"
    );
    assert!(
        failures[0].contains("repository `offsite` (s3://backups/backstop)")
            && failures[0].len() < 400,
        "{stderr}"
    );

    let out = install.run(&["--json", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| {
        report["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["repository"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
    };
    assert_eq!(by_name("main")["ok"], true, "{report:#}");
    assert_eq!(by_name("offsite")["ok"], false, "{report:#}");

    // Status reads the catalog alone; the evidence checks the healthy repository's anchors
    // and names the one it could not read.
    install.ok(&["status"]);
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let out = install.path("evidence");
    install.ok(&[
        "evidence",
        "export",
        "--from",
        &today,
        "--to",
        &today,
        "--out",
        out.to_str().unwrap(),
    ]);
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(
        evidence["audit"]["status"], "intact",
        "{:#}",
        evidence["audit"]
    );
    assert!(
        evidence["audit"]["anchors_unread"][0]
            .as_str()
            .is_some_and(|u| u.contains("offsite")),
        "{:#}",
        evidence["audit"]
    );

    // A restore finds the snapshot in the healthy repository.
    let to = install.path("restored");
    install.ok(&["restore", &id[..8], "--to", to.to_str().unwrap()]);
    assert!(to.join("site/index.html").exists());
}

#[test]
fn a_snapshot_id_that_cannot_be_one_is_a_usage_error() {
    let install = site();
    install.backup("site");
    for (args, why) in [
        (vec!["diff", "05", "e1a0"], "at least 4 hexadecimal digits"),
        (
            vec!["restore", "zz12", "--to", "/tmp/never"],
            "hexadecimal digits",
        ),
    ] {
        let out = install.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let install = site();
    let out = install.run(&["-vv", "backup", "site"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "some log lines to look at: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes: {stderr:?}");
}

#[test]
fn status_says_whether_a_daemon_runs_and_a_new_policy_is_no_breach() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::new(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\njitter = \"0s\"",
    );
    std::fs::create_dir_all(install.path("site")).unwrap();
    install.files_policy(
        "site",
        &["./site"],
        "[schedule]\nbackup = \"0 0 3 * * *\"\n\n[objectives]\nrpo = \"1h\"\n",
    );
    let status = install.ok(&["status"]);
    assert!(status.contains("daemon: none is running"), "{status}");
    assert!(status.contains("never backed up"), "{status}");
    assert!(!status.contains("BREACHED"), "{status}");
    assert_eq!(install.json(&["status"])[0]["daemon_running"], false);

    let daemon = install.daemon(None);
    wait_until("the daemon's heartbeat", Duration::from_secs(30), || {
        install.json(&["status"])[0]["daemon_running"] == true
    });
    let status = install.ok(&["status"]);
    assert!(status.contains("daemon: running on"), "{status}");
    daemon.stop();
    assert_eq!(install.json(&["status"])[0]["daemon_running"], false);
}

#[test]
fn no_configuration_is_said_plainly() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(super::util::bin())
        .arg("status")
        .current_dir(empty.path())
        .env_remove("BACKSTOP_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no configuration found") && stderr.contains("embedded default"),
        "{stderr}"
    );
}

#[test]
fn completions_and_the_man_page_generate() {
    let install = Install::local();
    for (shell, mark) in [
        ("bash", "_backstop()"),
        ("zsh", "#compdef backstop"),
        ("fish", "complete -c backstop"),
    ] {
        let out = install.ok(&["completions", shell]);
        assert!(
            out.contains(mark),
            "{shell}: {}",
            &out[..out.len().min(200)]
        );
        assert!(out.contains("restore"), "{shell} completes subcommands");
    }
    let man = install.ok(&["man"]);
    assert!(
        man.contains(".TH backstop"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(man.contains("restore"));
}

#[test]
fn ui_without_a_token_sends_a_browser_to_sign_in_and_scripts_get_json() {
    let port = super::util::free_port();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\""
    ));
    let daemon = install.daemon(None);
    wait_until("the API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let get = |accept: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET /ui HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        super::governance::status_and_body(&response)
    };
    let (code, page) = get("text/html,application/xhtml+xml,*/*;q=0.8");
    assert_eq!(code, 401);
    assert!(
        page.contains("<form") && page.contains("name=\"token\""),
        "{page}"
    );
    let (code, body) = get("*/*");
    assert_eq!(code, 401);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("token"), "{body}");
    daemon.stop();
}

#[test]
fn counts_read_as_words() {
    let install = site();
    let checked = install.ok(&["policy", "check"]);
    assert!(checked.contains("1 policy valid"), "{checked}");
    assert!(!checked.contains("/./"), "paths are normalised: {checked}");
    let backup = install.ok(&["backup", "site"]);
    assert!(
        backup.contains("1 directory") || backup.contains("2 directories"),
        "{backup}"
    );
    assert!(!backup.contains("1 directories"), "{backup}");
}

/// `policy check` showed only the first error of a file (a second typo appeared only once
/// the first was fixed), and said `ok` for a files policy whose path does not exist. Now it
/// reports every problem, each at its line, and warns about what the first backup would
/// meet, without touching anything.
#[test]
fn policy_check_reports_every_problem_and_preflights_the_first_backup() {
    let install = Install::local();
    install.policy(
        "typos",
        "retenion = 3\n\n[source]\nkind = \"files\"\npaths = [\"./site\"]\n\n[schedule]\nbackup = \"every day\"\n\n[objectives]\nrpo = \"4 hours-ish\"\n",
    );
    let out = install.run(&["policy", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    for (line, what) in [(3, "retenion"), (10, "every day"), (13, "4 hours-ish")] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("typos.toml:{line}:")) && e.contains(what)),
            "{what} at line {line}: {stderr}"
        );
    }

    std::fs::remove_file(install.path("policies/typos.toml")).unwrap();
    install.files_policy("site", &["./site"], "");
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"BACKSTOP_E2E_UNSET_URL\"\n",
    );
    let out = install.run(&["policy", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "warnings do not fail the check: {stderr}"
    );
    assert!(
        stderr.contains("warning: policy `site`: source path") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: policy `orders`") && stderr.contains("BACKSTOP_E2E_UNSET_URL"),
        "{stderr}"
    );
    assert!(!install.path("data").exists(), "a preflight writes nothing");
}

/// Break-glass restore of an encrypted repository without its key said "set key_file or
/// key_env", the configuration's words, though with `--repo` the flags are `--key-file` and
/// `--key-env`.
#[test]
fn a_missing_key_names_the_flags_of_a_break_glass_restore() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repos/v1-encrypted");
    let install = Install::local();
    let to = install.path("restored");
    let out = install.run(&[
        "restore",
        "b977946a",
        "--repo",
        &format!("file://{}", fixture.display()),
        "--to",
        to.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--key-file or --key-env"), "{stderr}");
    assert!(!to.exists(), "nothing restored");
}

/// Before the first backup, an encrypted repository has neither its objects nor the key
/// file the first backup writes: commands that read repositories treat it as they treat an
/// unencrypted one not made yet (nothing in it), not as a missing key.
#[test]
fn an_encrypted_repository_not_made_yet_is_empty_not_a_missing_key() {
    let install = Install::new("url = \"file://./repo\"\nkey_file = \"./repo.key\"");
    std::fs::create_dir_all(install.path("site")).unwrap();
    std::fs::write(install.path("site/a.txt"), "a").unwrap();
    install.files_policy("site", &["./site"], "");

    let listed = install.run(&["snapshots"]);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(
        listed.status.success(),
        "snapshots before the first backup: {stderr}"
    );
    assert!(!stderr.contains("key file"), "{stderr}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("0 snapshots"));
    assert_eq!(install.json(&["snapshots"]), serde_json::json!([]));
    assert!(!install.path("repo.key").exists(), "listing makes no key");

    // An encrypted repository that exists still needs its key.
    install.backup("site");
    std::fs::rename(install.path("repo.key"), install.path("kept.key")).unwrap();
    let err = install.fails(&["snapshots"]);
    assert!(
        err.contains("key file") && err.contains("repo.key"),
        "{err}"
    );
}
