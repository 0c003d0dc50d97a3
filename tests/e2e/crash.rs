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
