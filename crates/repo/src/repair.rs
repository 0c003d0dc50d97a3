//! Repairs made from what the repository itself holds.
//!
//! [`repair_index`]: every pack carries a header listing its blobs (format §7), which repeats
//! what the index says about it. When an index object is lost (deleted, or corrupt), the
//! packs it listed are still there and still self-describing: reading the header of every
//! pack that no readable index object lists, and writing one new index object for them,
//! makes their chunks reachable again. Only headers are read (two ranged reads per pack),
//! not whole packs; `check --read-data` verifies the content afterwards.
//!
//! It runs under a shared lock, like a backup: it only adds an index object, which a
//! concurrent backup does not mind, and a prune (which would delete packs being indexed)
//! waits for it. A pack being written by a running backup may be indexed twice (by this
//! repair and by the backup), which the format allows.

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack, MasterIndex};
use crate::format::layout;
use crate::format::pack;
use crate::lock::{LockGuard, LockKind, WAIT_AT_MOST};
use crate::repository::Repository;

/// Pack headers read at once: each is two small ranged reads.
const HEADERS_IN_FLIGHT: usize = 8;

/// An object that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub object: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexRepair {
    /// Packs no readable index object listed, now indexed from their headers.
    pub packs_indexed: usize,
    pub chunks_indexed: usize,
    /// The index object written (none when every pack was indexed already).
    pub index_object: Option<String>,
    /// Index objects that could not be decoded, removed once every pack they could have
    /// listed was indexed again.
    pub index_objects_removed: Vec<String>,
    /// Index objects that could not be read and were kept (a storage error, or a pack whose
    /// header could not be read: what they list may be the only record of it).
    pub index_objects_unreadable: Vec<Problem>,
    /// Packs whose header could not be read; their chunks stay unindexed.
    pub packs_unreadable: Vec<Problem>,
}

impl IndexRepair {
    /// Whether everything found was repaired.
    pub fn is_complete(&self) -> bool {
        self.packs_unreadable.is_empty() && self.index_objects_unreadable.is_empty()
    }
}

/// Indexes every pack that no readable index object lists, from its header, into one new
/// index object (see the module docs).
pub async fn repair_index(repo: Arc<Repository>) -> Result<IndexRepair> {
    let lock =
        LockGuard::acquire_waiting(repo.clone(), LockKind::Shared, "repair", WAIT_AT_MOST).await?;
    let result = repair_locked(&repo).await;
    let released = lock.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn repair_locked(repo: &Arc<Repository>) -> Result<IndexRepair> {
    let mut report = IndexRepair::default();
    let storage = repo.storage();
    let mut index = MasterIndex::default();
    // Which index objects are unreadable, and whether because they are corrupt (then what
    // they list is recovered from the packs) or because the storage failed (then they are
    // left alone: they may be fine).
    let mut corrupt = Vec::new();
    for object in storage.list(layout::INDEX_PREFIX).await? {
        match repo.read_index_file(&object.key).await {
            Ok(file) => file.packs.iter().for_each(|p| index.add(p)),
            Err(RepoError::Corrupt { .. }) => corrupt.push(object.key),
            Err(RepoError::Storage(e)) if e.is_not_found() => {}
            Err(e) => report.index_objects_unreadable.push(Problem {
                object: object.key,
                error: e.to_string(),
            }),
        }
    }

    index.seal();
    let unindexed: Vec<(Id, u64)> = storage
        .list(layout::DATA_PREFIX)
        .await?
        .into_iter()
        .filter_map(|o| layout::id_of(&o.key).map(|id| (id, o.size)))
        .filter(|(id, _)| !index.packs().contains_key(id))
        .collect();
    let headers: Vec<(Id, u64, std::result::Result<pack::PackHeader, String>)> =
        futures::stream::iter(unindexed)
            .map(|(id, size)| async move { (id, size, read_header(repo, &id, size).await) })
            .buffer_unordered(HEADERS_IN_FLIGHT)
            .collect()
            .await;
    let mut packs = Vec::new();
    for (id, size, header) in headers {
        match header {
            Ok(header) => packs.push(IndexPack {
                id,
                size,
                blobs: header.blobs,
            }),
            Err(error) => report.packs_unreadable.push(Problem {
                object: layout::pack_key(&id),
                error,
            }),
        }
    }
    packs.sort_by_key(|p| p.id);
    report
        .packs_unreadable
        .sort_by(|a, b| a.object.cmp(&b.object));
    report.packs_indexed = packs.len();
    report.chunks_indexed = packs.iter().map(|p| p.blobs.len()).sum();
    if !packs.is_empty() {
        let (id, _) = repo.write_index(&IndexFile { version: 1, packs }).await?;
        report.index_object = Some(layout::index_key(&id));
    }
    // A corrupt index object only ever listed packs; once every pack is indexed by a
    // readable object, it holds nothing more and would keep every command that loads the
    // index failing.
    if report.packs_unreadable.is_empty() {
        for key in corrupt {
            storage.delete(&key).await?;
            report.index_objects_removed.push(key);
        }
    } else {
        report
            .index_objects_unreadable
            .extend(corrupt.into_iter().map(|key| Problem {
                error: "corrupt; kept while a pack's header cannot be read".into(),
                object: key,
            }));
    }
    Ok(report)
}

/// A pack's header, read from its end with two ranged reads.
async fn read_header(
    repo: &Repository,
    id: &Id,
    size: u64,
) -> std::result::Result<pack::PackHeader, String> {
    let key = layout::pack_key(id);
    if size < 4 {
        return Err("too short to be a pack".into());
    }
    let trailer = repo
        .storage()
        .get_range(&key, size - 4, 4)
        .await
        .map_err(|e| e.to_string())?;
    let len = pack::header_length(
        trailer[..]
            .try_into()
            .map_err(|_| "short read".to_string())?,
        size,
    )?;
    let body = size - 4 - len;
    let stored = repo
        .storage()
        .get_range(&key, body, len)
        .await
        .map_err(|e| e.to_string())?;
    pack::decode_header(repo.codec(), &stored, body)
}
