//! Helpers the repository's integration tests share: entries, a tree of files on disk, a
//! backup of it, and memory storage with a test's hooks.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use backstop_repo::storage::{MemoryStorage, ObjectInfo, Storage, StorageError};
use backstop_repo::{
    Entry, EntryKind, FileStatus, Id, Repository, SnapshotMeta, SnapshotWriter, SourceFacts,
};
use bytes::Bytes;

/// An entry as a walk would give it, before its content is read (size 0, no chunks).
pub fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode: match kind {
            EntryKind::Dir => 0o040755,
            EntryKind::Symlink => 0o120777,
            EntryKind::File => 0o100644,
        },
        uid: 0,
        gid: 0,
        mtime_ns: 1_700_000_000_000_000_000,
        size: 0,
        chunks: Vec::new(),
        digest: None,
        target: None,
        ctime_ns: 0,
        inode: 0,
    }
}

/// Writes `files` (path relative to `root`, content) to disk.
pub fn write_files(root: &Path, files: &[(String, Vec<u8>)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Backs up `files` (already on disk under `root`) as one snapshot of `policy`, with a
/// directory entry for every parent directory.
pub async fn back_up(
    repo: Arc<Repository>,
    root: &Path,
    files: &[(String, Vec<u8>)],
    policy: &str,
) -> Id {
    let mut writer = SnapshotWriter::start(repo).await.unwrap();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut at = Path::new(path).parent();
        while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_str().unwrap().to_string());
            at = dir.parent();
        }
    }
    // The writer takes entries in path order: directories and files merged.
    let mut paths: Vec<(&str, Option<&Vec<u8>>)> =
        dirs.iter().map(|d| (d.as_str(), None)).collect();
    paths.extend(
        files
            .iter()
            .map(|(path, content)| (path.as_str(), Some(content))),
    );
    paths.sort_by(|a, b| a.0.cmp(b.0));
    for (path, content) in paths {
        let Some(content) = content else {
            writer.add_entry(entry(path, EntryKind::Dir)).await.unwrap();
            continue;
        };
        // The size the walk saw: what add_file reads up to.
        let mut file = entry(path, EntryKind::File);
        file.size = content.len() as u64;
        writer
            .add_file(file, FileStatus::New, root.join(path), |_| None)
            .await
            .unwrap();
    }
    writer
        .commit(meta(policy), SourceFacts::default())
        .await
        .unwrap()
        .0
}

/// The metadata of a files snapshot of `policy` taken now, with no roots and no parent.
pub fn meta(policy: &str) -> SnapshotMeta {
    let now = jiff::Timestamp::now();
    SnapshotMeta {
        policy: policy.into(),
        source_kind: "files".into(),
        time: now,
        data_point: now,
        roots: Vec::new(),
        parent: None,
    }
}

/// Restores a snapshot into a new directory and asserts every file is byte-identical. The
/// repository's index is read afresh (it may have been opened before the snapshot was
/// written).
pub async fn assert_restores(repo: Arc<Repository>, id: Id, files: &[(String, Vec<u8>)]) {
    let (index, problems) = repo.load_index().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let repo = Arc::new(repo.with_index(index));
    let reader = backstop_repo::SnapshotReader::open(repo, id).await.unwrap();
    let target = tempfile::tempdir().unwrap();
    let report = reader.restore_to(target.path()).await.unwrap();
    assert_eq!(report.files, files.len() as u64);
    for (path, content) in files {
        let restored = std::fs::read(target.path().join(path)).unwrap();
        assert!(restored == *content, "{path} differs after restore");
    }
}

/// Restores a snapshot that must fail into a new directory: the error, and the directory
/// with what was restored before it.
pub async fn failed_restore(repo: Arc<Repository>, id: Id) -> (String, tempfile::TempDir) {
    let reader = backstop_repo::SnapshotReader::open(repo, id).await.unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = reader
        .restore_to(target.path())
        .await
        .unwrap_err()
        .to_string();
    (err, target)
}

/// What a test puts between a repository and its memory storage: faults, counts, stalls.
#[async_trait]
pub trait Hooks: std::fmt::Debug + Send + Sync + 'static {
    /// Runs before a write: an error fails it, and the bytes returned are what is stored.
    async fn put(&self, _key: &str, data: Bytes) -> Result<Bytes, StorageError> {
        Ok(data)
    }
    /// Runs before a ranged read: an error fails it.
    async fn get_range(&self, _key: &str, _offset: u64) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Memory storage whose writes and ranged reads go through `hooks` first. The hooks' own
/// fields read through it (`Deref`); `inner` reaches the objects without them.
#[derive(Debug, Default)]
pub struct Hooked<H> {
    pub inner: MemoryStorage,
    pub hooks: H,
}

impl<H> std::ops::Deref for Hooked<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: Hooks> Storage for Hooked<H> {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let data = self.hooks.put(key, data).await?;
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        self.hooks.get_range(key, offset).await?;
        self.inner.get_range(key, offset, length).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
    fn location(&self) -> String {
        "memory (with a test's hooks)".into()
    }
}
