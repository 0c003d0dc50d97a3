//! Storage faults (issue 14, item 9): over real S3 HTTP (s3s-fs on 127.0.0.1:0) through a
//! proxy that breaks one request in ten (500 InternalError, 503 SlowDown, a reset
//! connection, or a request held without an answer for longer than the attempt timeout), a
//! backup, a restore and a check that reads every pack all complete, and the restore is
//! byte for byte the source.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backstop_repo::checker::{self, ReadData};
use backstop_repo::storage::{RetryPolicy, RetryStorage, S3Options, S3Storage, Storage};
mod common;

use backstop_repo::{InitOptions, Repository, SnapshotReader};
use backstop_testkit::faults::{FaultConfig, FaultProxy};
use backstop_testkit::{noise, S3Server};
use common::{back_up, write_files};

const BUCKET: &str = "backstop-faults";

/// 120 small files (some of them duplicates) and one file of several chunks, under `src/`.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..120u64 {
        let content = if i % 5 == 4 {
            files[(i - 1) as usize].1.clone()
        } else {
            noise(500 + (i as usize * 7919) % 80_000, i)
        };
        files.push((format!("src/d{}/f{i}.bin", i % 4), content));
    }
    files.push(("src/big.bin".into(), noise(4 << 20, 99)));
    write_files(root, &files);
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_backup_restore_and_read_data_check_complete_with_10_percent_faults() {
    let server = S3Server::start(&[BUCKET]);
    server.set_process_env();
    let proxy = FaultProxy::start(
        server.addr,
        FaultConfig {
            // Held for longer than any attempt timeout below, small uploads' included.
            stall: Duration::from_secs(30),
            ..FaultConfig::percent(10, 14)
        },
    );
    let mut options = S3Options::new(BUCKET, "campaign");
    options.endpoint = Some(proxy.endpoint());
    options.region = Some("us-east-1".into());
    options.path_style = true;
    // A stalled request is abandoned after a second (plus a second per MiB sent), so that
    // the campaign does not wait out the default.
    options.attempt_timeout = Duration::from_secs(1);
    let storage: Arc<dyn Storage> = Arc::new(RetryStorage::named(
        S3Storage::connect(options).await,
        RetryPolicy {
            budget: Duration::from_secs(60),
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
        },
        "campaign",
    ));
    let init = InitOptions {
        // Small packs: more of them, more requests, more faults.
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(storage.clone(), init).await.unwrap();
    let open = || async { Arc::new(Repository::open(storage.clone(), None).await.unwrap()) };

    let source = tempfile::tempdir().unwrap();
    let files = make_tree(source.path());
    let id = back_up(open().await, source.path(), &files, "campaign").await;

    let target = tempfile::tempdir().unwrap();
    let reader = SnapshotReader::open(open().await, id).await.unwrap();
    let report = reader.restore_to(target.path()).await.unwrap();
    assert_eq!(report.files, files.len() as u64);
    for (path, content) in &files {
        let restored = std::fs::read(target.path().join(path)).unwrap();
        assert!(restored == *content, "{path} differs");
    }

    let checked = checker::check(open().await, ReadData::All).await.unwrap();
    assert!(checked.is_ok(), "{checked:?}");

    let counts = proxy.counts();
    // One run of this size draws only a handful of faults, not necessarily of every kind.
    assert!(counts.faults() >= 3, "faults were injected: {counts:?}");
}
