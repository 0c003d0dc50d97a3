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

/// Where a chunk is, as held in memory: its pack by number (see [`MasterIndex`]) and its
/// place in 16 bytes, not the 56 of a [`Location`]. Packs are a few MiB, so `u32` holds
/// every offset and length a writer makes; a larger one (a damaged index) is kept as
/// `u32::MAX`, which no pack is long enough to read from.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

fn narrow(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The union of index objects, in memory: chunk id → location. About 50 bytes a chunk: at
/// millions of chunks the index is most of what a backup, a restore or a check holds.
#[derive(Debug, Default, Clone)]
pub struct MasterIndex {
    chunks: HashMap<Id, Slot>,
    /// Pack ids by number, as [`Slot::pack`] names them.
    pack_ids: Vec<Id>,
    packs: HashMap<Id, u64>,
}

impl MasterIndex {
    pub fn add(&mut self, pack: &IndexPack) {
        self.packs.insert(pack.id, pack.size);
        let number = narrow(self.pack_ids.len() as u64);
        self.pack_ids.push(pack.id);
        for b in &pack.blobs {
            self.chunks.insert(
                b.id,
                Slot {
                    pack: number,
                    offset: narrow(b.offset),
                    length: narrow(b.length),
                    raw_length: narrow(b.raw_length),
                },
            );
        }
    }

    fn location(&self, slot: &Slot) -> Location {
        Location {
            pack: self.pack_ids[slot.pack as usize],
            offset: slot.offset.into(),
            length: slot.length.into(),
            raw_length: slot.raw_length.into(),
        }
    }

    pub fn get(&self, chunk: &Id) -> Option<Location> {
        self.chunks.get(chunk).map(|slot| self.location(slot))
    }

    /// Where a chunk lies, as a key to sort by: its pack's number and its offset in it
    /// (chunks of one pack sort together, in pack order).
    pub fn position(&self, chunk: &Id) -> Option<(u32, u32)> {
        self.chunks.get(chunk).map(|slot| (slot.pack, slot.offset))
    }

    pub fn contains(&self, chunk: &Id) -> bool {
        self.chunks.contains_key(chunk)
    }

    pub fn chunk_ids(&self) -> impl Iterator<Item = &Id> {
        self.chunks.keys()
    }

    pub fn chunks(&self) -> impl Iterator<Item = (&Id, Location)> {
        self.chunks
            .iter()
            .map(|(id, slot)| (id, self.location(slot)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(seed: &[u8], blobs: &[(&[u8], u64, u64, u64)]) -> IndexPack {
        IndexPack {
            id: Id::sha256(seed),
            size: 1 << 20,
            blobs: blobs
                .iter()
                .map(|(id, offset, length, raw_length)| BlobEntry {
                    id: Id::sha256(id),
                    offset: *offset,
                    length: *length,
                    raw_length: *raw_length,
                })
                .collect(),
        }
    }

    #[test]
    fn the_compact_index_gives_back_every_location_as_added() {
        let mut index = MasterIndex::default();
        index.add(&pack(b"p1", &[(b"a", 0, 100, 200), (b"b", 100, 50, 50)]));
        index.add(&pack(b"p2", &[(b"c", 7, 8, 9)]));
        let c = index.get(&Id::sha256(b"c")).unwrap();
        assert_eq!(
            c,
            Location {
                pack: Id::sha256(b"p2"),
                offset: 7,
                length: 8,
                raw_length: 9
            }
        );
        assert_eq!(
            index.get(&Id::sha256(b"b")).unwrap().pack,
            Id::sha256(b"p1")
        );
        assert_eq!(index.get(&Id::sha256(b"a")).unwrap().raw_length, 200);
        assert!(index.get(&Id::sha256(b"d")).is_none());
        assert_eq!(index.chunks().count(), 3);
        assert_eq!(index.packs().len(), 2);
    }

    #[test]
    fn an_offset_no_pack_can_hold_is_kept_out_of_reach() {
        let mut index = MasterIndex::default();
        index.add(&pack(b"p", &[(b"a", 1 << 40, 10, 10)]));
        assert_eq!(
            index.get(&Id::sha256(b"a")).unwrap().offset,
            u64::from(u32::MAX)
        );
    }
}
