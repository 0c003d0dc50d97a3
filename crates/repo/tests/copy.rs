//! Copies between repositories (issue 16): a copy restores byte for byte from the secondary
//! alone and checks clean there, whether the two repositories share keys or not; a second
//! copy moves only what changed; a copy stopped half-way leaves no snapshot and the next one
//! completes it; an object that does not read back as written stops the copy before its
//! snapshot is committed; the packs a copy fills in temporary files are gone once it
//! returns, whether it succeeded or not, and a copy stopped by a failed read abandons the
//! reads it had under way.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backstop_repo::checker::{check, ReadData};
use backstop_repo::format::crypto::Cipher;
use backstop_repo::storage::{MemoryStorage, Storage, StorageError};
use backstop_repo::{Copier, InitOptions, Repository};
use bytes::Bytes;
use common::{assert_restores, back_up, write_files, Hooked, Hooks};

/// Faults of a secondary's storage: every pack upload can fail after a number of them, or
/// store packs with one byte flipped, as a broken link or disk would.
#[derive(Debug, Default)]
struct SecondaryFaults {
    /// Pack uploads still allowed; negative: no limit.
    packs_allowed: AtomicI64,
    corrupt_packs: AtomicBool,
}

type Secondary = Hooked<SecondaryFaults>;

impl Secondary {
    fn new() -> Arc<Self> {
        let s = Self::default();
        s.packs_allowed.store(-1, Ordering::SeqCst);
        Arc::new(s)
    }
}

#[async_trait]
impl Hooks for SecondaryFaults {
    async fn put(&self, key: &str, data: Bytes) -> Result<Bytes, StorageError> {
        if !key.starts_with("data/") {
            return Ok(data);
        }
        let left = self.packs_allowed.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StorageError::Permanent {
                op: "put",
                key: key.into(),
                message: "the link went down".into(),
            });
        }
        if left > 0 {
            self.packs_allowed.fetch_sub(1, Ordering::SeqCst);
        }
        if self.corrupt_packs.load(Ordering::SeqCst) {
            let mut bad = data.to_vec();
            bad[0] ^= 0x40;
            return Ok(bad.into());
        }
        Ok(data)
    }
}

async fn repository(storage: Arc<dyn Storage>, secret: Option<&str>) -> Arc<Repository> {
    repository_with(storage, secret, Cipher::Xaes256Gcm).await
}

async fn repository_with(
    storage: Arc<dyn Storage>,
    secret: Option<&str>,
    cipher: Cipher,
) -> Arc<Repository> {
    let secret = secret.map(|s| s.as_bytes().to_vec());
    Repository::init(
        storage.clone(),
        InitOptions {
            secret: secret.clone(),
            // Cheap key derivation for tests, and small packs so that data spreads over many.
            kdf: secret
                .as_ref()
                .map(|_| backstop_repo::format::crypto::KdfParams::for_generated_key()),
            pack_size: 1 << 20,
            cipher,
            ..InitOptions::default()
        },
    )
    .await
    .unwrap();
    Arc::new(Repository::open(storage, secret.as_deref()).await.unwrap())
}

/// A generated-style key (64 hex digits), different per seed.
fn key(seed: u8) -> String {
    format!("{:02x}", seed).repeat(32)
}

/// 40 files of 20–200 KiB and one of 3 MiB (several chunks).
fn files(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = (0..40u64)
        .map(|i| {
            (
                format!("app/d{}/f{i}.bin", i % 4),
                backstop_testkit::noise(20_000 + (i as usize * 4_111) % 180_000, seed + i),
            )
        })
        .collect();
    files.push((
        "app/big.bin".into(),
        backstop_testkit::noise(3 << 20, seed + 1000),
    ));
    files
}

async fn assert_checks_clean(repo: Arc<Repository>) {
    let report = check(repo, ReadData::All).await.unwrap();
    assert!(
        report.errors().next().is_none(),
        "check --read-data on the secondary: {:?}",
        report.findings
    );
    assert!(report.chunks_verified > 0);
}

