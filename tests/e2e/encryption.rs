use super::util::{assert_same_tree, edge_case_tree, snapshot_ids, Install};

#[test]
fn encrypted_repository_round_trips_and_refuses_a_wrong_or_missing_key_writing_nothing() {
    let install = Install::new("url = \"file://./repo\"\nkey_file = \"./repo.key\"");
    edge_case_tree(&install.path("src"), false);
    install.files_policy("enc", &["./src"], "");
    install.backup("enc");
    assert!(
        install.path("repo.key").exists(),
        "the first backup creates the key file"
    );
    let config = std::fs::read_to_string(install.path("repo/config")).unwrap();
    assert!(config.contains("xchacha20-poly1305"));
    // Nothing readable leaks into the stored objects.
    for key in install
        .repo_objects()
        .iter()
        .filter(|k| k.starts_with("data/"))
    {
        let bytes = std::fs::read(install.path(&format!("repo/{key}"))).unwrap();
        assert!(
            !bytes.windows(13).any(|w| w == b"non-ASCII nam"),
            "plaintext in {key}"
        );
    }
    let id = snapshot_ids(&install, "enc").remove(0);
    install.ok(&["restore", &id[..8], "--to", "out"]);
    assert_same_tree(&install.path("src"), &install.path("out/src"));

    let before = install.repo_objects();
    std::fs::write(install.path("repo.key"), "not the key\n").unwrap();
    for args in [
        vec!["snapshots"],
        vec!["backup", "enc"],
        vec!["check"],
        vec!["prune"],
    ] {
        let err = install.fails(&args);
        assert!(err.contains("wrong key"), "{args:?}: {err}");
        assert!(
            !err.contains("not the key"),
            "the key is never printed: {err}"
        );
    }
    std::fs::remove_file(install.path("repo.key")).unwrap();
    let err = install.fails(&["snapshots"]);
    assert!(
        err.contains("repo.key"),
        "a missing key file is named: {err}"
    );
    assert_eq!(install.repo_objects(), before, "nothing was written");
}
