//! Copies to a secondary repository (issue 16), through the binary: a policy with
//! `copies = ["offsite"]` (S3, its own key) has each backup copied there; the secondary
//! checks clean with --read-data and restores byte for byte on a fresh machine with only its
//! URL and key, and an encrypted snapshot is never copied into an unencrypted repository; a drill `from` it passes and names it; status shows its exposure; a copy
//! killed half-way leaves no snapshot there and the next copy completes it.

use std::time::{Duration, Instant};

use backstop_testkit::S3Server;

use super::util::{assert_same_tree, edge_case_tree, restore_from_nothing, walk_files, Install};

fn install_with_offsite(server: &S3Server) -> Install {
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\nkey_file = \"./main.key\"\n\n\
         [repositories.offsite]\nurl = \"s3://offsite-e2e/copies\"\nendpoint = \"{}\"\n\
         region = \"us-east-1\"\npath_style = true\nkey_file = \"./offsite.key\"\n\n\
         [repositories.vault]\nurl = \"file://./vault\"\nkey_file = \"./vault.key\"\n\n\
         [repositories.plain]\nurl = \"file://./plain\"",
        server.endpoint()
    ));
    install.use_s3(server.env());
    install
}

#[test]
fn a_backup_is_copied_to_the_secondary_which_checks_restores_and_drills_on_its_own() {
    let server = S3Server::start(&["offsite-e2e"]);
    let install = install_with_offsite(&server);
    edge_case_tree(&install.path("src"), false);
    install.files_policy(
        "app",
        &["./src"],
        "copies = [\"offsite\"]\n[objectives]\nrpo = \"1h\"\n[drill]\nfrom = \"offsite\"\n",
    );

    let backup = install.backup("app");
    let copies = backup["copies"]
        .as_array()
        .expect("copies in the backup's output");
    assert_eq!(copies.len(), 1, "{backup}");
    assert_eq!(copies[0]["repository"], "offsite");
    let copy_id = copies[0]["snapshot_id"].as_str().unwrap().to_string();
    assert!(copies[0]["bytes_written"].as_u64().unwrap() > 0);

    let listed = install.json(&["snapshots", "--repository", "offsite"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], copy_id.as_str());
    assert_eq!(listed[0]["policy"], "app");
    install.ok(&["check", "--read-data", "--repository", "offsite"]);

    // Break-glass from the secondary alone: a fresh directory, its URL and its key.
    let fresh = restore_from_nothing(
        &server,
        "s3://offsite-e2e/copies",
        &install.path("offsite.key"),
        &copy_id[..12],
    );
    assert_same_tree(&install.path("src"), &fresh.path().join("restored/src"));

    // A drill from the copy ([drill] from = "offsite") passes and names the repository.
    let drill = install.json(&["drill", "app"]);
    assert_eq!(drill["status"], "passed", "{drill}");
    assert_eq!(drill["repository"], "offsite");
    assert_eq!(drill["snapshot_id"], copy_id.as_str());
    let text = install.ok(&["drill", "show", drill["drill_id"].as_str().unwrap()]);
    assert!(text.contains("from repository `offsite`"), "{text}");
    // The primary on request.
    let drill = install.json(&["drill", "app", "--from", "main"]);
    assert_eq!(drill["repository"], "main", "{drill}");
    let refused = install.fails(&["drill", "app", "--from", "vault"]);
    assert!(refused.contains("vault"), "{refused}");
    // In turn: after the drill from `main`, the next rotation reads the copy, then `main`.
    let drill = install.json(&["drill", "app", "--from", "rotate"]);
    assert_eq!(drill["repository"], "offsite", "{drill}");
    let drill = install.json(&["drill", "app", "--from", "rotate"]);
    assert_eq!(drill["repository"], "main", "{drill}");

    // Status: the copy's newest data point and exposure, within the objective.
    let status = install.json(&["status"]);
    let copies = status[0]["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{status}");
    assert_eq!(copies[0]["repository"], "offsite");
    assert!(copies[0]["newest_data_point"].is_string(), "{status}");
    assert!(copies[0]["rpo_exposure_seconds"].as_u64().unwrap() < 600);
    assert_eq!(copies[0]["rpo_breached"], false);

    // Never in the clear: an encrypted snapshot is not copied into an unencrypted repository.
    let refused = install.fails(&["copy", &copy_id[..12], "--to", "plain"]);
    assert!(refused.contains("`plain` is not encrypted"), "{refused}");
    assert!(!install.path("plain/snapshots").exists());

    // A second backup with one file changed: the copy writes little.
    std::fs::write(
        install.path("src/nested/deeper/deepest/leaf.txt"),
        b"changed\n",
    )
    .unwrap();
    let second = install.backup("app");
    let written = second["copies"][0]["bytes_written"].as_u64().unwrap();
    let first_written = backup["copies"][0]["bytes_written"].as_u64().unwrap();
    assert!(
        written * 5 < first_written,
        "the second copy wrote {written} bytes, the first {first_written}"
    );
    assert_eq!(
        install
            .json(&["snapshots", "--repository", "offsite"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The evidence: each copy's newest snapshot and exposure, and the copy runs.
    let from = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600)).to_string();
    let to = jiff::Timestamp::now().to_string();
    let evidence = install.evidence(&from, &to, "pack");
    let app = &evidence["policies"][0];
    assert_eq!(app["copies"][0]["repository"], "offsite", "{app}");
    assert_eq!(app["copies"][0]["rpo_breached"], false);
    assert_eq!(app["copy_runs"]["runs"]["succeeded"], 2, "{app}");
    assert!(app["copy_runs"]["bytes_written"].as_u64().unwrap() > 0);
    assert_eq!(
        app["backups"]["snapshots"], 2,
        "the primary's snapshots only"
    );
    assert!(app["drills"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["repository"] == "offsite"));
}

#[test]
fn a_copy_killed_half_way_leaves_no_snapshot_and_the_next_copy_completes_it() {
    let server = S3Server::start(&["offsite-e2e"]);
    let install = install_with_offsite(&server);
    // Incompressible data over many packs, so that the copy takes a while.
    std::fs::create_dir_all(install.path("src")).unwrap();
    for i in 0..12u64 {
        std::fs::write(
            install.path(&format!("src/blob-{i}.bin")),
            backstop_testkit::noise(8 << 20, i),
        )
        .unwrap();
    }
    install.files_policy("bulk", &["./src"], "");
    let id = install.backup("bulk")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut copy = install
        .command(&["copy", &id[..12], "--to", "vault"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the first pack is in the secondary.
    let started = Instant::now();
    let packs = || {
        let mut objects = Vec::new();
        walk_files(&install.path("vault"), &install.path("vault"), &mut objects);
        objects
            .iter()
            .filter(|o| o.starts_with("data/") && !o.contains(".tmp-"))
            .count()
    };
    while packs() == 0 {
        assert!(
            copy.try_wait().unwrap().is_none(),
            "the copy ended before a pack was written"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    copy.kill().unwrap();
    copy.wait().unwrap();
    assert!(
        install
            .json(&["snapshots", "--repository", "vault"])
            .as_array()
            .unwrap()
            .is_empty(),
        "no snapshot is visible in the secondary after the kill"
    );

    let done = install.json(&["copy", &id[..12], "--to", "vault"]);
    let copy_id = done[0]["snapshot_id"].as_str().unwrap().to_string();
    let listed = install.json(&["snapshots", "--repository", "vault"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    install.ok(&["check", "--read-data", "--repository", "vault"]);
    install.ok(&["restore", &copy_id[..12], "--to", "restored"]);
    super::util::assert_same_content(&install.path("src"), &install.path("restored/src"));
    // Copying again finds it there.
    let again = install.json(&["copy", &id[..12], "--to", "vault"]);
    assert_eq!(again[0]["already_present"], true);
}

/// `[schedule] copy` in the daemon catches a secondary up with snapshots made before the
/// policy had copies; each copy is a `copy` run with its bytes, and `/metrics` gives the
/// copy's exposure.
#[test]
fn the_daemon_catches_a_secondary_up_on_its_copy_schedule() {
    let port = super::util::free_port();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[repositories.vault]\nurl = \"file://./vault\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\nshutdown_deadline = \"10s\""
    ));
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "before the copies\n").unwrap();
    install.files_policy("app", &["./src"], "[objectives]\nrpo = \"1h\"\n");
    install.backup("app");
    install.backup("app");
    assert!(!install.path("vault").exists());

    install.files_policy(
        "app",
        &["./src"],
        "copies = [\"vault\"]\n[objectives]\nrpo = \"1h\"\n[schedule]\ncopy = \"*/2 * * * * *\"\n",
    );
    let daemon = install.daemon(Some("daemon.log"));
    super::daemon::wait_until(
        "the scheduled copy",
        std::time::Duration::from_secs(60),
        || {
            install.path("vault/config").exists()
                && install
                    .json(&["snapshots", "--repository", "vault"])
                    .as_array()
                    .unwrap()
                    .len()
                    == 2
        },
    );
    let runs = super::daemon::catalog(
        &install,
        "SELECT count(*), min(bytes) FROM runs WHERE kind = 'copy' AND status = 'succeeded'",
    );
    let (count, min_bytes) = runs.split_once('|').unwrap();
    assert_eq!(count, "2", "one run per snapshot copied: {runs}");
    assert!(min_bytes.parse::<u64>().unwrap() > 0, "{runs}");
    let metrics = super::daemon::http_get(port, "/metrics");
    assert!(
        metrics.contains("backstop_copy_rpo_breached{policy=\"app\",repository=\"vault\"} 0")
            && metrics.contains(
                "backstop_copy_rpo_exposure_seconds{policy=\"app\",repository=\"vault\"}"
            ),
        "{metrics}"
    );
    daemon.stop();
}

/// A secondary that cannot be reached: every backup still succeeds, each copy fails with a
/// `copy.failed` event, and once the secondary lags past the RPO objective the daemon sends
/// `copy.rpo_breached` for it (the policy's own RPO being met).
#[test]
fn a_lagging_secondary_is_a_breach_of_its_own_and_alerts() {
    let (port, seen) = super::daemon::receiver();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[repositories.unreachable]\nurl = \"s3://nowhere/copies\"\n\
         endpoint = \"http://127.0.0.1:1\"\nregion = \"us-east-1\"\npath_style = true\nretry_budget = \"1s\"\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\njitter = \"0s\"\n\n\
         [notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\n"
    ));
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "a").unwrap();
    install.files_policy(
        "app",
        &["./src"],
        "copies = [\"unreachable\"]\n[schedule]\nbackup = \"*/2 * * * * *\"\n[objectives]\nrpo = \"6s\"\n",
    );
    let daemon = install.daemon(Some("daemon.log"));
    let events = || -> Vec<serde_json::Value> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /hook"))
            .filter_map(|(_, body)| serde_json::from_str(body).ok())
            .collect()
    };
    super::daemon::wait_until(
        "copy.failed and copy.rpo_breached",
        std::time::Duration::from_secs(60),
        || {
            let events = events();
            events.iter().any(|e| e["event"] == "copy.failed")
                && events.iter().any(|e| e["event"] == "copy.rpo_breached")
        },
    );
    // While backups still run every 2 s, well within the policy's own 6 s objective.
    let status = install.json(&["status"]);
    daemon.stop();
    let events = events();
    let breach = events
        .iter()
        .find(|e| e["event"] == "copy.rpo_breached")
        .unwrap();
    assert_eq!(breach["policy"], "app");
    assert!(
        breach["detail"].as_str().unwrap().contains("`unreachable`"),
        "{breach}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "backup.failed"),
        "the backups themselves succeed: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "rpo.breached"),
        "the policy's own RPO is met: {events:?}"
    );
    assert_eq!(status[0]["rpo_breached"], false, "{status}");
    assert_eq!(status[0]["copies"][0]["rpo_breached"], true, "{status}");
}
