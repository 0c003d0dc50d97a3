//! Opening and creating repositories; reading the objects everything else builds on.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{RepoError, Result};
use crate::format::chunker::ChunkerParams;
use crate::format::config::{
    self, Compression, Encryption, RepoConfig, DEFAULT_PACK_SIZE, DEFAULT_ZSTD_LEVEL, FORMAT_NAME,
    FORMAT_VERSION, OBJECT_VERSION, OLDEST_FORMAT_VERSION,
};
use crate::format::crypto::{Cipher, Codec, KdfParams, Keys, KEY_CHECK_PLAINTEXT};
use crate::format::id::Id;
use crate::format::index::{self, IndexFile, MasterIndex};
use crate::format::layout;
use crate::format::snapshot::{self, Snapshot};
use crate::format::tree::{self, Entry};
use crate::storage::Storage;
use crate::timing::{Phase, PhaseClock, PhaseTimes};

/// Options for a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The secret to encrypt with; `None` makes an unencrypted repository.
    pub secret: Option<Vec<u8>>,
    pub chunker: ChunkerParams,
    pub pack_size: u64,
    pub zstd_level: i32,
    /// How keys are derived from `secret`; `None` is Argon2id ([`KdfParams::new_random`]).
    pub kdf: Option<KdfParams>,
    /// What an encrypted repository encrypts with.
    pub cipher: Cipher,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            secret: None,
            chunker: ChunkerParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            kdf: None,
            cipher: Cipher::Xaes256Gcm,
        }
    }
}

/// A snapshot object that could not be read: its id, its key and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableSnapshot {
    pub id: Id,
    pub object: String,
    pub error: String,
}

impl std::fmt::Display for UnreadableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Repository and storage errors name the object already; say it once.
        if self.error.contains(&self.object) {
            write!(
                f,
                "snapshot {} is unreadable: {}",
                self.id.short(),
                self.error
            )
        } else {
            write!(
                f,
                "snapshot {} is unreadable: {}: {}",
                self.id.short(),
                self.object,
                self.error
            )
        }
    }
}

/// The snapshots of a repository: the readable ones, oldest first, and the unreadable ones.
#[derive(Debug, Default)]
pub struct SnapshotList {
    pub snapshots: Vec<(Id, Snapshot)>,
    pub unreadable: Vec<UnreadableSnapshot>,
}

/// An opened repository: its storage, config, codec and the union of its index objects.
#[derive(Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: RepoConfig,
    codec: Codec,
    index: MasterIndex,
    clock: Arc<PhaseClock>,
}

