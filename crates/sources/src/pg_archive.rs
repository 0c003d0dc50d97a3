//! Completeness of a PostgreSQL custom-format archive, checked as it streams past.
//!
//! `pg_dump --format=custom` to a pipe writes a header, its table of contents (every
//! object, and which ones have data), then one data block per entry with data: a block
//! type, the entry's dump id, and chunks (a length, then that many bytes) ended by a
//! zero length; large objects are a block of (oid, chunks…, 0) ended by an oid of 0. There
//! is no trailer, so a stream cut at a block boundary by a tool that still exits 0 would
//! pass for whole. [`ArchiveChecker`] reads the table of contents and follows the blocks,
//! and says at the end whether every entry that has data got its block, terminated.
//!
//! Only the framing is read: data is skipped, never buffered, and the table of contents
//! (the schema's size) is the only thing held.

use std::collections::BTreeSet;

const MAGIC: &[u8] = b"PGDMP";
/// `archCustom` in pg_dump's format byte.
const FORMAT_CUSTOM: u8 = 1;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

/// An archive version (major, minor, revision), as pg_dump writes it.
type Version = (u8, u8, u8);
const V1_14: Version = (1, 14, 0);
const V1_15: Version = (1, 15, 0);
const V1_16: Version = (1, 16, 0);

/// `archDirectory`: the directory format's `toc.dat` holds the same table of contents.
const FORMAT_DIRECTORY: u8 = 5;

/// What a checker holds once the table of contents is read.
#[derive(Debug, Clone)]
struct Toc {
    int_size: usize,
    /// Dump ids of the entries that have data, and their names for messages.
    with_data: std::collections::BTreeMap<i64, String>,
    /// Every entry, in the archive's order.
    entries: Vec<TocEntry>,
}

/// One object of an archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub dump_id: i64,
    /// `TABLE`, `TABLE DATA`, `INDEX`, `SEQUENCE`, …
    pub desc: String,
    /// The object's name (for a constraint or a default: the table's, then its own).
    pub tag: String,
    pub namespace: Option<String>,
    /// pg_dump's section: [`SECTION_NONE`] (comments, security labels: they belong to the
    /// section of the entry before them), pre-data (2), data (3) or [`SECTION_POST_DATA`].
    pub section: i64,
    /// The dump ids it depends on.
    pub deps: Vec<i64>,
}

pub const SECTION_NONE: i64 = 1;
pub const SECTION_PRE_DATA: i64 = 2;
pub const SECTION_DATA: i64 = 3;
pub const SECTION_POST_DATA: i64 = 4;

#[derive(Debug)]
enum Phase {
    /// Header and table of contents: bytes are kept until both parse.
    Head(HeadGatherer),
    /// Between blocks: a block type byte, or the end of the archive.
    BlockStart,
    /// Reading an integer of `int_size + 1` bytes (at most 9) for `then`: `len` read so far.
    Int {
        bytes: [u8; 9],
        len: usize,
        then: IntFor,
    },
    /// Skipping a chunk's payload, then expecting the next chunk length.
    Skip {
        left: u64,
        blobs: bool,
    },
    Failed(String),
}

impl Phase {
    fn int(then: IntFor) -> Self {
        Phase::Int {
            bytes: [0; 9],
            len: 0,
            then,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum IntFor {
    /// A block's dump id; `blobs` for a large-object block.
    DumpId { blobs: bool },
    /// A chunk length (0 ends the data, or the current large object).
    ChunkLength { blobs: bool },
    /// A large object's oid (0 ends the block).
    BlobOid,
}

/// Follows a custom-format archive fed in pieces of any size.
#[derive(Debug)]
pub struct ArchiveChecker {
    phase: Phase,
    toc: Option<Toc>,
    /// Blocks whose terminator was read.
    done: BTreeSet<i64>,
    /// The block being read.
    current: Option<i64>,
    /// Blocks ended since [`ArchiveChecker::take_finished`] was last asked.
    finished: Vec<i64>,
    /// Bytes consumed so far.
    position: u64,
    /// Where the block being read starts, and whether it holds large objects.
    block_start: u64,
    block_blobs: bool,
    /// Every block read whole, in the archive's order; the last one's end is set by
    /// [`ArchiveChecker::step`] once the step that ended it is counted.
    spans: Vec<BlockSpan>,
    span_open: bool,
}

/// Where one data block lies in an archive: from its type byte to the end of its
/// terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    pub dump_id: i64,
    /// A large-object block rather than a table's data.
    pub blobs: bool,
    pub start: u64,
    pub end: u64,
}

impl Default for ArchiveChecker {
    fn default() -> Self {
        Self {
            phase: Phase::Head(HeadGatherer::default()),
            toc: None,
            done: BTreeSet::new(),
            current: None,
            finished: Vec::new(),
            position: 0,
            block_start: 0,
            block_blobs: false,
            spans: Vec::new(),
            span_open: false,
        }
    }
}

impl ArchiveChecker {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = self.step(bytes);
            bytes = &bytes[used..];
        }
    }

    /// At the end of the stream: `Ok` with the number of data blocks when every entry
    /// with data got its block and the stream ended between blocks; otherwise what is
    /// missing or cut.
    pub fn finish(&mut self) -> Result<usize, String> {
        if let Phase::Head(head) = &mut self.phase {
            // The stream ended before the gatherer tried again.
            let held = head.held();
            let parsed = head.parse();
            self.after_head(parsed, held, 0);
        }
        match &self.phase {
            Phase::Failed(why) => return Err(why.clone()),
            Phase::Head(head) => {
                return Err(format!(
                    "the archive ended in its header or table of contents (after {} bytes)",
                    head.held()
                ))
            }
            Phase::BlockStart => {}
            Phase::Int { .. } | Phase::Skip { .. } => {
                return Err(format!(
                    "the archive ended inside the data of {}",
                    self.describe(self.current)
                ))
            }
        }
        let toc = self.toc.as_ref().expect("past the header");
        let missing: Vec<&String> = toc
            .with_data
            .iter()
            .filter(|(id, _)| !self.done.contains(id))
            .map(|(_, name)| name)
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
            return Err(format!(
                "the archive ended before the data of {} of its {} entries with data ({}{})",
                missing.len(),
                toc.with_data.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
        Ok(self.done.len())
    }

    /// The dump ids of the data blocks that ended since this was last asked: their data has
    /// streamed past.
    pub fn take_finished(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.finished)
    }

    /// Where each data block read whole so far lies, in the archive's order.
    pub fn spans(&self) -> &[BlockSpan] {
        &self.spans
    }

    /// Whether the next bytes are a block's header (its type and dump id), or the end.
    fn at_block_header(&self) -> bool {
        matches!(
            self.phase,
            Phase::BlockStart
                | Phase::Int {
                    then: IntFor::DumpId { .. },
                    ..
                }
        )
    }

    fn end_block(&mut self) {
        if let Some(id) = self.current.take() {
            self.done.insert(id);
            self.finished.push(id);
            self.spans.push(BlockSpan {
                dump_id: id,
                blobs: self.block_blobs,
                start: self.block_start,
                end: 0,
            });
            self.span_open = true;
        }
    }

    fn describe(&self, id: Option<i64>) -> String {
        match (id, &self.toc) {
            (Some(id), Some(toc)) => toc
                .with_data
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("entry {id}")),
            _ => "an entry".into(),
        }
    }

