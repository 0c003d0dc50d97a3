//! The read path: a snapshot's tree, and its files restored into a directory.
//!
//! Every chunk is verified against its id as it is read (the repository's `read_chunk`), and
//! every restored file against the SHA-256 recorded at backup. A failure names the object
//! and the file; the restore goes on with the other files and reports every failure at the
//! end, so one bad pack does not hide another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::direct_io::{DirectWriter, WriteError};
use crate::error::{RepoError, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, EntryKind};
use crate::repository::Repository;

/// Files of the same content (and more than one chunk) are written from one read of it, up
/// to this many at once: each is an open file.
const COPIES_AT_ONCE: usize = 8;
/// Runs of single-chunk files: at most this many bytes a ranged read, reading through gaps
/// of at most `RUN_GAP` (chunks of other files) rather than making another request.
const RUN_LIMIT: u64 = 4 << 20;
const RUN_GAP: u64 = 256 << 10;

/// Whether a chunk at `loc` joins the run `start..end` of `pack` (chunks taken in pack
/// order): same pack, at most `RUN_GAP` past the run's end, the run at most `RUN_LIMIT`.
pub(crate) fn joins_run(
    pack: &Id,
    start: u64,
    end: u64,
    loc: &crate::format::index::Location,
) -> bool {
    *pack == loc.pack
        && loc.offset <= end + RUN_GAP
        && (loc.offset + loc.length).max(end) - start <= RUN_LIMIT
}

/// How much a restore keeps in flight. Memory stays near `runs` × (`RUN_LIMIT` + decoded)
/// plus `files` × (`read_ahead` + 1) chunks.
#[derive(Debug, Clone, Copy)]
struct Concurrency {
    /// Runs of single-chunk files at once.
    runs: usize,
    /// Contents of several chunks restored at once...
    files: usize,
    /// ...each with this many chunks read ahead (a streamed dump too).
    read_ahead: usize,
}

impl Concurrency {
    /// A local disk: two cores' worth of work, and little memory.
    const LOCAL: Self = Self {
        runs: 2,
        files: 2,
        read_ahead: 2,
    };
    /// Object storage, where each request waits a round trip. With a 30 ms wait before every
    /// ranged read from S3 (docs/benchmarks.md), the benchmark's restore took 5.9 s with
    /// `LOCAL` and 4.6 s with this, for about 30 MiB more memory.
    const REMOTE: Self = Self {
        runs: 6,
        files: 3,
        read_ahead: 4,
    };

