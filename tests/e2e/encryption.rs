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
    // New repositories encrypt with XAES-256-GCM (format 4).
    assert!(
        config.contains("\"algorithm\": \"xaes-256-gcm\""),
        "{config}"
    );
    // A key Backstop generated is 256 random bits: derived without stretching (format 3 on).
    assert!(
        config.contains("\"algorithm\": \"hmac-sha256\""),
        "{config}"
    );
    assert!(config.contains("\"version\": 4,"), "{config}");
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

#[test]
fn a_passphrase_from_a_variable_or_a_written_key_file_is_stretched_with_argon2id() {
    let mut from_env = Install::new("url = \"file://./repo\"\nkey_env = \"TEST_REPO_PASSPHRASE\"");
    from_env.env.push((
        "TEST_REPO_PASSPHRASE".into(),
        "correct horse battery staple".into(),
    ));
    let from_file = Install::new("url = \"file://./repo\"\nkey_file = \"./repo.key\"");
    // Written by its owner, even in the shape of a generated key: Backstop cannot tell.
    std::fs::write(from_file.path("repo.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    for install in [&from_env, &from_file] {
        edge_case_tree(&install.path("src"), false);
        install.files_policy("enc", &["./src"], "");
        install.backup("enc");
        let config = std::fs::read_to_string(install.path("repo/config")).unwrap();
        assert!(config.contains("\"algorithm\": \"argon2id\""), "{config}");
        assert!(config.contains("\"memory_kib\": 65536"), "{config}");
        let id = snapshot_ids(install, "enc").remove(0);
        install.ok(&["restore", &id[..8], "--to", "out"]);
        assert_same_tree(&install.path("src"), &install.path("out/src"));
    }
    from_env.env[0].1 = "correct horse battery stable".into();
    let err = from_env.fails(&["snapshots"]);
    assert!(err.contains("wrong key"), "{err}");
    assert!(
        !err.contains("horse"),
        "the passphrase is never printed: {err}"
    );
}
