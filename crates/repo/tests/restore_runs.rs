//! Restoring many small files reads their packs a run at a time: the tree comes back byte
//! for byte (duplicates, empty files and a multi-chunk file with copies included), with far
//! fewer storage reads than files, on an unencrypted and an encrypted repository; copies of
//! a multi-chunk file are written from one read of it, up to 8 at once; a corrupt chunk
//! fails exactly the files made of it, naming its pack.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backstop_repo::storage::{Storage, StorageError};
mod common;

use backstop_repo::{InitOptions, Repository, SnapshotReader};
use common::{back_up, failed_restore, write_files, Hooked, Hooks};

/// Counts ranged reads of packs.
#[derive(Debug, Default)]
struct CountsReads {
    pack_reads: AtomicUsize,
    /// Every ranged read of a pack: key and offset.
    ranges: Mutex<Vec<(String, u64)>>,
}

#[async_trait]
impl Hooks for CountsReads {
    async fn get_range(&self, key: &str, offset: u64) -> Result<(), StorageError> {
        if key.starts_with("data/") {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
            self.ranges.lock().unwrap().push((key.to_string(), offset));
        }
        Ok(())
    }
}

type Counting = Hooked<CountsReads>;

/// 300 small files (a third of them duplicates of another), two empty files and one file of
/// several chunks with `BIG_COPIES` copies, under `src/`.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..300u64 {
        let content = if i % 3 == 2 {
            files[(i - 1) as usize].1.clone()
        } else {
            backstop_testkit::noise(1000 + (i as usize * 97) % 60_000, i)
        };
        files.push((format!("src/d{}/f{i}.bin", i % 7), content));
    }
    files.push(("src/empty-a".into(), Vec::new()));
    files.push(("src/empty-b".into(), Vec::new()));
    files.push(("src/big.bin".into(), backstop_testkit::noise(3 << 20, 99)));
    for i in 0..BIG_COPIES {
        let big = files.last().unwrap().1.clone();
        files.push((format!("src/big-copy-{i}.bin"), big));
    }
    write_files(root, &files);
    files
}

/// Copies of the multi-chunk file: with the original, two groups of at most 8 files.
const BIG_COPIES: usize = 10;