    fn for_repository(repo: &Repository) -> Self {
        if repo.storage().is_remote() {
            Self::REMOTE
        } else {
            Self::LOCAL
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotReader {
    repo: Arc<Repository>,
    id: Id,
    snapshot: Snapshot,
    /// The whole tree, read on first use ([`SnapshotReader::entries`]): a database
    /// snapshot's few entries, a partial restore's selection. A whole restore streams the
    /// tree a window at a time instead, so that its memory does not grow with the tree.
    entries: tokio::sync::OnceCell<Arc<Vec<Entry>>>,
}

#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Ownership could not be set (not running as root); the content is whole.
    pub ownership_skipped: bool,
}

/// Everything that went wrong in one restore.
#[derive(Debug, thiserror::Error)]
#[error("restore of snapshot {snapshot} failed for {} file(s):\n  {}", failures.len(), failures.join("\n  "))]
pub struct RestoreFailed {
    pub snapshot: String,
    pub failures: Vec<String>,
}

/// A restore reads the tree this many entries at a time, or fewer when their chunks reach
/// `WINDOW_CHUNKS` (8 MiB of ids): a window, its run plan and its open directories are what
/// a restore holds of the tree, whatever its size.
const WINDOW_ENTRIES: usize = 32_768;
const WINDOW_CHUNKS: usize = 262_144;

impl SnapshotReader {
    /// Opens snapshot `id`; its tree is read when it is needed.
    pub async fn open(repo: Arc<Repository>, id: Id) -> Result<Self> {
        let snapshot = repo.load_snapshot(&id).await?;
        Ok(Self {
            repo,
            id,
            snapshot,
            entries: tokio::sync::OnceCell::new(),
        })
    }

    pub fn id(&self) -> Id {
        self.id
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The whole tree (or the selection), read once and kept.
    pub async fn entries(&self) -> Result<&[Entry]> {
        Ok(self.held_entries().await?)
    }

    /// The entries (the selection, when one is held) in path order, a window at a time:
    /// streamed from the tree unless held, so that a pass over a tree of any size holds a
    /// window of it.
    pub fn entry_windows(&self) -> EntryWindows<'_> {
        EntryWindows(match self.entries.get() {
            Some(held) => Window::Held(held.iter()),
            None => Window::Streamed(Box::new(self.repo.tree_reader(&self.snapshot))),
        })
    }

    async fn held_entries(&self) -> Result<&Arc<Vec<Entry>>> {
        self.entries
            .get_or_try_init(|| async {
                self.repo
                    .read_tree(&self.snapshot)
                    .await
                    .map(Arc::new)
                    .map_err(|e| self.tree_error(e))
            })
            .await
    }

    /// A tree that does not read back names the snapshot.
    fn tree_error(&self, e: RepoError) -> RepoError {
        match e {
            RepoError::Invalid(m) => {
                RepoError::Invalid(format!("snapshot {}: {m}", self.id.short()))
            }
            other => other,
        }
    }

    /// The same snapshot with only the entries `keep` accepts (by path) and the directories
    /// above them, so that a restore writes just those: a partial restore. The view's facts
    /// count what it holds (files, directories, bytes), so that a restore is compared with
    /// what was asked for.
    pub async fn select(&self, keep: impl Fn(&str) -> bool) -> Result<SnapshotReader> {
        // One pass over the tree as a stream, holding the entries kept and the directories
        // (a small share of a tree; a kept path's directories come before it, though not
        // always just before: `a-b` sorts between `a` and `a/b`). A directory stays if it was
        // asked for or holds an entry that was.
        let mut candidates: Vec<(bool, Entry)> = Vec::new();
        let mut wanted: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut source = self.entry_windows();
        loop {
            let window = source.next().await.map_err(|e| self.tree_error(e))?;
            if window.is_empty() {
                break;
            }
            for entry in window {
                let kept = keep(&entry.path);
                if kept {
                    let mut path = entry.path.as_str();
                    while let Some((parent, _)) = path.rsplit_once('/') {
                        if !wanted.insert(parent.to_string()) {
                            break;
                        }
                        path = parent;
                    }
                }
                if kept || entry.kind == EntryKind::Dir {
                    candidates.push((kept, entry));
                }
            }
        }
        let entries: Vec<Entry> = candidates
            .into_iter()
            .filter(|(kept, e)| *kept || wanted.contains(&e.path))
            .map(|(_, e)| e)
            .collect();
        let mut snapshot = self.snapshot.clone();
        snapshot.facts.file_count =
            entries.iter().filter(|e| e.kind == EntryKind::File).count() as u64;
        snapshot.facts.dir_count =
            entries.iter().filter(|e| e.kind == EntryKind::Dir).count() as u64;
        snapshot.facts.bytes = entries.iter().map(|e| e.size).sum();
        Ok(SnapshotReader {
            repo: self.repo.clone(),
            id: self.id,
            snapshot,
            entries: tokio::sync::OnceCell::new_with(Some(Arc::new(entries))),
        })
    }

    /// The file entry at `path`, if the snapshot has one.
    pub async fn file(&self, path: &str) -> Result<Option<&Entry>> {
        Ok(self
            .entries()
            .await?
            .iter()
            .find(|e| e.kind == EntryKind::File && e.path == path))
    }

    /// Streams one file's content into `out` (a dump into its load tool), verifying every
    /// chunk against its id and the whole against the recorded SHA-256. On error, `out` has
    /// received a prefix: the caller must discard what it loaded.
    pub async fn stream_file<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        entry: &Entry,
        out: &mut W,
    ) -> Result<u64> {
        copy_chunks(&self.repo, entry, out, true).await
    }

    /// As [`SnapshotReader::stream_file`], for one of several streams of the same file read
    /// at once (tables loaded side by side), of which one [`SnapshotReader::stream_file`]
    /// verifies the whole: every chunk is still verified against its id, and the file's
    /// SHA-256 is not computed again.
    pub async fn stream_file_again<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        entry: &Entry,
        out: &mut W,
    ) -> Result<u64> {
        copy_chunks(&self.repo, entry, out, false).await
    }

    /// Where each chunk of a file starts in its content (the index gives each chunk's
    /// length), for reading ranges of the file with [`SnapshotReader::stream_range`].
    pub fn file_chunks(&self, entry: &Entry) -> Result<FileChunks> {
        let mut starts = Vec::with_capacity(entry.chunks.len() + 1);
        let mut at = 0u64;
        for id in &entry.chunks {
            starts.push(at);
            let loc = self
                .repo
                .locate(id)
                .ok_or_else(|| RepoError::ChunkNotIndexed { chunk: id.to_hex() })?;
            at += loc.raw_length;
        }
        starts.push(at);
        if at != entry.size {
            return Err(RepoError::Invalid(format!(
                "snapshot {}: the chunks of {} hold {at} bytes, the tree says {}",
                self.id.short(),
                entry.path,
                entry.size
            )));
        }
        Ok(FileChunks {
            entry: entry.clone(),
            starts,
        })
    }

