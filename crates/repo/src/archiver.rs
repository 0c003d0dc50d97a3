//! The write path: entries in, one committed snapshot out.
//!
//! ```text
//! walk (the caller, in path order) → add_entry / add_unchanged / add_file / add_stream
//!     │ entries, in order once final ──▶ tree thread: JSON Lines → chunk → id → dedup ─┐
//!     ▼                                                                               │
//! file tasks (one a core, blocking threads; small files in batches): read → chunk (FastCDC) → id → dedup
//!     │ new chunks (bounded channel: memory stays bounded)                            │
//!     ▼ ◀─────────────────────────────────────────────────────────────────────────────┘
//! encoders (one thread per core): zstd → encrypt → append to the open pack
//!     │ full packs (bounded channel)
//!     ▼
//! uploader (async, ≤ M puts at once) → Storage::put(data/…); an index object every 50,000 chunks
//! ```
//! The tree is written while the files are read, never held whole (nor is the parent's, which
//! the caller reads as a stream beside its walk): memory does not grow with the number of
//! files, only with the chunks the repository holds (the set a backup deduplicates against).
//! [`SnapshotWriter::commit`] waits for every file and the tree, flushes the last pack, waits
//! for every upload, writes the index object for the packs no index lists yet, and only then
//! the snapshot object. That last `put` is the only commit point: an error, a cancel or a
//! crash before it leaves no snapshot, only packs that no index lists, which `check` reports
//! as unreferenced, and (in a backup of more than 50,000 new chunks) index objects listing
//! packs that no snapshot uses, whose chunks the next backup reuses; `prune` removes both.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::error::{RepoError, Result};
use crate::format::chunker::ChunkerParams;
use crate::format::crypto::Codec;
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::layout;
use crate::format::pack::{PackBuilder, SealedPack};
use crate::format::snapshot::{
    BackupSummary, Root, Snapshot, SourceFacts, TreeRef, SNAPSHOT_VERSION,
};
use crate::format::tree::{Entry, EntryKind};
use crate::lock::{LockGuard, LockKind};
use crate::repository::Repository;

const PIPELINE_STOPPED: &str = "the pack writer stopped";

/// Live counters, for progress bars.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_added: AtomicU64,
}

/// What the caller knows about the snapshot being written.
#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    pub policy: String,
    pub source_kind: String,
    pub time: jiff::Timestamp,
    pub data_point: jiff::Timestamp,
    pub roots: Vec<Root>,
    pub parent: Option<Id>,
}

/// The result of reading one file.
#[derive(Debug)]
struct FileOutcome {
    /// The file's place among the entries (see [`TreeOut`]).
    place: u64,
    entry: Option<Entry>,
    warning: Option<String>,
}

struct Chunk {
    id: Id,
    data: Vec<u8>,
}

/// State shared by file tasks and encoder threads.
struct Shared {
    codec: Codec,
    chunker: ChunkerParams,
    pack_size: usize,
    /// The repository with its index as read under this writer's lock: what a chunk is
    /// deduplicated against, and what the parent's tree is read through.
    repo: Arc<Repository>,
    /// Chunks this writer queued (the index holds the others).
    queued: Mutex<HashSet<Id>>,
    packer: Mutex<PackBuilder>,
    progress: Arc<Progress>,
}

impl Shared {
    /// Splits a stream into chunks, queues the new ones, and returns the chunk ids and the
    /// SHA-256 of the whole content.
    fn ingest(
        &self,
        mut reader: impl Read,
        to_encoders: &std::sync::mpsc::SyncSender<Chunk>,
    ) -> std::io::Result<Ingested> {
        // FastCDC never cuts below its minimum size, so input shorter than that is exactly
        // one chunk (none when empty). Taking it directly spares small files the stream
        // chunker's zeroed buffer of the maximum chunk size.
        let min = self.chunker.min_size as u64;
        let mut head = Vec::new();
        (&mut reader).take(min).read_to_end(&mut head)?;
        if (head.len() as u64) < min {
            let size = head.len() as u64;
            if head.is_empty() {
                return Ok((Vec::new(), Id::sha256(&[]), 0));
            }
            // A lone chunk's SHA-256 is the file's digest; the codec computes it on the way
            // to the id where the format allows.
            let (id, digest) = self.codec.chunk_id_and_sha256(&head);
            self.queue(id, head, to_encoders)?;
            return Ok((vec![id], digest, size));
        }
        let mut ids = Vec::new();
        let mut digest = Sha256::new();
        let mut size = 0u64;
        for chunk in self
            .chunker
            .chunks(std::io::Cursor::new(head).chain(reader))
        {
            let data = chunk?;
            size += data.len() as u64;
            digest.update(&data);
            let id = self.codec.chunk_id(&data);
            ids.push(id);
            self.queue(id, data, to_encoders)?;
        }
        Ok((ids, Id(digest.finalize().into()), size))
    }

