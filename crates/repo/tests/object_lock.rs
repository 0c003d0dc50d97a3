//! S3 Object Lock (issue 16), against SeaweedFS, which enforces it: every object a backup
//! writes carries its retention; with the repository's own credentials a locked version
//! cannot be deleted, and an overwrite leaves it intact; prune leaves locked objects in place
//! and removes them once their lock has lapsed; maintenance extends the lock of what is still
//! referenced; check names a referenced object whose lock has lapsed; an object sent from a
//! file (a copy's spooled pack) is stored whole and locked.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use backstop_repo::checker::{check, ReadData};
use backstop_repo::format::layout;
use backstop_repo::prune::{self, Retention};
use backstop_repo::storage::{
    LockMode, ObjectLock, RetryPolicy, RetryStorage, S3Options, S3Storage, Storage,
};
use backstop_repo::{InitOptions, Repository};
use backstop_testkit::seaweed::SeaweedServer;
use common::{back_up, write_files};

const BUCKET: &str = "locked";
const RETENTION: Duration = Duration::from_secs(8);

async fn raw_client(endpoint: &str) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}

async fn storage(endpoint: &str) -> Arc<dyn Storage> {
    let mut options = S3Options::new(BUCKET, "repo");
    options.endpoint = Some(endpoint.to_string());
    options.region = Some("us-east-1".into());
    options.path_style = true;
    options.object_lock = Some(ObjectLock {
        mode: LockMode::Governance,
        retention: RETENTION,
    });
    Arc::new(RetryStorage::new(
        S3Storage::connect(options).await,
        RetryPolicy::default(),
    ))
}

async fn versions(client: &Client, key: &str) -> Vec<String> {
    let full = format!("repo/{key}");
    client
        .list_object_versions()
        .bucket(BUCKET)
        .prefix(&full)
        .send()
        .await
        .unwrap()
        .versions()
        .iter()
        .filter(|v| v.key() == Some(full.as_str()))
        .filter_map(|v| v.version_id().map(str::to_string))
        .collect()
}

