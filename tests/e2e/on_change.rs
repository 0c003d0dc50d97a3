//! Per-change backups (issue 18, item 3): with `[schedule] backup = "on-change"`, a change to
//! a watched config file gives a new snapshot within a few seconds, never sooner than the
//! minimum interval after the previous one, and `diff` of the two shows what changed.

use std::time::Duration;

use super::daemon::wait_until;
use super::util::Install;

fn snapshots(install: &Install) -> Vec<(String, jiff::Timestamp)> {
    install
        .json(&["snapshots", "app-config"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["time"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_change_to_a_watched_config_file_is_backed_up_within_seconds_but_not_too_often() {
    let port = super::util::free_port();
    let install = Install::new(&format!(
        "url = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\""
    ));
    std::fs::create_dir_all(install.path("etc/app")).unwrap();
    std::fs::write(install.path("etc/app/app.toml"), "port = 80\n").unwrap();
    std::fs::write(
        install.path("policies/app-config.toml"),
        "name = \"app-config\"\nrepository = \"main\"\n\n[source]\nkind = \"config\"\npaths = [\"./etc/app\"]\n\n\
         [schedule]\nbackup = \"on-change\"\nmin_interval = \"4s\"\n",
    )
    .unwrap();
    install.ok(&["policy", "check"]);
    let status = install.ok(&["status"]);
    assert!(status.contains("on change"), "{status}");

    let daemon = install.daemon(Some("daemon.log"));
    // Nothing changed yet: no backup.
    std::thread::sleep(Duration::from_secs(2));
    assert!(snapshots(&install).is_empty(), "a backup without a change");

    std::fs::write(install.path("etc/app/app.toml"), "port = 8080\n").unwrap();
    let changed_at = jiff::Timestamp::now();
    wait_until(
        "a snapshot after the change",
        Duration::from_secs(10),
        || snapshots(&install).len() == 1,
    );
    let first = snapshots(&install)[0].clone();
    assert!(
        first.1.duration_since(changed_at) < jiff::SignedDuration::from_secs(5),
        "the snapshot came {:?} after the change",
        first.1.duration_since(changed_at)
    );

    // A burst of changes right after: one more backup, and not before the minimum interval.
    for i in 0..5 {
        std::fs::write(
            install.path("etc/app/app.toml"),
            format!("port = 80{i}\nworkers = {i}\n"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(install.path("etc/app/new.toml"), "debug = true\n").unwrap();
    wait_until("a second snapshot", Duration::from_secs(15), || {
        snapshots(&install).len() == 2
    });
    let second = snapshots(&install)[1].clone();
    let gap = second.1.duration_since(first.1);
    // The interval holds between fires; a snapshot's time is when its backup started, a few
    // milliseconds later, by a little more or less each time.
    assert!(
        gap >= jiff::SignedDuration::from_millis(3_900),
        "two backups {gap:?} apart, under the 4 s minimum interval"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(snapshots(&install).len(), 2, "the burst was one backup");

    let diff = install.ok(&["diff", &first.0[..12], &second.0[..12]]);
    assert!(diff.contains("M ") && diff.contains("app.toml"), "{diff}");
    assert!(diff.contains("+ ") && diff.contains("new.toml"), "{diff}");
    daemon.stop();
}
