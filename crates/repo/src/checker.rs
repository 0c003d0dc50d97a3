//! Repository integrity: every finding, not only the first.
//!
//! Structure (always): the config, every snapshot and index object decodes and matches its
//! id; every snapshot's tree reads; every chunk a snapshot needs is indexed; every pack an
//! index names exists with the size the index says. With `read_data` (all packs, or a
//! random subset): every pack's content matches its id, and every chunk in it decodes and
//! matches its id. Each finding names the object and, where it can, the snapshots and files
//! affected. Packs that no index lists (left by an interrupted backup) are reported as
//! unreferenced, which is not an error: prune removes them. So are temporary files left by
//! writers killed mid-`put` (local storage), with their age: prune removes those older than
//! [`crate::prune::TEMPORARY_FILE_MIN_AGE`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::error::Result;
use crate::format::id::Id;
use crate::format::layout;
use crate::format::pack;
use crate::format::snapshot::Snapshot;
use crate::repository::{Repository, SpareBuffers};

#[derive(Debug, Clone, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A share of the packs, the least recently read first ([`Rotation`]).
    Subset(Rotation),
}

/// Which packs a partial read takes: `percent` of the packs (0 < p ≤ 100, at least one),
/// those never read first, then the longest unread (by `last_read`), ties in id order, so
/// that successive checks of p% read every pack within ⌈100 / p⌉ checks. `budget_bytes`
/// caps the bytes read (an egress budget): packs that would pass it are left for the next
/// check, though the first pack is read even when it alone is larger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    pub percent: f64,
    pub last_read: HashMap<Id, jiff::Timestamp>,
    pub budget_bytes: Option<u64>,
}

impl Rotation {
    pub fn percent(percent: f64) -> Self {
        Self {
            percent,
            ..Self::default()
        }
    }

    /// The packs to read of `present` (id, size), in reading order.
    pub fn select(&self, present: &[(Id, u64)]) -> Vec<(Id, u64)> {
        let mut order: Vec<(Id, u64)> = present.to_vec();
        order.sort_by_key(|(id, _)| (self.last_read.get(id).copied(), *id));
        let n = ((present.len() as f64 * self.percent / 100.0).ceil() as usize)
            .clamp(present.len().min(1), present.len());
        let mut chosen = Vec::new();
        let mut bytes = 0u64;
        for (id, size) in order.into_iter().take(n) {
            if let Some(budget) = self.budget_bytes {
                if !chosen.is_empty() && bytes + size > budget {
                    break;
                }
            }
            bytes += size;
            chosen.push((id, size));
        }
        chosen
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    /// Not damage: something to clean up (an unreferenced pack, a temporary file).
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The object key the finding is about.
    pub object: String,
    pub message: String,
    /// Snapshots and files that cannot be restored because of it (`<snapshot>:<path>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub index_objects: usize,
    pub packs: usize,
    pub packs_read: usize,
    /// Bytes of the packs read.
    pub bytes_read: u64,
    /// Packs a partial read left for a later check because of its byte budget.
    pub packs_over_budget: usize,
    pub chunks_verified: usize,
    pub unreferenced_packs: usize,
    pub temporary_files: usize,
    pub findings: Vec<Finding>,
    /// The indexed packs present in storage (what a full read would read).
    #[serde(skip)]
    pub packs_present: Vec<Id>,
    /// The packs read whole and found clean.
    #[serde(skip)]
    pub packs_read_clean: Vec<Id>,
}

impl CheckReport {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    fn error(
        &mut self,
        object: impl Into<String>,
        message: impl Into<String>,
        affected: Vec<String>,
    ) {
        self.findings.push(Finding {
            severity: Severity::Error,
            object: object.into(),
            message: message.into(),
            affected,
        });
    }
}

/// Errors whose affected files are found after the first pass: the finding's index in the
/// report, and the chunks it breaks.
#[derive(Default)]
struct Deferred(Vec<(usize, Vec<Id>)>);

impl Deferred {
    /// An error breaking `chunks`, whose affected files [`name_affected`] fills in.
    fn error(
        &mut self,
        report: &mut CheckReport,
        object: impl Into<String>,
        message: impl Into<String>,
        chunks: Vec<Id>,
    ) {
        report.error(object, message, vec![]);
        if !chunks.is_empty() {
            self.0.push((report.findings.len() - 1, chunks));
        }
    }
}

/// Up to this many affected files are named per finding.
const AFFECTED_LIMIT: usize = 10;
/// Remote packs read whole (one request each) and verified at once: verifying is CPU-bound,
/// so one per core; each costs a pack's size in memory.
const PACKS_IN_FLIGHT: usize = 2;
/// Local packs verified at once, each read a piece at a time: one more than the cores, so
/// that one reads while the others verify.
const LOCAL_PACKS_IN_FLIGHT: usize = 3;
/// A local pack is read in pieces of about this many bytes (whole chunks each, so at least
/// one chunk).
const PIECE: u64 = 2 << 20;

/// Which snapshot files use each chunk (of the damaged ones only).
#[derive(Default)]
struct Usage(HashMap<Id, Vec<String>>);

impl Usage {
    fn add(&mut self, chunk: Id, place: impl FnOnce() -> String) {
        let places = self.0.entry(chunk).or_default();
        if places.len() < AFFECTED_LIMIT {
            places.push(place());
        }
    }