impl Repository {
    pub async fn init(storage: Arc<dyn Storage>, options: InitOptions) -> Result<Self> {
        options.chunker.validate().map_err(RepoError::Invalid)?;
        if options.pack_size < 1024 * 1024 {
            return Err(RepoError::Invalid(
                "pack_size must be at least 1 MiB".into(),
            ));
        }
        match storage.get(layout::CONFIG).await {
            Ok(_) => {
                return Err(RepoError::AlreadyExists {
                    location: storage.location(),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let (keys, encryption) = match &options.secret {
            None => (None, None),
            Some(secret) => {
                let kdf = options.kdf.clone().unwrap_or_else(KdfParams::new_random);
                let keys =
                    Keys::derive_new(secret, &kdf, options.cipher).map_err(RepoError::Invalid)?;
                let check =
                    Codec::new(Some(keys.clone()), 0).encode(KEY_CHECK_PLAINTEXT, b"config");
                (
                    Some(keys),
                    Some(Encryption {
                        algorithm: options.cipher.name().into(),
                        kdf,
                        key_check: hex::encode(check),
                    }),
                )
            }
        };
        let config = RepoConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: Id::random(),
            created: jiff::Timestamp::now(),
            chunker: options.chunker,
            compression: Compression {
                algorithm: "zstd".into(),
                level: options.zstd_level,
            },
            pack_size: options.pack_size,
            encryption,
        };
        let bytes = serde_json::to_vec_pretty(&config).expect("config serialises");
        storage.put(layout::CONFIG, bytes.into()).await?;
        Ok(Self {
            codec: Codec::new(keys, config.compression.level).for_format(config.version),
            storage,
            config,
            index: MasterIndex::default(),
            clock: Arc::default(),
        })
    }

    /// Opens the repository and loads its index. Nothing is written.
    pub async fn open(storage: Arc<dyn Storage>, secret: Option<&[u8]>) -> Result<Self> {
        let mut repo = Self::open_without_index(storage, secret).await?;
        let (index, problems) = repo.load_index().await?;
        if let Some((key, err)) = problems.into_iter().next() {
            return Err(RepoError::corrupt(key, err));
        }
        repo.index = index;
        Ok(repo)
    }

    /// Opens the repository without reading the index (the checker reads it itself, to
    /// report every broken index object instead of stopping at the first).
    pub async fn open_without_index(
        storage: Arc<dyn Storage>,
        secret: Option<&[u8]>,
    ) -> Result<Self> {
        let location = storage.location();
        let raw = match storage.get(layout::CONFIG).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Err(RepoError::NotARepository { location }),
            Err(e) => return Err(e.into()),
        };
        let version =
            config::peek_version(&raw).map_err(|e| RepoError::corrupt(layout::CONFIG, e))?;
        if version < OLDEST_FORMAT_VERSION {
            return Err(RepoError::corrupt(
                layout::CONFIG,
                format!("format version {version} does not exist"),
            ));
        }
        if version > FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion {
                location,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let config: RepoConfig =
            serde_json::from_slice(&raw).map_err(|e| RepoError::corrupt(layout::CONFIG, e))?;
        let keys = match (&config.encryption, secret) {
            (None, _) => None,
            (Some(_), None) => return Err(RepoError::KeyRequired { location }),
            (Some(enc), Some(secret)) => {
                let cipher = Cipher::from_name(&enc.algorithm).ok_or_else(|| {
                    RepoError::corrupt(
                        layout::CONFIG,
                        format!("unknown encryption `{}`", enc.algorithm),
                    )
                })?;
                for (what, since) in [
                    ("key derivation", enc.kdf.format_version()),
                    ("encryption", cipher.format_version()),
                ] {
                    if since > config.version {
                        return Err(RepoError::corrupt(
                            layout::CONFIG,
                            format!(
                                "its {what} exists from format version {since} on, but the \
                                 config says version {}",
                                config.version
                            ),
                        ));
                    }
                }
                let keys = Keys::derive(secret, &enc.kdf, cipher)
                    .map_err(|e| RepoError::corrupt(layout::CONFIG, e))?;
                let check = hex::decode(&enc.key_check)
                    .map_err(|_| RepoError::corrupt(layout::CONFIG, "key_check is not hex"))?;
                match Codec::new(Some(keys.clone()), 0).decode(&check, b"config") {
                    Ok(plain) if plain == KEY_CHECK_PLAINTEXT => Some(keys),
                    _ => return Err(RepoError::WrongKey { location }),
                }
            }
        };
        Ok(Self {
            codec: Codec::new(keys, config.compression.level).for_format(config.version),
            storage,
            config,
            index: MasterIndex::default(),
            clock: Arc::default(),
        })
    }

    /// Reads every index object. Objects that cannot be read or decoded are returned beside
    /// the index, with their keys, rather than failing the whole load.
    pub async fn load_index(&self) -> Result<(MasterIndex, Vec<(String, String)>)> {
        let mut master = MasterIndex::default();
        let problems = self.read_index_objects(|pack| master.add(pack)).await?;
        master.seal();
        Ok((master, problems))
    }

    /// Hands every pack of every index object to `add`, a few objects read at a time and
    /// each dropped once added, so that the parsed objects are never all held at once.
    async fn read_index_objects(
        &self,
        mut add: impl FnMut(&index::IndexPack),
    ) -> Result<Vec<(String, String)>> {
        use futures::StreamExt;
        let mut problems = Vec::new();
        let objects = self.storage.list(layout::INDEX_PREFIX).await?;
        // Owned keys, not references, go through the stream: a closure taking a reference
        // makes the future not `Send` for every lifetime (rust-lang/rust#64552).
        let mut reads = futures::stream::iter(objects.into_iter().map(|o| o.key))
            .map(|key| async move {
                let read = self.read_index_file(&key).await;
                (key, read)
            })
            .buffer_unordered(8);
        while let Some((key, result)) = reads.next().await {
            match result {
                Ok(file) => file.packs.iter().for_each(&mut add),
                Err(e) => problems.push((key, e.to_string())),
            }
        }
        Ok(problems)
    }

    pub async fn read_index_file(&self, key: &str) -> Result<IndexFile> {
        let raw = self.storage.get(key).await?;
        self.verify_named_by_content(key, &raw)?;
        let plain = self
            .codec
            .decode(&raw, index::AAD)
            .map_err(|e| RepoError::corrupt(key, e))?;
        let file: IndexFile =
            serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(key, e))?;
        check_object_version(key, file.version)?;
        Ok(file)
    }

    /// Objects named by the SHA-256 of their stored bytes are checked against their name.
    fn verify_named_by_content(&self, key: &str, raw: &[u8]) -> Result<()> {
        match layout::id_of(key) {
            Some(id) if id == Id::sha256(raw) => Ok(()),
            Some(_) => Err(RepoError::corrupt(
                key,
                "content does not match its id (SHA-256)",
            )),
            None => Err(RepoError::corrupt(key, "key does not end in an id")),
        }
    }

    /// Fetch and decode time of every chunk read through this repository so far.
    pub fn phase_times(&self) -> PhaseTimes {
        self.clock.times()
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Encodes and stores an object named by its content; returns its id. `confirm` reads it
    /// back afterwards ([`Repository::put_confirmed`]).
    pub(crate) async fn put_named_by_content(
        &self,
        key_of: fn(&Id) -> String,
        plaintext: &[u8],
        aad: &[u8],
        confirm: bool,
    ) -> Result<(Id, u64)> {
        let stored = self.codec.encode(plaintext, aad);
        let id = Id::sha256(&stored);
        let size = stored.len() as u64;
        let key = key_of(&id);
        if confirm {
            self.put_confirmed(&key, Bytes::from(stored), &id).await?;
        } else {
            self.storage.put(&key, Bytes::from(stored)).await?;
        }
        Ok((id, size))
    }

    /// Stores `data` under `key`, then reads the object back and compares its SHA-256 with
    /// `sent`, the SHA-256 of `data` (an object named by its content: its id): the transfer
    /// is confirmed by the storage's own answer, not assumed. The object is read back as a
    /// stream ([`crate::storage::Storage::sha256`]), not held a second time. A mismatch is
    /// an error naming the object.
    pub async fn put_confirmed(&self, key: &str, data: Bytes, sent: &Id) -> Result<()> {
        let length = data.len() as u64;
        self.storage.put(key, data).await?;
        self.confirm(key, sent, length).await
    }

    /// [`Repository::put_confirmed`] for an object spooled to the file at `path`, `length`
    /// bytes whose SHA-256 is `sent`: the storage reads the file as it sends it
    /// ([`crate::storage::Storage::put_file`]).
    pub async fn put_file_confirmed(
        &self,
        key: &str,
        path: &std::path::Path,
        length: u64,
        sent: &Id,
    ) -> Result<()> {
        self.storage.put_file(key, path).await?;
        self.confirm(key, sent, length).await
    }

    /// Reads back the object just written under `key` and compares its SHA-256 with `sent`,
    /// that of the `length` bytes sent.
    async fn confirm(&self, key: &str, sent: &Id, length: u64) -> Result<()> {
        let (stored, stored_length) = self.storage.sha256(key).await?;
        if Id(stored) != *sent {
            return Err(RepoError::corrupt(
                key,
                format!(
                    "read back after writing, its SHA-256 is {} ({stored_length} bytes) where {} ({length} bytes) was sent",
                    Id(stored).short(),
                    sent.short()
                ),
            ));
        }
        Ok(())
    }

    pub async fn write_index(&self, file: &IndexFile) -> Result<(Id, u64)> {
        let json = serde_json::to_vec(file).expect("index serialises");
        self.put_named_by_content(layout::index_key, &json, index::AAD, false)
            .await
    }

    /// [`Repository::write_index`], read back to confirm it ([`Repository::put_confirmed`]).
    pub async fn write_index_confirmed(&self, file: &IndexFile) -> Result<(Id, u64)> {
        let json = serde_json::to_vec(file).expect("index serialises");
        self.put_named_by_content(layout::index_key, &json, index::AAD, true)
            .await
    }

    pub async fn write_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        Ok(self.write_snapshot_with(snapshot, false).await?.0)
    }

    /// Writes a snapshot object; `confirm` reads it back ([`Repository::put_confirmed`]).
    /// Returns its id and its stored size.
    pub async fn write_snapshot_with(
        &self,
        snapshot: &Snapshot,
        confirm: bool,
    ) -> Result<(Id, u64)> {
        let json = serde_json::to_vec(snapshot).expect("snapshot serialises");
        self.put_named_by_content(layout::snapshot_key, &json, snapshot::AAD, confirm)
            .await
    }

    pub async fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let key = layout::snapshot_key(id);
        let raw = self.storage.get(&key).await?;
        self.verify_named_by_content(&key, &raw)?;
        let plain = self
            .codec
            .decode(&raw, snapshot::AAD)
            .map_err(|e| RepoError::corrupt(&key, e))?;
        let snapshot: Snapshot =
            serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(&key, e))?;
        check_object_version(&key, snapshot.version)?;
        Ok(snapshot)
    }