    /// Follows what the head's gatherer made of `pushed` more bytes (`before` were held
    /// until then); returns how many of the pushed bytes this step consumed.
    fn after_head(
        &mut self,
        parsed: Result<Option<(Toc, usize)>, String>,
        before: usize,
        pushed: usize,
    ) -> usize {
        match parsed {
            Ok(Some((toc, used))) => {
                let Phase::Head(head) = std::mem::replace(&mut self.phase, Phase::BlockStart)
                else {
                    unreachable!("called in the head phase")
                };
                self.toc = Some(toc);
                if used >= before {
                    // The head ended in the pushed bytes: what follows is the first block's.
                    used - before
                } else {
                    // It ended in bytes already counted: step back to its end and follow the
                    // blocks' bytes that came with it, then the pushed ones.
                    let held = head.into_bytes();
                    self.position = used as u64;
                    self.feed(&held[used..before]);
                    0
                }
            }
            Ok(None) => pushed,
            Err(why) => {
                self.fail(why);
                pushed
            }
        }
    }

    fn fail(&mut self, why: String) -> usize {
        self.phase = Phase::Failed(why);
        0
    }

    /// Consumes some of `bytes` (at least one, or all of them once failed); returns how many.
    fn step(&mut self, bytes: &[u8]) -> usize {
        let used = self.step_phase(bytes);
        self.position += used as u64;
        if std::mem::take(&mut self.span_open) {
            let span = self.spans.last_mut().expect("a block just ended");
            span.end = self.position;
        }
        used
    }

    fn step_phase(&mut self, bytes: &[u8]) -> usize {
        match &mut self.phase {
            Phase::Failed(_) => bytes.len(),
            Phase::Head(head) => {
                let before = head.held();
                let parsed = head.push(bytes);
                self.after_head(parsed, before, bytes.len())
            }
            Phase::BlockStart => {
                let blobs = match bytes[0] {
                    BLK_DATA => false,
                    BLK_BLOBS => true,
                    other => {
                        self.fail(format!(
                            "unknown block type {other} after the data of {}",
                            self.describe(self.current)
                        ));
                        return 1;
                    }
                };
                self.phase = Phase::int(IntFor::DumpId { blobs });
                self.block_start = self.position;
                self.block_blobs = blobs;
                1
            }
            Phase::Skip { left, blobs } => {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                if *left == 0 {
                    let blobs = *blobs;
                    self.phase = Phase::int(IntFor::ChunkLength { blobs });
                }
                take as usize
            }
            Phase::Int {
                bytes: int,
                len,
                then,
            } => {
                let int_size = self.toc.as_ref().expect("past the header").int_size;
                let need = int_size + 1 - *len;
                let take = need.min(bytes.len());
                int[*len..*len + take].copy_from_slice(&bytes[..take]);
                *len += take;
                if *len == int_size + 1 {
                    let value = decode_int(&int[..*len]);
                    let then = *then;
                    self.int_read(value, then);
                }
                take
            }
        }
    }

    fn int_read(&mut self, value: i64, then: IntFor) {
        let int = Phase::int;
        self.phase = match then {
            IntFor::DumpId { blobs } => {
                let toc = self.toc.as_ref().expect("past the header");
                if !toc.with_data.contains_key(&value) {
                    self.fail(format!(
                        "a data block for entry {value}, which the table of contents does not list with data"
                    ));
                    return;
                }
                if self.done.contains(&value) {
                    self.fail(format!(
                        "a second data block for {}",
                        self.describe(Some(value))
                    ));
                    return;
                }
                self.current = Some(value);
                if blobs {
                    int(IntFor::BlobOid)
                } else {
                    int(IntFor::ChunkLength { blobs })
                }
            }
            IntFor::ChunkLength { blobs } => match value {
                0 if blobs => int(IntFor::BlobOid),
                0 => {
                    self.end_block();
                    Phase::BlockStart
                }
                n if n < 0 => {
                    self.fail(format!(
                        "a negative chunk length in the data of {}",
                        self.describe(self.current)
                    ));
                    return;
                }
                n => Phase::Skip {
                    left: n as u64,
                    blobs,
                },
            },
            IntFor::BlobOid => match value {
                0 => {
                    self.end_block();
                    Phase::BlockStart
                }
                _ => int(IntFor::ChunkLength { blobs: true }),
            },
        };
    }
}

/// pg_dump's integer: a sign byte, then the magnitude's bytes, least significant first. A
/// magnitude beyond `i64::MAX` (only a damaged archive has one) is taken as `i64::MAX`.
fn decode_int(bytes: &[u8]) -> i64 {
    let (sign, digits) = bytes.split_first().expect("an integer has a sign byte");
    let mut magnitude: u64 = 0;
    for (i, b) in digits.iter().enumerate().take(8) {
        magnitude |= u64::from(*b) << (8 * i);
    }
    let value = i64::try_from(magnitude).unwrap_or(i64::MAX);
    if *sign != 0 {
        -value
    } else {
        value
    }
}

/// A cursor over the buffered head; `None` from a read means more bytes are needed.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.buf.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn int(&mut self) -> Option<i64> {
        let n = self.int_size + 1;
        self.bytes(n).map(decode_int)
    }

    /// A string: its length, then its bytes; a length of -1 is NULL (`Some(None)`).
    fn str(&mut self) -> Option<Result<Option<String>, String>> {
        let len = self.int()?;
        if len < 0 {
            return Some(Ok(None));
        }
        // Within what an archive can hold: a length beyond it is damage, not a wait.
        if len > (1 << 30) {
            return Some(Err(format!(
                "a string of {len} bytes in the table of contents"
            )));
        }
        self.bytes(len as usize)
            .map(|b| Ok(Some(String::from_utf8_lossy(b).into_owned())))
    }
}

/// An archive's header and table of contents gathered from a stream in pieces. A parse
/// starts from the first byte, so it is tried again only once the bytes held have doubled
/// since the last try (above a few kilobytes): a head of many megabytes (a schema of thousands of tables) that
/// arrives in pipe-sized reads is parsed a handful of times, not once a read.
#[derive(Debug, Default)]
pub struct HeadGatherer {
    bytes: Vec<u8>,
    /// Bytes to hold before the next try.
    try_at: usize,
    parses: usize,
}

/// Up to this many bytes held, a head is parsed again with every piece: a small head is
/// known (and the blocks after it followed) as soon as it is whole.
const EAGER_HEAD: usize = 64 << 10;

