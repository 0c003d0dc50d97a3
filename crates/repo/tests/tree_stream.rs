//! Issue 17: a backup of many files held both trees (the parent's and the new one) whole in
//! memory, about 2 KB a file at its peak. The writer now takes entries in path order and
//! writes the tree as they come; the parent's tree is read as a stream beside the walk.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use backstop_repo::storage::MemoryStorage;
use backstop_repo::{EntryKind, InitOptions, Repository, SnapshotWriter, SourceFacts};
use common::{entry, meta};

async fn repository() -> Arc<Repository> {
    let storage = Arc::new(MemoryStorage::default());
    Repository::init(storage.clone(), InitOptions::default())
        .await
        .unwrap();
    Arc::new(Repository::open(storage, None).await.unwrap())
}

#[tokio::test]
async fn entries_out_of_path_order_are_refused_and_nothing_is_committed() {
    let repo = repository().await;
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    writer.add_entry(entry("b", EntryKind::Dir)).await.unwrap();
    let err = writer
        .add_entry(entry("a", EntryKind::Dir))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`a` came after `b`"), "{err}");
    let err = writer
        .add_entry(entry("b", EntryKind::Dir))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("two entries for the path `b`"), "{err}");
    drop(writer);
    assert!(repo.list_snapshots().await.unwrap().snapshots.is_empty());
}

#[tokio::test]
async fn the_tree_is_written_as_entries_come_not_held_until_the_commit() {
    let repo = repository().await;
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    let progress = writer.progress();
    let paths: Vec<String> = (0..100_000).map(|i| format!("d/{i:06}")).collect();
    writer.add_entry(entry("d", EntryKind::Dir)).await.unwrap();
    for path in &paths {
        writer.add_entry(entry(path, EntryKind::Dir)).await.unwrap();
    }
    // No file was read: what was read is the tree's own text, chunked before the commit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while progress.bytes_read.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "none of the tree's 12 MB of text was chunked before the commit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (id, snapshot) = writer
        .commit(meta("p"), SourceFacts::default())
        .await
        .unwrap();
    assert_eq!(snapshot.tree.entries, 100_001);
    assert_eq!(snapshot.facts.dir_count, 100_001);

    // Read back as a stream (the index read afresh: it was opened before the backup):
    // every entry, in order, and the digest checked at the end.
    let (index, _) = repo.load_index().await.unwrap();
    let repo = repo.with_index(index);
    let snapshot = repo.load_snapshot(&id).await.unwrap();
    let mut reader = repo.tree_reader(&snapshot);
    let mut read = Vec::new();
    while let Some(entry) = reader.next().await.unwrap() {
        read.push(entry.path);
    }
    assert_eq!(read[0], "d");
    assert_eq!(read[1..], paths[..]);
}

#[tokio::test]
async fn a_selection_keeps_the_directories_above_each_kept_path_where_others_sort_between() {
    let repo = repository().await;
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    // Byte order puts `a-b` and `a-c/x` between `a` and `a/b`: the selection is made in one
    // pass over the tree as a stream, and must still find `a` above `a/b/c`.
    for path in ["a", "a-b", "a-c", "a-c/x", "a/b", "a/b/c", "a/b/d", "z"] {
        writer.add_entry(entry(path, EntryKind::Dir)).await.unwrap();
    }
    let (id, _) = writer
        .commit(meta("p"), SourceFacts::default())
        .await
        .unwrap();
    let (index, _) = repo.load_index().await.unwrap();
    let repo = Arc::new(repo.with_index(index));
    let reader = backstop_repo::SnapshotReader::open(repo, id).await.unwrap();
    let selection = reader
        .select(|path| path == "a/b/c" || path == "a-c/x")
        .await
        .unwrap();
    let paths: Vec<&str> = selection
        .entries()
        .await
        .unwrap()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, ["a", "a-c", "a-c/x", "a/b", "a/b/c"]);
    assert_eq!(selection.snapshot().facts.dir_count, 5);
}
