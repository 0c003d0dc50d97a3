//! Object Lock through the binary (issue 16): an S3 repository configured with
//! `object_lock` (SeaweedFS, which enforces it) is backed up, checks clean, and prune keeps
//! the snapshot retention forgets while its lock holds, saying until when. The lock's
//! enforcement, its lapse and its extension are shown in crates/repo/tests/object_lock.rs.

use backstop_testkit::seaweed::SeaweedServer;

use super::util::Install;

#[test]
fn prune_keeps_what_is_locked_and_says_until_when() {
    let server = SeaweedServer::start(&["locked-e2e"]);
    let mut install = Install::new(&format!(
        "url = \"s3://locked-e2e/backstop\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nkey_file = \"./repo.key\"\nobject_lock = {{ mode = \"governance\", days = 1 }}",
        server.endpoint()
    ));
    install.use_s3(server.env());
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "first\n").unwrap();
    install.files_policy("app", &["./src"], "[retention]\nlast = 1\n");
    let first = install.backup("app")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(install.path("src/a.txt"), "second\n").unwrap();
    install.backup("app");
    install.ok(&["check"]);

    let out = install.ok(&["prune"]);
    assert!(
        out.contains("still under Object Lock") && out.contains("a later prune removes them"),
        "{out}"
    );
    let plan = install.json(&["prune", "--dry-run"]);
    let locked = plan[0]["plan"]["locked"].as_array().unwrap();
    assert!(
        locked
            .iter()
            .any(|l| l["object"] == format!("snapshots/{first}")),
        "{plan}"
    );
    assert_eq!(
        install.json(&["snapshots"]).as_array().unwrap().len(),
        2,
        "the snapshot retention forgets stays while it is locked"
    );
}