async fn sleep_until(t: jiff::Timestamp) {
    let wait = t.duration_since(jiff::Timestamp::now());
    if let Ok(wait) = Duration::try_from(wait) {
        tokio::time::sleep(wait + Duration::from_millis(1200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_objects_cannot_be_deleted_and_prune_waits_for_their_lock_to_lapse() {
    let server = SeaweedServer::start(&[BUCKET]);
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let endpoint = server.endpoint();
    let store = storage(&endpoint).await;
    let client = raw_client(&endpoint).await;
    Repository::init(store.clone(), InitOptions::default())
        .await
        .unwrap();
    let open = || async { Arc::new(Repository::open(store.clone(), None).await.unwrap()) };

    let root = tempfile::tempdir().unwrap();
    let old_files = vec![(
        "app/old.bin".to_string(),
        backstop_testkit::noise(300_000, 1),
    )];
    write_files(root.path(), &old_files);
    let old = back_up(open().await, root.path(), &old_files, "app").await;
    std::fs::remove_file(root.path().join("app/old.bin")).unwrap();
    let new_files = vec![(
        "app/new.bin".to_string(),
        backstop_testkit::noise(300_000, 2),
    )];
    write_files(root.path(), &new_files);
    let new = back_up(open().await, root.path(), &new_files, "app").await;

    // Every object is written locked, the lock files excepted.
    let old_key = layout::snapshot_key(&old);
    let until = store.locked_until(&old_key).await.unwrap().expect("locked");
    assert!(until > jiff::Timestamp::now());
    for object in store.list("").await.unwrap() {
        let locked = store.locked_until(&object.key).await.unwrap();
        assert_eq!(
            locked.is_some(),
            !object.key.starts_with("locks/"),
            "{}",
            object.key
        );
    }

    // With the repository's own credentials, the locked version cannot be deleted; an
    // overwrite adds a version and leaves the locked one as it was.
    let original = store.get(&old_key).await.unwrap();
    let version = versions(&client, &old_key).await.pop().unwrap();
    let refused = client
        .delete_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}"))
        .version_id(&version)
        .send()
        .await;
    assert!(refused.is_err(), "deleting a locked version must fail");
    let err = store.delete(&old_key).await.unwrap_err().to_string();
    assert!(err.contains("Object Lock"), "{err}");
    client
        .put_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}-overwrite-probe"))
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}"))
        .body(b"ransom note".to_vec().into())
        .send()
        .await
        .unwrap();
    let kept = client
        .get_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}"))
        .version_id(&version)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(kept, original, "the locked version is intact");
    // Put the snapshot back as the current version, as a restore from versions would.
    client
        .put_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}"))
        .body(original.to_vec().into())
        .send()
        .await
        .unwrap();
    client
        .delete_object()
        .bucket(BUCKET)
        .key(format!("repo/{old_key}-overwrite-probe"))
        .send()
        .await
        .unwrap();

    // Retention keeps only the newest; the old snapshot is still locked, so prune keeps it
    // and its data, and says why.
    let rules = HashMap::from([(
        "app".to_string(),
        Retention {
            last: Some(1),
            ..Retention::default()
        },
    )]);
    let (plan, report) = prune::prune(open().await, &rules, false).await.unwrap();
    assert!(plan.forget.is_empty(), "{plan:?}");
    assert!(plan.delete_packs.is_empty(), "{plan:?}");
    assert!(
        plan.locked.iter().any(|l| l.object == old_key),
        "{:?}",
        plan.locked
    );
    assert!(report.is_some());
    assert_eq!(
        open().await.list_snapshots().await.unwrap().snapshots.len(),
        2
    );

    // Once less than half of the retention is left, maintenance extends the lock of what is
    // still referenced (the newest snapshot), never of what only a lock keeps.
    let new_key = layout::snapshot_key(&new);
    let new_until = store.locked_until(&new_key).await.unwrap().unwrap();
    sleep_until(new_until - jiff::SignedDuration::from_secs(RETENTION.as_secs() as i64 / 2)).await;
    let (plan, report) = prune::prune(open().await, &rules, false).await.unwrap();
    assert!(report.unwrap().locks_extended > 0);
    let extended = store.locked_until(&new_key).await.unwrap().unwrap();
    assert!(extended > new_until, "{extended} > {new_until}");
    let old_until = store.locked_until(&old_key).await.unwrap();
    assert!(
        old_until <= Some(until + jiff::SignedDuration::from_secs(2)),
        "the forgotten snapshot's lock is left to lapse: {old_until:?}"
    );
    assert!(plan.forget.is_empty());

    // After the old lock lapses, prune forgets the snapshot and removes its data, every
    // version of it.
    sleep_until(old_until.unwrap()).await;
    let (plan, _) = prune::prune(open().await, &rules, false).await.unwrap();
    assert_eq!(plan.forget, vec![old]);
    assert!(versions(&client, &old_key).await.is_empty());
    // Its data goes once nothing locked lists it: the index the first prune wrote (which
    // still named the old pack) is locked a little longer than the snapshot was.
    let mut deleted = plan.delete_packs.clone();
    if let Some(last) = plan.locked.iter().map(|l| l.until).max() {
        sleep_until(last).await;
        let (plan, _) = prune::prune(open().await, &rules, false).await.unwrap();
        deleted.extend(plan.delete_packs);
    }
    assert!(!deleted.is_empty(), "the old snapshot's pack is removed");
    for pack in &deleted {
        assert!(versions(&client, &layout::pack_key(pack)).await.is_empty());
    }
    let repo = open().await;
    assert_eq!(repo.list_snapshots().await.unwrap().snapshots.len(), 1);
    common::assert_restores(repo.clone(), new, &new_files).await;

    // Check names a referenced object whose lock has lapsed; prune locks it again.
    let lapsed = store.locked_until(&new_key).await.unwrap().unwrap();
    sleep_until(lapsed).await;
    let report = check(repo.clone(), ReadData::None).await.unwrap();
    assert!(
        report
            .errors()
            .any(|f| f.object == new_key && f.message.contains("Object Lock lapsed")),
        "{:?}",
        report.findings
    );
    prune::prune(repo.clone(), &rules, false).await.unwrap();
    let report = check(repo, ReadData::None).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
}

/// A spooled pack is sent from its file (a streamed body, in parts past the multipart
/// threshold): SeaweedFS takes it whole and locks it like any other object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_sent_from_a_file_is_stored_whole_and_locked() {
    let server = SeaweedServer::start(&[BUCKET]);
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let mut options = S3Options::new(BUCKET, "spooled");
    options.endpoint = Some(server.endpoint());
    options.region = Some("us-east-1".into());
    options.path_style = true;
    options.multipart_threshold = 5 << 20;
    options.part_size = 5 << 20;
    options.object_lock = Some(ObjectLock {
        mode: LockMode::Governance,
        retention: RETENTION,
    });
    let store = RetryStorage::new(S3Storage::connect(options).await, RetryPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    for (key, size) in [("data/aa/small", 300_000), ("data/bb/parts", 11 << 20)] {
        let content = backstop_testkit::noise(size, size as u64);
        let file = dir.path().join("pack");
        std::fs::write(&file, &content).unwrap();
        store.put_file(key, &file).await.unwrap();
        assert_eq!(store.get(key).await.unwrap(), content, "{key}");
        let until = store.locked_until(key).await.unwrap();
        assert!(
            until.is_some_and(|u| u > jiff::Timestamp::now()),
            "{key}: {until:?}"
        );
    }
}
