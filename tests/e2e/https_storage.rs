//! An S3 repository over HTTPS, as object storage is reached outside a test: SeaweedFS with
//! a certificate made for the test, which the binary trusts through `SSL_CERT_FILE`. Uploads
//! over HTTPS are sent without a SigV4 hash of their body (TLS carries them intact, the
//! request's CRC32 checksum is still checked by the server, and every pack is named by its
//! SHA-256); an Object Lock bucket takes such uploads. Without the certificate, a backup
//! fails naming the repository.

use backstop_testkit::seaweed::SeaweedServer;

use super::util::{assert_same_tree, Install};

#[test]
fn a_repository_over_https_backs_up_checks_and_restores() {
    let server = SeaweedServer::start_https(&["tls-e2e"]);
    assert!(server.endpoint().starts_with("https://"));
    let mut install = Install::new(&format!(
        "url = \"s3://tls-e2e/backstop\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nkey_file = \"./repo.key\"\nobject_lock = {{ mode = \"governance\", days = 1 }}",
        server.endpoint()
    ));
    std::fs::create_dir_all(install.path("src/sub")).unwrap();
    std::fs::write(install.path("src/a.txt"), "over https\n").unwrap();
    // Several chunks, several MiB: more than one object, read back in ranges.
    let large = backstop_testkit::noise(6 << 20, 7);
    std::fs::write(install.path("src/sub/large.bin"), &large).unwrap();
    install.files_policy("app", &["./src"], "");

    // Without the server's certificate among the trusted ones, nothing is written, and the
    // refusal is said at once (a certificate does not become trusted on a retry), as a
    // certificate problem with the repository named, not hidden behind the key file that
    // the first backup was about to create.
    install.use_s3(server.env());
    install.env.retain(|(k, _)| k != "SSL_CERT_FILE");
    let err = install.fails(&["backup", "app"]);
    assert!(
        !err.contains("retries"),
        "a refused certificate is not retried: {err}"
    );
    assert!(
        err.contains("s3://tls-e2e/backstop") && err.contains("certificate was refused"),
        "the error names the repository and the certificate: {err}"
    );
    assert!(
        !install.path("repo.key").exists(),
        "no key made for a repository not reached"
    );
    install.use_s3(server.env());

    let id = install.backup("app")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(install.json(&["snapshots"]).as_array().unwrap().len(), 1);
    install.ok(&["check", "--read-data"]);
    install.ok(&["restore", &id[..8], "--to", "out"]);
    assert_same_tree(&install.path("src"), &install.path("out/src"));
}
