//! Copying snapshots to another repository: only the chunks the destination lacks are
//! written, every object written is read back and compared before the next step, and the
//! snapshot object is written last, so a copy stopped at any point leaves no snapshot
//! behind. What it leaves are packs, and an index object for every 50,000 chunks of packs
//! already confirmed (as a backup writes them, so that neither holds the index of millions
//! of chunks at once): the next copy reuses the indexed chunks and does not count on the
//! rest, and prune removes what no snapshot uses.
//!
//! The two repositories may differ in key, encryption, compression and chunker. A chunk keeps
//! its plaintext and its place in its file (nothing is chunked again), so a copied tree
//! differs from its original only in chunk ids, and a copied snapshot only in its tree
//! reference and parent ([`Snapshot::same_backup`] recognises it).
//! - Where both repositories name chunks alike (both unencrypted, or the same id key), ids
//!   carry over and only the chunks the destination lacks are read from the source.
//! - Otherwise a chunk's id in the destination depends on its plaintext. The copy of the
//!   policy's previous snapshot gives the translation of every file they share, so an
//!   incremental copy reads only the files that changed; with no earlier copy, every chunk is
//!   read once, decoded and named anew (and written only if the destination lacks it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::archiver::{BlockReader, BlockWriter};
use crate::chunk_table::ChunkTable;
use crate::error::{RepoError, Result};
use crate::format::chunker::ChunkerParams;
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack, Location};
use crate::format::layout;
use crate::format::snapshot::{Snapshot, TreeRef};
use crate::format::tree::Entry;
use crate::lock::{LockGuard, LockKind};
use crate::pack_spool::{SealedSpool, SpooledPack};
use crate::repository::{Repository, UnreadableSnapshot};
use crate::restorer::joins_run;

/// What one copy did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// The snapshot in the source repository.
    pub source_snapshot: Id,
    /// Its copy in the destination (an id of its own: see the module docs).
    pub snapshot: Id,
    /// The destination held the snapshot already; nothing was written.
    pub already_present: bool,
    /// Chunks written to the destination.
    pub chunks_copied: u64,
    /// Chunks of the snapshot the destination held already.
    pub chunks_present: u64,
    /// Plaintext bytes of the chunks read from the source.
    pub bytes_read: u64,
    /// Stored bytes written to the destination: packs, index and snapshot object.
    pub bytes_written: u64,
    /// Objects written and confirmed by reading them back.
    pub objects_confirmed: u64,
    pub duration_ms: u64,
}

impl CopyReport {
    /// The report of a copy of `source_snapshot` before it has done anything.
    fn nothing_yet(source_snapshot: Id) -> Self {
        Self {
            source_snapshot,
            snapshot: source_snapshot,
            already_present: false,
            chunks_copied: 0,
            chunks_present: 0,
            bytes_read: 0,
            bytes_written: 0,
            objects_confirmed: 0,
            duration_ms: 0,
        }
    }
}

/// Copies snapshots from one repository to another. Both listings are read once, when the
/// copier is made, and the destination's is kept up to date as snapshots are copied.
pub struct Copier {
    source: Arc<Repository>,
    dest: Arc<Repository>,
    source_snapshots: Vec<(Id, Snapshot)>,
    dest_snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot objects of either side that could not be read, for the caller to report.
    pub unreadable: Vec<UnreadableSnapshot>,
    /// Chunks an index object lists at most ([`Copier::index_every`]).
    index_chunks: usize,
    /// Where packs are filled before they are uploaded ([`Copier::spool_in`]).
    spool_dir: std::path::PathBuf,
}

/// Entries of the source's tree copied at a time: what bounds a copy's memory for a tree of
/// any size (chunk reads restart their read-ahead at each window's end).
const WINDOW: usize = 4096;

/// Runs of chunks read from the source at once: a local disk needs two cores' worth of
/// work; object storage more requests in flight, to hide its latency. Each run holds up to
/// `RUN_LIMIT` bytes read and about as many encoded.
fn runs_at_once(repo: &Repository) -> usize {
    if repo.storage().is_remote() {
        6
    } else {
        2
    }
}