    /// Streams bytes `range` of a file's content into `out`, reading only the chunks that
    /// hold them, each verified against its id. The file's SHA-256 is not computed: this is
    /// for several streams that read ranges of one file between them (tables loaded side
    /// by side), each verifying every chunk it reads.
    pub async fn stream_range<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        file: &FileChunks,
        range: std::ops::Range<u64>,
        out: &mut W,
    ) -> Result<u64> {
        let path = &file.entry.path;
        let size = *file.starts.last().expect("a start per chunk and the end");
        if range.start > range.end || range.end > size {
            return Err(RepoError::Invalid(format!(
                "bytes {}..{} of {path}, which holds {size}",
                range.start, range.end
            )));
        }
        if range.is_empty() {
            return Ok(0);
        }
        // The chunks holding the range's first and last bytes.
        let first = file.starts.partition_point(|&s| s <= range.start) - 1;
        let last = file.starts.partition_point(|&s| s < range.end) - 1;
        let chunks = &file.entry.chunks[first..=last];
        write_chunks(&self.repo, path, chunks, out, |n, data| {
            let i = first + n;
            let (start, end) = (file.starts[i], file.starts[i + 1]);
            if data.len() as u64 != end - start {
                return Err(RepoError::Invalid(format!(
                    "chunk {} of {path} holds {} bytes, the index says {}",
                    file.entry.chunks[i].short(),
                    data.len(),
                    end - start
                )));
            }
            let from = range.start.saturating_sub(start) as usize;
            let to = (range.end.min(end) - start) as usize;
            Ok(from..to)
        })
        .await
    }

    /// Restores the whole tree under `dir`, which the caller has found empty or absent, or
    /// was told to write into (`--force`). What is already there is replaced, never written
    /// through: a symlink (or a file) where the snapshot has a directory, file or symlink is
    /// removed first, and files are opened with `O_NOFOLLOW`. `dir` itself is the target
    /// the operator named, and may be a symlink.
    ///
    /// The tree is read a window of entries at a time, in its path order, the next window
    /// while this one is written: directories are made as they come (a parent's path sorts
    /// before its children's), and a directory's mode and times are set once the tree has
    /// passed the last path below it.
    pub async fn restore_to(&self, dir: &Path) -> Result<RestoreReport> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| RepoError::write(dir.display(), e))?;
        let mut source = self.entry_windows().0;
        let dir: Arc<Path> = Arc::from(dir);
        let mut progress = Progress::default();
        let mut window = source.next_window().await.map_err(|e| self.tree_error(e))?;
        while !window.is_empty() {
            let (restored, next) = futures::join!(
                self.restore_window(window, &dir, &mut progress),
                source.next_window()
            );
            restored?;
            window = next.map_err(|e| self.tree_error(e))?;
        }
        let still_open = std::mem::take(&mut progress.open_dirs).into_all();
        progress.set_dir_metadata(&dir, still_open).await?;

        let Progress {
            mut report,
            tally,
            failures,
            ..
        } = progress;
        report.files = tally.files;
        report.bytes = tally.bytes;
        report.ownership_skipped |= tally.ownership_denied;
        let corrupt = tally.corrupt;
        let failures: Vec<String> = failures.into_iter().chain(tally.failures).collect();
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(RepoError::RestoreIncomplete {
                summary: RestoreFailed {
                    snapshot: self.id.short(),
                    failures,
                }
                .to_string(),
                corrupt,
            })
        }
    }

    /// Restores one window of the tree: its directories, its files, its symlinks, then the
    /// metadata of the directories the window has passed the end of.
    async fn restore_window(
        &self,
        window: Vec<Entry>,
        dir: &Arc<Path>,
        progress: &mut Progress,
    ) -> Result<()> {
        let mut closed = Vec::new();
        for entry in &window {
            if let Some(last) = &progress.last_path {
                if entry.path.as_str() <= last.as_str() {
                    return Err(RepoError::Invalid(format!(
                        "snapshot {}: the tree lists {:?} after {last:?}, out of path order",
                        self.id.short(),
                        entry.path
                    )));
                }
            }
            progress.last_path = Some(entry.path.clone());
            progress.open_dirs.close_before(&entry.path, &mut closed);
            if entry.kind == EntryKind::Dir {
                progress.open_dirs.open(entry.clone());
            }
        }
        let entries = Arc::new(window);

        let dirs: Vec<(String, PathBuf)> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| (e.path.clone(), dir.join(&e.path)))
            .collect();
        progress.report.dirs += dirs.len() as u64;
        let made = blocking(move || {
            Ok(dirs
                .into_iter()
                .filter_map(|(name, path)| make_dir(&path).err().map(|e| format!("{name}: {e}")))
                .collect::<Vec<_>>())
        })
        .await?;
        progress.failures.extend(made);

        let files = restore_files(&self.repo, &entries, dir).await;
        progress.tally = std::mem::take(&mut progress.tally).add(files);

        let links: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].kind == EntryKind::Symlink)
            .collect();
        let writing = (entries.clone(), dir.clone());
        let (links, failed, denied) = blocking(move || {
            let (entries, dir) = writing;
            let mut failed = Vec::new();
            let mut denied = false;
            let mut made = 0u64;
            for i in links {
                let entry = &entries[i];
                let path = dir.join(&entry.path);
                let target = entry.target.clone().unwrap_or_default();
                let link = remove_non_dir(&path)
                    .and_then(|()| std::os::unix::fs::symlink(target, &path))
                    .map_err(|e| format!("{}: {e}", entry.path));
                // A link's own times: nothing made later changes them.
                match link.and_then(|()| {
                    apply_metadata(entry, &path)
                        .map_err(|e| format!("{}: setting metadata: {e}", entry.path))
                }) {
                    Ok(chown_denied) => {
                        made += 1;
                        denied |= chown_denied;
                    }
                    Err(line) => failed.push(line),
                }
            }
            Ok((made, failed, denied))
        })
        .await?;
        progress.report.symlinks += links;
        progress.report.ownership_skipped |= denied;
        progress.failures.extend(failed);

        progress.set_dir_metadata(dir, closed).await
    }
}