async fn copy_round_trip(source_key: Option<String>, dest_key: Option<String>) {
    copy_round_trip_from(source_key, Cipher::Xaes256Gcm, dest_key).await;
}

async fn copy_round_trip_from(
    source_key: Option<String>,
    source_cipher: Cipher,
    dest_key: Option<String>,
) {
    let source = repository_with(
        Arc::new(MemoryStorage::default()),
        source_key.as_deref(),
        source_cipher,
    )
    .await;
    let dest_storage = Secondary::new();
    let dest = repository(dest_storage.clone(), dest_key.as_deref()).await;
    let root = tempfile::tempdir().unwrap();
    let mut set = files(1);
    write_files(root.path(), &set);
    let first = back_up(source.clone(), root.path(), &set, "app").await;

    let mut copier = Copier::new(source.clone(), dest.clone()).await.unwrap();
    assert_eq!(copier.missing().len(), 1);
    let report = copier.copy(first).await.unwrap();
    assert!(!report.already_present);
    assert!(report.chunks_copied > 40, "{report:?}");
    assert!(
        report.objects_confirmed >= 3,
        "packs, index, snapshot: {report:?}"
    );
    let total_read = report.bytes_read;
    assert_restores(dest.clone(), report.snapshot, &set).await;
    assert_checks_clean(dest.clone()).await;
    let copy = dest.load_snapshot(&report.snapshot).await.unwrap();
    let original = source.load_snapshot(&first).await.unwrap();
    assert!(copy.same_backup(&original));
    assert_eq!(copy.facts, original.facts);

    // One file changes: the next copy reads and writes about that file only.
    set[7].1 = backstop_testkit::noise(150_000, 777);
    write_files(root.path(), &set);
    let second = back_up(source.clone(), root.path(), &set, "app").await;
    let mut copier = Copier::new(source.clone(), dest.clone()).await.unwrap();
    assert_eq!(
        copier.missing().len(),
        1,
        "only the new snapshot is missing"
    );
    let report = copier.copy(second).await.unwrap();
    assert!(
        report.bytes_read < 400_000 && report.bytes_read * 10 < total_read,
        "the second copy read {} bytes of {} (one 150 kB file changed): {report:?}",
        report.bytes_read,
        total_read
    );
    assert!(
        report.chunks_copied <= 3,
        "the file and the tree: {report:?}"
    );
    assert!(report.chunks_present >= 40, "{report:?}");
    assert_restores(dest.clone(), report.snapshot, &set).await;
    let copy = dest.load_snapshot(&report.snapshot).await.unwrap();
    assert_eq!(
        copy.parent, None,
        "the test's backups name no parent, so neither do their copies"
    );

    // Nothing left to copy; copying again writes nothing.
    assert!(copier.missing().is_empty());
    let again = copier.copy(second).await.unwrap();
    assert!(again.already_present && again.bytes_written == 0);
    assert_eq!(dest.list_snapshots().await.unwrap().snapshots.len(), 2);
}

#[tokio::test]
async fn a_copy_between_repositories_with_different_keys_restores_and_checks_clean() {
    copy_round_trip(Some(key(1)), Some(key(2))).await;
}

#[tokio::test]
async fn a_copy_from_an_xchacha20_repository_into_an_xaes_one_restores_and_checks_clean() {
    copy_round_trip_from(Some(key(4)), Cipher::XChaCha20Poly1305, Some(key(5))).await;
}

#[tokio::test]
async fn a_copy_from_an_unencrypted_repository_into_an_encrypted_one_restores_and_checks_clean() {
    copy_round_trip(None, Some(key(3))).await;
}

#[tokio::test]
async fn a_copy_between_repositories_that_name_chunks_alike_reads_only_missing_chunks() {
    copy_round_trip(None, None).await;
}