    pub async fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .storage
            .list(layout::SNAPSHOTS_PREFIX)
            .await?
            .iter()
            .filter_map(|o| layout::id_of(&o.key))
            .collect())
    }

    /// Every snapshot, oldest first, and beside them every snapshot object that could not be
    /// read (truncated, corrupt, unreadable on the storage), each named with its cause. One
    /// bad object never hides the others: callers use the readable ones and report the rest.
    /// Only a failure to list `snapshots/` itself is an error.
    pub async fn list_snapshots(&self) -> Result<SnapshotList> {
        let ids = self.snapshot_ids().await?;
        let loaded = futures::future::join_all(ids.iter().map(|id| self.load_snapshot(id))).await;
        let mut out = SnapshotList::default();
        for (id, result) in ids.into_iter().zip(loaded) {
            match result {
                Ok(snapshot) => out.snapshots.push((id, snapshot)),
                // Removed since it was listed (a prune forgot it): not a snapshot any more.
                Err(RepoError::Storage(e)) if e.is_not_found() => {}
                Err(e) => out.unreadable.push(UnreadableSnapshot {
                    id,
                    object: layout::snapshot_key(&id),
                    error: e.to_string(),
                }),
            }
        }
        out.snapshots.sort_by_key(|(id, s)| (s.time, *id));
        Ok(out)
    }

    /// Finds a snapshot by its id or a unique prefix of it (at least 4 hex digits).
    pub async fn find_snapshot(&self, prefix: &str) -> Result<Id> {
        let prefix_lower = prefix.to_ascii_lowercase();
        if !prefix_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::BadSnapshotPrefix {
                prefix: prefix.into(),
                why: "an id or its prefix is hexadecimal digits (0-9, a-f)",
            });
        }
        if prefix_lower.len() < 4 {
            return Err(RepoError::BadSnapshotPrefix {
                prefix: prefix.into(),
                why: "give at least 4 hexadecimal digits of the id",
            });
        }
        let matches: Vec<Id> = self
            .snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&prefix_lower))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(RepoError::SnapshotNotFound {
                prefix: prefix.into(),
            }),
            many => Err(RepoError::AmbiguousSnapshot {
                prefix: prefix.into(),
                candidates: many.iter().map(Id::short).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Reads one chunk, verifying it against its id: a chunk that does not match is an error
    /// naming the pack that holds it.
    pub async fn read_chunk(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self
            .index
            .get(id)
            .ok_or_else(|| RepoError::ChunkNotIndexed { chunk: id.to_hex() })?;
        let stored = self
            .read_pack_range(&loc.pack, loc.offset, loc.length)
            .await?;
        let key = layout::pack_key(&loc.pack);
        let codec = self.codec.clone();
        let id = *id;
        let _decoding = self.clock.enter(Phase::Decode);
        tokio::task::spawn_blocking(move || decode_chunk(&codec, &key, &id, &stored))
            .await
            .map_err(|e| RepoError::Invalid(format!("decode worker failed: {e}")))?
    }

    /// Where the index says a chunk is stored.
    pub fn locate(&self, id: &Id) -> Option<index::Location> {
        self.index.get(id)
    }

    /// `length` bytes of a pack from `offset`, in one ranged read (timed as fetching): a
    /// run of chunks that lie close together in one pack costs one request.
    pub async fn read_pack_range(&self, pack: &Id, offset: u64, length: u64) -> Result<Bytes> {
        let _fetching = self.clock.enter(Phase::Fetch);
        Ok(self
            .storage
            .get_range(&layout::pack_key(pack), offset, length)
            .await?)
    }

    /// As [`Repository::read_pack_range`], into `buf` (its content replaced): a reader of
    /// many runs reuses its buffers' memory.
    pub async fn read_pack_range_into(
        &self,
        pack: &Id,
        offset: u64,
        length: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let _fetching = self.clock.enter(Phase::Fetch);
        Ok(self
            .storage
            .get_range_into(&layout::pack_key(pack), offset, length, buf)
            .await?)
    }

    /// Decodes a chunk's stored bytes, read out of its pack at `loc`, into `plain` and checks
    /// them against its id (timed as decoding), giving the plaintext's SHA-256 too when the
    /// check computed it. Blocking: call it off the async threads.
    pub fn decode_located(
        &self,
        id: &Id,
        loc: &index::Location,
        stored: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<Option<Id>> {
        let _decoding = self.clock.enter(Phase::Decode);
        decode_chunk_into(&self.codec, &layout::pack_key(&loc.pack), id, stored, plain)
    }

    /// Reads a snapshot's content tree.
    pub async fn read_tree(&self, snapshot: &Snapshot) -> Result<Vec<Entry>> {
        let mut reader = self.tree_reader(snapshot);
        let mut entries = Vec::with_capacity(snapshot.tree.entries.min(1 << 20) as usize);
        while let Some(entry) = reader.next().await? {
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Reads a snapshot's content tree an entry at a time, in path order, holding one chunk's
    /// entries at most: how a backup compares a walk with its parent's tree of any size.
    pub fn tree_reader<'a>(&'a self, snapshot: &Snapshot) -> TreeReader<'a> {
        TreeReader {
            repo: self,
            chunks: snapshot.tree.chunks.clone().into_iter(),
            digest: snapshot.tree.digest,
            hasher: sha2::Digest::new(),
            parser: tree::JsonlReader::default(),
            ready: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

/// A snapshot's tree read as a stream ([`Repository::tree_reader`]). Every chunk is checked
/// against its id as it is read; the whole text against the tree's digest at its end.
pub struct TreeReader<'a> {
    repo: &'a Repository,
    chunks: std::vec::IntoIter<Id>,
    digest: Id,
    hasher: sha2::Sha256,
    parser: tree::JsonlReader,
    ready: std::collections::VecDeque<Entry>,
    done: bool,
}

impl TreeReader<'_> {
    /// The next entry, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        use sha2::Digest;
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Ok(Some(entry));
            }
            if self.done {
                return Ok(None);
            }
            match self.chunks.next() {
                Some(chunk) => {
                    let text = self.repo.read_chunk(&chunk).await?;
                    self.hasher.update(&text);
                    self.parser.feed(&text);
                    self.ready
                        .extend(self.parser.take().map_err(RepoError::Invalid)?);
                }
                None => {
                    self.done = true;
                    let hasher = std::mem::take(&mut self.hasher);
                    if Id(hasher.finalize().into()) != self.digest {
                        return Err(RepoError::Invalid(format!(
                            "tree of snapshot does not match its digest {}",
                            self.digest.short()
                        )));
                    }
                    let parser = std::mem::take(&mut self.parser);
                    self.ready
                        .extend(parser.finish().map_err(RepoError::Invalid)?);
                }
            }
        }
    }
}