/// A snapshot's entries in path order, a window at a time ([`SnapshotReader::entry_windows`]).
pub struct EntryWindows<'a>(Window<'a>);

impl EntryWindows<'_> {
    /// The next entries in tree order, empty after the last.
    pub async fn next(&mut self) -> Result<Vec<Entry>> {
        self.0.next_window().await
    }
}

/// Where a restore's entries come from: the tree read as a stream, or the entries held (a
/// selection).
enum Window<'a> {
    Streamed(Box<crate::repository::TreeReader<'a>>),
    Held(std::slice::Iter<'a, Entry>),
}

impl Window<'_> {
    /// The next entries in tree order, empty after the last.
    async fn next_window(&mut self) -> Result<Vec<Entry>> {
        let mut window = Vec::new();
        let mut chunks = 0;
        while window.len() < WINDOW_ENTRIES && chunks < WINDOW_CHUNKS {
            let entry = match self {
                Window::Streamed(reader) => reader.next().await?,
                Window::Held(entries) => entries.next().cloned(),
            };
            let Some(entry) = entry else { break };
            chunks += entry.chunks.len();
            window.push(entry);
        }
        Ok(window)
    }
}

/// What a restore carries from one window to the next.
#[derive(Default)]
struct Progress {
    report: RestoreReport,
    tally: Tally,
    /// Directories and symlinks that failed (files' failures are in the tally).
    failures: Vec<String>,
    open_dirs: OpenDirs,
    last_path: Option<String>,
}

impl Progress {
    /// Sets the mode, owner and times of `dirs`, deepest first, once nothing more is made
    /// in them (making an entry changes its directory's mtime).
    async fn set_dir_metadata(&mut self, dir: &Arc<Path>, dirs: Vec<Entry>) -> Result<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        let dir = dir.clone();
        let (failed, denied) = blocking(move || {
            let mut failed = Vec::new();
            let mut denied = false;
            for entry in dirs {
                match apply_metadata(&entry, &dir.join(&entry.path)) {
                    Ok(chown_denied) => denied |= chown_denied,
                    Err(e) => failed.push(format!("{}: setting metadata: {e}", entry.path)),
                }
            }
            Ok((failed, denied))
        })
        .await?;
        self.report.ownership_skipped |= denied;
        self.failures.extend(failed);
        Ok(())
    }
}

/// The directories a restore has made whose last entry the tree has not yet passed, by
/// their path with a `/` appended. A directory's entries are not always next to it (`a-b`
/// sorts between `a` and `a/c`), but they are next to each other: once the tree reaches a
/// path past `a/` that does not start with it, nothing more goes into `a`. What is open at
/// once is a path's ancestors and a few of their siblings, not the tree.
#[derive(Default)]
struct OpenDirs(std::collections::BTreeMap<String, Entry>);

impl OpenDirs {
    fn open(&mut self, dir: Entry) {
        self.0.insert(format!("{}/", dir.path), dir);
    }

    /// Moves the directories that nothing at or after `path` goes into to `closed`,
    /// deepest first.
    fn close_before(&mut self, path: &str, closed: &mut Vec<Entry>) {
        let ended: Vec<String> = self
            .0
            .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(path)))
            .map(|(prefix, _)| prefix)
            .filter(|prefix| !path.starts_with(prefix.as_str()))
            .cloned()
            .collect();
        // A directory's key sorts before its subdirectories' keys.
        for prefix in ended.iter().rev() {
            closed.extend(self.0.remove(prefix));
        }
    }

    /// Every directory still open, deepest first: the tree has ended.
    fn into_all(self) -> Vec<Entry> {
        self.0.into_values().rev().collect()
    }
}