/// An archive's header and table of contents: its bytes and its entries.
#[derive(Debug, Clone)]
pub struct ArchiveHead {
    pub bytes: Vec<u8>,
    pub entries: Vec<TocEntry>,
}

impl HeadGatherer {
    /// Adds the stream's next bytes: once the head is whole, the table and how many of the
    /// bytes held it takes (more may be held: the start of the first block).
    fn push(&mut self, piece: &[u8]) -> Result<Option<(Toc, usize)>, String> {
        self.bytes.extend_from_slice(piece);
        if self.bytes.len() > EAGER_HEAD && self.bytes.len() < self.try_at {
            return Ok(None);
        }
        self.parse()
    }

    /// Parses the bytes held now (at the stream's end, whatever was held).
    fn parse(&mut self) -> Result<Option<(Toc, usize)>, String> {
        self.parses += 1;
        let parsed = parse_head(&self.bytes)?;
        if parsed.is_none() {
            self.try_at = self.bytes.len() * 2;
        }
        Ok(parsed)
    }

    /// As [`HeadGatherer::push`], for a reader that keeps the head: the head once whole.
    pub fn gather(&mut self, piece: &[u8]) -> Result<Option<ArchiveHead>, String> {
        let parsed = self.push(piece)?;
        Ok(self.head(parsed))
    }

    /// At the stream's end: the head, if the bytes held hold it whole.
    pub fn finish(&mut self) -> Result<Option<ArchiveHead>, String> {
        let parsed = self.parse()?;
        Ok(self.head(parsed))
    }

    fn head(&mut self, parsed: Option<(Toc, usize)>) -> Option<ArchiveHead> {
        parsed.map(|(toc, used)| {
            let mut bytes = std::mem::take(&mut self.bytes);
            bytes.truncate(used);
            ArchiveHead {
                bytes,
                entries: toc.entries,
            }
        })
    }

    /// Bytes held so far.
    pub fn held(&self) -> usize {
        self.bytes.len()
    }

    /// How many times the bytes held were parsed.
    pub fn parses(&self) -> usize {
        self.parses
    }

    fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Parses the header and table of contents in `buf`: `Ok(None)` when more bytes are
/// needed, else the table and how many bytes it took.
fn parse_head(buf: &[u8]) -> Result<Option<(Toc, usize)>, String> {
    parse_toc(buf, false)
}

/// As [`parse_head`]; `directory` also reads a directory-format `toc.dat` (whose entries
/// name their data files instead of giving offsets).
fn parse_toc(buf: &[u8], directory: bool) -> Result<Option<(Toc, usize)>, String> {
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    macro_rules! string {
        ($c:expr) => {
            need!($c.str())?
        };
    }
    if buf.len() < MAGIC.len() {
        return if MAGIC.starts_with(buf) {
            Ok(None)
        } else {
            Err("not a custom-format archive (no PGDMP header)".into())
        };
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err("not a custom-format archive (no PGDMP header)".into());
    }
    let mut c = Cursor {
        buf,
        at: MAGIC.len(),
        int_size: 4,
    };
    let version: Version = (need!(c.byte()), need!(c.byte()), need!(c.byte()));
    if version < V1_14 {
        return Err(format!(
            "archive version {}.{}.{} is older than this check reads (1.14, PostgreSQL 12 and later)",
            version.0, version.1, version.2
        ));
    }
    let int_size = need!(c.byte()) as usize;
    if !(1..=8).contains(&int_size) {
        return Err(format!("an integer size of {int_size} bytes"));
    }
    c.int_size = int_size;
    let off_size = need!(c.byte()) as usize;
    if !(1..=8).contains(&off_size) {
        return Err(format!("an offset size of {off_size} bytes"));
    }
    let format = need!(c.byte());
    if format != FORMAT_CUSTOM && !(directory && format == FORMAT_DIRECTORY) {
        return Err(format!("archive format {format}, not the custom format"));
    }
    if version >= V1_15 {
        need!(c.byte()); // compression algorithm
    } else {
        need!(c.int()); // compression level
    }
    for _ in 0..7 {
        need!(c.int()); // the creation time's fields
    }
    for _ in 0..3 {
        string!(c); // database name, server version, pg_dump version
    }
    let count = need!(c.int());
    if count < 0 {
        return Err(format!("a table of contents of {count} entries"));
    }
    let mut with_data = std::collections::BTreeMap::new();
    let mut entries = Vec::new();
    for _ in 0..count {
        let dump_id = need!(c.int());
        let has_data = need!(c.int()) != 0;
        string!(c); // table oid
        string!(c); // oid
        let tag = string!(c).unwrap_or_default();
        let desc = string!(c).unwrap_or_default();
        let section = need!(c.int());
        string!(c); // definition
        string!(c); // drop
        string!(c); // copy
        let namespace = string!(c);
        string!(c); // tablespace
        string!(c); // table access method
        if version >= V1_16 {
            need!(c.int()); // relkind
        }
        string!(c); // owner
        string!(c); // "false" (WITH OIDS)
        let mut deps = Vec::new();
        while let Some(dep) = string!(c) {
            deps.push(dep.parse::<i64>().unwrap_or(-1));
        }
        if format == FORMAT_DIRECTORY {
            string!(c); // the data file's name
        } else {
            need!(c.byte()); // offset flag
            need!(c.bytes(off_size));
        }
        if has_data {
            with_data.insert(dump_id, format!("{desc} {tag}"));
        }
        entries.push(TocEntry {
            dump_id,
            desc,
            tag,
            namespace,
            section,
            deps,
        });
    }
    Ok(Some((
        Toc {
            int_size,
            with_data,
            entries,
        },
        c.at,
    )))
}

/// The entries of an archive's table of contents (a custom-format head, or a
/// directory-format `toc.dat`), in order.
pub fn toc_entries(buf: &[u8]) -> Result<Vec<TocEntry>, String> {
    match parse_toc(buf, true)? {
        Some((toc, _)) => Ok(toc.entries),
        None => Err("the table of contents is cut short".into()),
    }
}

/// Objects a selected table needs and that are not tables' parts: created when something
/// restored depends on them.
const SUPPORT: &[&str] = &[
    "SCHEMA",
    "SEQUENCE",
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "TYPE",
    "DOMAIN",
    "COLLATION",
];

/// The entries that restore `tables` (schema, name) and only them: each table, its data,
/// defaults, indexes, constraints, triggers, rules and policies, the sequences, functions,
/// types and schemas they depend on; not a foreign key to a table left out, nor any other
/// table. Returns them in archive order (a `pg_restore -L` list must follow the archive
/// order to be read from a stream), or the tables not found.
pub fn select_tables(
    entries: &[TocEntry],
    tables: &[(String, String)],
) -> Result<Vec<TocEntry>, Vec<String>> {
    use std::collections::{HashMap, HashSet};
    let missing: Vec<String> = tables
        .iter()
        .filter(|(schema, name)| {
            !entries.iter().any(|e| {
                e.desc == "TABLE" && e.namespace.as_deref() == Some(schema) && &e.tag == name
            })
        })
        .map(|(schema, name)| format!("{schema}.{name}"))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let by_id: HashMap<i64, &TocEntry> = entries.iter().map(|e| (e.dump_id, e)).collect();
    let mut included: HashSet<i64> = entries
        .iter()
        .filter(|e| {
            e.desc == "TABLE"
                && tables.iter().any(|(schema, name)| {
                    e.namespace.as_deref() == Some(schema.as_str()) && &e.tag == name
                })
        })
        .map(|e| e.dump_id)
        .collect();
    let is_support = |e: &TocEntry| SUPPORT.contains(&e.desc.as_str());
    loop {
        let before = included.len();
        for e in entries {
            if included.contains(&e.dump_id) || e.desc == "TABLE" {
                continue;
            }
            let take = if is_support(e) {
                // Wanted by something already taken (never the public schema, which exists).
                !(e.desc == "SCHEMA" && e.tag == "public")
                    && entries
                        .iter()
                        .any(|o| included.contains(&o.dump_id) && o.deps.contains(&e.dump_id))
            } else {
                // A part of taken tables only: every dependency that is a table or a part
                // of one is taken, and something is.
                let part_deps: Vec<i64> = e
                    .deps
                    .iter()
                    .copied()
                    .filter(|d| by_id.get(d).is_some_and(|o| !is_support(o)))
                    .collect();
                e.deps.iter().any(|d| included.contains(d))
                    && part_deps.iter().all(|d| included.contains(d))
            };
            if take {
                included.insert(e.dump_id);
            }
        }
        if included.len() == before {
            break;
        }
    }
    Ok(entries
        .iter()
        .filter(|e| included.contains(&e.dump_id))
        .cloned()
        .collect())
}

/// Post-data objects a restore builds while later tables' data is still loading: those whose
/// build reads only tables already loaded. Others (triggers, event triggers, a
/// materialized view's data, index attachments) wait for the end of the data, as
/// `pg_restore` orders them.
const STAGED: &[&str] = &["INDEX", "CONSTRAINT", "FK CONSTRAINT"];

/// Which post-data objects of an archive can be built as soon as the tables they read have
/// their data, while the stream goes on loading the others: a custom-format stream is
/// restored by one `pg_restore` job, and a large table's index builds otherwise wait for
/// every later table's data.
#[derive(Debug, Clone)]
pub struct PostDataPlan {
    /// Every entry in archive order, with its section as `pg_restore` takes it.
    entries: Vec<(TocEntry, i64)>,
    /// Entries that may be built early, in archive order: the `TABLE DATA` blocks they wait
    /// for, and the staged entries they depend on.
    staged: Vec<Staged>,
    /// Dump ids of staged entries handed out.
    taken: std::collections::HashSet<i64>,
}

#[derive(Debug, Clone)]
struct Staged {
    dump_id: i64,
    data: Vec<i64>,
    after: Vec<i64>,
}

impl PostDataPlan {
    pub fn new(entries: &[TocEntry]) -> Self {
        use std::collections::HashMap;
        // An entry of no section belongs to the section before it (pg_restore's rule).
        let mut current = SECTION_PRE_DATA;
        let entries: Vec<(TocEntry, i64)> = entries
            .iter()
            .map(|e| {
                if e.section != SECTION_NONE {
                    current = e.section;
                }
                (e.clone(), current)
            })
            .collect();
        let by_id: HashMap<i64, &(TocEntry, i64)> =
            entries.iter().map(|pair| (pair.0.dump_id, pair)).collect();
        let mut data_of: HashMap<i64, i64> = HashMap::new();
        for (e, _) in &entries {
            if e.desc == "TABLE DATA" {
                for table in &e.deps {
                    data_of.insert(*table, e.dump_id);
                }
            }
        }
        let is_candidate = |e: &TocEntry, section: i64| {
            section == SECTION_POST_DATA
                && e.section == SECTION_POST_DATA
                && STAGED.contains(&e.desc.as_str())
        };
        let mut staged = Vec::new();
        'entries: for (e, section) in &entries {
            if !is_candidate(e, *section) {
                continue;
            }
            // Everything it depends on, directly or not: the tables among them must have
            // their data, and any post-data object among them must be staged too.
            let mut seen = std::collections::HashSet::new();
            let mut queue: Vec<i64> = e.deps.clone();
            let (mut data, mut after) = (Vec::new(), Vec::new());
            while let Some(id) = queue.pop() {
                if !seen.insert(id) {
                    continue;
                }
                let Some((dep, dep_section)) = by_id.get(&id) else {
                    continue;
                };
                if *dep_section == SECTION_POST_DATA {
                    if !is_candidate(dep, *dep_section) {
                        continue 'entries;
                    }
                    after.push(id);
                }
                if dep.desc == "TABLE" {
                    data.extend(data_of.get(&id));
                }
                queue.extend(&dep.deps);
            }
            staged.push(Staged {
                dump_id: e.dump_id,
                data,
                after,
            });
        }
        Self {
            entries,
            staged,
            taken: Default::default(),
        }
    }

    /// The staged entries not handed out yet whose tables' data is all in `loaded` (dump
    /// ids of `TABLE DATA` blocks) and whose staged dependencies are handed out (earlier, or
    /// now: a list is built in archive order): in archive order.
    pub fn take_ready(&mut self, loaded: &std::collections::HashSet<i64>) -> Vec<TocEntry> {
        let mut ready = std::collections::HashSet::new();
        for s in &self.staged {
            if !self.taken.contains(&s.dump_id)
                && s.data.iter().all(|d| loaded.contains(d))
                && s.after
                    .iter()
                    .all(|d| self.taken.contains(d) || ready.contains(d))
            {
                ready.insert(s.dump_id);
            }
        }
        self.taken.extend(&ready);
        self.entries
            .iter()
            .filter(|(e, _)| ready.contains(&e.dump_id))
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// The post-data entries not handed out, in archive order: what is built once all the
    /// data is loaded.
    pub fn rest(&self) -> Vec<TocEntry> {
        self.entries
            .iter()
            .filter(|(e, section)| {
                *section == SECTION_POST_DATA && !self.taken.contains(&e.dump_id)
            })
            .map(|(e, _)| e.clone())
            .collect()
    }
}

/// Blocks a stream has passed to `pg_restore` whole, with the stream's length at their end,
/// until they land: the stream handed to `pg_restore` is a margin past their end, more than
/// can be in flight between the stream and what `pg_restore` has processed (its writer's
/// buffer, the pipe, its read buffer), so that their `COPY` is over.
#[derive(Debug, Default)]
pub struct Landings {
    passed: std::collections::VecDeque<(i64, u64)>,
}

impl Landings {
    /// `block` was passed whole; the stream was `end` bytes long at its end.
    pub fn passed(&mut self, block: i64, end: u64) {
        self.passed.push_back((block, end));
    }

