//! Issue 15: a file that keeps growing while it is read is read up to the size the walk
//! saw (with a warning naming it), so that a fast writer cannot keep a backup running for
//! ever; what was appended after the walk waits for the next snapshot.

use std::io::Write;
use std::sync::Arc;

use backstop_repo::storage::MemoryStorage;
use backstop_repo::{
    Entry, EntryKind, FileStatus, InitOptions, Repository, SnapshotMeta, SnapshotReader,
    SnapshotWriter, SourceFacts,
};

#[tokio::test]
async fn a_file_that_grew_after_the_walk_is_read_up_to_the_size_the_walk_saw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.log");
    let first = backstop_testkit::noise(3 << 20, 11);
    std::fs::write(&path, &first).unwrap();
    // The walk sees it now…
    let seen = std::fs::metadata(&path).unwrap().len();
    // …and the writer appends before (and while) it is read.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    log.write_all(&backstop_testkit::noise(2 << 20, 12))
        .unwrap();
    drop(log);

    let storage = Arc::new(MemoryStorage::default());
    Repository::init(storage.clone(), InitOptions::default())
        .await
        .unwrap();
    let repo = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    let entry = Entry {
        path: "busy.log".into(),
        kind: EntryKind::File,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        size: seen,
        chunks: Vec::new(),
        digest: None,
        target: None,
        ctime_ns: 0,
        inode: 0,
    };
    writer
        .add_file(entry, FileStatus::New, path.clone(), |_| None)
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let meta = SnapshotMeta {
        policy: "p".into(),
        source_kind: "files".into(),
        time: now,
        data_point: now,
        roots: Vec::new(),
        parent: None,
    };
    let (id, snapshot) = writer.commit(meta, SourceFacts::default()).await.unwrap();
    let warning = snapshot
        .summary
        .warnings
        .iter()
        .find(|w| w.contains("busy.log"))
        .unwrap_or_else(|| panic!("no warning: {:?}", snapshot.summary.warnings));
    assert!(warning.contains("grew while it was read"), "{warning}");
    assert!(warning.contains(&seen.to_string()), "{warning}");

    // Opened again, as a restore does: with the index the backup wrote.
    drop(repo);
    let repo = Arc::new(Repository::open(storage, None).await.unwrap());
    let reader = SnapshotReader::open(repo, id).await.unwrap();
    let restored = tempfile::tempdir().unwrap();
    reader.restore_to(restored.path()).await.unwrap();
    assert_eq!(
        std::fs::read(restored.path().join("busy.log")).unwrap(),
        first,
        "exactly what the file held when the walk reached it"
    );
}