    /// Counts a chunk as read and hands it to the encoders unless it is already known.
    fn queue(
        &self,
        id: Id,
        data: Vec<u8>,
        to_encoders: &std::sync::mpsc::SyncSender<Chunk>,
    ) -> std::io::Result<()> {
        self.progress
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let new = !self.repo.index().contains(&id)
            && self.queued.lock().expect("dedup set lock").insert(id);
        if new && to_encoders.send(Chunk { id, data }).is_err() {
            return Err(std::io::Error::other(PIPELINE_STOPPED));
        }
        Ok(())
    }
}

/// What [`Shared::ingest`] makes of a stream: its chunk ids, its SHA-256 and its length.
type Ingested = (Vec<Id>, Id, u64);

/// Tree text is handed to its thread in blocks of about this size.
const TREE_BLOCK: usize = 64 << 10;
/// Entries that may wait for an earlier file to be read before the writer waits for it:
/// what bounds the memory of a tree of any size.
const MAX_WAITING: usize = 16_384;

/// The new tree as it is written. Entries are added in path order; each leaves, serialised,
/// as soon as every entry before it is final (a file is final once read), for the tree
/// thread, which chunks the text like a file's. No tree is ever held whole.
struct TreeOut {
    /// Entries whose turn has not come, by their place in the walk (`None`: a file left out).
    waiting: BTreeMap<u64, Option<Entry>>,
    next_in: u64,
    next_out: u64,
    last_path: Option<String>,
    text: BlockWriter,
    thread: Option<std::thread::JoinHandle<std::io::Result<Ingested>>>,
    entries: u64,
    files: u64,
    dirs: u64,
    bytes: u64,
}

impl TreeOut {
    fn start(shared: Arc<Shared>, to_encoders: std::sync::mpsc::SyncSender<Chunk>) -> Self {
        let (to_thread, blocks) = mpsc::channel::<Vec<u8>>(4);
        let thread = std::thread::Builder::new()
            .name("backstop-tree".into())
            .spawn(move || shared.ingest(BlockReader::new(blocks), &to_encoders))
            .expect("spawn tree thread");
        Self {
            waiting: BTreeMap::new(),
            next_in: 0,
            next_out: 0,
            last_path: None,
            text: BlockWriter::new(to_thread, PIPELINE_STOPPED),
            thread: Some(thread),
            entries: 0,
            files: 0,
            dirs: 0,
            bytes: 0,
        }
    }

    /// Takes the next entry's place, refusing a path that is not after the last one.
    fn admit(&mut self, path: &str) -> Result<u64> {
        if let Some(last) = &self.last_path {
            match last.as_str().cmp(path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(RepoError::Invalid(format!(
                        "two entries for the path `{path}`"
                    )))
                }
                std::cmp::Ordering::Greater => {
                    return Err(RepoError::Invalid(format!(
                        "entries must be added in path order: `{path}` came after `{last}`"
                    )))
                }
            }
        }
        self.last_path = Some(path.to_string());
        self.next_in += 1;
        Ok(self.next_in - 1)
    }

    fn settle(&mut self, place: u64, entry: Option<Entry>) {
        self.waiting.insert(place, entry);
    }

    /// Serialises every entry whose turn has come, full blocks handed to the thread.
    async fn drain(&mut self) -> Result<()> {
        while let Some(entry) = self.waiting.remove(&self.next_out) {
            self.next_out += 1;
            let Some(entry) = entry else { continue };
            self.entries += 1;
            match entry.kind {
                EntryKind::File => self.files += 1,
                EntryKind::Dir => self.dirs += 1,
                EntryKind::Symlink => {}
            }
            self.bytes += entry.size;
            self.text.write(&entry).await?;
        }
        Ok(())
    }

    /// The tree's chunks and digest, once every entry has left.
    async fn finish(&mut self) -> Result<(Vec<Id>, Id)> {
        debug_assert!(self.waiting.is_empty(), "every entry is final at commit");
        self.text.close().await?;
        let thread = self.thread.take().expect("the tree is finished once");
        let (chunks, digest, _) = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| RepoError::Invalid(format!("tree writer failed: {e}")))?
            .map_err(|_| RepoError::Invalid("tree writer panicked".into()))?
            .map_err(|e| RepoError::Invalid(format!("writing the tree: {e}")))?;
        Ok((chunks, digest))
    }
}