/// Restores the files of one window. Files of one indexed chunk (most files, by count) are
/// restored a pack run at a time; the others stream chunk by chunk, at the same time: a few
/// large files alone would leave a core idle between their chunks. Files are named by their
/// index in the window, and their outcome is tallied.
async fn restore_files(
    repo: &Arc<Repository>,
    entries: &Arc<Vec<Entry>>,
    dir: &Arc<Path>,
) -> Tally {
    let (single, streamed): (Vec<usize>, Vec<usize>) = (0..entries.len())
        .filter(|&i| entries[i].kind == EntryKind::File)
        .partition(|&i| {
            let e = &entries[i];
            e.chunks.len() == 1 && repo.locate(&e.chunks[0]).is_some()
        });
    let contents = group_by_content(entries, &streamed);
    drop(streamed);
    // Indices, not references, go through the stream: a closure taking a reference
    // argument makes the future not `Send` for every lifetime (rust-lang/rust#64552),
    // and restores must be spawnable.
    let contents = &contents;
    let concurrency = Concurrency::for_repository(repo);
    let streaming = futures::stream::iter(0..contents.len())
        .map(|i| restore_content(repo, entries, dir, &contents[i], concurrency.read_ahead))
        .buffer_unordered(concurrency.files)
        .fold(Tally::default(), |total, one| async move { total.add(one) });
    let (streamed, by_runs) = futures::join!(
        streaming,
        restore_by_pack_runs(repo, entries, &single, dir, concurrency.runs)
    );
    streamed.add(by_runs)
}

/// A file to restore: its index in the window of the tree being restored.
type Target = usize;

/// A file whose content was written and verified.
#[derive(Debug)]
struct Written {
    bytes: u64,
    /// Setting its metadata: `Ok(true)` when ownership was refused (not running as root).
    metadata: std::io::Result<bool>,
}

/// What restoring some files came to: counts, and a line for each file that failed.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
    ownership_denied: bool,
    /// A failure was the data's (a corrupt or missing chunk), not the target's.
    corrupt: bool,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, path: &str, result: Result<Written>) {
        match result {
            Ok(written) => {
                self.files += 1;
                self.bytes += written.bytes;
                match written.metadata {
                    Ok(chown_denied) => self.ownership_denied |= chown_denied,
                    Err(e) => self.failures.push(format!("{path}: setting metadata: {e}")),
                }
            }
            // The file was removed: one failure line, and no metadata to set.
            Err(e) => {
                self.corrupt |= e.is_integrity_failure();
                self.failures.push(format!("{path}: {e}"));
            }
        }
    }

    fn add(mut self, other: Tally) -> Tally {
        self.files += other.files;
        self.bytes += other.bytes;
        self.ownership_denied |= other.ownership_denied;
        self.corrupt |= other.corrupt;
        self.failures.extend(other.failures);
        self
    }

    /// Every file of `targets` failed with `error`.
    fn all_failed(
        entries: &[Entry],
        targets: impl Iterator<Item = Target>,
        error: &RepoError,
    ) -> Tally {
        let mut tally = Tally::default();
        for i in targets {
            tally.record(&entries[i].path, Err(error.for_each_file()));
        }
        tally
    }
}

/// A range of one pack read at once, and the files whose one chunk lies in it.
struct Run {
    pack: Id,
    start: u64,
    end: u64,
    /// In pack order; the files of one chunk (duplicates) next to each other.
    files: Vec<Target>,
}

impl Run {
    fn targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.files.iter().copied()
    }
}

/// Groups single-chunk files into runs: chunks of one pack, in pack order, read through
/// gaps of at most `RUN_GAP` bytes and at most `RUN_LIMIT` bytes a run (a larger chunk is a
/// run of its own). The same chunk (duplicate files) is read once for all its files.
///
/// The plan costs 16 bytes a file while it is sorted and 8 in the runs: a file's chunk is
/// found again in the index when its run is written, rather than its location (and id)
/// being held for every file of the snapshot at once.
fn plan_runs(repo: &Repository, entries: &[Entry], files: &[Target]) -> Vec<Run> {
    let index = repo.index();
    let mut placed: Vec<(u32, u32, u32)> = files
        .iter()
        .filter_map(|&f| {
            let (pack, offset) = index.position(&entries[f].chunks[0])?;
            Some((pack, offset, u32::try_from(f).ok()?))
        })
        .collect();
    placed.sort_unstable();
    let mut runs: Vec<Run> = Vec::new();
    let mut last = None;
    for (pack, offset, file) in placed {
        let file = file as Target;
        if last == Some((pack, offset)) {
            // Another file of the chunk just planned.
            runs.last_mut().expect("a run was planned").files.push(file);
            continue;
        }
        last = Some((pack, offset));
        let loc = repo
            .locate(&entries[file].chunks[0])
            .expect("placed by the index above");
        let end = loc.offset + loc.length;
        match runs.last_mut() {
            Some(run) if joins_run(&run.pack, run.start, run.end, &loc) => {
                run.end = run.end.max(end);
                run.files.push(file);
            }
            _ => runs.push(Run {
                pack: loc.pack,
                start: loc.offset,
                end,
                files: vec![file],
            }),
        }
    }
    runs
}

