//! Storage faults (issue 14, item 9): an S3 repository reached through a proxy that goes
//! down for a while. An outage shorter than the retry budget is ridden out; a longer one
//! fails the backup with one line naming the repository and the cause, and leaves no
//! snapshot visible.

use std::time::Duration;

use backstop_testkit::faults::{FaultConfig, FaultProxy};
use backstop_testkit::{noise, S3Server};

use super::util::{assert_same_content, Install};

const BUCKET: &str = "backstop-faults";

/// An installation whose repository `main` is `s3://backstop-faults/prod/backstop`, reached
/// through `proxy`; `extra` is added to the repository's section.
fn through(server: &S3Server, proxy: &FaultProxy, extra: &str) -> Install {
    let mut install = Install::new(&format!(
        "url = \"s3://{BUCKET}/prod/backstop\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\n{extra}",
        proxy.endpoint()
    ));
    install.use_s3(server.env());
    install
}

/// A few dozen files, some of them a few chunks long, under `src/`.
fn source_tree(install: &Install) {
    for i in 0..40u64 {
        let path = install.path(&format!("src/d{}/f{i}.bin", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(1000 + (i as usize * 7919) % 200_000, i)).unwrap();
    }
    std::fs::write(install.path("src/big.bin"), noise(5 << 20, 77)).unwrap();
}

fn snapshot_objects(server: &S3Server) -> Vec<String> {
    let dir = server.root().join(BUCKET).join("prod/backstop/snapshots");
    let mut out = Vec::new();
    super::util::walk_files(&dir, &dir, &mut out);
    out
}

#[test]
fn issue_14_an_s3_outage_of_8s_in_the_middle_of_a_backup_is_ridden_out() {
    let server = S3Server::start(&[BUCKET]);
    let proxy = FaultProxy::start(server.addr, FaultConfig::none());
    let install = through(&server, &proxy, "");
    source_tree(&install);
    install.files_policy("offsite", &["./src"], "");

    // The repository is created by the first requests; the endpoint then goes away for 8 s
    // (as a SeaweedFS restart does) while the backup is writing.
    proxy.outage_after(8, Duration::from_secs(8));
    let backup = install.backup("offsite");
    let id = backup["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(
        proxy.counts().outages,
        1,
        "the outage happened during the backup"
    );

    install.ok(&["restore", &id[..12], "--to", "out"]);
    assert_same_content(&install.path("src"), &install.path("out/src"));
}

#[test]
fn issue_14_an_outage_longer_than_the_retry_budget_fails_in_one_line_naming_the_repository() {
    let server = S3Server::start(&[BUCKET]);
    let proxy = FaultProxy::start(server.addr, FaultConfig::none());
    let install = through(&server, &proxy, "retry_budget = \"3s\"");
    source_tree(&install);
    install.files_policy("offsite", &["./src"], "");

    // Down for longer than the test lasts: the budget, not the outage, ends the backup.
    proxy.outage_after(8, Duration::from_secs(600));
    let stderr = install.fails(&["backup", "offsite"]);
    assert_eq!(proxy.counts().outages, 1);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line:\n{stderr}");
    let line = lines[0];
    assert!(
        line.contains("repository main (s3://backstop-faults/prod/backstop)"),
        "{line}"
    );
    assert!(line.contains("unreachable after 3s of retries"), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(
        snapshot_objects(&server).is_empty(),
        "no snapshot is visible"
    );
}

/// Issue 15: an S3 authentication failure printed about 1.8 KB of SDK internals and did not
/// name the repository. It is one line naming `s3://bucket/prefix` and the cause.
#[test]
fn an_s3_authentication_failure_is_one_line_naming_the_repository() {
    let server = S3Server::start(&[BUCKET]);
    let mut install = Install::new(&format!(
        "url = \"s3://{BUCKET}/prod/backstop\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true",
        server.endpoint()
    ));
    install.env = server
        .env()
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "AWS_SECRET_ACCESS_KEY" {
                "not-the-secret".to_string()
            } else {
                v
            };
            (k.to_string(), v)
        })
        .collect();
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "a").unwrap();
    install.files_policy("site", &["./src"], "");
    let out = install.run(&["backup", "site"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].len() < 400, "{} bytes: {stderr}", lines[0].len());
    assert!(
        lines[0].contains(&format!("s3://{BUCKET}/prod/backstop"))
            && lines[0].contains("authentication"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}