/// Packs written to the destination at once (each one read back before it counts): each
/// holds a pack's bytes until it is written. A local disk writes one as fast as two; object
/// storage needs two to overlap its round trips.
fn uploads_at_once(repo: &Repository) -> usize {
    if repo.storage().is_remote() {
        2
    } else {
        1
    }
}

impl Copier {
    pub async fn new(source: Arc<Repository>, dest: Arc<Repository>) -> Result<Self> {
        // The source's index as it is now, read after its listing's snapshots were committed
        // (each snapshot is written after its index object): every listed snapshot's chunks
        // are found.
        let from = source.list_snapshots().await?;
        let (index, problems) = source.load_index().await?;
        if let Some((key, problem)) = problems.into_iter().next() {
            return Err(RepoError::corrupt(key, problem));
        }
        let source = Arc::new(source.with_index(index));
        let to = dest.list_snapshots().await?;
        let mut unreadable = from.unreadable;
        unreadable.extend(to.unreadable);
        Ok(Self {
            source,
            dest,
            source_snapshots: from.snapshots,
            dest_snapshots: to.snapshots,
            unreadable,
            index_chunks: crate::archiver::INDEX_CHUNKS,
            spool_dir: std::env::temp_dir(),
        })
    }

    /// Writes an index object each time the packs written since the last one hold `chunks`
    /// chunks (50,000 by default, as a backup does; at least 1).
    pub fn index_every(mut self, chunks: usize) -> Self {
        self.index_chunks = chunks.max(1);
        self
    }

    /// Fills packs in temporary files in `dir` (by default the system's temporary
    /// directory, `TMPDIR`) before they are uploaded; each is removed once its pack is
    /// written, or the copy stops.
    pub fn spool_in(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spool_dir = dir.into();
        self
    }

    /// The source's readable snapshots, oldest first.
    pub fn source_snapshots(&self) -> &[(Id, Snapshot)] {
        &self.source_snapshots
    }

    /// The destination's readable snapshots, oldest first (with those copied so far).
    pub fn destination_snapshots(&self) -> &[(Id, Snapshot)] {
        &self.dest_snapshots
    }

    /// The destination's copy of a snapshot, if it holds one.
    pub fn copy_of(&self, snapshot: &Snapshot) -> Option<Id> {
        self.dest_snapshots
            .iter()
            .find(|(_, d)| d.same_backup(snapshot))
            .map(|(id, _)| *id)
    }

    /// The source's snapshots the destination lacks, oldest first.
    pub fn missing(&self) -> Vec<(Id, Snapshot)> {
        self.source_snapshots
            .iter()
            .filter(|(_, s)| self.copy_of(s).is_none())
            .cloned()
            .collect()
    }