#[tokio::test]
async fn a_copy_stopped_half_way_leaves_no_snapshot_and_the_next_copy_completes_it() {
    let source = repository(Arc::new(MemoryStorage::default()), Some(&key(4))).await;
    let dest_storage = Secondary::new();
    let dest = repository(dest_storage.clone(), Some(&key(5))).await;
    let root = tempfile::tempdir().unwrap();
    let set = files(2);
    write_files(root.path(), &set);
    let id = back_up(source.clone(), root.path(), &set, "app").await;

    // About 7 MiB in 1 MiB packs: the link goes down after the third pack. The packs are
    // filled in files of their own; none is left once the copy has returned.
    dest_storage.packs_allowed.store(3, Ordering::SeqCst);
    let spool = tempfile::tempdir().unwrap();
    let mut copier = Copier::new(source.clone(), dest.clone())
        .await
        .unwrap()
        .spool_in(spool.path());
    let err = copier.copy(id).await.unwrap_err().to_string();
    assert!(err.contains("the link went down"), "{err}");
    assert_eq!(files_in(spool.path()), Vec::<String>::new());
    assert!(
        dest.list_snapshots().await.unwrap().snapshots.is_empty(),
        "no snapshot is visible on the secondary"
    );
    assert_eq!(dest_storage.inner.list("data/").await.unwrap().len(), 3);
    assert!(dest_storage.inner.list("index/").await.unwrap().is_empty());

    dest_storage.packs_allowed.store(-1, Ordering::SeqCst);
    let mut copier = Copier::new(source.clone(), dest.clone())
        .await
        .unwrap()
        .spool_in(spool.path());
    let report = copier.copy(id).await.unwrap();
    assert_eq!(files_in(spool.path()), Vec::<String>::new());
    assert_restores(dest.clone(), report.snapshot, &set).await;
    assert_checks_clean(dest.clone()).await;
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_copy_indexes_its_packs_as_it_goes_and_a_stopped_copy_reuses_them() {
    let source = repository(Arc::new(MemoryStorage::default()), Some(&key(6))).await;
    let dest_storage = Secondary::new();
    let dest = repository(dest_storage.clone(), Some(&key(7))).await;
    let root = tempfile::tempdir().unwrap();
    let set = files(3);
    write_files(root.path(), &set);
    let id = back_up(source.clone(), root.path(), &set, "app").await;

    // An index object after every pack (a chunk of the 3 MiB file can fill a 1 MiB pack
    // alone); the link goes down after the third pack.
    dest_storage.packs_allowed.store(3, Ordering::SeqCst);
    let mut copier = Copier::new(source.clone(), dest.clone())
        .await
        .unwrap()
        .index_every(1);
    let err = copier.copy(id).await.unwrap_err().to_string();
    assert!(err.contains("the link went down"), "{err}");
    assert!(dest.list_snapshots().await.unwrap().snapshots.is_empty());
    let indexed = dest_storage.inner.list("index/").await.unwrap();
    assert_eq!(
        indexed.len(),
        3,
        "each confirmed pack is indexed: {indexed:?}"
    );

    dest_storage.packs_allowed.store(-1, Ordering::SeqCst);
    let mut copier = Copier::new(source.clone(), dest.clone())
        .await
        .unwrap()
        .index_every(1);
    let report = copier.copy(id).await.unwrap();
    assert!(
        report.chunks_present > 0,
        "the indexed packs' chunks are not copied again: {report:?}"
    );
    let packs = dest_storage.inner.list("data/").await.unwrap().len();
    let indexes = dest_storage.inner.list("index/").await.unwrap().len();
    assert_eq!(indexes, packs, "one index object a pack at this setting");
    assert_restores(dest.clone(), report.snapshot, &set).await;
    assert_checks_clean(dest.clone()).await;
}

#[tokio::test]
async fn an_object_that_does_not_read_back_as_written_stops_the_copy_before_its_snapshot() {
    let source = repository(Arc::new(MemoryStorage::default()), None).await;
    let dest_storage = Secondary::new();
    let dest = repository(dest_storage.clone(), Some(&key(6))).await;
    let root = tempfile::tempdir().unwrap();
    let set = files(3);
    write_files(root.path(), &set);
    let id = back_up(source.clone(), root.path(), &set, "app").await;

    dest_storage.corrupt_packs.store(true, Ordering::SeqCst);
    let spool = tempfile::tempdir().unwrap();
    let mut copier = Copier::new(source.clone(), dest.clone())
        .await
        .unwrap()
        .spool_in(spool.path());
    let err = copier.copy(id).await.unwrap_err().to_string();
    assert!(
        err.contains("data/") && err.contains("read back after writing"),
        "names the object and why: {err}"
    );
    assert_eq!(files_in(spool.path()), Vec::<String>::new());
    assert!(dest.list_snapshots().await.unwrap().snapshots.is_empty());
}

/// Copies one snapshot with a copier of its own.
async fn copy_once(
    source: &Arc<Repository>,
    dest: &Arc<Repository>,
    id: backstop_repo::Id,
) -> backstop_repo::CopyReport {
    let mut copier = Copier::new(source.clone(), dest.clone()).await.unwrap();
    copier.copy(id).await.unwrap()
}

/// 10,000 small files (more than two of the copier's windows of entries), every hundredth
/// the same content as the first, so that chunks repeat across windows.
fn many_files(seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..10_000u64)
        .map(|i| {
            let content = if i % 100 == 0 {
                backstop_testkit::noise(300, seed)
            } else {
                backstop_testkit::noise(100 + (i as usize % 200), seed + i)
            };
            (format!("app/d{:03}/f{i:05}.txt", i % 250), content)
        })
        .collect()
}