/// Objects carry their own version; one newer than this reader is refused, never misread.
fn check_object_version(key: &str, version: u32) -> Result<()> {
    if version > OBJECT_VERSION {
        return Err(RepoError::corrupt(
            key,
            format!("object version {version} is newer than this backstop reads ({OBJECT_VERSION}); upgrade backstop"),
        ));
    }
    Ok(())
}

/// Decodes a stored chunk and checks it against its id.
pub fn decode_chunk(codec: &Codec, pack_key: &str, id: &Id, stored: &[u8]) -> Result<Vec<u8>> {
    let mut plain = Vec::new();
    decode_chunk_into(codec, pack_key, id, stored, &mut plain)?;
    Ok(plain)
}

/// [`decode_chunk`] into a reused buffer, also giving the plaintext's SHA-256 when checking
/// the id computed it.
pub fn decode_chunk_into(
    codec: &Codec,
    pack_key: &str,
    id: &Id,
    stored: &[u8],
    plain: &mut Vec<u8>,
) -> Result<Option<Id>> {
    codec
        .decode_into(stored, &id.0, plain)
        .map_err(|e| RepoError::corrupt(pack_key, format!("chunk {}: {e}", id.short())))?;
    let (actual, sha256) = codec.id_and_maybe_sha256(plain);
    if actual != *id {
        return Err(RepoError::corrupt(
            pack_key,
            format!("chunk {} does not match its id", id.short()),
        ));
    }
    Ok(sha256)
}

