use super::util::Install;

#[test]
fn a_malformed_policy_is_reported_with_file_line_and_column() {
    let install = Install::local();
    install.files_policy("good", &["./src"], "");
    std::fs::write(
        install.path("policies/bad.toml"),
        "name = \"bad\"\nrepository = \"main\"\n[source]\nkind = \"files\"\npaths = [\"./x\"]\n[objectives]\nrpo = \"soon\"\n",
    )
    .unwrap();
    std::fs::write(
        install.path("policies/broken.toml"),
        "name = \"broken\"\nrepository = [\n",
    )
    .unwrap();
    let out = install.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policies/bad.toml:7:7: rpo `soon`"), "{err}");
    assert!(err.contains("policies/broken.toml:3:1"), "{err}");
}

#[test]
fn a_malformed_config_is_reported_with_file_line_and_column() {
    let install = Install::local();
    std::fs::write(
        install.path("backstop.toml"),
        "data_dir = \"d\"\n\n[repositories.main]\nurl = \"file://./repo\"\nbucket = \"typo\"\n",
    )
    .unwrap();
    let err = install.fails(&["snapshots"]);
    assert!(
        err.contains("backstop.toml:5:1") && err.contains("bucket"),
        "{err}"
    );
    let err = install.fails(&["--config", "missing.toml", "snapshots"]);
    assert!(err.contains("missing.toml"), "{err}");
}