/// Restores files of one chunk each: one ranged read per run of nearby chunks, then
/// decoding, verifying and writing every file of the run on one blocking thread, a few runs
/// at once. Far fewer storage requests and thread hand-offs than a file at a time.
async fn restore_by_pack_runs(
    repo: &Arc<Repository>,
    entries: &Arc<Vec<Entry>>,
    files: &[Target],
    dir: &Arc<Path>,
    parallel_runs: usize,
) -> Tally {
    let runs = plan_runs(repo, entries, files);
    // A run's read and decode buffers, handed on to the next run: fresh ones would be
    // faulted in page by page for every run.
    let spare: Arc<std::sync::Mutex<Vec<RunBuffers>>> = Default::default();
    futures::stream::iter(runs)
        .map(|run| {
            let repo = repo.clone();
            let entries = entries.clone();
            let dir = dir.clone();
            let spare = spare.clone();
            async move {
                let mut buffers = spare
                    .lock()
                    .expect("spare buffers")
                    .pop()
                    .unwrap_or_default();
                buffers.stored = match repo
                    .read_pack_range_into(&run.pack, run.start, run.end - run.start, buffers.stored)
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(e) => return Tally::all_failed(&entries, run.targets(), &e),
                };
                let run = Arc::new(run);
                let writing = (run.clone(), entries.clone());
                tokio::task::spawn_blocking(move || {
                    let tally = write_run(&repo, &writing.1, &dir, &writing.0, &mut buffers);
                    spare.lock().expect("spare buffers").push(buffers);
                    tally
                })
                .await
                .unwrap_or_else(|e| {
                    Tally::all_failed(
                        &entries,
                        run.targets(),
                        &RepoError::Invalid(format!("restore worker failed: {e}")),
                    )
                })
            }
        })
        .buffer_unordered(parallel_runs)
        .fold(Tally::default(), |total, one| async move { total.add(one) })
        .await
}

/// A pack run's stored bytes and a chunk's plaintext.
#[derive(Default)]
struct RunBuffers {
    stored: Vec<u8>,
    plain: Vec<u8>,
}

/// Decodes each chunk of a fetched run (in `buffers.stored`) and writes the files made of it.
fn write_run(
    repo: &Repository,
    entries: &[Entry],
    dir: &Path,
    run: &Run,
    buffers: &mut RunBuffers,
) -> Tally {
    let mut tally = Tally::default();
    let (bytes, plain) = (&buffers.stored, &mut buffers.plain);
    let mut decoded: Option<(Id, Result<Option<Id>>)> = None;
    for &i in &run.files {
        let id = entries[i].chunks[0];
        if decoded.as_ref().map(|(at, _)| *at) != Some(id) {
            let sha256 = match repo.locate(&id) {
                Some(loc) => {
                    let at = (loc.offset - run.start) as usize;
                    repo.decode_located(&id, &loc, &bytes[at..at + loc.length as usize], plain)
                }
                None => Err(RepoError::ChunkNotIndexed { chunk: id.to_hex() }),
            };
            decoded = Some((id, sha256));
        }
        let sha256 = &decoded.as_ref().expect("decoded above").1;
        let entry = &entries[i];
        let target = &dir.join(&entry.path);
        let result = sha256
            .as_ref()
            .map_err(|e| RepoError::Invalid(e.to_string()))
            .and_then(|sha256| {
                let plain = &plain;
                // Checking the chunk id usually computed the content's SHA-256 already.
                let verified = entry.digest.is_some() && *sha256 == entry.digest;
                if !verified {
                    let actual: [u8; 32] = Sha256::digest(plain).into();
                    verify_digest(entry, &actual)?;
                }
                let mut file =
                    create_file(target).map_err(|e| RepoError::write(target.display(), e))?;
                std::io::Write::write_all(&mut file, plain)
                    .map_err(|e| RepoError::write(target.display(), e))?;
                Ok(Written {
                    bytes: plain.len() as u64,
                    metadata: apply_file_metadata(entry, &file),
                })
            });
        if result.is_err() {
            // Never leave a partial file that looks restored.
            let _ = std::fs::remove_file(target);
        }
        tally.record(&entry.path, result);
    }
    tally
}