    /// The blocks that have landed once `handed` bytes are handed on, in stream order.
    pub fn landed(&mut self, handed: u64, margin: u64) -> Vec<i64> {
        let mut landed = Vec::new();
        while let Some(&(block, end)) = self.passed.front() {
            if handed < end + margin {
                break;
            }
            landed.push(block);
            self.passed.pop_front();
        }
        landed
    }
}

/// Where the data blocks of a dump lie, as a backup records them in the snapshot's facts
/// ([`encode_spans`]): the first block's start, then each block's dump id (`b` before it for
/// large objects) and length, blocks following each other.
pub const SPANS_FACT: &str = "data_blocks";

/// The text of [`SPANS_FACT`] for `spans` (which follow each other, as a checker reads them).
pub fn encode_spans(spans: &[BlockSpan]) -> String {
    let mut text = spans.first().map_or(0, |s| s.start).to_string();
    for span in spans {
        text.push(' ');
        if span.blobs {
            text.push('b');
        }
        text.push_str(&format!("{}+{}", span.dump_id, span.end - span.start));
    }
    text
}

/// The spans [`encode_spans`] wrote, or what is wrong with the text.
pub fn decode_spans(text: &str) -> Result<Vec<BlockSpan>, String> {
    let mut words = text.split(' ');
    let mut at: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("{SPANS_FACT}: no start offset"))?;
    words
        .map(|word| {
            let (blobs, rest) = match word.strip_prefix('b') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            let (id, len) = rest
                .split_once('+')
                .and_then(|(id, len)| Some((id.parse().ok()?, len.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("{SPANS_FACT}: {word:?} is not a dump id and a length"))?;
            let end = at
                .checked_add(len)
                .ok_or_else(|| format!("{SPANS_FACT}: {word:?} ends past any file"))?;
            let span = BlockSpan {
                dump_id: id,
                blobs,
                start: at,
                end,
            };
            at = span.end;
            Ok(span)
        })
        .collect()
}

/// Shares `spans` out among `loaders` before a load, by size: the largest block first,
/// each to the loader with the fewest bytes so far. Each share is in the archive's order,
/// the order a `pg_restore` reading a stream needs its blocks in.
pub fn share_blocks(spans: &[BlockSpan], loaders: usize) -> Vec<Vec<BlockSpan>> {
    let mut shares = vec![Vec::new(); loaders.max(1)];
    let mut bytes = vec![0u64; shares.len()];
    let mut largest_first: Vec<usize> = (0..spans.len()).collect();
    largest_first.sort_by_key(|&i| std::cmp::Reverse(spans[i].end - spans[i].start));
    for i in largest_first {
        let least = (0..bytes.len())
            .min_by_key(|&l| bytes[l])
            .expect("a loader");
        bytes[least] += spans[i].end - spans[i].start;
        shares[least].push(spans[i]);
    }
    for share in &mut shares {
        share.sort_by_key(|s| s.start);
    }
    shares
}

/// Rewrites a custom-format archive for one of several `pg_restore` processes that load its
/// data side by side, each from its own copy of the stream: the head passes as it is, and
/// each data block either passes whole (`take` says this process loads it) or is replaced
/// by an empty block of the same id. `pg_restore`, reading the stream in order, finds every
/// block it expects and copies no rows into a table another process loads.
///
/// It also says which of the blocks it passed whole have *landed* ([`BlockRouter::landed`]).
pub struct BlockRouter<F> {
    checker: ArchiveChecker,
    /// Bytes of the head still to pass.
    head_left: usize,
    take: F,
    /// A block's header, held until its dump id is read.
    header: Vec<u8>,
    passing: bool,
    /// Bytes routed out so far, and of those, the ones routed before the last call.
    emitted: u64,
    handed: u64,
    landings: Landings,
}

impl<F: FnMut(i64) -> bool> BlockRouter<F> {
    /// `head`: the archive's header and table of contents, which the stream begins with.
    pub fn new(head: &[u8], take: F) -> Self {
        let mut checker = ArchiveChecker::default();
        checker.feed(head);
        Self {
            checker,
            head_left: head.len(),
            take,
            header: Vec::new(),
            passing: true,
            emitted: 0,
            handed: 0,
            landings: Landings::default(),
        }
    }

    /// The blocks this stream loads that have landed since this was last asked
    /// ([`Landings`]). Handed means routed before the last call to [`BlockRouter::route`]:
    /// `Running::feed_routed` writes what one call routes before it routes more.
    pub fn landed(&mut self, margin: u64) -> Vec<i64> {
        self.landings.landed(self.handed, margin)
    }

    /// Routes the stream's next `bytes`, appending what passes to `out`.
    pub fn route(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        self.handed = self.emitted;
        let start = out.len();
        let head = self.head_left.min(bytes.len());
        out.extend_from_slice(&bytes[..head]);
        self.head_left -= head;
        bytes = &bytes[head..];
        while !bytes.is_empty() {
            let in_header = self.checker.at_block_header();
            let used = self.checker.step(bytes);
            let (piece, rest) = bytes.split_at(used);
            bytes = rest;
            if in_header {
                self.route_header(piece, out);
            } else {
                // A damaged archive passes on as it is, for `pg_restore` to report.
                self.passing |= matches!(self.checker.phase, Phase::Failed(_));
                if self.passing {
                    out.extend_from_slice(piece);
                }
            }
            for block in self.checker.take_finished() {
                if self.passing {
                    let end = self.emitted + (out.len() - start) as u64;
                    self.landings.passed(block, end);
                }
            }
        }
        self.emitted += (out.len() - start) as u64;
    }

    /// A piece of a block's header: held until the block's id is read, then passed on with
    /// the block's end in place of its data if another stream loads it.
    fn route_header(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        self.header.extend_from_slice(piece);
        if self.checker.at_block_header() {
            return;
        }
        out.append(&mut self.header);
        self.passing = match (&self.checker.phase, self.checker.current) {
            (Phase::Failed(_), _) | (_, None) => true,
            (_, Some(block)) => (self.take)(block),
        };
        if !self.passing {
            // The block's end: a zero chunk length, or a zero large-object oid.
            let int_size = self.checker.toc.as_ref().map_or(4, |t| t.int_size);
            out.extend(std::iter::repeat_n(0u8, int_size + 1));
        }
    }
}

/// A `pg_restore -L` list of `entries` (only the leading dump id of each line counts).
pub fn restore_list(entries: &[TocEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}; 0 0 {} {} {}\n",
                e.dump_id,
                e.desc,
                e.namespace.as_deref().unwrap_or("-"),
                e.tag
            )
        })
        .collect()
}

/// Passes an archive through unchanged while checking it.
pub struct CheckingReader<R> {
    inner: R,
    checker: std::sync::Arc<std::sync::Mutex<ArchiveChecker>>,
}

