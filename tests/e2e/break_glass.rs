//! Break-glass: a repository on S3, restored from a fresh directory with only the URL and
//! the key: no configuration, no catalog, no daemon.

use backstop_testkit::S3Server;

use super::util::{assert_same_tree, edge_case_tree, restore_from_nothing, Install};

#[test]
fn s3_repository_round_trips_and_restores_from_a_fresh_directory_with_only_url_and_key() {
    let server = S3Server::start(&["backstop-e2e"]);
    let mut install = Install::new(&format!(
        "url = \"s3://backstop-e2e/prod/backstop\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nkey_file = \"./repo.key\"",
        server.endpoint()
    ));
    install.use_s3(server.env());
    edge_case_tree(&install.path("src"), true);
    install.files_policy("offsite", &["./src"], "");
    let backup = install.backup("offsite");
    let id = backup["snapshot_id"].as_str().unwrap().to_string();
    assert!(server
        .root()
        .join("backstop-e2e/prod/backstop/config")
        .is_file());
    install.ok(&["check", "--read-data"]);

    // A fresh machine: an empty directory, the key, the URL, the credentials.
    let fresh = restore_from_nothing(
        &server,
        "s3://backstop-e2e/prod/backstop",
        &install.path("repo.key"),
        &id[..12],
    );
    assert_same_tree(&install.path("src"), &fresh.path().join("restored/src"));
}