/// A tree thread's input: blocks of text as the writer sends them (the copier's too).
pub(crate) struct BlockReader {
    blocks: mpsc::Receiver<Vec<u8>>,
    block: Vec<u8>,
    at: usize,
}

impl BlockReader {
    pub(crate) fn new(blocks: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            blocks,
            block: Vec::new(),
            at: 0,
        }
    }
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            match self.blocks.blocking_recv() {
                Some(block) => {
                    self.block = block;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A tree's text as a tree thread is given it: entries serialised as JSON Lines into blocks
/// of about `TREE_BLOCK` bytes, each sent when full (the copier's too).
pub(crate) struct BlockWriter {
    text: Vec<u8>,
    to_thread: Option<mpsc::Sender<Vec<u8>>>,
    /// The error when the thread has stopped taking blocks.
    stopped: &'static str,
}

impl BlockWriter {
    pub(crate) fn new(to_thread: mpsc::Sender<Vec<u8>>, stopped: &'static str) -> Self {
        Self {
            text: Vec::new(),
            to_thread: Some(to_thread),
            stopped,
        }
    }

    /// Adds the next entry (the caller keeps them in path order).
    pub(crate) async fn write(&mut self, entry: &Entry) -> Result<()> {
        serde_json::to_writer(&mut self.text, entry).expect("entries serialise");
        self.text.push(b'\n');
        if self.text.len() >= TREE_BLOCK {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<()> {
        let block = std::mem::take(&mut self.text);
        if block.is_empty() {
            return Ok(());
        }
        let to_thread = self.to_thread.as_ref().expect("the tree is open");
        to_thread
            .send(block)
            .await
            .map_err(|_| RepoError::Invalid(self.stopped.into()))
    }

    /// Sends the last block and ends the text: the thread reads to its end.
    pub(crate) async fn close(&mut self) -> Result<()> {
        self.send().await?;
        self.to_thread.take();
        Ok(())
    }
}

/// Given the metadata of a file just read, a warning if it changed while it was read.
type ChangedCheck = Box<dyn FnOnce(&std::fs::Metadata) -> Option<String> + Send>;

/// A file waiting to be read.
struct PendingFile {
    place: u64,
    entry: Entry,
    source: std::path::PathBuf,
    changed: ChangedCheck,
}

/// Files smaller than this are read in batches of up to `BATCH_FILES` files or
/// `BATCH_BYTES` bytes, one blocking task a batch: handing each small file to a thread of its
/// own cost more than reading it, and left the encoders waiting.
const BATCH_FILE_MAX: u64 = 256 << 10;
const BATCH_FILES: usize = 32;
const BATCH_BYTES: u64 = 2 << 20;

pub struct SnapshotWriter {
    repo: Arc<Repository>,
    shared: Arc<Shared>,
    to_encoders: Option<std::sync::mpsc::SyncSender<Chunk>>,
    encoders: Vec<std::thread::JoinHandle<()>>,
    to_uploader: Option<mpsc::Sender<SealedPack>>,
    uploader: tokio::task::JoinHandle<Result<Vec<IndexPack>>>,
    file_slots: Arc<Semaphore>,
    file_tasks: JoinSet<Result<Vec<FileOutcome>>>,
    batch: Vec<PendingFile>,
    batch_bytes: u64,
    tree: TreeOut,
    warnings: Vec<String>,
    counts: Counts,
    started: Instant,
    lock: Option<LockGuard>,
}

#[derive(Debug, Default)]
struct Counts {
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
}

/// Whether a file read now was in the parent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    New,
    Changed,
}

impl SnapshotWriter {
    /// Starts a snapshot: takes a shared lock (so prune waits), waiting for a prune that
    /// holds the exclusive one for up to [`crate::lock::WAIT_AT_MOST`], and starts the
    /// pipeline.
    pub async fn start(repo: Arc<Repository>) -> Result<Self> {
        let lock = LockGuard::acquire_waiting(
            repo.clone(),
            LockKind::Shared,
            "backup",
            crate::lock::WAIT_AT_MOST,
        )
        .await?;
        // Deduplicate only against what exists now, under the lock: a prune that finished
        // before the lock was taken may have removed packs an index read before still listed.
        // (So the caller opens the repository without its index: one copy is held, this one.)
        let (index, problems) = repo.load_index().await?;
        if let Some((key, problem)) = problems.into_iter().next() {
            return Err(RepoError::corrupt(key, problem));
        }
        let repo = Arc::new(repo.with_index(index));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let progress = Arc::new(Progress::default());
        let shared = Arc::new(Shared {
            codec: repo.codec().clone(),
            chunker: repo.config().chunker,
            pack_size: repo.config().pack_size as usize,
            repo: repo.clone(),
            queued: Mutex::new(HashSet::new()),
            packer: Mutex::new(PackBuilder::for_repository(repo.config())),
            progress,
        });
        let (to_encoders, from_files) = std::sync::mpsc::sync_channel::<Chunk>(threads * 2);
        let from_files = Arc::new(Mutex::new(from_files));
        let (to_uploader, from_encoders) = mpsc::channel::<SealedPack>(2);
        let encoders = (0..threads)
            .map(|i| {
                let (shared, rx, tx) = (shared.clone(), from_files.clone(), to_uploader.clone());
                std::thread::Builder::new()
                    .name(format!("backstop-encode-{i}"))
                    .spawn(move || encode_loop(&shared, &rx, &tx))
                    .expect("spawn encoder thread")
            })
            .collect();
        let tree = TreeOut::start(shared.clone(), to_encoders.clone());
        let uploader = tokio::spawn(upload_loop(
            repo.clone(),
            from_encoders,
            shared.progress.clone(),
        ));
        Ok(Self {
            repo,
            shared,
            to_encoders: Some(to_encoders),
            encoders,
            to_uploader: Some(to_uploader),
            uploader,
            // One file task a core: a third on two cores held a third file's chunks and
            // FastCDC buffer (a sixth of the initial backup's peak) and read no faster
            // (docs/benchmarks.md).
            file_slots: Arc::new(Semaphore::new(threads)),
            file_tasks: JoinSet::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            tree,
            warnings: Vec::new(),
            counts: Counts::default(),
            started: Instant::now(),
            lock: Some(lock),
        })
    }

    /// The repository as this writer sees it, its index read under the writer's lock: read
    /// the parent snapshot's tree through it (the caller may have opened the repository
    /// without an index).
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.shared.progress.clone()
    }

    /// Records an entry that has no content (a directory or a symlink).
    ///
    /// Every `add_*` call takes entries in path order (byte order of `path`, as the tree is
    /// sorted): the tree is written as it is walked, never held whole. A path that is not
    /// after the previous one is refused.
    pub async fn add_entry(&mut self, entry: Entry) -> Result<()> {
        debug_assert!(entry.kind != EntryKind::File || entry.size == 0);
        self.add_final(entry).await
    }

    /// Records a file unchanged since the parent snapshot, reusing its chunks. The caller
    /// checked that every chunk is still indexed ([`SnapshotWriter::has_chunks`]).
    pub async fn add_unchanged(&mut self, entry: Entry) -> Result<()> {
        self.counts.files_unmodified += 1;
        self.shared
            .progress
            .files_done
            .fetch_add(1, Ordering::Relaxed);
        self.add_final(entry).await
    }

    async fn add_final(&mut self, entry: Entry) -> Result<()> {
        let place = self.tree.admit(&entry.path)?;
        self.tree.settle(place, Some(entry));
        self.drain_tree().await
    }

    /// Passes on what is final; when too many entries wait behind a file still being read,
    /// waits for the files in flight, so that memory stays bounded however far the walk
    /// runs ahead of a large file.
    async fn drain_tree(&mut self) -> Result<()> {
        if let Err(e) = self.collect_finished() {
            return Err(self.root_cause(e).await);
        }
        if let Err(e) = self.tree.drain().await {
            return Err(self.root_cause(e).await);
        }
        if self.tree.waiting.len() <= MAX_WAITING {
            return Ok(());
        }
        self.flush_batch().await?;
        while self.tree.waiting.len() > MAX_WAITING / 2 {
            let Some(done) = self.file_tasks.join_next().await else {
                break;
            };
            let settled = self.take_outcome(done);
            let drained = match settled {
                Ok(()) => self.tree.drain().await,
                Err(e) => Err(e),
            };
            if let Err(e) = drained {
                return Err(self.root_cause(e).await);
            }
        }
        Ok(())
    }

    pub fn has_chunks(&self, ids: &[Id]) -> bool {
        let index = self.repo.index();
        let queued = self.shared.queued.lock().expect("dedup set lock");
        ids.iter()
            .all(|id| index.contains(id) || queued.contains(id))
    }

    pub fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    /// Reads a file's content on a blocking thread (a small file in a batch with others),
    /// waiting only while too many are in flight, up to `entry.size` (the size the walk saw:
    /// a file that keeps growing is not chased). After reading, `changed` is given the open
    /// file's metadata and returns a warning if the file changed while it was read. A file
    /// that cannot be opened or read is left out of the snapshot with a warning naming it
    /// (never silently).
    pub async fn add_file<F>(
        &mut self,
        entry: Entry,
        status: FileStatus,
        source: std::path::PathBuf,
        changed: F,
    ) -> Result<()>
    where
        F: FnOnce(&std::fs::Metadata) -> Option<String> + Send + 'static,
    {
        let place = self.tree.admit(&entry.path)?;
        match status {
            FileStatus::New => self.counts.files_new += 1,
            FileStatus::Changed => self.counts.files_changed += 1,
        }
        let size = entry.size;
        let file = PendingFile {
            place,
            entry,
            source,
            changed: Box::new(changed),
        };
        if size >= BATCH_FILE_MAX {
            self.read_files(vec![file]).await?;
        } else {
            self.batch.push(file);
            self.batch_bytes += size;
            if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                self.flush_batch().await?;
            }
        }
        self.drain_tree().await
    }

    async fn flush_batch(&mut self) -> Result<()> {
        self.batch_bytes = 0;
        match std::mem::take(&mut self.batch) {
            batch if batch.is_empty() => Ok(()),
            batch => self.read_files(batch).await,
        }
    }

    /// Reads `files` one after another on one blocking thread.
    async fn read_files(&mut self, files: Vec<PendingFile>) -> Result<()> {
        if let Err(e) = self.collect_finished() {
            return Err(self.root_cause(e).await);
        }
        let permit = self
            .file_slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let shared = self.shared.clone();
        let tx = self
            .to_encoders
            .clone()
            .expect("files are added before commit");
        self.file_tasks.spawn_blocking(move || {
            let _permit = permit;
            files
                .into_iter()
                .map(|file| read_file(&shared, &tx, file))
                .collect()
        });
        Ok(())
    }

    /// Reads a stream to its end as one file entry (for dumps). The caller's reader runs on a
    /// blocking thread; an error from it fails the snapshot (a truncated dump is never
    /// committed).
    pub async fn add_stream(
        &mut self,
        entry: Entry,
        reader: impl Read + Send + 'static,
    ) -> Result<Entry> {
        let shared = self.shared.clone();
        let tx = self
            .to_encoders
            .clone()
            .expect("streams are added before commit");
        let place = self.tree.admit(&entry.path)?;
        let path = entry.path.clone();
        let (chunks, digest, size) =
            tokio::task::spawn_blocking(move || shared.ingest(reader, &tx))
                .await
                .map_err(|e| RepoError::Invalid(format!("stream reader failed: {e}")))?
                .map_err(|e| RepoError::io(&path, e))?;
        self.counts.files_new += 1;
        let entry = Entry {
            size,
            chunks,
            digest: Some(digest),
            ..entry
        };
        self.tree.settle(place, Some(entry.clone()));
        self.drain_tree().await?;
        Ok(entry)
    }

    fn collect_finished(&mut self) -> Result<()> {
        while let Some(done) = self.file_tasks.try_join_next() {
            self.take_outcome(done)?;
        }
        Ok(())
    }

    /// When a stage fails, the others only see the pipeline stop; the uploader holds the
    /// real cause (a storage error naming the object), so report that one.
    async fn root_cause(&mut self, err: RepoError) -> RepoError {
        if !err.to_string().contains(PIPELINE_STOPPED) {
            return err;
        }
        self.to_encoders.take();
        self.to_uploader.take();
        match (&mut self.uploader).await {
            Ok(Err(cause)) => cause,
            _ => err,
        }
    }

    fn take_outcome(
        &mut self,
        done: std::result::Result<Result<Vec<FileOutcome>>, tokio::task::JoinError>,
    ) -> Result<()> {
        let outcomes =
            done.map_err(|e| RepoError::Invalid(format!("file reader failed: {e}")))??;
        for outcome in outcomes {
            if let Some(w) = outcome.warning {
                self.warnings.push(w);
            }
            self.tree.settle(outcome.place, outcome.entry);
        }
        Ok(())
    }

    /// Makes the snapshot visible. See the module docs for the order of writes.
    pub async fn commit(
        mut self,
        meta: SnapshotMeta,
        facts: SourceFacts,
    ) -> Result<(Id, Snapshot)> {
        self.flush_batch().await?;
        while let Some(done) = self.file_tasks.join_next().await {
            if let Err(e) = self.take_outcome(done) {
                return Err(self.root_cause(e).await);
            }
        }
        let tree = match self.tree.drain().await {
            Ok(()) => self.tree.finish().await,
            Err(e) => Err(e),
        };
        let (tree_chunks, tree_digest) = match tree {
            Ok(tree) => tree,
            Err(e) => return Err(self.root_cause(e).await),
        };
        self.to_encoders.take();

        // Close the pipeline stage by stage, so each flushes into the next.
        let encoders = std::mem::take(&mut self.encoders);
        tokio::task::spawn_blocking(move || encoders.into_iter().for_each(|h| drop(h.join())))
            .await
            .map_err(|e| RepoError::Invalid(format!("encoder failed: {e}")))?;
        let last = self.shared.packer.lock().expect("packer lock").take();
        let to_uploader = self.to_uploader.take().expect("commit runs once");
        if !last.is_empty() {
            let sealed = last.seal(&self.shared.codec);
            to_uploader
                .send(sealed)
                .await
                .map_err(|_| RepoError::Invalid("the uploader stopped".into()))?;
        }
        drop(to_uploader);
        let new_packs = (&mut self.uploader)
            .await
            .map_err(|e| RepoError::Invalid(format!("uploader failed: {e}")))??;

        // Every pack, and the index objects written while they were uploaded.
        let mut bytes_added = self.shared.progress.bytes_added.load(Ordering::Relaxed);
        if !new_packs.is_empty() {
            let (_, size) = self
                .repo
                .write_index(&IndexFile {
                    version: 1,
                    packs: new_packs,
                })
                .await?;
            bytes_added += size;
        }

        let facts = SourceFacts {
            file_count: self.tree.files,
            dir_count: self.tree.dirs,
            bytes: self.tree.bytes,
            ..facts
        };
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            policy: meta.policy,
            source_kind: meta.source_kind,
            time: meta.time,
            data_point: meta.data_point,
            hostname: crate::lock::hostname(),
            roots: meta.roots,
            parent: meta.parent,
            tree: TreeRef {
                chunks: tree_chunks,
                digest: tree_digest,
                entries: self.tree.entries,
            },
            facts,
            summary: BackupSummary {
                files_new: self.counts.files_new,
                files_changed: self.counts.files_changed,
                files_unmodified: self.counts.files_unmodified,
                bytes_read: self.shared.progress.bytes_read.load(Ordering::Relaxed),
                bytes_added,
                duration_ms: self.started.elapsed().as_millis() as u64,
                warnings: std::mem::take(&mut self.warnings),
            },
        };
        // The commit point.
        let id = self.repo.write_snapshot(&snapshot).await?;
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.release().await {
                tracing::warn!(message = "could not remove the repository lock", error = %e);
            }
        }
        Ok((id, snapshot))
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // An abandoned writer: stop the pipeline; nothing was committed.
        self.file_tasks.abort_all();
        self.to_encoders.take();
        self.to_uploader.take();
    }
}