impl<R> CheckingReader<R> {
    pub fn new(inner: R, checker: std::sync::Arc<std::sync::Mutex<ArchiveChecker>>) -> Self {
        Self { inner, checker }
    }
}

impl<R: std::io::Read> std::io::Read for CheckingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.checker
            .lock()
            .expect("archive checker lock")
            .feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer of archives in pg_dump's framing, for the tests.
    struct Archive {
        bytes: Vec<u8>,
    }

    impl Archive {
        fn int(&mut self, v: i64) {
            self.bytes.push(u8::from(v < 0));
            self.bytes
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }

        fn str(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.bytes.extend_from_slice(s.as_bytes());
                }
            }
        }

        /// A header and a table of contents: (dump id, has data, desc, tag).
        fn new(entries: &[(i64, bool, &str, &str)]) -> Self {
            let mut a = Archive {
                bytes: b"PGDMP".to_vec(),
            };
            a.bytes.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_CUSTOM]);
            a.int(0);
            for v in [1, 2, 3, 4, 5, 2026, 0] {
                a.int(v);
            }
            for s in ["orders", "15.20", "15.20"] {
                a.str(Some(s));
            }
            a.int(entries.len() as i64);
            for (id, data, desc, tag) in entries {
                a.int(*id);
                a.int(i64::from(*data));
                a.str(Some("0"));
                a.str(Some("0"));
                a.str(Some(tag));
                a.str(Some(desc));
                a.int(2);
                for s in [
                    Some("CREATE …"),
                    Some(""),
                    None,
                    Some("public"),
                    Some(""),
                    Some("heap"),
                ] {
                    a.str(s);
                }
                a.str(Some("postgres"));
                a.str(Some("false"));
                a.str(Some("1"));
                a.str(None);
                a.bytes.push(if *data { 1 } else { 3 });
                a.bytes.extend_from_slice(&[0; 8]);
            }
            a
        }

        fn data(&mut self, id: i64, chunks: &[&[u8]]) {
            self.bytes.push(BLK_DATA);
            self.int(id);
            for chunk in chunks {
                self.int(chunk.len() as i64);
                self.bytes.extend_from_slice(chunk);
            }
            self.int(0);
        }

        fn blobs(&mut self, id: i64, objects: &[(i64, &[u8])]) {
            self.bytes.push(BLK_BLOBS);
            self.int(id);
            for (oid, data) in objects {
                self.int(*oid);
                // As pg_dump: an empty object has no chunk, only its terminator.
                if !data.is_empty() {
                    self.int(data.len() as i64);
                    self.bytes.extend_from_slice(data);
                }
                self.int(0);
            }
            self.int(0);
        }
    }

    fn checked(bytes: &[u8], piece: usize) -> Result<usize, String> {
        let mut checker = ArchiveChecker::default();
        for part in bytes.chunks(piece.max(1)) {
            checker.feed(part);
        }
        checker.finish()
    }

    fn whole() -> Archive {
        let mut a = Archive::new(&[
            (1, false, "TABLE", "orders"),
            (2, true, "TABLE DATA", "orders"),
            (3, true, "TABLE DATA", "empty"),
            (4, true, "BLOBS", "BLOBS"),
        ]);
        a.data(2, &[b"1\tfirst\n", b"2\tsecond\n"]);
        a.data(3, &[]);
        a.blobs(4, &[(16400, b"\x00\x01"), (16401, b"")]);
        a
    }

    /// How many bytes the head takes, `None` while cut short.
    fn head_length(buf: &[u8]) -> Result<Option<usize>, String> {
        Ok(parse_head(buf)?.map(|(_, len)| len))
    }

    /// A schema of thousands of objects has a head of megabytes, which a backup reads from
    /// a pipe in small pieces: it is parsed a handful of times, not once a piece, and the
    /// blocks after it are followed from the same place whatever piece the head ended in.
    #[test]
    fn a_large_head_read_in_small_pieces_is_parsed_a_few_times() {
        let names: Vec<String> = (0..4000).map(|i| format!("table_{i:05}")).collect();
        let mut toc: Vec<(i64, bool, &str, &str)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            toc.push((2 * i as i64 + 1, false, "TABLE", name));
            toc.push((2 * i as i64 + 2, true, "TABLE DATA", name));
        }
        let mut a = Archive::new(&toc);
        let head_len = a.bytes.len();
        for i in 0..names.len() {
            a.data(2 * i as i64 + 2, &[b"1\tone\n"]);
        }
        assert!(head_len > 500_000, "a head of {head_len} bytes");

        let mut gatherer = HeadGatherer::default();
        let mut head = None;
        for piece in a.bytes.chunks(4096) {
            head = gatherer.gather(piece).unwrap();
            if head.is_some() {
                break;
            }
        }
        // The stream may end before the gatherer tries again.
        let head = head
            .or_else(|| gatherer.finish().unwrap())
            .expect("the head is whole");
        assert_eq!(head.bytes, a.bytes[..head_len]);
        assert_eq!(head.entries.len(), toc.len());
        // One a piece up to 64 KiB (16), then one each time the bytes held double.
        assert!(
            gatherer.parses() <= 24,
            "{} parses of a {head_len}-byte head read 4 KiB at a time",
            gatherer.parses()
        );

        let mut whole = ArchiveChecker::default();
        whole.feed(&a.bytes);
        for piece in [1000, 4096, 65_536, 300_000] {
            let mut checker = ArchiveChecker::default();
            for part in a.bytes.chunks(piece) {
                checker.feed(part);
            }
            assert_eq!(checker.finish(), Ok(names.len()), "pieces of {piece}");
            assert_eq!(checker.spans(), whole.spans(), "pieces of {piece}");
            assert_eq!(checker.spans()[0].start, head_len as u64);
            assert_eq!(checker.position, a.bytes.len() as u64);
        }
    }

    #[test]
    fn the_head_length_is_where_the_first_block_starts() {
        let archive = whole();
        let bytes = &archive.bytes;
        let len = head_length(bytes).unwrap().expect("a whole head");
        assert_eq!(
            bytes[len], BLK_DATA,
            "the first data block follows the head"
        );
        assert_eq!(head_length(&bytes[..len]).unwrap(), Some(len));
        assert_eq!(head_length(&bytes[..len - 1]).unwrap(), None);
        assert!(head_length(b"PGDMX").is_err());
    }

    /// Issue 17, item 1: two loaders' streams of one archive, each taking the blocks the
    /// other did not. Each stream is a whole archive (every block, in order), the blocks a
    /// loader does not take are empty, and between them the two carry every block's data
    /// once, however the stream is split.
    #[test]
    fn routed_streams_are_whole_archives_that_share_the_blocks_out() {
        let a = whole();
        let head = &a.bytes[..head_length(&a.bytes).unwrap().unwrap()];
        for piece in [1, 2, 3, 7, 64, 100_000] {
            let taken = std::cell::RefCell::new(std::collections::HashMap::new());
            let route = |loader: usize| {
                let mut router = BlockRouter::new(head, |block| {
                    *taken.borrow_mut().entry(block).or_insert(loader) == loader
                });
                let mut out = Vec::new();
                for part in a.bytes.chunks(piece) {
                    router.route(part, &mut out);
                }
                out
            };
            // Loader 0 reaches block 2 first; loader 1 the others.
            taken.borrow_mut().insert(2, 0);
            let (first, second) = (route(1), route(0));
            for out in [&first, &second] {
                assert!(out.starts_with(head), "pieces of {piece}");
                assert_eq!(checked(out, 3), Ok(3), "a whole archive, pieces of {piece}");
            }
            let mut expected_first = Archive {
                bytes: head.to_vec(),
            };
            expected_first.data(2, &[]);
            expected_first.data(3, &[]);
            expected_first.blobs(4, &[(16400, b"\x00\x01"), (16401, b"")]);
            assert_eq!(first, expected_first.bytes, "pieces of {piece}");
            let mut expected_second = Archive {
                bytes: head.to_vec(),
            };
            expected_second.data(2, &[b"1\tfirst\n", b"2\tsecond\n"]);
            expected_second.data(3, &[]);
            expected_second.blobs(4, &[]);
            assert_eq!(second, expected_second.bytes, "pieces of {piece}");
        }
    }

    /// Issue 17, item 1: the spans a checker records follow each other from the end of the
    /// head to the archive's end, however the stream is split, and come back from the facts'
    /// text; a loader's stream of the head and the spans of its blocks holds each of them
    /// whole.
    #[test]
    fn recorded_spans_cut_the_archive_into_whole_blocks() {
        let a = whole();
        let head_len = head_length(&a.bytes).unwrap().unwrap();
        let head = &a.bytes[..head_len];
        let mut spans = Vec::new();
        for piece in [1, 2, 3, 7, 64, 100_000] {
            let mut checker = ArchiveChecker::default();
            for part in a.bytes.chunks(piece) {
                checker.feed(part);
            }
            spans = checker.spans().to_vec();
            let blocks: Vec<(i64, bool)> = spans.iter().map(|s| (s.dump_id, s.blobs)).collect();
            assert_eq!(
                blocks,
                [(2, false), (3, false), (4, true)],
                "pieces of {piece}"
            );
            assert_eq!(spans[0].start, head_len as u64, "pieces of {piece}");
            assert!(
                spans.windows(2).all(|w| w[0].end == w[1].start),
                "{spans:?}"
            );
            assert_eq!(spans[2].end, a.bytes.len() as u64, "pieces of {piece}");
            assert_eq!(decode_spans(&encode_spans(&spans)), Ok(spans.clone()));
        }
        // A loader's stream: the head and its own blocks, each read from its span.
        for mine in [&[2][..], &[3, 4], &[2, 4]] {
            let mut stream = head.to_vec();
            for span in spans.iter().filter(|s| mine.contains(&s.dump_id)) {
                stream.extend_from_slice(&a.bytes[span.start as usize..span.end as usize]);
            }
            let mut checker = ArchiveChecker::default();
            checker.feed(&stream);
            assert_eq!(checker.take_finished(), mine, "each block whole");
            assert!(
                matches!(checker.phase, Phase::BlockStart),
                "ends between blocks"
            );
        }
        assert!(decode_spans("").is_err());
        assert!(decode_spans("120 2+40 three+5").is_err());
        assert!(decode_spans(&format!("120 2+{}", u64::MAX)).is_err());
    }

    /// The largest block goes first, each to the loader with the fewest bytes; each share
    /// keeps the archive's order; a loader may get none.
    #[test]
    fn blocks_are_shared_out_by_size_in_the_archives_order() {
        let mut at = 0;
        let spans: Vec<BlockSpan> = [(1, 100), (2, 10), (3, 60), (4, 50), (5, 5)]
            .iter()
            .map(|&(id, len)| {
                at += len;
                BlockSpan {
                    dump_id: id,
                    blobs: false,
                    start: at - len,
                    end: at,
                }
            })
            .collect();
        let ids = |shares: Vec<Vec<BlockSpan>>| -> Vec<Vec<i64>> {
            shares
                .iter()
                .map(|s| s.iter().map(|b| b.dump_id).collect())
                .collect()
        };
        // 100 → 0; 60 → 1; 50 → 1 (60 < 100); 10 → 0 (100 < 110); 5 → 0 (110 = 110).
        assert_eq!(ids(share_blocks(&spans, 2)), [vec![1, 2, 5], vec![3, 4]]);
        assert_eq!(ids(share_blocks(&spans, 1)), [vec![1, 2, 3, 4, 5]]);
        assert_eq!(ids(share_blocks(&spans[..1], 3)), [vec![1], vec![], vec![]]);
    }

    #[test]
    fn a_whole_archive_is_complete_however_it_is_split() {
        let a = whole();
        for piece in [1, 2, 3, 7, 64, 100_000] {
            assert_eq!(checked(&a.bytes, piece), Ok(3), "pieces of {piece}");
        }
    }

    #[test]
    fn an_archive_cut_anywhere_is_not() {
        let a = whole();
        for cut in 0..a.bytes.len() {
            let result = checked(&a.bytes[..cut], 5);
            assert!(
                result.is_err(),
                "cut at {cut} of {}: {result:?}",
                a.bytes.len()
            );
        }
    }

    /// Issue 15: a pg_dump that wrote half its stream and exited 0 was committed.
    #[test]
    fn a_missing_data_block_is_named() {
        let mut a = Archive::new(&[
            (2, true, "TABLE DATA", "orders"),
            (3, true, "TABLE DATA", "customers"),
        ]);
        a.data(2, &[b"1\n"]);
        let why = checked(&a.bytes, 10).unwrap_err();
        assert!(why.contains("TABLE DATA customers"), "{why}");
        assert!(why.contains("1 of its 2"), "{why}");
    }

    /// Found by fuzzing (fuzz/corpus/pg_archive/regression-int-min): an 8-byte integer of
    /// magnitude 2^63 with its sign byte set overflowed when negated.
    #[test]
    fn an_integer_of_the_largest_magnitude_is_no_panic() {
        let mut head = b"PGDMP".to_vec();
        head.extend_from_slice(&[1, 14, 0, 8, 8, FORMAT_CUSTOM]);
        head.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0x80]);
        let mut checker = ArchiveChecker::default();
        checker.feed(&head);
        assert!(checker.finish().is_err());
        assert_eq!(decode_int(&[1, 0, 0, 0, 0, 0, 0, 0, 0x80]), -i64::MAX);
        assert_eq!(
            decode_int(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            i64::MAX
        );
        assert_eq!(decode_int(&[1, 5, 0, 0, 0]), -5);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        assert!(checked(b"not an archive", 3).unwrap_err().contains("PGDMP"));
        let mut a = whole();
        a.bytes.push(9);
        assert!(checked(&a.bytes, 4).unwrap_err().contains("block type 9"));
        let mut b = Archive::new(&[(2, true, "TABLE DATA", "orders")]);
        b.data(7, &[]);
        assert!(checked(&b.bytes, 4).unwrap_err().contains("entry 7"));
    }

    fn entry(dump_id: i64, desc: &str, tag: &str, deps: &[i64]) -> TocEntry {
        let section = match desc {
            "TABLE DATA" | "SEQUENCE SET" => 3,
            "INDEX" | "CONSTRAINT" | "FK CONSTRAINT" | "TRIGGER" | "EVENT TRIGGER" => 4,
            "COMMENT" => SECTION_NONE,
            _ => SECTION_PRE_DATA,
        };
        TocEntry {
            dump_id,
            desc: desc.into(),
            tag: tag.into(),
            namespace: Some("public".into()),
            section,
            deps: deps.to_vec(),
        }
    }

    /// customers and orders, with a sequence, a default, keys, an index, a trigger and a
    /// foreign key, in pg_dump's order.
    fn orders_toc() -> Vec<TocEntry> {
        vec![
            entry(1, "FUNCTION", "log_change()", &[]),
            entry(2, "TABLE", "customers", &[]),
            entry(3, "SEQUENCE", "orders_id_seq", &[]),
            entry(4, "TABLE", "orders", &[]),
            entry(5, "SEQUENCE OWNED BY", "orders_id_seq", &[3, 4]),
            entry(6, "DEFAULT", "orders id", &[4, 3]),
            entry(7, "TABLE DATA", "customers", &[2]),
            entry(8, "TABLE DATA", "orders", &[4]),
            entry(9, "SEQUENCE SET", "orders_id_seq", &[3]),
            entry(10, "CONSTRAINT", "customers customers_pkey", &[2]),
            entry(11, "CONSTRAINT", "orders orders_pkey", &[4]),
            entry(12, "INDEX", "orders_customer_idx", &[4]),
            entry(13, "TRIGGER", "orders orders_audit", &[4, 1]),
            entry(
                14,
                "FK CONSTRAINT",
                "orders orders_customer_id_fkey",
                &[4, 10],
            ),
        ]
    }

    /// Issue 18, item 1: a table comes with its data, default, sequence, keys, index and
    /// trigger (and the function the trigger calls); not with another table, nor a foreign
    /// key to a table left out.
    #[test]
    fn a_selected_table_brings_its_parts_and_nothing_else() {
        let toc = orders_toc();
        let chosen = select_tables(&toc, &[("public".into(), "orders".into())]).unwrap();
        let ids: Vec<i64> = chosen.iter().map(|e| e.dump_id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 6, 8, 9, 11, 12, 13]);
        // Both tables: the foreign key between them too.
        let both = select_tables(
            &toc,
            &[
                ("public".into(), "orders".into()),
                ("public".into(), "customers".into()),
            ],
        )
        .unwrap();
        assert!(both.iter().any(|e| e.dump_id == 14));
        assert_eq!(
            select_tables(&toc, &[("public".into(), "nope".into())]),
            Err(vec!["public.nope".to_string()])
        );
        assert!(restore_list(&chosen).starts_with("1; 0 0 FUNCTION public log_change()\n"));
    }

    /// Issue 17, item 1: a table's keys and indexes are built once its data has streamed
    /// past, while later tables load; a foreign key waits for both tables and the key it
    /// references; comments, triggers and anything that depends on them wait for the end.
    #[test]
    fn post_data_is_built_as_its_tables_data_lands() {
        let mut toc = orders_toc();
        let after_key = toc.iter().position(|e| e.dump_id == 10).unwrap() + 1;
        toc.insert(
            after_key,
            entry(15, "COMMENT", "CONSTRAINT customers_pkey", &[10]),
        );
        toc.push(entry(16, "INDEX", "orders_on_trigger", &[13]));
        let ids =
            |entries: Vec<TocEntry>| -> Vec<i64> { entries.iter().map(|e| e.dump_id).collect() };
        let mut plan = PostDataPlan::new(&toc);
        let mut loaded = std::collections::HashSet::new();
        assert!(plan.take_ready(&loaded).is_empty(), "no data yet");
        loaded.insert(7);
        assert_eq!(ids(plan.take_ready(&loaded)), [10], "customers' key");
        assert!(plan.take_ready(&loaded).is_empty(), "handed out once");
        loaded.insert(8);
        assert_eq!(ids(plan.take_ready(&loaded)), [11, 12, 14]);
        // The comment (no section: the one before it), the trigger and the index that
        // depends on the trigger are built at the end.
        assert_eq!(ids(plan.rest()), [15, 13, 16]);

        // Everything at once when the data is all there: the foreign key after the key it
        // needs, in archive order.
        let mut plan = PostDataPlan::new(&toc);
        let all: std::collections::HashSet<i64> = [7, 8].into();
        assert_eq!(ids(plan.take_ready(&all)), [10, 11, 12, 14]);
    }

    #[test]
    fn the_checker_reports_each_data_block_as_it_ends() {
        let archive = whole();
        let mut checker = ArchiveChecker::default();
        let mut finished = Vec::new();
        for piece in archive.bytes.chunks(7) {
            checker.feed(piece);
            finished.extend(checker.take_finished());
        }
        assert_eq!(finished, [2, 3, 4], "each block once, as it ends");
        assert_eq!(checker.finish(), Ok(3));
    }

    /// A block has landed only once the output handed on is a margin past its end (what
    /// can still be in flight to `pg_restore`); the blocks at the very end never do, and
    /// wait for the load to finish; nor does a block another stream loads (here the last).
    #[test]
    fn a_block_lands_only_a_margin_past_its_end() {
        let archive = whole();
        let head = head_length(&archive.bytes).unwrap().unwrap();
        // Block 2 ends 8 + 2 × (5 + n) + 5 bytes after the head: its type, id, two chunks
        // and the zero length, with 4-byte integers (5 bytes each, sign included).
        let end_of_2 = head + 1 + 5 + (5 + 8) + (5 + 9) + 5;
        let margin = 10;
        let mut router = BlockRouter::new(&archive.bytes[..head], |block| block != 4);
        let mut landed_at = Vec::new();
        let mut out = Vec::new();
        for byte in &archive.bytes {
            // Handed on: every byte routed before this one.
            let handed = out.len();
            router.route(std::slice::from_ref(byte), &mut out);
            for block in router.landed(margin as u64) {
                landed_at.push((block, handed));
            }
        }
        assert_eq!(landed_at[0], (2, end_of_2 + margin), "{landed_at:?}");
        assert_eq!(landed_at.len(), 2, "{landed_at:?}");
        assert!(
            landed_at.iter().all(|&(b, _)| b != 4),
            "another stream's block, and the last block: {landed_at:?}"
        );
    }
}