    /// Copies one snapshot of the source (see the module docs for the order of writes).
    pub async fn copy(&mut self, id: Id) -> Result<CopyReport> {
        let started = Instant::now();
        let snapshot = match self.source_snapshots.iter().find(|(s, _)| *s == id) {
            Some((_, s)) => s.clone(),
            None => self.source.load_snapshot(&id).await?,
        };
        let mut report = CopyReport::nothing_yet(id);
        if let Some(copy) = self.copy_of(&snapshot) {
            report.snapshot = copy;
            report.already_present = true;
            return Ok(report);
        }
        let lock = LockGuard::acquire_waiting(
            self.dest.clone(),
            LockKind::Shared,
            "copy",
            crate::lock::WAIT_AT_MOST,
        )
        .await?;
        // Under the lock, count only on what the destination holds now: a prune that ended
        // before the lock was taken may have removed packs an earlier listing showed.
        let (index, problems) = self.dest.load_index().await?;
        if let Some((key, problem)) = problems.into_iter().next() {
            return Err(RepoError::corrupt(key, problem));
        }
        let dest = Arc::new(self.dest.with_index(index));
        let previous = if self.source.codec().same_chunk_ids(dest.codec()) {
            Vec::new()
        } else {
            self.translation_from_previous_copy(&snapshot, &dest).await
        };
        let mut out = PackOut::new(dest.clone(), self.index_chunks, self.spool_dir.clone());
        let tree = match self
            .copy_tree(&snapshot, &dest, previous, &mut out, &mut report)
            .await
        {
            Ok(tree) => tree,
            Err(e) => {
                // Uploads under way are stopped, and their spooled packs removed, before
                // the error is returned.
                out.stop().await;
                return Err(e);
            }
        };
        let parent = snapshot.parent.and_then(|parent| {
            let (_, original) = self.source_snapshots.iter().find(|(s, _)| *s == parent)?;
            self.copy_of(original)
        });
        let copy = Snapshot {
            tree,
            parent,
            ..snapshot
        };
        // The commit point.
        let (copy_id, size) = dest.write_snapshot_with(&copy, true).await?;
        report.objects_confirmed += 1;
        report.bytes_written += size;
        if let Err(e) = lock.release().await {
            tracing::warn!(message = "could not remove the repository lock", error = %e);
        }
        self.dest_snapshots.push((copy_id, copy));
        report.snapshot = copy_id;
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Copies the snapshot's tree and every chunk it needs that the destination lacks, and
    /// writes the index of the packs written: all but the snapshot object. `previous` is
    /// the translation the previous copy gives ([`Copier::translation_from_previous_copy`]).
    ///
    /// What it keeps for every distinct chunk is all that grows with the snapshot, one
    /// entry in a [`ChunkTable`]: where ids carry over, the source chunks handled (`seen`);
    /// otherwise their translation (`ids`), into which an entry of `previous` is taken once
    /// a window reaches its chunk. No set of the chunks written is kept: distinct source
    /// chunks have distinct plaintexts, so each is written at most once, and only the tree's
    /// own chunks are checked against what this copy wrote ([`PackOut::add`]).
    async fn copy_tree(
        &self,
        snapshot: &Snapshot,
        dest: &Arc<Repository>,
        previous: Vec<(Id, Id)>,
        out: &mut PackOut,
        report: &mut CopyReport,
    ) -> Result<TreeRef> {
        let same_ids = self.source.codec().same_chunk_ids(dest.codec());
        let mut ids = ChunkTable::new();
        // The source's tree is read as a stream, a window of entries at a time: their
        // chunks are copied, then the entries translated and written to the copy's tree.
        // No tree is held whole, neither entries nor text.
        let source = self.source.clone();
        let mut entries = source.tree_reader(snapshot);
        let mut window = Vec::with_capacity(WINDOW);
        let mut seen = ChunkTable::new();
        let mut tree = TreeWriter::start(dest.config().chunker);
        loop {
            while window.len() < WINDOW {
                match entries.next().await? {
                    Some(entry) => window.push(entry),
                    None => break,
                }
            }
            if window.is_empty() {
                break;
            }
            // The chunks to read: those whose id in the destination is unknown, or known
            // and not held there.
            let mut wanted = Vec::new();
            for chunk in window.iter().flat_map(|e| e.chunks.iter()) {
                if same_ids {
                    if !seen.insert(*chunk, ()) {
                        continue;
                    }
                    if dest.index().contains(chunk) {
                        report.chunks_present += 1;
                    } else {
                        wanted.push(*chunk);
                    }
                } else if !ids.contains(chunk) {
                    let known = previous
                        .binary_search_by_key(chunk, |(source, _)| *source)
                        .map(|at| previous[at].1);
                    match known {
                        Ok(d) if dest.index().contains(&d) => {
                            ids.insert(*chunk, d);
                            report.chunks_present += 1;
                        }
                        // Translated once its run is read (a chunk twice in the window is
                        // wanted once).
                        _ => wanted.push(*chunk),
                    }
                }
            }
            wanted.sort_unstable();
            wanted.dedup();
            // Read a run of nearby chunks of one pack at a time; decode, name and encode its
            // chunks on a blocking thread, a few runs at once. A copy that stops (an error,
            // or its caller dropping it) aborts the runs under way rather than leave them
            // reading.
            let runs = plan_runs(&source, wanted)?;
            let mut copied = futures::stream::iter(runs)
                .map(|run| {
                    AbortOnDropHandle::new(tokio::spawn(translate_run(
                        source.clone(),
                        dest.clone(),
                        run,
                    )))
                })
                .buffered(runs_at_once(&source));
            while let Some(translated) = copied.next().await {
                let run = translated
                    .map_err(|e| RepoError::Invalid(format!("copy worker failed: {e}")))??;
                for chunk in &run.chunks {
                    report.bytes_read += chunk.raw_length;
                    if !same_ids {
                        ids.insert(chunk.source, chunk.dest);
                    }
                }
                out.store(run, report).await?;
            }
            drop(copied);
            for mut entry in window.drain(..) {
                if !same_ids {
                    for chunk in &mut entry.chunks {
                        *chunk = *ids.get(chunk).ok_or_else(|| {
                            RepoError::Invalid(format!(
                                "copy of {}: no translation for chunk {} of {}",
                                report.source_snapshot.short(),
                                chunk.short(),
                                entry.path
                            ))
                        })?;
                    }
                }
                tree.push(&entry).await?;
            }
            let handled = |text: &[u8]| handled_as_file_chunk(&source, &seen, &ids, text);
            tree.store_ready(out, report, &handled).await?;
        }
        drop((previous, entries));
        let handled = |text: &[u8]| handled_as_file_chunk(&source, &seen, &ids, text);
        let tree = tree.finish(out, report, &handled).await?;
        drop((ids, seen));
        out.finish(report).await?;
        Ok(tree)
    }

    /// Source chunk id → destination chunk id for every file the policy's previous copied
    /// snapshot shares with its original (same path, digest and number of chunks), sorted by
    /// source chunk, each once. Empty when there is no such copy, or when either tree cannot
    /// be read (then every chunk is read: slower, never wrong).
    async fn translation_from_previous_copy(
        &self,
        snapshot: &Snapshot,
        dest: &Repository,
    ) -> Vec<(Id, Id)> {
        let mut ids = Vec::new();
        let previous = self
            .dest_snapshots
            .iter()
            .rev()
            .filter(|(_, d)| d.policy == snapshot.policy && d.time < snapshot.time)
            .find_map(|(_, d)| {
                self.source_snapshots
                    .iter()
                    .find(|(_, s)| s.same_backup(d))
                    .map(|(_, s)| (s, d))
            });
        let Some((original, copy)) = previous else {
            return ids;
        };
        // Both trees are sorted by path (their readers refuse one that is not): one pass over
        // the two side by side.
        let (mut from, mut to) = (self.source.tree_reader(original), dest.tree_reader(copy));
        let matched: Result<()> = async {
            let mut next_to = to.next().await?;
            while let Some(entry) = from.next().await? {
                while next_to.as_ref().is_some_and(|t| t.path < entry.path) {
                    next_to = to.next().await?;
                }
                if let Some(t) = &next_to {
                    if t.path == entry.path
                        && t.digest == entry.digest
                        && t.chunks.len() == entry.chunks.len()
                    {
                        ids.extend(entry.chunks.iter().copied().zip(t.chunks.iter().copied()));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = matched {
            tracing::warn!(message = "could not read the previous copy's trees; reading every chunk", error = %e);
            return Vec::new();
        }
        ids.sort_unstable_by_key(|(source, _)| *source);
        ids.dedup_by_key(|(source, _)| *source);
        ids.shrink_to_fit();
        ids
    }
}

/// Whether a chunk of the copy's tree, whose plaintext is `text`, is a chunk this copy has
/// handled already as a file's (held by the destination, or written by this copy): named as
/// the source names it, it is then among the source chunks `seen` or translated (`ids`).
fn handled_as_file_chunk(
    source: &Repository,
    seen: &ChunkTable<()>,
    ids: &ChunkTable<Id>,
    text: &[u8],
) -> bool {
    let id = source.codec().chunk_id(text);
    seen.contains(&id) || ids.contains(&id)
}

/// A range of one source pack read at once, and the wanted chunks that lie in it.
struct Run {
    pack: Id,
    start: u64,
    end: u64,
    chunks: Vec<(Id, Location)>,
}

/// Groups chunks into runs: chunks of one pack, in pack order, read through gaps of at most
/// `RUN_GAP` bytes and at most `RUN_LIMIT` bytes a run (a larger chunk is a run of its own),
/// as a restore reads them.
fn plan_runs(source: &Repository, wanted: Vec<Id>) -> Result<Vec<Run>> {
    let mut located = wanted
        .into_iter()
        .map(|id| match source.locate(&id) {
            Some(loc) => Ok((id, loc)),
            None => Err(RepoError::ChunkNotIndexed { chunk: id.to_hex() }),
        })
        .collect::<Result<Vec<_>>>()?;
    located.sort_unstable_by_key(|(_, loc)| (loc.pack, loc.offset));
    let mut runs: Vec<Run> = Vec::new();
    for (id, loc) in located {
        let end = loc.offset + loc.length;
        match runs.last_mut() {
            Some(run) if joins_run(&run.pack, run.start, run.end, &loc) => {
                run.end = run.end.max(end);
                run.chunks.push((id, loc));
            }
            _ => runs.push(Run {
                pack: loc.pack,
                start: loc.offset,
                end,
                chunks: vec![(id, loc)],
            }),
        }
    }
    Ok(runs)
}

/// A source chunk as the destination names it, with where its encoding for the destination
/// lies in its run's [`TranslatedRun::encoded`], unless the destination holds it already.
struct Translated {
    source: Id,
    dest: Id,
    raw_length: u64,
    encoded: Option<std::ops::Range<usize>>,
}

/// A run's chunks, translated, and their encodings end to end in one buffer: one allocation
/// a run rather than one a chunk, each sized for compression's worst case (the plaintext's
/// length) and most of it unused, which held a copy's peak memory above restic's.
struct TranslatedRun {
    chunks: Vec<Translated>,
    encoded: Vec<u8>,
}

/// A chunk's id in the destination, and (appended to `out`) its encoding there unless the
/// destination holds it. Blocking.
fn encode_for(
    dest: &Repository,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> (Id, Option<std::ops::Range<usize>>) {
    let id = dest.codec().chunk_id(plain);
    let encoded = (!dest.index().contains(&id)).then(|| {
        let start = out.len();
        dest.codec().encode_into(plain, &id.0, out);
        start..out.len()
    });
    (id, encoded)
}

/// Reads a run in one ranged read, then decodes each of its chunks (verified against its
/// id), names it as the destination does and encodes it unless the destination holds it
/// (where both encode alike, [`Codec::encodes_as`], its stored bytes are that encoding).
///
/// [`Codec::encodes_as`]: crate::format::crypto::Codec::encodes_as
async fn translate_run(
    source: Arc<Repository>,
    dest: Arc<Repository>,
    run: Run,
) -> Result<TranslatedRun> {
    let stored = source
        .read_pack_range(&run.pack, run.start, run.end - run.start)
        .await?;
    blocking(move || {
        // The chunk is decoded either way: that is what checks it against its id.
        let verbatim = source.codec().encodes_as(dest.codec());
        let translate = || {
            let mut plain = Vec::new();
            let mut chunks = Vec::with_capacity(run.chunks.len());
            // Encodings come out about as long as the chunks read (a destination that
            // compresses more or less than the source grows or wastes a little of it).
            let mut encoded = Vec::with_capacity(stored.len() + (64 << 10));
            for (id, loc) in &run.chunks {
                let at = (loc.offset - run.start) as usize;
                let piece = stored.get(at..at + loc.length as usize).ok_or_else(|| {
                    RepoError::corrupt(layout::pack_key(&run.pack), "shorter than its index says")
                })?;
                source.decode_located(id, loc, piece, &mut plain)?;
                let (dest_id, range) = if verbatim {
                    let range = (!dest.index().contains(id)).then(|| {
                        let start = encoded.len();
                        encoded.extend_from_slice(piece);
                        start..encoded.len()
                    });
                    (*id, range)
                } else {
                    encode_for(&dest, &plain, &mut encoded)
                };
                chunks.push(Translated {
                    source: *id,
                    dest: dest_id,
                    raw_length: plain.len() as u64,
                    encoded: range,
                });
            }
            Ok(TranslatedRun { chunks, encoded })
        };
        let translated = translate();
        crate::format::crypto::release_decode_scratch();
        translated
    })
    .await?
}

/// A pack written and confirmed: its place in the index, and its size.
type Uploaded = Result<(IndexPack, u64)>;

/// The destination side: gathers encoded chunks into packs, each filled in a temporary file
/// ([`SpooledPack`]: a copy holds no pack in memory), and uploads each full pack from its
/// file, confirmed, a few at once.
struct PackOut {
    /// The destination, with its index as read under this copy's lock.
    dest: Arc<Repository>,
    /// Chunks of the copy's tree this copy has written (files' chunks need no such set:
    /// see [`Copier::copy_tree`]).
    tree_chunks: HashSet<Id>,
    /// The pack being filled, once a chunk has come for it, in a file in `spool_dir`.
    pack: Option<SpooledPack>,
    spool_dir: Arc<std::path::Path>,
    uploads: tokio::task::JoinSet<Uploaded>,
    /// Packs written and confirmed that no index object lists yet.
    packs: Vec<IndexPack>,
    /// Their chunks; at `index_chunks` they are indexed.
    packs_chunks: usize,
    index_chunks: usize,
}

impl PackOut {
    fn new(dest: Arc<Repository>, index_chunks: usize, spool_dir: std::path::PathBuf) -> Self {
        Self {
            dest,
            tree_chunks: HashSet::new(),
            pack: None,
            spool_dir: spool_dir.into(),
            uploads: tokio::task::JoinSet::new(),
            packs: Vec::new(),
            packs_chunks: 0,
            index_chunks,
        }
    }

    fn holds(&self, id: &Id) -> bool {
        self.dest.index().contains(id) || self.tree_chunks.contains(id)
    }

    /// Stores a run's translated chunks that the destination lacks (and that are not chunks
    /// of the tree this copy wrote): appended to the pack being filled on a blocking
    /// thread, each pack that reaches the pack size sealed and uploaded.
    async fn store(&mut self, run: TranslatedRun, report: &mut CopyReport) -> Result<()> {
        let mut adding = Vec::new();
        for (i, chunk) in run.chunks.iter().enumerate() {
            match chunk.encoded {
                Some(_) if !self.holds(&chunk.dest) => {
                    report.chunks_copied += 1;
                    adding.push(i);
                }
                _ => report.chunks_present += 1,
            }
        }
        if adding.is_empty() {
            return Ok(());
        }
        let (mut pack, codec) = (self.pack.take(), self.dest.codec().clone());
        let (pack_size, dir) = (self.dest.config().pack_size, self.spool_dir.clone());
        let (pack, full) = blocking(move || -> Result<_> {
            let mut full = Vec::new();
            for i in adding {
                let chunk = &run.chunks[i];
                let range = chunk
                    .encoded
                    .clone()
                    .expect("only encoded chunks are added");
                if pack.is_none() {
                    pack = Some(SpooledPack::new(&dir)?);
                }
                let filling = pack.as_mut().expect("made above");
                filling.add(chunk.dest, &run.encoded[range], chunk.raw_length)?;
                if filling.len() >= pack_size {
                    full.push(pack.take().expect("being filled").seal(&codec)?);
                }
            }
            Ok((pack, full))
        })
        .await??;
        self.pack = pack;
        for sealed in full {
            self.upload(sealed, report).await?;
        }
        Ok(())
    }

    /// Names a chunk of the copy's tree as the destination does and stores it there unless
    /// it is held already: by the destination, as a chunk of the tree this copy wrote, or
    /// (`handled`) as a file's chunk this copy handled. Returns its id in the destination.
    async fn add(&mut self, plain: Vec<u8>, handled: bool, report: &mut CopyReport) -> Result<Id> {
        let dest = self.dest.clone();
        let run = blocking(move || {
            let mut encoded = Vec::new();
            let (id, range) = encode_for(&dest, &plain, &mut encoded);
            let chunk = Translated {
                source: id,
                dest: id,
                raw_length: plain.len() as u64,
                encoded: range,
            };
            TranslatedRun {
                chunks: vec![chunk],
                encoded,
            }
        })
        .await?;
        let id = run.chunks[0].dest;
        if handled || self.holds(&id) {
            report.chunks_present += 1;
        } else {
            self.store(run, report).await?;
            self.tree_chunks.insert(id);
        }
        Ok(id)
    }

    /// Starts a sealed pack's upload, first waiting for one to finish when
    /// [`uploads_at_once`] are under way.
    async fn upload(&mut self, sealed: SealedSpool, report: &mut CopyReport) -> Result<()> {
        while self.uploads.len() >= uploads_at_once(&self.dest) {
            self.finish_one(report).await?;
        }
        let dest = self.dest.clone();
        self.uploads.spawn(async move {
            let key = layout::pack_key(&sealed.id);
            dest.put_file_confirmed(&key, sealed.file.path(), sealed.size, &sealed.id)
                .await?;
            let pack = IndexPack {
                id: sealed.id,
                size: sealed.size,
                blobs: sealed.blobs,
            };
            // The spooled file is removed here, with `sealed.file`.
            Ok((pack, sealed.size))
        });
        Ok(())
    }

    /// Waits for one upload under way.
    async fn finish_one(&mut self, report: &mut CopyReport) -> Result<()> {
        let Some(done) = self.uploads.join_next().await else {
            return Ok(());
        };
        let (pack, size) =
            done.map_err(|e| RepoError::Invalid(format!("copy upload failed: {e}")))??;
        report.bytes_written += size;
        report.objects_confirmed += 1;
        self.packs_chunks += pack.blobs.len();
        self.packs.push(pack);
        if self.packs_chunks >= self.index_chunks {
            self.write_index(report).await?;
        }
        Ok(())
    }

    /// Writes an index object listing the packs confirmed since the last one (none: nothing).
    async fn write_index(&mut self, report: &mut CopyReport) -> Result<()> {
        if self.packs.is_empty() {
            return Ok(());
        }
        let packs = std::mem::take(&mut self.packs);
        self.packs_chunks = 0;
        let (_, size) = self
            .dest
            .write_index_confirmed(&IndexFile { version: 1, packs })
            .await?;
        report.bytes_written += size;
        report.objects_confirmed += 1;
        Ok(())
    }

    /// Stops the uploads under way, waiting until each is dropped (and with it, its spooled
    /// pack), and drops the pack being filled.
    async fn stop(&mut self) {
        self.uploads.shutdown().await;
        self.pack = None;
    }

    /// Uploads the last pack, waits for every upload and indexes the packs no index object
    /// lists yet.
    async fn finish(&mut self, report: &mut CopyReport) -> Result<()> {
        if let Some(pack) = self.pack.take() {
            let codec = self.dest.codec().clone();
            let sealed = blocking(move || pack.seal(&codec)).await??;
            self.upload(sealed, report).await?;
        }
        while !self.uploads.is_empty() {
            self.finish_one(report).await?;
        }
        self.write_index(report).await
    }
}

/// The copy's tree, written as its entries are translated: serialised here, split with the
/// destination's chunker on a thread of its own (as a backup splits its tree), each chunk
/// handed back in order to be stored like a file's.
struct TreeWriter {
    text: BlockWriter,
    chunks: mpsc::UnboundedReceiver<std::io::Result<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Id>>,
    ids: Vec<Id>,
    entries: u64,
}

impl TreeWriter {
    fn start(chunker: ChunkerParams) -> Self {
        let (to_thread, blocks) = mpsc::channel(4);
        // Unbounded, so that the thread never waits for this side while this side waits
        // to hand it a block; what it holds is bounded by a window's text.
        let (to_writer, chunks) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("backstop-copy-tree".into())
            .spawn(move || {
                let mut digest = Sha256::new();
                for chunk in chunker.chunks(BlockReader::new(blocks)) {
                    if let Ok(text) = &chunk {
                        digest.update(text);
                    }
                    let failed = chunk.is_err();
                    if to_writer.send(chunk).is_err() || failed {
                        break;
                    }
                }
                Id(digest.finalize().into())
            })
            .expect("spawn the copy's tree thread");
        Self {
            text: BlockWriter::new(to_thread, "writing the tree: its thread stopped"),
            chunks,
            thread: Some(thread),
            ids: Vec::new(),
            entries: 0,
        }
    }

    /// Adds the next entry (entries come in the source tree's order, which is path order).
    async fn push(&mut self, entry: &Entry) -> Result<()> {
        self.entries += 1;
        self.text.write(entry).await
    }

    /// Stores the tree's chunks cut so far. `handled` tells a chunk whose plaintext this
    /// copy has handled already as a file's ([`handled_as_file_chunk`]).
    async fn store_ready(
        &mut self,
        out: &mut PackOut,
        report: &mut CopyReport,
        handled: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<()> {
        while let Ok(chunk) = self.chunks.try_recv() {
            self.store(chunk, out, report, handled).await?;
        }
        Ok(())
    }

    async fn store(
        &mut self,
        chunk: std::io::Result<Vec<u8>>,
        out: &mut PackOut,
        report: &mut CopyReport,
        handled: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<()> {
        let text = chunk.map_err(|e| RepoError::Invalid(format!("writing the tree: {e}")))?;
        let held = handled(&text);
        self.ids.push(out.add(text, held, report).await?);
        Ok(())
    }

    /// Stores the rest of the tree; returns its reference.
    async fn finish(
        mut self,
        out: &mut PackOut,
        report: &mut CopyReport,
        handled: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<TreeRef> {
        self.text.close().await?;
        while let Some(chunk) = self.chunks.recv().await {
            self.store(chunk, out, report, handled).await?;
        }
        let thread = self.thread.take().expect("the tree is finished once");
        let digest = blocking(move || thread.join())
            .await?
            .map_err(|_| RepoError::Invalid("writing the tree: its thread panicked".into()))?;
        Ok(TreeRef {
            chunks: self.ids,
            digest,
            entries: self.entries,
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RepoError::Invalid(format!("copy worker failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::InitOptions;
    use crate::storage::{MemoryStorage, Storage};

    /// No set of the chunks written is kept for files' chunks, so the two ways one
    /// plaintext can come twice in a copy are checked: a file's chunk after a tree chunk of
    /// the same plaintext is held, and a tree chunk the copy handled as a file's is not
    /// written again. One chunk is written in all.
    #[tokio::test]
    async fn a_plaintext_that_is_both_a_tree_chunk_and_a_file_chunk_is_written_once() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        Repository::init(storage.clone(), InitOptions::default())
            .await
            .unwrap();
        let dest = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
        let spool = tempfile::tempdir().unwrap();
        let mut out = PackOut::new(dest.clone(), 1, spool.path().to_path_buf());
        let mut report = CopyReport::nothing_yet(Id([0; 32]));

        let text = b"entries of a tree, and the content of a file".to_vec();
        let id = out.add(text.clone(), false, &mut report).await.unwrap();
        let mut encoded = Vec::new();
        let (file_id, range) = encode_for(&dest, &text, &mut encoded);
        assert_eq!(file_id, id);
        let chunk = Translated {
            source: id,
            dest: id,
            raw_length: text.len() as u64,
            encoded: range,
        };
        let run = TranslatedRun {
            chunks: vec![chunk],
            encoded,
        };
        out.store(run, &mut report).await.unwrap();
        out.add(b"a file's chunk, handled".to_vec(), true, &mut report)
            .await
            .unwrap();
        out.finish(&mut report).await.unwrap();

        assert_eq!((report.chunks_copied, report.chunks_present), (1, 2));
        let (index, problems) = dest.load_index().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let dest = dest.with_index(index);
        assert!(dest.index().contains(&id));
        assert_eq!(storage.list("data/").await.unwrap().len(), 1);
    }
}
