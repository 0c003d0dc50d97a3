//! Issue 14, item 8, at the library's level: one unreadable snapshot object is listed beside
//! the readable ones and stops prune from collecting, never from forgetting; a lost index
//! object is rebuilt from the pack headers; a missing pack refuses prune.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use backstop_repo::format::layout;
use backstop_repo::prune::{self, Retention};
use backstop_repo::storage::{MemoryStorage, Storage};
use backstop_repo::{
    repair, EntryKind, Id, InitOptions, RepoError, Repository, SnapshotWriter, SourceFacts,
};
use common::{entry, meta};

async fn back_up(repo: &Arc<Repository>, policy: &str, seed: u64) -> Id {
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    let content = backstop_testkit::noise(200_000, seed);
    writer
        .add_stream(
            entry("data.bin", EntryKind::File),
            std::io::Cursor::new(content),
        )
        .await
        .unwrap();
    writer
        .commit(meta(policy), SourceFacts::default())
        .await
        .unwrap()
        .0
}

async fn repository() -> (Arc<MemoryStorage>, Arc<Repository>) {
    let storage = Arc::new(MemoryStorage::new());
    let repo = Repository::init(storage.clone(), InitOptions::default())
        .await
        .unwrap();
    (storage, Arc::new(repo))
}

async fn keys(storage: &MemoryStorage, prefix: &str) -> Vec<String> {
    let listed = storage.list(prefix).await.unwrap();
    listed.into_iter().map(|o| o.key).collect()
}

#[tokio::test]
async fn an_unreadable_snapshot_is_listed_apart_and_stops_collection_but_not_retention() {
    let (storage, repo) = repository().await;
    let old = back_up(&repo, "alpha", 1).await;
    let new = back_up(&repo, "alpha", 2).await;
    let bad = back_up(&repo, "beta", 3).await;
    let key = layout::snapshot_key(&bad);
    let stored = storage.get(&key).await.unwrap();
    storage
        .put(&key, stored.slice(..stored.len() / 2))
        .await
        .unwrap();

    let listing = repo.list_snapshots().await.unwrap();
    let readable: Vec<Id> = listing.snapshots.iter().map(|(id, _)| *id).collect();
    assert_eq!(readable, vec![old, new]);
    assert_eq!(listing.unreadable.len(), 1);
    assert_eq!(listing.unreadable[0].object, key);
    assert!(listing.unreadable[0].to_string().contains(&key));

    let packs = keys(&storage, "data/").await;
    let indexes = keys(&storage, "index/").await;
    let retention = HashMap::from([(
        "alpha".to_string(),
        Retention {
            last: Some(1),
            ..Retention::default()
        },
    )]);
    let (plan, report) = prune::prune(repo.clone(), &retention, false).await.unwrap();
    assert!(!plan.garbage_collection);
    assert_eq!(plan.forget, vec![old]);
    assert_eq!(plan.unreadable.len(), 1);
    assert_eq!(report.unwrap().packs_removed, 0);
    assert_eq!(keys(&storage, "data/").await, packs, "no pack is deleted");
    assert_eq!(
        keys(&storage, "index/").await,
        indexes,
        "no index is rewritten"
    );
    assert!(storage.get(&layout::snapshot_key(&old)).await.is_err());
}

#[tokio::test]
async fn repair_index_rebuilds_a_lost_index_object_from_the_pack_headers() {
    let (storage, repo) = repository().await;
    let id = back_up(&repo, "alpha", 4).await;
    let lost = keys(&storage, "index/").await;
    back_up(&repo, "alpha", 5).await;
    for key in &lost {
        storage.delete(key).await.unwrap();
    }
    // A corrupt index object too: its packs are indexed again, then it is removed.
    storage
        .put(
            &layout::index_key(&Id::sha256(b"x")),
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap();

    let reopened = Repository::open_without_index(storage.clone(), None)
        .await
        .unwrap();
    let (index, _) = reopened.load_index().await.unwrap();
    let snapshot = reopened.load_snapshot(&id).await.unwrap();
    let err = reopened
        .with_index(index)
        .read_tree(&snapshot)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::ChunkNotIndexed { .. }), "{err}");
    assert!(err.to_string().contains("backstop repair index"), "{err}");

    let report = repair::repair_index(Arc::new(reopened)).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.packs_indexed, 1, "{report:?}");
    assert_eq!(report.index_objects_removed.len(), 1, "{report:?}");
    let repaired = Repository::open(storage.clone(), None).await.unwrap();
    let tree = repaired.read_tree(&snapshot).await.unwrap();
    assert_eq!(tree.len(), 1);

    let again = repair::repair_index(Arc::new(repaired)).await.unwrap();
    assert_eq!(again.packs_indexed, 0);
    assert!(again.index_object.is_none());
}

#[tokio::test]
async fn prune_refuses_naming_a_missing_pack() {
    let (storage, repo) = repository().await;
    back_up(&repo, "alpha", 6).await;
    let first = keys(&storage, "data/").await;
    back_up(&repo, "alpha", 7).await;
    let missing = keys(&storage, "data/")
        .await
        .into_iter()
        .find(|k| !first.contains(k))
        .unwrap();
    storage.delete(&missing).await.unwrap();
    let indexes = keys(&storage, "index/").await;
    let repo = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
    let err = prune::prune(repo, &HashMap::new(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::MissingPack { key } if *key == missing),
        "{err}"
    );
    assert_eq!(keys(&storage, "index/").await, indexes);
}