#[tokio::test]
async fn a_tree_larger_than_a_window_copies_whole_and_its_text_is_chunked_as_the_original() {
    // Repositories that name chunks alike (both unencrypted, same chunker): the copy's tree
    // is the original's byte for byte, so its chunks and digest must be the same, although
    // the copier writes the tree a window of entries at a time.
    let source = repository(Arc::new(MemoryStorage::default()), None).await;
    let dest = repository(Secondary::new(), None).await;
    let root = tempfile::tempdir().unwrap();
    let set = many_files(1);
    write_files(root.path(), &set);
    let id = back_up(source.clone(), root.path(), &set, "app").await;
    let original = source.load_snapshot(&id).await.unwrap();
    assert!(
        original.tree.chunks.len() > 1,
        "the tree spans several chunks"
    );
    let report = copy_once(&source, &dest, id).await;
    let copy = dest.load_snapshot(&report.snapshot).await.unwrap();
    assert_eq!(copy.tree, original.tree);
    assert_restores(dest.clone(), report.snapshot, &set).await;
}

#[tokio::test]
async fn a_tree_larger_than_a_window_copies_between_keys_and_the_next_copy_reads_only_what_changed()
{
    let source = repository(Arc::new(MemoryStorage::default()), Some(&key(6))).await;
    let dest = repository(Secondary::new(), Some(&key(7))).await;
    let root = tempfile::tempdir().unwrap();
    let mut set = many_files(2);
    write_files(root.path(), &set);
    let first = back_up(source.clone(), root.path(), &set, "app").await;
    let report = copy_once(&source, &dest, first).await;
    assert_restores(dest.clone(), report.snapshot, &set).await;
    let first_read = report.bytes_read;

    // Two files change, one in the first window and one in the last: the next copy finds
    // every other file's chunks through the previous copy's tree, read beside its original.
    for i in [10, 9_990] {
        set[i].1 = backstop_testkit::noise(250, 5_000 + i as u64);
    }
    write_files(root.path(), &set);
    let second = back_up(source.clone(), root.path(), &set, "app").await;
    let report = copy_once(&source, &dest, second).await;
    let copy = dest.load_snapshot(&report.snapshot).await.unwrap();
    let original = source.load_snapshot(&second).await.unwrap();
    assert_eq!(copy.tree.entries, original.tree.entries);
    assert!(
        report.bytes_read < 1_000 && first_read > 1_000_000,
        "the second copy read {} bytes, the first {first_read}: {report:?}",
        report.bytes_read
    );
    assert_restores(dest.clone(), report.snapshot, &set).await;
    assert_checks_clean(dest).await;
}

