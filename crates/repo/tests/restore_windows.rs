//! Issue 17: a restore held the snapshot's whole tree (about 250 bytes a file) from its
//! start to its end. It now reads the tree a window of entries at a time while it writes:
//! a directory whose entries span windows (and whose entries are not next to it: `a-b`
//! sorts between `a` and `a/…`) still gets its own times once everything in it is made,
//! and the windows before a damaged part of the tree are restored before it is reached.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use backstop_repo::storage::{MemoryStorage, Storage};
use backstop_repo::{
    EntryKind, FileStatus, Id, InitOptions, Repository, SnapshotReader, SnapshotWriter, SourceFacts,
};
use common::{entry, failed_restore, meta};

/// More directories under `a` than a restore's window holds.
const DIRS: usize = 40_000;
/// The times every directory entry records (`common::entry`).
const DIR_MTIME_S: i64 = 1_700_000_000;

/// Backs up `a`, `a-b` (with a file), `a-b/…`, `a/000000` … `a/039999`, with a file in the
/// first and the last of those.
async fn back_up(storage: Arc<MemoryStorage>, root: &Path) -> Id {
    Repository::init(storage.clone(), InitOptions::default())
        .await
        .unwrap();
    let repo = Arc::new(Repository::open(storage, None).await.unwrap());
    let files = [
        ("a-b/f.txt", b"between a and its entries".to_vec()),
        ("a/000000/first.txt", b"the first window".to_vec()),
        (
            &*format!("a/{:06}/last.txt", DIRS - 1),
            b"the last window".to_vec(),
        ),
    ];
    for (path, content) in &files {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), content).unwrap();
    }
    let mut paths: Vec<(String, Option<u64>)> = vec![("a".into(), None), ("a-b".into(), None)];
    paths.extend((0..DIRS).map(|i| (format!("a/{i:06}"), None)));
    paths.extend(
        files
            .iter()
            .map(|(p, c)| (p.to_string(), Some(c.len() as u64))),
    );
    paths.sort();
    let mut writer = SnapshotWriter::start(repo).await.unwrap();
    for (path, size) in paths {
        match size {
            None => writer
                .add_entry(entry(&path, EntryKind::Dir))
                .await
                .unwrap(),
            Some(size) => {
                let mut file = entry(&path, EntryKind::File);
                file.size = size;
                writer
                    .add_file(file, FileStatus::New, root.join(&path), |_| None)
                    .await
                    .unwrap();
            }
        }
    }
    writer
        .commit(meta("windows"), SourceFacts::default())
        .await
        .unwrap()
        .0
}

async fn reopen(storage: Arc<MemoryStorage>) -> Arc<Repository> {
    Arc::new(Repository::open(storage, None).await.unwrap())
}

#[tokio::test]
async fn every_directory_gets_its_times_after_its_entries_across_windows() {
    let storage = Arc::new(MemoryStorage::default());
    let source = tempfile::tempdir().unwrap();
    let id = back_up(storage.clone(), source.path()).await;
    let reader = SnapshotReader::open(reopen(storage).await, id)
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let report = reader.restore_to(target.path()).await.unwrap();
    assert_eq!(report.dirs, DIRS as u64 + 2);
    assert_eq!(report.files, 3);
    let to = target.path();
    assert_eq!(
        std::fs::read(to.join(format!("a/{:06}/last.txt", DIRS - 1))).unwrap(),
        b"the last window"
    );
    assert_eq!(
        std::fs::read(to.join("a-b/f.txt")).unwrap(),
        b"between a and its entries"
    );
    // Making an entry in a directory sets the directory's mtime to now: a directory whose
    // times were set before its last entry was made would show it.
    let mut dirs = vec![to.join("a"), to.join("a-b")];
    dirs.extend((0..DIRS).map(|i| to.join(format!("a/{i:06}"))));
    for dir in dirs {
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir(), "{}", dir.display());
        assert_eq!(meta.mtime(), DIR_MTIME_S, "{}", dir.display());
        assert_eq!(meta.mode() & 0o7777, 0o755, "{}", dir.display());
    }
}

#[tokio::test]
async fn the_windows_before_a_damaged_part_of_the_tree_are_restored_first() {
    let storage = Arc::new(MemoryStorage::default());
    let source = tempfile::tempdir().unwrap();
    let id = back_up(storage.clone(), source.path()).await;
    let repo = reopen(storage.clone()).await;
    let snapshot = repo.load_snapshot(&id).await.unwrap();
    assert!(snapshot.tree.chunks.len() > 1, "a tree of several chunks");
    let last = snapshot.tree.chunks.last().unwrap();
    let loc = repo.locate(last).unwrap();
    let key = backstop_repo::format::layout::pack_key(&loc.pack);
    let mut pack = storage.get(&key).await.unwrap().to_vec();
    pack[(loc.offset + loc.length / 2) as usize] ^= 0xff;
    storage.put(&key, pack.into()).await.unwrap();

    let (err, target) = failed_restore(reopen(storage).await, id).await;
    assert!(
        err.contains(&last.to_hex()[..12]) || err.contains(&loc.pack.to_hex()),
        "names what is damaged: {err}"
    );
    // Read before the damaged chunk was: a restore that read the tree whole first wrote
    // nothing at all.
    assert_eq!(
        std::fs::read(target.path().join("a/000000/first.txt")).unwrap(),
        b"the first window"
    );
}