async fn round_trip(secret: Option<Vec<u8>>) {
    let storage = Arc::new(Counting::default());
    let options = InitOptions {
        secret: secret.clone(),
        // Small packs, so that the files spread over several of them.
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(storage.clone(), options).await.unwrap();
    let open = || async {
        Arc::new(
            Repository::open(storage.clone(), secret.as_deref())
                .await
                .unwrap(),
        )
    };
    let source = tempfile::tempdir().unwrap();
    let files = make_tree(source.path());
    let id = back_up(open().await, source.path(), &files, "p").await;

    let reader = SnapshotReader::open(open().await, id).await.unwrap();
    let reads_before = storage.pack_reads.load(Ordering::SeqCst);
    let target = tempfile::tempdir().unwrap();
    let report = reader.restore_to(target.path()).await.unwrap();
    let reads = storage.pack_reads.load(Ordering::SeqCst) - reads_before;
    assert_eq!(report.files, files.len() as u64);
    for (path, content) in &files {
        let restored = std::fs::read(target.path().join(path)).unwrap();
        assert!(restored == *content, "{path} differs");
    }
    // 300 small files in about 6 MiB of 1 MiB packs: a few runs per pack, plus one read per
    // chunk of the large file for each group of its copies; nowhere near a read per file.
    let big = reader.file("src/big.bin").await.unwrap().unwrap();
    let big_chunks = big.chunks.len();
    assert!(big_chunks > 1, "the large file has several chunks");
    assert!(
        reads <= 20 + 2 * big_chunks,
        "{reads} pack reads for {} files",
        files.len()
    );
    let first = open().await.locate(&big.chunks[0]).unwrap();
    let first_key = backstop_repo::format::layout::pack_key(&first.pack);
    let reads_of_first_chunk = storage
        .ranges
        .lock()
        .unwrap()
        .iter()
        .filter(|(key, offset)| *key == first_key && *offset == first.offset)
        .count();
    assert_eq!(
        reads_of_first_chunk, 2,
        "11 files of the same content: two groups (8 and 3), one read each"
    );

    // One chunk corrupted in storage: the files made of it fail, naming the pack; the others
    // are restored.
    let victim = reader.file("src/d1/f1.bin").await.unwrap().unwrap().chunks[0];
    let loc = open().await.locate(&victim).unwrap();
    let key = backstop_repo::format::layout::pack_key(&loc.pack);
    let mut pack = storage.inner.get(&key).await.unwrap().to_vec();
    pack[(loc.offset + loc.length / 2) as usize] ^= 0xff;
    storage.inner.put(&key, pack.into()).await.unwrap();
    let (err, target) = failed_restore(open().await, id).await;
    assert!(err.contains("2 file(s)"), "f1 and its duplicate f2: {err}");
    assert!(
        err.contains("src/d1/f1.bin") && err.contains("src/d2/f2.bin"),
        "{err}"
    );
    assert!(err.contains(&loc.pack.to_hex()), "names the pack: {err}");
    assert!(
        !target.path().join("src/d1/f1.bin").exists(),
        "no partial file"
    );
    assert!(target.path().join("src/d0/f0.bin").exists());
}

#[tokio::test]
async fn small_files_restore_by_pack_runs_unencrypted() {
    round_trip(None).await;
}

#[tokio::test]
async fn small_files_restore_by_pack_runs_encrypted() {
    round_trip(Some(b"correct horse battery staple".to_vec())).await;
}

/// Issue 17, item 1: loaders that share a dump read only ranges of it. A range comes back
/// byte for byte from the chunks that hold it, and only those are read: a corrupt chunk
/// outside the range goes unread, one inside fails the read, naming the chunk's id or
/// pack; a range past the file's end is refused.
#[tokio::test]
async fn a_range_of_a_file_reads_only_the_chunks_that_hold_it() {
    let storage = Arc::new(Counting::default());
    let options = InitOptions {
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(storage.clone(), options).await.unwrap();
    let repo = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
    let source = tempfile::tempdir().unwrap();
    let content = backstop_testkit::noise(8 << 20, 7);
    let files = vec![("big.bin".to_string(), content.clone())];
    write_files(source.path(), &files);
    let id = back_up(repo, source.path(), &files, "p").await;
    // Opened again, with the index the backup wrote.
    let repo = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
    let reader = SnapshotReader::open(repo.clone(), id).await.unwrap();
    let entry = reader.file("big.bin").await.unwrap().unwrap().clone();
    assert!(entry.chunks.len() >= 3, "several chunks");
    let file = reader.file_chunks(&entry).unwrap();

    let read = |range: std::ops::Range<u64>| {
        let (reader, file) = (&reader, &file);
        async move {
            let mut out = Vec::new();
            let n = reader.stream_range(file, range, &mut out).await?;
            assert_eq!(n, out.len() as u64);
            Ok::<_, backstop_repo::RepoError>(out)
        }
    };
    let size = content.len() as u64;
    let first_len = repo.locate(&entry.chunks[0]).unwrap().raw_length;
    for range in [
        0..0,
        0..1,
        1000..1001,
        first_len - 5..first_len + 5,
        0..first_len,
        first_len..size,
        size - 10..size,
        0..size,
    ] {
        let got = read(range.clone()).await.unwrap();
        assert!(
            got == content[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    let before = storage.pack_reads.load(Ordering::SeqCst);
    read(10..20).await.unwrap();
    assert_eq!(
        storage.pack_reads.load(Ordering::SeqCst) - before,
        1,
        "one chunk read"
    );
    let err = read(size - 1..size + 1).await.unwrap_err().to_string();
    assert!(
        err.contains("big.bin") && err.contains(&size.to_string()),
        "{err}"
    );

    // The last chunk corrupted in storage.
    let last = *entry.chunks.last().unwrap();
    let loc = repo.locate(&last).unwrap();
    let key = backstop_repo::format::layout::pack_key(&loc.pack);
    let mut pack = storage.inner.get(&key).await.unwrap().to_vec();
    pack[(loc.offset + loc.length / 2) as usize] ^= 0xff;
    storage.inner.put(&key, pack.into()).await.unwrap();
    assert!(
        read(0..first_len).await.is_ok(),
        "the last chunk is not read"
    );
    let err = read(size - 10..size).await.unwrap_err().to_string();
    assert!(
        err.contains(&last.short())
            || err.contains(&loc.pack.to_hex())
            || err.contains(&last.to_hex()),
        "names the corrupt chunk or its pack: {err}"
    );
}
