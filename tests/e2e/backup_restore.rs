use super::util::{assert_same_tree, edge_case_tree, snapshot_ids, Install};

#[test]
fn edge_case_tree_round_trips_byte_identical_with_metadata_on_local() {
    let install = Install::local();
    edge_case_tree(&install.path("src"), true);
    install.files_policy("edge", &["./src"], "");
    let backup = install.backup("edge");
    let id = backup["snapshot_id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(
        backup["warnings"].as_array().unwrap().is_empty(),
        "{backup}"
    );

    let listed = install.json(&["snapshots"]);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["policy"], "edge");
    assert!(listed[0]["time"].as_str().unwrap().ends_with('Z'));

    install.ok(&["restore", &id[..8], "--to", "out"]);
    assert_same_tree(&install.path("src"), &install.path("out/src"));

    // A restore never mixes with existing files.
    let err = install.fails(&["restore", &id[..8], "--to", "out"]);
    assert!(err.contains("is not empty"), "{err}");
    install.ok(&["check", "--read-data"]);
}

#[test]
fn unchanged_tree_adds_under_one_percent_and_renamed_or_copied_files_add_no_data() {
    let install = Install::local();
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(
            src.join(format!("file-{i}.bin")),
            backstop_testkit::noise(512 * 1024, i),
        )
        .unwrap();
    }
    install.files_policy("dedup", &["./src"], "");
    let first = install.backup("dedup");
    let size = first["bytes"].as_u64().unwrap();
    assert_eq!(size, 20 * 512 * 1024);

    let second = install.backup("dedup");
    assert_eq!(second["files_unmodified"], 20, "{second}");
    assert!(
        second["bytes_read"].as_u64().unwrap() < size / 100,
        "{second}"
    );
    let added = second["bytes_added"].as_u64().unwrap();
    assert!(
        added * 100 < size,
        "unchanged backup added {added} of {size} bytes"
    );

    // Renamed and copied: new inodes and names, same content → no new data chunks.
    std::fs::rename(src.join("file-0.bin"), src.join("renamed.bin")).unwrap();
    std::fs::copy(src.join("file-1.bin"), src.join("copy.bin")).unwrap();
    let third = install.backup("dedup");
    assert!(
        third["bytes_read"].as_u64().unwrap() >= 512 * 1024,
        "the copy was read: {third}"
    );
    let added = third["bytes_added"].as_u64().unwrap();
    assert!(
        added < 16 * 1024,
        "rename + copy added {added} bytes (only tree and index expected)"
    );

    let ids = snapshot_ids(&install, "dedup");
    assert_eq!(ids.len(), 3);
    let diff = install.ok(&["diff", &ids[1][..8], &ids[2][..8]]);
    assert!(
        diff.contains("+ src/renamed.bin")
            && diff.contains("- src/file-0.bin")
            && diff.contains("+ src/copy.bin"),
        "{diff}"
    );
}

#[test]
fn excludes_unreadable_files_and_changed_files_are_reported_never_silent() {
    let install = Install::local();
    let src = install.path("src");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("keep.txt"), b"keep").unwrap();
    std::fs::write(src.join("skip.tmp"), b"tmp").unwrap();
    std::fs::write(src.join("cache/big"), b"cached").unwrap();
    // A fifo cannot be backed up; it must be reported.
    let status = std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    install.files_policy("ex", &["./src"], "");
    std::fs::write(
        install.path("policies/ex.toml"),
        "name = \"ex\"\nrepository = \"main\"\n[source]\nkind = \"files\"\npaths = [\"./src\"]\nexclude = [\"*.tmp\", \"cache/\"]\n",
    )
    .unwrap();
    let out = install.run(&["--json", "backup", "ex"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a snapshot with left-out files exits 3"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("pipe") && warnings.contains("special file"),
        "{warnings}"
    );
    assert_eq!(report["files"], 1, "only keep.txt: {report}");
}

#[test]
fn prune_applies_retention_and_collects_unreferenced_data() {
    let install = Install::local();
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    install.files_policy("ret", &["./src"], "[retention]\nlast = 1\n");
    for i in 0..3 {
        std::fs::write(
            src.join("data.bin"),
            backstop_testkit::noise(256 * 1024, 100 + i),
        )
        .unwrap();
        install.backup("ret");
    }
    assert_eq!(snapshot_ids(&install, "ret").len(), 3);
    let dry = install.json(&["prune", "--dry-run"]);
    assert_eq!(
        dry[0]["plan"]["forget"].as_array().unwrap().len(),
        2,
        "{dry}"
    );
    assert_eq!(
        snapshot_ids(&install, "ret").len(),
        3,
        "a dry run removes nothing"
    );
    let pruned = install.json(&["prune"]);
    assert_eq!(pruned[0]["report"]["snapshots_removed"], 2, "{pruned}");
    assert!(
        pruned[0]["report"]["packs_removed"].as_u64().unwrap() >= 2,
        "{pruned}"
    );
    let left = snapshot_ids(&install, "ret");
    assert_eq!(left.len(), 1);
    install.ok(&["check", "--read-data"]);
    install.ok(&["restore", &left[0][..8], "--to", "out"]);
    assert_eq!(
        std::fs::read(install.path("out/src/data.bin")).unwrap(),
        backstop_testkit::noise(256 * 1024, 102)
    );
}

#[test]
fn a_storage_failure_fails_the_backup_naming_the_object_and_leaves_no_snapshot() {
    // Small packs: uploads fail while files are still being read, not only at commit.
    let install = Install::new("url = \"file://./repo\"\npack_size_mib = 1");
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("first.bin"), backstop_testkit::noise(64 * 1024, 1)).unwrap();
    install.files_policy("fail", &["./src"], "");
    install.backup("fail");
    // Packs cannot be written any more: `data` is now a file, not a directory.
    std::fs::rename(install.path("repo/data"), install.path("old-data")).unwrap();
    std::fs::write(install.path("repo/data"), b"in the way").unwrap();
    for i in 0..24 {
        std::fs::write(
            src.join(format!("new-{i}.bin")),
            backstop_testkit::noise(512 * 1024, 50 + i),
        )
        .unwrap();
    }
    // A second policy, so that nothing is read from the repository before packs are written.
    install.files_policy("fail2", &["./src"], "");
    let err = install.fails(&["backup", "fail2"]);
    assert!(
        err.contains("put data/"),
        "the failing object is named: {err}"
    );
    assert!(err.contains("no snapshot was made"), "{err}");
    assert!(snapshot_ids(&install, "fail2").is_empty());
}
