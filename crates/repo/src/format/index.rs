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

/// The union of index objects, in memory: chunk id → location. An array sorted by id, 48
/// bytes a chunk with no empty slots (a hash table doubles as it fills: up to twice that),
/// and a directory by the ids' first bits, so that a lookup searches only the few ids that
/// share them. At millions of chunks the index is most of what a backup, a restore or a
/// check holds. Filled with [`MasterIndex::add`], then [`MasterIndex::seal`]ed before any
/// lookup.
#[derive(Debug, Clone)]
pub struct MasterIndex {
    chunks: Vec<(Id, Slot)>,
    /// `starts[p]`: the first chunk whose id begins with the prefix `p` (`prefix_bits` bits).
    starts: Vec<u32>,
    prefix_bits: u32,
    sealed: bool,
    /// Pack ids by number, as [`Slot::pack`] names them.
    pack_ids: Vec<Id>,
    packs: HashMap<Id, u64>,
}

impl Default for MasterIndex {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            starts: vec![0, 0],
            prefix_bits: 0,
            sealed: true,
            pack_ids: Vec::new(),
            packs: HashMap::new(),
        }
    }
}

impl MasterIndex {
    pub fn add(&mut self, pack: &IndexPack) {
        self.packs.insert(pack.id, pack.size);
        let number = narrow(self.pack_ids.len() as u64);
        self.pack_ids.push(pack.id);
        self.chunks.extend(pack.blobs.iter().map(|b| {
            (
                b.id,
                Slot {
                    pack: number,
                    offset: narrow(b.offset),
                    length: narrow(b.length),
                    raw_length: narrow(b.raw_length),
                },
            )
        }));
        self.sealed = false;
    }

    /// Sorts what was added and builds the directory. A chunk listed in several packs keeps
    /// one of its places; each holds the same plaintext (docs/repository-format.md §8).
    pub fn seal(&mut self) {
        self.chunks.sort_unstable_by_key(|(id, _)| *id);
        self.chunks.dedup_by(|a, b| a.0 == b.0);
        self.chunks.shrink_to_fit();
        // About 16 chunks a prefix, and at most 2^16 prefixes (256 KiB of directory).
        let prefixes = (self.chunks.len() / 16).max(1);
        self.prefix_bits = (usize::BITS - prefixes.leading_zeros()).min(16);
        let mut starts = vec![0u32; (1 << self.prefix_bits) + 1];
        for (id, _) in &self.chunks {
            starts[self.prefix(id) + 1] += 1;
        }
        for p in 1..starts.len() {
            starts[p] += starts[p - 1];
        }
        self.starts = starts;
        self.sealed = true;
    }

    fn prefix(&self, id: &Id) -> usize {
        // In u32: a shift by 16 (no prefix bits, a tiny index) is defined there.
        (u32::from(u16::from_be_bytes([id.0[0], id.0[1]])) >> (16 - self.prefix_bits)) as usize
    }

    fn slot(&self, chunk: &Id) -> Option<&Slot> {
        self.ordinal(chunk).map(|i| &self.chunks[i].1)
    }

    /// A chunk's place in the index's order, `0..len()`: how a caller that keeps a bit for
    /// each chunk (a check's set of the chunks snapshots need) numbers them.
    pub fn ordinal(&self, chunk: &Id) -> Option<usize> {
        assert!(self.sealed, "the index is looked up before it was sealed");
        let p = self.prefix(chunk);
        let start = self.starts[p] as usize;
        let run = &self.chunks[start..self.starts[p + 1] as usize];
        run.binary_search_by(|(id, _)| id.cmp(chunk))
            .ok()
            .map(|i| start + i)
    }

    /// The chunk at `ordinal` ([`MasterIndex::ordinal`]) and where it is.
    pub fn at(&self, ordinal: usize) -> (&Id, Location) {
        let (id, slot) = &self.chunks[ordinal];
        (id, self.location(slot))
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
        self.slot(chunk).map(|slot| self.location(slot))
    }

    /// Where a chunk lies, as a key to sort by: its pack's number and its offset in it
    /// (chunks of one pack sort together, in pack order).
    pub fn position(&self, chunk: &Id) -> Option<(u32, u32)> {
        self.slot(chunk).map(|slot| (slot.pack, slot.offset))
    }

    pub fn contains(&self, chunk: &Id) -> bool {
        self.slot(chunk).is_some()
    }

    pub fn chunk_ids(&self) -> impl Iterator<Item = &Id> {
        self.chunks.iter().map(|(id, _)| id)
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
        index.seal();
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
        index.seal();
        assert_eq!(
            index.get(&Id::sha256(b"a")).unwrap().offset,
            u64::from(u32::MAX)
        );
    }

    #[test]
    fn every_chunk_of_a_large_index_is_found_and_no_other() {
        for n in [0usize, 1, 15, 16, 17, 1000, 70_000] {
            let ids: Vec<Vec<u8>> = (0..n).map(|i| format!("chunk {i}").into_bytes()).collect();
            let blobs: Vec<(&[u8], u64, u64, u64)> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_slice(), i as u64, 1, 1))
                .collect();
            let mut index = MasterIndex::default();
            index.add(&pack(b"p", &blobs));
            // The same chunks again in another pack: one place is kept for each.
            index.add(&pack(b"q", &blobs[..n / 2]));
            index.seal();
            assert_eq!(index.len(), n, "{n} chunks");
            let mut ordinals = std::collections::HashSet::new();
            for (i, id) in ids.iter().enumerate() {
                let id = Id::sha256(id);
                let at = index.get(&id).unwrap();
                assert_eq!(at.offset, i as u64, "{n} chunks, chunk {i}");
                // Its ordinal names it and no other chunk.
                let ordinal = index.ordinal(&id).unwrap();
                assert!(
                    ordinal < n && ordinals.insert(ordinal),
                    "{n} chunks, chunk {i}"
                );
                assert_eq!(index.at(ordinal), (&id, at));
            }
            assert!(!index.contains(&Id::sha256(b"not a chunk")));
            assert_eq!(index.ordinal(&Id::sha256(b"not a chunk")), None);
            assert_eq!(index.chunk_ids().count(), n);
        }
    }

    #[test]
    #[should_panic(expected = "before it was sealed")]
    fn an_index_is_not_looked_up_before_it_is_sealed() {
        let mut index = MasterIndex::default();
        index.add(&pack(b"p", &[(b"a", 0, 1, 1)]));
        index.contains(&Id::sha256(b"a"));
    }
}
