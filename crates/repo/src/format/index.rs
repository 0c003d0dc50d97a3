//! Index objects: which pack holds each chunk, and where in it.
//!
//! `index/<id>` with `id = SHA-256(stored object)` holds `encode(JSON IndexFile, aad "index")`.
//! A backup writes one index object for the packs it wrote, before its snapshot. The
//! repository's index is the union of all index objects.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::id::Id;
use super::pack::BlobEntry;

pub const AAD: &[u8] = b"index";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPack {
    pub id: Id,
    /// Size of the whole pack object in bytes.
    pub size: u64,
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub offset: u64,
    pub length: u64,
    pub raw_length: u64,
}

/// The union of index objects, in memory: chunk id → location.
#[derive(Debug, Default, Clone)]
pub struct MasterIndex {
    chunks: HashMap<Id, Location>,
    packs: HashMap<Id, u64>,
}

impl MasterIndex {
    pub fn add(&mut self, pack: &IndexPack) {
        self.packs.insert(pack.id, pack.size);
        for b in &pack.blobs {
            self.chunks.insert(
                b.id,
                Location {
                    pack: pack.id,
                    offset: b.offset,
                    length: b.length,
                    raw_length: b.raw_length,
                },
            );
        }
    }

    pub fn get(&self, chunk: &Id) -> Option<&Location> {
        self.chunks.get(chunk)
    }

    pub fn contains(&self, chunk: &Id) -> bool {
        self.chunks.contains_key(chunk)
    }

    pub fn chunk_ids(&self) -> impl Iterator<Item = &Id> {
        self.chunks.keys()
    }

    pub fn chunks(&self) -> impl Iterator<Item = (&Id, &Location)> {
        self.chunks.iter()
    }

    /// Packs the index knows, with their sizes.
    pub fn packs(&self) -> &HashMap<Id, u64> {
        &self.packs
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}