/// Buffers handed back by a reader of many ranges (a read-data check's pack pieces), for
/// its next reads: a few, none larger than 8 MiB, are kept. (Spares for every chunk of a
/// stream were tried: each grows to the largest chunk it has held and stays, and a database
/// load's peak memory rose by a third for no gain in time; docs/benchmarks.md.)
#[derive(Debug, Clone, Default)]
pub(crate) struct SpareBuffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl SpareBuffers {
    const KEPT: usize = 8;
    const LARGEST: usize = 8 << 20;

    pub(crate) fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .expect("spare buffers")
            .pop()
            .unwrap_or_default()
    }

    pub(crate) fn give(&self, buf: Vec<u8>) {
        let mut spare = self.0.lock().expect("spare buffers");
        if spare.len() < Self::KEPT && buf.capacity() <= Self::LARGEST {
            spare.push(buf);
        }
    }
}

impl Repository {
    /// A view of this repository with another index (the checker reads through the index it
    /// loaded leniently).
    pub fn with_index(&self, index: MasterIndex) -> Repository {
        Repository {
            storage: self.storage.clone(),
            config: self.config.clone(),
            codec: self.codec.clone(),
            index,
            clock: Arc::clone(&self.clock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::generate_key;
    use crate::storage::memory::MemoryStorage;

    /// Spare buffers come back with their memory, a few at most and none larger than
    /// their bound.
    #[test]
    fn spare_buffers_keep_a_few_chunk_sized_buffers() {
        let spare = SpareBuffers::default();
        assert_eq!(spare.take().capacity(), 0, "none yet");
        for _ in 0..SpareBuffers::KEPT + 3 {
            spare.give(Vec::with_capacity(1 << 20));
        }
        spare.give(Vec::with_capacity(SpareBuffers::LARGEST + 1));
        let mut kept = 0;
        loop {
            let buf = spare.take();
            if buf.capacity() == 0 {
                break;
            }
            assert_eq!(buf.capacity(), 1 << 20);
            kept += 1;
        }
        assert_eq!(kept, SpareBuffers::KEPT);
    }

    #[tokio::test]
    async fn a_derivation_newer_than_the_stated_format_version_is_refused() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
        let key = generate_key();
        Repository::init(
            storage.clone(),
            InitOptions {
                secret: Some(key.clone().into_bytes()),
                kdf: Some(KdfParams::for_generated_key()),
                ..InitOptions::default()
            },
        )
        .await
        .unwrap();
        Repository::open(storage.clone(), Some(key.as_bytes()))
            .await
            .unwrap();
        let config = storage.get(layout::CONFIG).await.unwrap();
        let mut config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["encryption"]["kdf"]["algorithm"], "hmac-sha256");
        config["version"] = 2.into();
        storage
            .put(layout::CONFIG, config.to_string().into_bytes().into())
            .await
            .unwrap();
        let refusal = |config: serde_json::Value| {
            let storage = storage.clone();
            let key = key.clone();
            async move {
                storage
                    .put(layout::CONFIG, config.to_string().into_bytes().into())
                    .await
                    .unwrap();
                Repository::open(storage, Some(key.as_bytes()))
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        let err = refusal(config.clone()).await;
        assert!(
            err.contains("config")
                && err.contains("key derivation exists from format version 3 on"),
            "{err}"
        );
        // The cipher as well: XAES-256-GCM is version 4's.
        assert_eq!(config["encryption"]["algorithm"], "xaes-256-gcm");
        config["version"] = 3.into();
        let err = refusal(config.clone()).await;
        assert!(
            err.contains("config") && err.contains("encryption exists from format version 4 on"),
            "{err}"
        );
        config["version"] = 4.into();
        config["encryption"]["algorithm"] = "aes-256-gcm".into();
        let err = refusal(config).await;
        assert!(err.contains("unknown encryption `aes-256-gcm`"), "{err}");
    }

    #[tokio::test]
    async fn a_new_repository_encrypts_with_the_cipher_asked_for() {
        for cipher in Cipher::ALL {
            let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
            let key = generate_key();
            let options = InitOptions {
                secret: Some(key.clone().into_bytes()),
                kdf: Some(KdfParams::for_generated_key()),
                cipher,
                ..InitOptions::default()
            };
            let repo = Repository::init(storage.clone(), options).await.unwrap();
            let stored = repo.codec().encode(b"an object", b"x");
            let config = storage.get(layout::CONFIG).await.unwrap();
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
            assert_eq!(config["encryption"]["algorithm"], cipher.name());
            assert_eq!(config["version"], FORMAT_VERSION);
            let reopened = Repository::open(storage, Some(key.as_bytes()))
                .await
                .unwrap();
            assert_eq!(
                reopened.codec().decode(&stored, b"x").unwrap(),
                b"an object"
            );
            // Sealed by the other cipher under the same keys, it does not open.
            let other = Cipher::ALL.into_iter().find(|c| *c != cipher).unwrap();
            let kdf: KdfParams =
                serde_json::from_value(config["encryption"]["kdf"].clone()).unwrap();
            let keys = Keys::derive(key.as_bytes(), &kdf, other).unwrap();
            let foreign = Codec::new(Some(keys), 3).encode(b"an object", b"x");
            assert!(reopened.codec().decode(&foreign, b"x").is_err());
        }
    }
}