/// Reads one file into the pipeline. Only the pipeline stopping is an error; a file that
/// cannot be read is a warning, and left out.
fn read_file(
    shared: &Shared,
    to_encoders: &std::sync::mpsc::SyncSender<Chunk>,
    file: PendingFile,
) -> Result<FileOutcome> {
    let PendingFile {
        place,
        entry,
        source,
        changed,
    } = file;
    // Read up to the size the walk saw: a file that keeps growing (a busy log) cannot keep
    // the backup reading for ever; what was added after the walk is in the next snapshot.
    let seen = entry.size;
    let read = std::fs::File::open(&source).and_then(|mut file| {
        let ingested = shared.ingest(&mut (&mut file).take(seen), to_encoders)?;
        Ok((ingested, file.metadata()?))
    });
    shared.progress.files_done.fetch_add(1, Ordering::Relaxed);
    match read {
        Ok(((chunks, digest, size), after)) => Ok(FileOutcome {
            place,
            warning: if after.len() > seen {
                Some(format!(
                    "{}: grew while it was read; read up to the {seen} bytes it had when the walk reached it",
                    source.display()
                ))
            } else {
                changed(&after)
            },
            entry: Some(Entry {
                size,
                chunks,
                digest: Some(digest),
                ..entry
            }),
        }),
        // The pipeline stopping is the pipeline's error, which commit reports.
        Err(e) if e.to_string() == PIPELINE_STOPPED => Err(RepoError::Invalid(e.to_string())),
        Err(e) => Ok(FileOutcome {
            place,
            entry: None,
            warning: Some(format!("{}: {e}; not in this snapshot", source.display())),
        }),
    }
}