fn verify_digest(entry: &Entry, actual: &[u8; 32]) -> Result<()> {
    match entry.digest {
        Some(expected) if expected.0 != *actual => Err(RepoError::Invalid(format!(
            "content does not match the recorded SHA-256 {}",
            expected.short()
        ))),
        _ => Ok(()),
    }
}

/// A file of a snapshot with where each of its chunks starts ([`SnapshotReader::file_chunks`]).
#[derive(Debug, Clone)]
pub struct FileChunks {
    entry: Entry,
    /// One start per chunk, then the file's size.
    starts: Vec<u64>,
}

impl FileChunks {
    /// The file's path in the snapshot.
    pub fn path(&self) -> &str {
        &self.entry.path
    }
}

async fn copy_chunks<W: tokio::io::AsyncWrite + Unpin>(
    repo: &Arc<Repository>,
    entry: &Entry,
    out: &mut W,
    whole: bool,
) -> Result<u64> {
    let mut hasher = whole.then(Sha256::new);
    let written = write_chunks(repo, &entry.path, &entry.chunks, out, |_, data| {
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(data);
        }
        Ok(0..data.len())
    })
    .await?;
    out.flush()
        .await
        .map_err(|e| RepoError::write(&entry.path, e))?;
    if let Some(hasher) = hasher {
        verify_digest(entry, &hasher.finalize().into())?;
    }
    Ok(written)
}

/// Writes `chunks` of the file at `path` into `out` in order, read ahead as far as the
/// repository allows: of chunk `n` (its place in `chunks`), the bytes `part` picks once it
/// has seen them. Returns the bytes written.
async fn write_chunks<W: tokio::io::AsyncWrite + Unpin>(
    repo: &Arc<Repository>,
    path: &str,
    chunks: &[Id],
    out: &mut W,
    mut part: impl FnMut(usize, &[u8]) -> Result<std::ops::Range<usize>>,
) -> Result<u64> {
    // By place, not by reference: a stream over `&Id` makes the caller's future lose `Send`.
    let mut reads = futures::stream::iter(0..chunks.len())
        .map(|n| repo.read_chunk(&chunks[n]))
        .buffered(Concurrency::for_repository(repo).read_ahead)
        .enumerate();
    let mut written = 0u64;
    while let Some((n, data)) = reads.next().await {
        let data = data?;
        let range = part(n, &data)?;
        written += range.len() as u64;
        out.write_all(&data[range])
            .await
            .map_err(|e| RepoError::write(path, e))?;
    }
    Ok(written)
}

/// Groups files of more than one chunk (or none) by content, at most `COPIES_AT_ONCE` to a
/// group: each group is read once and written into all its files.
fn group_by_content(entries: &[Entry], files: &[Target]) -> Vec<Vec<Target>> {
    // A content: its chunks and its digest.
    type Content<'a> = (&'a [Id], Option<Id>);
    let mut groups: std::collections::HashMap<Content, Vec<Vec<Target>>> = Default::default();
    let mut order = Vec::new();
    for &f in files {
        let key = (entries[f].chunks.as_slice(), entries[f].digest);
        let slot = groups.entry(key).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        match slot.last_mut() {
            Some(group) if group.len() < COPIES_AT_ONCE => group.push(f),
            _ => slot.push(vec![f]),
        }
    }
    // In tree order, the way the files were listed.
    order
        .into_iter()
        .flat_map(|key| groups.remove(&key).unwrap_or_default())
        .collect()
}

/// Restores one content into each of its files; on failure none of them is left behind.
async fn restore_content(
    repo: &Arc<Repository>,
    entries: &Arc<Vec<Entry>>,
    dir: &Path,
    targets: &[Target],
    read_ahead: usize,
) -> Tally {
    let paths: Vec<PathBuf> = targets
        .iter()
        .map(|&i| dir.join(&entries[i].path))
        .collect();
    match write_content(repo, entries, targets, paths.clone(), read_ahead).await {
        Ok(written) => {
            let mut tally = Tally::default();
            for (&i, written) in targets.iter().zip(written) {
                tally.record(&entries[i].path, Ok(written));
            }
            tally
        }
        Err(e) => {
            // Never leave a partial file that looks restored.
            let _ = tokio::task::spawn_blocking(move || {
                for path in paths {
                    let _ = std::fs::remove_file(path);
                }
            })
            .await;
            Tally::all_failed(entries, targets.iter().copied(), &e)
        }
    }
}

