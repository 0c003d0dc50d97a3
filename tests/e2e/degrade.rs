//! Issue 14, item 8: a repository degrades instead of stopping. One bad object is skipped and
//! named; what can be repaired from the repository itself is repaired; leftovers of killed
//! writers are noticed and collected; prune and backup wait for each other's lock.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use super::util::{assert_same_content, snapshot_ids, Install};

fn objects(install: &Install, prefix: &str) -> Vec<String> {
    install
        .repo_objects()
        .into_iter()
        .filter(|k| k.starts_with(prefix) && !k.contains(".tmp-"))
        .collect()
}

/// Writes the same small tree under each of `roots`.
fn write_tree(roots: &[&Path], seed: u64) {
    for root in roots {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(
            root.join("a.bin"),
            backstop_testkit::noise(1024 * 1024 + 3, seed),
        )
        .unwrap();
        std::fs::write(root.join("b.txt"), format!("text {seed} ").repeat(5_000)).unwrap();
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

#[test]
fn issue_14_one_unreadable_snapshot_is_skipped_and_named_by_every_command() {
    let install = Install::local();
    write_tree(&[&install.path("a")], 1);
    write_tree(&[&install.path("b")], 2);
    install.files_policy("alpha", &["./a"], "[retention]\nlast = 1\n");
    install.files_policy("beta", &["./b"], "");
    install.backup("alpha");
    std::fs::write(install.path("a/c.txt"), "second").unwrap();
    install.backup("alpha");
    install.backup("beta");
    let alpha = snapshot_ids(&install, "alpha");
    let beta = snapshot_ids(&install, "beta").remove(0);
    let bad = format!("snapshots/{beta}");
    let path = install.path(&format!("repo/{bad}"));
    let stored = std::fs::read(&path).unwrap();
    std::fs::write(&path, &stored[..stored.len() / 2]).unwrap();

    // Listing shows every healthy snapshot, names the bad object, and exits 1 at the end.
    let out = install.run(&["snapshots"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for id in &alpha {
        assert!(stdout.contains(&id[..8]), "{stdout}");
    }
    assert!(
        stderr.contains(&bad) && stderr.contains("unreadable"),
        "{stderr}"
    );
    let out = install.run(&["--json", "snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&bad));

    // Backups of both policies (the bad one is skipped as a parent), and a drill, succeed.
    install.backup("alpha");
    install.backup("beta");
    let drill = install.json(&["drill", "alpha"]);
    assert_eq!(drill["status"], "passed", "{drill}");

    // The catalog records every healthy snapshot and names the bad one.
    let out = install.run(&["--json", "catalog", "rebuild"]);
    assert_eq!(out.status.code(), Some(1));
    let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rebuilt["repositories"][0]["snapshots"], 4, "{rebuilt}");
    assert_eq!(
        rebuilt["repositories"][0]["unreadable"][0]["object"], bad,
        "{rebuilt}"
    );

    // Prune applies retention to the readable snapshots but deletes no data while a snapshot
    // it cannot read might need it.
    let packs = objects(&install, "data/");
    let out = install.run(&["--json", "prune"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad), "{stderr}");
    let pruned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        pruned[0]["plan"]["forget"].as_array().unwrap().len(),
        2,
        "{pruned}"
    );
    assert_eq!(pruned[0]["plan"]["garbage_collection"], false, "{pruned}");
    assert_eq!(objects(&install, "data/"), packs, "no pack was deleted");
    assert_eq!(snapshot_ids_lenient(&install, "alpha").len(), 1);

    // With the bad object gone, everything is whole again.
    std::fs::remove_file(&path).unwrap();
    install.json(&["prune"]);
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}

/// Snapshot ids of a policy, whatever the exit code of the listing.
fn snapshot_ids_lenient(install: &Install, policy: &str) -> Vec<String> {
    let out = install.run(&["--json", "snapshots", policy]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn issue_14_repair_index_rebuilds_a_deleted_index_object_from_the_pack_headers() {
    let install = Install::local();
    let (src, expected) = (install.path("src"), install.path("expected/src"));
    write_tree(&[&src, &expected], 3);
    install.files_policy("victim", &["./src"], "");
    install.backup("victim");
    let first_index = objects(&install, "index/");
    std::fs::write(src.join("new.bin"), backstop_testkit::noise(300_000, 4)).unwrap();
    install.backup("victim");
    let old = snapshot_ids(&install, "victim").remove(0);
    for index in &first_index {
        std::fs::remove_file(install.path(&format!("repo/{index}"))).unwrap();
    }

    let err = install.fails(&["restore", &old[..8], "--to", "out"]);
    assert!(
        err.contains("is not in any index") && err.contains("backstop repair index"),
        "{err}"
    );

    let repaired = install.json(&["repair", "index", "--repository", "main"]);
    assert!(
        repaired["repositories"][0]["packs_indexed"]
            .as_u64()
            .unwrap()
            >= 1,
        "{repaired}"
    );
    assert!(repaired["repositories"][0]["index_object"].is_string());

    install.ok(&["restore", &old[..8], "--to", "out"]);
    assert_same_content(&expected, &install.path("out/src"));
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["repositories"][0]["report"]["unreferenced_packs"], 0);

    // Nothing left to do: a second repair writes nothing.
    let again = install.json(&["repair", "index"]);
    assert_eq!(again["repositories"][0]["packs_indexed"], 0, "{again}");
    assert!(again["repositories"][0]["index_object"].is_null());
}

#[test]
fn issue_14_temporary_files_of_killed_writers_are_reported_by_check_and_collected_by_prune() {
    let install = Install::local();
    write_tree(&[&install.path("src")], 5);
    install.files_policy("victim", &["./src"], "");
    install.backup("victim");
    let pack = objects(&install, "data/").remove(0);
    let old = format!("{pack}.tmp-0123456789abcdef");
    let fresh = format!("index/{}.tmp-fedcba9876543210", "ab".repeat(32));
    for key in [&old, &fresh] {
        std::fs::write(install.path(&format!("repo/{key}")), b"half an object").unwrap();
    }
    set_mtime(
        &install.path(&format!("repo/{old}")),
        SystemTime::now() - Duration::from_secs(2 * 3600),
    );

    let check = install.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    let findings = check["repositories"][0]["report"]["findings"]
        .as_array()
        .unwrap();
    for key in [&old, &fresh] {
        assert!(
            findings
                .iter()
                .any(|f| f["object"] == **key && f["severity"] == "info"),
            "{key}: {check}"
        );
    }

    let dry = install.json(&["prune", "--dry-run"]);
    assert_eq!(dry[0]["plan"]["temporary_files"][0], old, "{dry}");
    assert!(install.path(&format!("repo/{old}")).exists());

    let pruned = install.json(&["prune"]);
    assert_eq!(
        pruned[0]["report"]["temporary_files_removed"], 1,
        "{pruned}"
    );
    assert!(!install.path(&format!("repo/{old}")).exists());
    assert!(
        install.path(&format!("repo/{fresh}")).exists(),
        "a live writer's temporary file is never touched"
    );
}

#[test]
fn issue_14_prune_refuses_and_names_a_missing_pack_instead_of_forgetting_it() {
    let install = Install::new("url = \"file://./repo\"\npack_size_mib = 1");
    write_tree(&[&install.path("a")], 6);
    std::fs::create_dir_all(install.path("b")).unwrap();
    std::fs::write(
        install.path("b/big.bin"),
        backstop_testkit::noise(6 * 1024 * 1024, 7),
    )
    .unwrap();
    install.files_policy("alpha", &["./a"], "");
    install.files_policy("beta", &["./b"], "");
    install.backup("alpha");
    let alpha_packs = objects(&install, "data/");
    install.backup("beta");
    // The first pack beta wrote holds file data only (the tree goes into the last one), so
    // every snapshot's tree still reads without it.
    let missing = objects(&install, "data/")
        .into_iter()
        .filter(|p| !alpha_packs.contains(p))
        .min_by_key(|p| {
            std::fs::metadata(install.path(&format!("repo/{p}")))
                .unwrap()
                .modified()
                .unwrap()
        })
        .unwrap();
    std::fs::remove_file(install.path(&format!("repo/{missing}"))).unwrap();
    let (indexes, packs) = (objects(&install, "index/"), objects(&install, "data/"));

    let err = install.fails(&["prune"]);
    assert!(err.contains(&missing) && err.contains("missing"), "{err}");
    assert_eq!(
        objects(&install, "index/"),
        indexes,
        "no index was rewritten"
    );
    assert_eq!(objects(&install, "data/"), packs);
    let check = install.run(&["check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains(&missing));
}

/// A tree big enough that a backup of it runs for a while.
fn big_install() -> Install {
    let install = Install::new("url = \"file://./repo\"\npack_size_mib = 1");
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(
            src.join(format!("f{i}.bin")),
            backstop_testkit::noise(2 * 1024 * 1024, 900 + i),
        )
        .unwrap();
    }
    install.files_policy("big", &["./src"], "");
    install
}

#[test]
fn issue_14_prune_started_during_a_backup_waits_for_it() {
    let install = big_install();
    let mut backup = install
        .command(&["--json", "backup", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Prune starts once the backup holds its lock and packs have started to land.
    let started = Instant::now();
    while objects(&install, "locks/").is_empty() || objects(&install, "data/").is_empty() {
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup finished before prune could start"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no pack");
        std::thread::sleep(Duration::from_millis(5));
    }
    let prune = install.run(&["--json", "prune"]);
    let stderr = String::from_utf8_lossy(&prune.stderr);
    assert!(prune.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for"), "{stderr}");
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot_ids(&install, "big").len(), 1);
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn issue_14_a_backup_started_during_a_prune_waits_for_it() {
    let install = big_install();
    install.backup("big");
    // A prune's exclusive lock, held by a live process on this host (the lock format is
    // documented: an unencrypted lock is 0x00 and its JSON).
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let now = jiff::Timestamp::now();
    let lock = install.path(&format!("repo/locks/{}", "cd".repeat(32)));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let mut bytes = vec![0u8];
    bytes.extend(
        serde_json::json!({"kind": "exclusive", "hostname": hostname, "pid": holder.id(),
            "time": now.to_string(), "purpose": "prune"})
        .to_string()
        .into_bytes(),
    );
    std::fs::write(&lock, bytes).unwrap();
    std::fs::write(install.path("src/more.bin"), b"more").unwrap();

    let backup = install
        .command(&["--json", "backup", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&lock).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let out = backup.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for") && stderr.contains("prune"),
        "{stderr}"
    );
    assert_eq!(snapshot_ids(&install, "big").len(), 2);
    install.json(&["prune"]);
    let check = install.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}