    fn affected<'a>(&self, chunks: impl IntoIterator<Item = &'a Id>) -> Vec<String> {
        let set: BTreeSet<String> = chunks
            .into_iter()
            .filter_map(|c| self.0.get(c))
            .flatten()
            .cloned()
            .collect();
        set.into_iter().take(AFFECTED_LIMIT).collect()
    }
}

pub async fn check(repo: Arc<Repository>, read_data: ReadData) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let storage = repo.storage().clone();

    let (index, problems) = repo.load_index().await?;
    for (key, problem) in problems {
        report.error(key, problem, vec![]);
    }
    report.index_objects = storage.list(layout::INDEX_PREFIX).await?.len();
    let packs_stored: HashMap<Id, u64> = storage
        .list(layout::DATA_PREFIX)
        .await?
        .into_iter()
        .filter_map(|o| layout::id_of(&o.key).map(|id| (id, o.size)))
        .collect();
    report.packs = packs_stored.len();

    // Snapshots and their trees: the chunks they need. Which files use a chunk is asked
    // only of the damaged ones, in a second pass over the trees once damage is found, so
    // that a check holds a bit for each chunk, not a name for every file of every snapshot.
    let mut deferred = Deferred::default();
    let mut readable: Vec<(String, Snapshot)> = Vec::new();
    let ids = repo.snapshot_ids().await?;
    let mut readable_ids: Vec<Id> = Vec::new();
    report.snapshots = ids.len();
    let reader = repo.with_index(index);
    let index = reader.index();
    let mut needed = Needed::new(index.len());
    for id in ids {
        let key = layout::snapshot_key(&id);
        let snapshot = match reader.load_snapshot(&id).await {
            Ok(s) => s,
            Err(e) => {
                report.error(key, e.to_string(), vec![]);
                continue;
            }
        };
        let short = id.short();
        readable_ids.push(id);
        needed.add(index, &snapshot.tree.chunks);
        // Read as a stream: a check holds the set of needed chunks, never a whole tree.
        let mut tree = reader.tree_reader(&snapshot);
        let read = loop {
            match tree.next().await {
                Ok(Some(entry)) => needed.add(index, &entry.chunks),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = read {
            report.error(
                key,
                format!("tree unreadable: {e}"),
                vec![format!("{short}:<tree>")],
            );
            continue;
        }
        readable.push((short, snapshot));
    }

    // Chunks no index knows: find the pack that holds them, if any, to name it.
    let unindexed = std::mem::take(&mut needed.unindexed);
    let unreferenced: Vec<Id> = packs_stored
        .keys()
        .filter(|p| !index.packs().contains_key(p))
        .copied()
        .collect();
    report.unreferenced_packs = unreferenced.len();
    let mut holder: HashMap<Id, Id> = HashMap::new();
    if !unindexed.is_empty() {
        for pack_id in &unreferenced {
            let key = layout::pack_key(pack_id);
            if let Ok(bytes) = storage.get(&key).await {
                if let Ok(header) = pack::parse_header(repo.codec(), &bytes) {
                    for blob in header.blobs {
                        holder.insert(blob.id, *pack_id);
                    }
                }
            }
        }
    }
    let mut by_pack: HashMap<Option<Id>, Vec<Id>> = HashMap::new();
    for chunk in unindexed {
        by_pack
            .entry(holder.get(&chunk).copied())
            .or_default()
            .push(chunk);
    }
    for (pack_id, chunks) in by_pack {
        match pack_id {
            Some(p) => deferred.error(
                &mut report,
                layout::pack_key(&p),
                format!(
                    "holds {} chunk(s) that snapshots need, but no index lists this pack (an index object is missing); `backstop repair index` indexes it from its header",
                    chunks.len()
                ),
                chunks,
            ),
            None => deferred.error(
                &mut report,
                format!("chunk {}", chunks[0]),
                format!("{} chunk(s) that snapshots need are in no index and no pack", chunks.len()),
                chunks,
            ),
        }
    }
    for pack_id in &unreferenced {
        if !holder.values().any(|p| p == pack_id) {
            report.findings.push(Finding {
                severity: Severity::Info,
                object: layout::pack_key(pack_id),
                message:
                    "unreferenced pack (left by an interrupted backup or prune); prune removes it"
                        .into(),
                affected: vec![],
            });
        }
    }

    // Temporary files of interrupted writes: not objects, not damage.
    let now = std::time::SystemTime::now();
    for leftover in storage.leftovers("").await? {
        let age = now.duration_since(leftover.modified).unwrap_or_default();
        let message = if age >= crate::prune::TEMPORARY_FILE_MIN_AGE {
            format!(
                "temporary file of an interrupted write, {} min old; prune removes it",
                age.as_secs() / 60
            )
        } else {
            format!(
                "temporary file, {} s old: a write in progress, or an interrupted one that prune removes once it is {} min old",
                age.as_secs(),
                crate::prune::TEMPORARY_FILE_MIN_AGE.as_secs() / 60
            )
        };
        report.temporary_files += 1;
        report.findings.push(Finding {
            severity: Severity::Info,
            object: leftover.key,
            message,
            affected: vec![],
        });
    }

    // Packs the index names: present, and of the size it says. Chunks by their ordinal in
    // the index: a chunk's id and place are looked up again when its pack is read, so that
    // a check of millions of chunks holds 4 bytes for each, not a copy of the index.
    let mut chunks_by_pack: HashMap<Id, Vec<u32>> = HashMap::new();
    for (ordinal, (_, loc)) in index.chunks().enumerate() {
        let ordinal = u32::try_from(ordinal).expect("fewer than 2^32 chunks");
        chunks_by_pack.entry(loc.pack).or_default().push(ordinal);
    }
    let ids_of = |pack_id: &Id| -> Vec<Id> {
        chunks_by_pack
            .get(pack_id)
            .into_iter()
            .flatten()
            .map(|&o| *index.at(o as usize).0)
            .collect()
    };
    let mut indexed_packs: Vec<(Id, u64)> = index.packs().iter().map(|(k, v)| (*k, *v)).collect();
    indexed_packs.sort();
    for (pack_id, size) in &indexed_packs {
        match packs_stored.get(pack_id) {
            None => deferred.error(
                &mut report,
                layout::pack_key(pack_id),
                "pack is missing (an index lists it)",
                ids_of(pack_id),
            ),
            Some(stored) if stored != size => deferred.error(
                &mut report,
                layout::pack_key(pack_id),
                format!("pack is {stored} bytes, the index says {size}"),
                ids_of(pack_id),
            ),
            Some(_) => {}
        }
    }

    // Object Lock: every object a snapshot needs must still be locked, or anyone holding
    // the storage credentials could delete it.
    if storage.object_lock().is_some() {
        let now = jiff::Timestamp::now();
        let mut needed_objects: Vec<String> =
            readable_ids.iter().map(layout::snapshot_key).collect();
        let mut needed_packs: Vec<Id> = (0..index.len())
            .filter(|&o| needed.has(o))
            .map(|o| index.at(o).1.pack)
            .filter(|p| packs_stored.contains_key(p))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        needed_packs.sort();
        needed_objects.extend(needed_packs.iter().map(layout::pack_key));
        for key in needed_objects {
            let until = storage.locked_until(&key).await?;
            if until.is_none_or(|u| u <= now) {
                report.error(
                    key,
                    match until {
                        Some(u) => format!("not protected: its Object Lock lapsed at {u} while a snapshot still needs it; `backstop prune` extends the lock of every object still referenced"),
                        None => "not protected: it has no Object Lock though the repository is configured with one; `backstop prune` locks every object still referenced".into(),
                    },
                    vec![],
                );
            }
        }
    }

    // Read data: every selected pack, whole.
    let present: Vec<(Id, u64)> = indexed_packs
        .iter()
        .filter_map(|(id, _)| packs_stored.get(id).map(|size| (*id, *size)))
        .collect();
    report.packs_present = present.iter().map(|(id, _)| *id).collect();
    let selected: Vec<Id> = match &read_data {
        ReadData::None => vec![],
        ReadData::All => report.packs_present.clone(),
        ReadData::Subset(rotation) => {
            let chosen = rotation.select(&present);
            let wanted = ((present.len() as f64 * rotation.percent / 100.0).ceil() as usize)
                .clamp(present.len().min(1), present.len());
            report.packs_over_budget = wanted - chosen.len();
            chosen.into_iter().map(|(id, _)| id).collect()
        }
    };
    let in_pieces = !storage.is_remote();
    // Piece buffers, handed from pack to pack (none when packs are read whole).
    let buffers = in_pieces.then(SpareBuffers::default);
    let in_flight = if in_pieces {
        LOCAL_PACKS_IN_FLIGHT
    } else {
        PACKS_IN_FLIGHT
    };
    let results: Vec<PackVerdict> = futures::stream::iter(selected)
        .map(|pack_id| {
            let chunks: Vec<(Id, crate::format::index::Location)> = chunks_by_pack
                .get(&pack_id)
                .into_iter()
                .flatten()
                .map(|&o| {
                    let (id, loc) = index.at(o as usize);
                    (*id, loc)
                })
                .collect();
            let size = packs_stored.get(&pack_id).copied().unwrap_or(0);
            read_and_verify_pack(repo.clone(), pack_id, size, chunks, buffers.clone())
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    for (pack_id, problems, verified) in results {
        report.packs_read += 1;
        report.bytes_read += packs_stored.get(&pack_id).copied().unwrap_or(0);
        report.chunks_verified += verified;
        if problems.is_empty() {
            report.packs_read_clean.push(pack_id);
        }
        for (message, chunks) in problems {
            deferred.error(&mut report, layout::pack_key(&pack_id), message, chunks);
        }
    }
    name_affected(&reader, &readable, deferred, &mut report).await;
    Ok(report)
}

/// The chunks snapshots need: a bit for each chunk of the index (by its ordinal), and the
/// ids of those no index lists (none, in a sound repository). A set of ids would cost more
/// than the index itself at millions of chunks.
struct Needed {
    bits: Vec<u64>,
    unindexed: BTreeSet<Id>,
}

impl Needed {
    fn new(indexed: usize) -> Self {
        Self {
            bits: vec![0; indexed.div_ceil(64)],
            unindexed: BTreeSet::new(),
        }
    }

    fn add(&mut self, index: &crate::format::index::MasterIndex, chunks: &[Id]) {
        for chunk in chunks {
            match index.ordinal(chunk) {
                Some(o) => self.bits[o / 64] |= 1 << (o % 64),
                None => {
                    self.unindexed.insert(*chunk);
                }
            }
        }
    }

    fn has(&self, ordinal: usize) -> bool {
        self.bits[ordinal / 64] & (1 << (ordinal % 64)) != 0
    }
}

/// The second pass: the files (and trees) of each snapshot that use a damaged chunk,
/// named in the findings that broke them.
async fn name_affected(
    reader: &Repository,
    snapshots: &[(String, Snapshot)],
    deferred: Deferred,
    report: &mut CheckReport,
) {
    if deferred.0.is_empty() {
        return;
    }
    let damaged: HashSet<Id> = deferred
        .0
        .iter()
        .flat_map(|(_, chunks)| chunks.iter().copied())
        .collect();
    let mut usage = Usage::default();
    for (short, snapshot) in snapshots {
        for chunk in snapshot.tree.chunks.iter().filter(|c| damaged.contains(c)) {
            usage.add(*chunk, || format!("{short}:<tree>"));
        }
        // Read in the first pass; a tree that fails now names nothing more.
        let mut tree = reader.tree_reader(snapshot);
        while let Ok(Some(entry)) = tree.next().await {
            for chunk in entry.chunks.iter().filter(|c| damaged.contains(c)) {
                usage.add(*chunk, || format!("{short}:{}", entry.path));
            }
        }
    }
    for (finding, chunks) in deferred.0 {
        report.findings[finding].affected = usage.affected(&chunks);
    }
}

/// A pack read whole: its id, its problems (each with the chunks it breaks) and how many
/// chunks verified.
type PackVerdict = (Id, Vec<(String, Vec<Id>)>, usize);

/// Reads one pack and verifies it ([`PackCheck`]). A local pack is read in pieces of whole
/// chunks ([`pieces`]), each hashed and its chunks decoded as it comes, so that a check holds
/// a piece of each pack rather than the pack; a remote one is read whole, in one request. A
/// pack whose header does not lie past its last chunk (a damaged pack or index) is read
/// again whole, so that its findings are those of a whole read.
async fn read_and_verify_pack(
    repo: Arc<Repository>,
    pack_id: Id,
    size: u64,
    chunks: Vec<(Id, crate::format::index::Location)>,
    buffers: Option<SpareBuffers>,
) -> PackVerdict {
    let key = layout::pack_key(&pack_id);
    let unreadable = |e: crate::storage::StorageError, chunks: &[(Id, _)]| {
        let all = chunks.iter().map(|(c, _)| *c).collect();
        (pack_id, vec![(e.to_string(), all)], 0)
    };
    let mut check = PackCheck::new(repo.codec().clone(), key.clone(), pack_id, size, chunks);
    let plan = buffers.as_ref().and_then(|_| pieces(size, &check.chunks));
    if let (Some(plan), Some(buffers)) = (plan, buffers) {
        let last = plan.len() - 1;
        let mut whole = true;
        // One buffer for every piece of the pack, from the last pack verified.
        let mut buf = buffers.take();
        for (n, piece) in plan.into_iter().enumerate() {
            buf = match repo
                .storage()
                .get_range_into(&key, piece.start, piece.end - piece.start, buf)
                .await
            {
                Ok(b) => b,
                Err(e) => return unreadable(e, &check.chunks),
            };
            let done = tokio::task::spawn_blocking(move || {
                let whole = check.piece(piece.start, &buf, piece.chunks, n == last);
                (check, whole, buf)
            })
            .await;
            match done {
                Ok((c, w, b)) => (check, whole, buf) = (c, w, b),
                Err(e) => return worker_failed(pack_id, e),
            }
        }
        buffers.give(buf);
        if whole {
            return check.verdict();
        }
    }
    let bytes = match repo.storage().get(&key).await {
        Ok(b) => b,
        Err(e) => return unreadable(e, &check.chunks),
    };
    let mut check = check.again(bytes.len() as u64);
    tokio::task::spawn_blocking(move || {
        let all = 0..check.chunks.len();
        check.piece(0, &bytes, all, true);
        check.verdict()
    })
    .await
    .unwrap_or_else(|e| worker_failed(pack_id, e))
}

fn worker_failed(pack_id: Id, e: tokio::task::JoinError) -> PackVerdict {
    (
        pack_id,
        vec![(format!("verify worker failed: {e}"), vec![])],
        0,
    )
}

/// A piece of a pack to read: bytes `start..end`, holding chunks `chunks` (by their place
/// in the pack's list, sorted by offset).
struct Piece {
    start: u64,
    end: u64,
    chunks: std::ops::Range<usize>,
}

/// Cuts a pack of `size` bytes into pieces of whole chunks, about [`PIECE`] bytes each, the
/// last one from the end of the last chunk to the pack's end (its header). `None` when the
/// chunks (sorted by offset) overlap or pass the pack's end: a damaged index, which a whole
/// read reports.
fn pieces(size: u64, chunks: &[(Id, crate::format::index::Location)]) -> Option<Vec<Piece>> {
    let mut plan = Vec::new();
    let (mut start, mut first, mut end) = (0u64, 0usize, 0u64);
    for (n, (_, loc)) in chunks.iter().enumerate() {
        let chunk_end = loc.offset.checked_add(loc.length)?;
        if loc.offset < end || chunk_end > size {
            return None;
        }
        end = chunk_end;
        if end - start >= PIECE {
            plan.push(Piece {
                start,
                end,
                chunks: first..n + 1,
            });
            (start, first) = (end, n + 1);
        }
    }
    plan.push(Piece {
        start,
        end: size,
        chunks: first..chunks.len(),
    });
    Some(plan)
}

/// The verification of one pack, fed its bytes in order: the whole pack's SHA-256 against
/// its id, its header, and each chunk the index places in it against the chunk's id.
struct PackCheck {
    codec: crate::format::crypto::Codec,
    key: String,
    pack_id: Id,
    /// The pack's size (as listed, or as a whole read found it).
    size: u64,
    /// The chunks the index places in the pack, by offset.
    chunks: Vec<(Id, crate::format::index::Location)>,
    hasher: sha2::Sha256,
    header: Option<String>,
    chunk_problems: Vec<(String, Vec<Id>)>,
    verified: usize,
    /// A chunk's plaintext, reused.
    plain: Vec<u8>,
}

impl PackCheck {
    fn new(
        codec: crate::format::crypto::Codec,
        key: String,
        pack_id: Id,
        size: u64,
        mut chunks: Vec<(Id, crate::format::index::Location)>,
    ) -> Self {
        chunks.sort_by_key(|(_, loc)| loc.offset);
        Self {
            codec,
            key,
            pack_id,
            size,
            chunks,
            hasher: sha2::Digest::new(),
            header: None,
            chunk_problems: Vec::new(),
            verified: 0,
            plain: Vec::new(),
        }
    }

    /// The same check, to start over with a whole read of `size` bytes.
    fn again(self, size: u64) -> Self {
        Self::new(self.codec, self.key, self.pack_id, size, self.chunks)
    }

    /// Takes the pack's bytes `start..start + bytes.len()`, which follow the last piece and
    /// hold `chunks`; the `last` piece also holds the header. Returns `false` when the
    /// header begins before the last piece (the pack must be read whole).
    fn piece(
        &mut self,
        start: u64,
        bytes: &[u8],
        chunks: std::ops::Range<usize>,
        last: bool,
    ) -> bool {
        sha2::Digest::update(&mut self.hasher, bytes);
        let end = start + bytes.len() as u64;
        for (chunk, loc) in &self.chunks[chunks] {
            let chunk_end = loc.offset + loc.length;
            if loc.offset < start || chunk_end > end {
                self.chunk_problems.push((
                    format!("chunk {} lies past the end of the pack", chunk.short()),
                    vec![*chunk],
                ));
                continue;
            }
            let stored = &bytes[(loc.offset - start) as usize..(chunk_end - start) as usize];
            match crate::repository::decode_chunk_into(
                &self.codec,
                &self.key,
                chunk,
                stored,
                &mut self.plain,
            ) {
                Ok(_) => self.verified += 1,
                Err(e) => self.chunk_problems.push((
                    e.to_string()
                        .trim_start_matches(&format!("object {} is corrupt: ", self.key))
                        .to_string(),
                    vec![*chunk],
                )),
            }
        }
        if !last {
            return true;
        }
        match pack::header_in_tail(&self.codec, bytes, start, self.size) {
            Some(header) => {
                self.header = header.err().map(|e| format!("pack header: {e}"));
                true
            }
            None => false,
        }
    }

    /// The findings: the pack's hash, its header, then each chunk's.
    fn verdict(self) -> PackVerdict {
        let mut problems = Vec::new();
        if Id(sha2::Digest::finalize(self.hasher).into()) != self.pack_id {
            problems.push((
                "content does not match its id (SHA-256)".to_string(),
                vec![],
            ));
        }
        problems.extend(self.header.map(|h| (h, vec![])));
        problems.extend(self.chunk_problems);
        // A damaged chunk also makes the whole-pack hash fail; name the chunks in that
        // finding.
        let all_chunks = problems_chunks(&problems);
        if let Some(first) = problems.first_mut() {
            if first.1.is_empty() {
                first.1 = all_chunks;
            }
        }
        (self.pack_id, problems, self.verified)
    }
}

fn problems_chunks(problems: &[(String, Vec<Id>)]) -> Vec<Id> {
    problems
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, length: u64) -> (Id, crate::format::index::Location) {
        let loc = crate::format::index::Location {
            pack: Id([0; 32]),
            offset,
            length,
            raw_length: length,
        };
        (Id::sha256(&offset.to_le_bytes()), loc)
    }

    /// A local pack is read in pieces of whole chunks that follow each other from its first
    /// byte to its last (the header after the last chunk); chunks that overlap or pass the
    /// pack's end leave the pack to a whole read.
    #[test]
    fn pieces_cover_a_pack_in_whole_chunks() {
        let mb = 1 << 20;
        // A gap before the first chunk and between two, chunks of 1.5 MiB and of 3 MiB.
        let chunks = vec![
            at(100, 3 * mb / 2),
            at(100 + 3 * mb / 2, 3 * mb / 2),
            at(10 + 3 * mb + 100, 3 * mb),
            at(10 + 6 * mb + 100, 1000),
        ];
        let size = 10 + 6 * mb + 100 + 1000 + 500;
        let plan = pieces(size, &chunks).expect("sound chunks");
        assert_eq!(plan.first().map(|p| p.start), Some(0));
        assert_eq!(plan.last().map(|p| p.end), Some(size));
        assert!(plan.windows(2).all(|w| w[0].end == w[1].start));
        let mut next_chunk = 0;
        for (n, piece) in plan.iter().enumerate() {
            assert_eq!(piece.chunks.start, next_chunk, "every chunk in one piece");
            next_chunk = piece.chunks.end;
            for (_, loc) in &chunks[piece.chunks.clone()] {
                assert!(loc.offset >= piece.start && loc.offset + loc.length <= piece.end);
            }
            if n + 1 < plan.len() {
                assert!(
                    piece.end - piece.start >= PIECE,
                    "{n}: a piece of at least PIECE"
                );
            }
        }
        assert_eq!(next_chunk, chunks.len());

        let mut overlapping = chunks.clone();
        overlapping[1].1.offset -= 1;
        assert!(pieces(size, &overlapping).is_none());
        assert!(
            pieces(size - 600, &chunks).is_none(),
            "a chunk past the end"
        );
        let plan = pieces(40, &[]).expect("a pack with no chunk listed");
        assert_eq!((plan.len(), plan[0].start, plan[0].end), (1, 0, 40));
    }

    fn packs(n: u8) -> Vec<(Id, u64)> {
        (0..n).map(|i| (Id::sha256(&[i]), 100)).collect()
    }

    /// Issue 18, item 5: 25% per check reads every pack within four checks, never-read
    /// packs first, then the longest unread.
    #[test]
    fn a_rotation_reads_every_pack_within_its_window() {
        let present = packs(8);
        let mut rotation = Rotation::percent(25.0);
        let mut seen = std::collections::HashSet::new();
        for day in 0..4 {
            let chosen = rotation.select(&present);
            assert_eq!(chosen.len(), 2);
            for (id, _) in chosen {
                assert!(
                    seen.insert(id),
                    "day {day} read {id:?} again before every pack was read"
                );
                rotation.last_read.insert(
                    id,
                    jiff::Timestamp::from_second(1_800_000_000 + day * 86_400).unwrap(),
                );
            }
        }
        assert_eq!(seen.len(), 8);
        // The fifth check starts the round again with the packs read longest ago.
        let oldest: std::collections::HashSet<Id> = rotation
            .last_read
            .iter()
            .filter(|(_, t)| t.as_second() == 1_800_000_000)
            .map(|(id, _)| *id)
            .collect();
        let again: std::collections::HashSet<Id> = rotation
            .select(&present)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(again, oldest);
    }

    #[test]
    fn a_byte_budget_caps_a_rotation_but_reads_at_least_one_pack() {
        let present = packs(8);
        let rotation = Rotation {
            percent: 100.0,
            budget_bytes: Some(250),
            ..Rotation::default()
        };
        assert_eq!(
            rotation.select(&present).len(),
            2,
            "two packs of 100 fit in 250"
        );
        let tiny = Rotation {
            percent: 100.0,
            budget_bytes: Some(10),
            ..Rotation::default()
        };
        assert_eq!(tiny.select(&present).len(), 1);
    }
}