/// Reads the content of `targets` (all the same) chunk by chunk, `read_ahead` ahead,
/// and writes each chunk into every file on a blocking thread while the next ones are read.
async fn write_content(
    repo: &Arc<Repository>,
    entries: &Arc<Vec<Entry>>,
    targets: &[Target],
    paths: Vec<PathBuf>,
    read_ahead: usize,
) -> Result<Vec<Written>> {
    let entry = &entries[targets[0]];
    let mut writer = blocking(move || ContentWriter::create(&paths).map_err(write_error)).await?;
    let mut chunks = futures::stream::iter(0..entry.chunks.len())
        .map(|i| repo.read_chunk(&entry.chunks[i]))
        .buffered(read_ahead);
    let mut next = chunks.next().await;
    while let Some(chunk) = next {
        let plain = chunk?;
        let mut w = writer;
        let write = blocking(move || w.write(&plain).map_err(write_error).map(|()| w));
        // The next chunk is read while this one is written.
        let done;
        (next, done) = futures::join!(chunks.next(), write);
        writer = done?;
    }
    let targets = targets.to_vec();
    let entries = entries.clone();
    blocking(move || {
        let (files, bytes, sha256) = writer.finish().map_err(write_error)?;
        verify_digest(&entries[targets[0]], &sha256)?;
        Ok(targets
            .iter()
            .zip(&files)
            .map(|(&i, file)| Written {
                bytes,
                metadata: apply_file_metadata(&entries[i], file),
            })
            .collect())
    })
    .await
}

/// One content written into its files, hashed once on the way.
struct ContentWriter {
    out: DirectWriter,
    hasher: Sha256,
}

impl ContentWriter {
    fn create(paths: &[PathBuf]) -> std::result::Result<Self, WriteError> {
        for path in paths {
            remove_non_dir(path).map_err(|source| WriteError {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self {
            out: DirectWriter::create(paths)?,
            hasher: Sha256::new(),
        })
    }

    fn write(&mut self, data: &[u8]) -> std::result::Result<(), WriteError> {
        self.hasher.update(data);
        self.out.write(data)
    }

    /// The files, their length and the content's SHA-256.
    fn finish(self) -> std::result::Result<(Vec<std::fs::File>, u64, [u8; 32]), WriteError> {
        let (files, len) = self.out.finish()?;
        Ok((files, len, self.hasher.finalize().into()))
    }
}

/// Makes `path` a directory of its own. One already there is kept; a symlink or a file in
/// its place is removed first, so that nothing restored below it lands elsewhere.
fn make_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(path)?;
            std::fs::create_dir(path)
        }
        // A parent the tree does not list (none should be missing) is made as well.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(path),
        Err(e) => Err(e),
    }
}

/// Removes what is at `path` unless it is a directory (or nothing): a symlink is removed,
/// not followed, and a file (perhaps a hard link to another) is replaced by a new one
/// rather than written over.
fn remove_non_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => std::fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a restored file at `path`, replacing whatever non-directory is there and never
/// following a symlink (one made in between fails the open).
fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    remove_non_dir(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn write_error(e: WriteError) -> RepoError {
    RepoError::write(e.path.display(), e.source)
}

fn worker_failed(e: tokio::task::JoinError) -> RepoError {
    RepoError::Invalid(format!("restore worker failed: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(worker_failed(e)))
}

/// Sets ownership, mode and mtime of a file just written, through its handle: no path
/// lookups, and on the worker that wrote it. Returns true when ownership was refused (not
/// root). Ownership goes first, since changing it clears set-user-ID bits.
fn apply_file_metadata(entry: &Entry, file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let chown_denied = ownership_denied(std::os::unix::fs::fchown(
        file,
        Some(entry.uid),
        Some(entry.gid),
    ))?;
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
    let mtime = filetime_from_ns(entry.mtime_ns);
    file.set_times(
        std::fs::FileTimes::new()
            .set_accessed(mtime)
            .set_modified(mtime),
    )?;
    Ok(chown_denied)
}

/// Sets mode, ownership and mtime of a directory or symlink. Returns true when ownership
/// was refused (not root).
fn apply_metadata(entry: &Entry, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let chown_denied = ownership_denied(std::os::unix::fs::lchown(
        path,
        Some(entry.uid),
        Some(entry.gid),
    ))?;
    let mtime = filetime_from_ns(entry.mtime_ns);
    if entry.kind == EntryKind::Symlink {
        set_symlink_mtime(path, mtime)?;
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
        let ft = filetime::FileTime::from_system_time(mtime);
        filetime::set_file_times(path, ft, ft)?;
    }
    Ok(chown_denied)
}

/// A chown's result: refused for lack of privilege (not root) is not an error, only noted.
fn ownership_denied(chown: std::io::Result<()>) -> std::io::Result<bool> {
    match chown {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(true),
        Err(e) => Err(e),
    }
}

fn filetime_from_ns(ns: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

fn set_symlink_mtime(path: &Path, mtime: std::time::SystemTime) -> std::io::Result<()> {
    let ft = filetime::FileTime::from_system_time(mtime);
    filetime::set_symlink_file_times(path, ft, ft)
}