/// One range of the source fails to read, and reads of the ranges in `stalled` never
/// finish: each such read counts itself when it starts and again when it is dropped.
#[derive(Debug, Default)]
struct StallsReads {
    failing: std::sync::Mutex<(String, u64)>,
    stalled: std::sync::Mutex<Vec<(String, u64)>>,
    reads_started: AtomicI64,
    reads_dropped: Arc<AtomicI64>,
}

struct CountsDrop(Arc<AtomicI64>);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Hooks for StallsReads {
    async fn get_range(&self, key: &str, offset: u64) -> Result<(), StorageError> {
        let range = (key.to_string(), offset);
        if *self.failing.lock().unwrap() == range {
            return Err(StorageError::Permanent {
                op: "get",
                key: key.into(),
                message: "the disk failed".into(),
            });
        }
        if self.stalled.lock().unwrap().contains(&range) {
            self.reads_started.fetch_add(1, Ordering::SeqCst);
            let _counts = CountsDrop(self.reads_dropped.clone());
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_copy_stopped_by_a_failed_read_abandons_the_reads_under_way() {
    let storage = Arc::new(Hooked::<StallsReads>::default());
    let source = repository(storage.clone(), Some(&key(8))).await;
    let dest = repository(Secondary::new(), Some(&key(9))).await;
    let root = tempfile::tempdir().unwrap();
    let set = files(3);
    write_files(root.path(), &set);
    let id = back_up(source.clone(), root.path(), &set, "app").await;

    // The copy reads the files' chunks in runs, in pack order, a few runs at once, each run
    // from the offset of its first chunk. The first run fails; a read from any other file
    // chunk's offset stalls (the tree's own chunks read as usual).
    let snapshot = source.load_snapshot(&id).await.unwrap();
    let (index, _) = source.load_index().await.unwrap();
    let indexed = source.with_index(index);
    let mut starts: Vec<(backstop_repo::Id, u64)> = indexed
        .read_tree(&snapshot)
        .await
        .unwrap()
        .iter()
        .flat_map(|entry| entry.chunks.iter())
        .map(|chunk| {
            let at = indexed.locate(chunk).unwrap();
            (at.pack, at.offset)
        })
        .collect();
    starts.sort();
    starts.dedup();
    let mut ranges: Vec<(String, u64)> = starts
        .iter()
        .map(|(pack, offset)| (backstop_repo::format::layout::pack_key(pack), *offset))
        .collect();
    assert!(ranges.len() > 2, "{ranges:?}");
    *storage.failing.lock().unwrap() = ranges.remove(0);
    *storage.stalled.lock().unwrap() = ranges;

    let mut copier = Copier::new(source.clone(), dest.clone()).await.unwrap();
    let err = copier.copy(id).await.unwrap_err().to_string();
    assert!(err.contains("the disk failed"), "{err}");
    let started = storage.reads_started.load(Ordering::SeqCst);
    assert!(
        started > 0,
        "a later run's read had started when the first failed"
    );
    // Left running, a stalled read would never end: aborted, it is dropped.
    for _ in 0..100 {
        if storage.reads_dropped.load(Ordering::SeqCst) == started {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        storage.reads_dropped.load(Ordering::SeqCst),
        started,
        "every read under way when the copy stopped was abandoned"
    );
}