fn encode_loop(
    shared: &Shared,
    from_files: &Mutex<std::sync::mpsc::Receiver<Chunk>>,
    to_uploader: &mpsc::Sender<SealedPack>,
) {
    // One buffer per encoder, reused for every chunk.
    let mut encoded = Vec::new();
    loop {
        let next = from_files.lock().expect("encoder queue lock").recv();
        let Ok(chunk) = next else { return };
        encoded.clear();
        shared
            .codec
            .encode_into(&chunk.data, &chunk.id.0, &mut encoded);
        let full = {
            let mut packer = shared.packer.lock().expect("packer lock");
            packer.add(chunk.id, &encoded, chunk.data.len() as u64);
            (packer.len() >= shared.pack_size).then(|| packer.take())
        };
        if let Some(pack) = full {
            if to_uploader.blocking_send(pack.seal(&shared.codec)).is_err() {
                return;
            }
        }
    }
}

const PARALLEL_UPLOADS: usize = 4;

/// An index object is written once the packs uploaded since the last one hold this many
/// chunks (about 8 MiB of JSON), so that a backup of millions of chunks never holds their
/// whole index, nor its text, at once.
pub(crate) const INDEX_CHUNKS: usize = 50_000;

async fn upload_loop(
    repo: Arc<Repository>,
    mut packs: mpsc::Receiver<SealedPack>,
    progress: Arc<Progress>,
) -> Result<Vec<IndexPack>> {
    let mut uploads: JoinSet<Result<IndexPack>> = JoinSet::new();
    // The packs no index object lists yet: the commit writes the last one.
    let mut done = Vec::new();
    let mut chunks = 0;
    loop {
        tokio::select! {
            Some(finished) = uploads.join_next(), if !uploads.is_empty() => {
                let pack = finished.map_err(|e| RepoError::Invalid(format!("upload failed: {e}")))??;
                chunks += pack.blobs.len();
                done.push(pack);
                if chunks >= INDEX_CHUNKS {
                    // Packs before their index, and no snapshot yet: a crash from here on
                    // leaves chunks that the next backup reuses and prune removes if none does.
                    let file = IndexFile { version: 1, packs: std::mem::take(&mut done) };
                    let (_, size) = repo.write_index(&file).await?;
                    progress.bytes_added.fetch_add(size, Ordering::Relaxed);
                    chunks = 0;
                }
            }
            pack = packs.recv(), if uploads.len() < PARALLEL_UPLOADS => {
                let Some(pack) = pack else { break };
                let (repo, progress) = (repo.clone(), progress.clone());
                uploads.spawn(async move {
                    let size = pack.bytes.len() as u64;
                    repo.storage().put(&layout::pack_key(&pack.id), pack.bytes).await?;
                    progress.bytes_added.fetch_add(size, Ordering::Relaxed);
                    Ok(IndexPack { id: pack.id, size, blobs: pack.blobs })
                });
            }
        }
    }
    while let Some(finished) = uploads.join_next().await {
        done.push(finished.map_err(|e| RepoError::Invalid(format!("upload failed: {e}")))??);
    }
    Ok(done)
}
