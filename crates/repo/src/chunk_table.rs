//! A map from chunk ids to small values, for the one entry a copy keeps per distinct chunk
//! (see [`crate::copy`]).
//!
//! A `HashMap<Id, Id>` keeps its entries in its slots: 64 bytes each, in a table that
//! doubles and is at most 7/8 full, and whose slots are filled at random, so every page of
//! it is touched. At a million chunks that is 2^21 slots, about 130 MiB. Here the entries
//! lie in one array, filled in order (a grown array's unused end is never touched), and the
//! hash table holds only their positions: 4 bytes and a control byte a slot, about 10 MiB
//! at a million chunks beside the 64 MiB of entries.

use std::hash::{BuildHasher, RandomState};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::format::id::Id;

pub(crate) struct ChunkTable<V> {
    entries: Vec<(Id, V)>,
    positions: HashTable<u32>,
    // Ids are hashes, but not always keyed: a plain SHA-256 a file's author could steer
    // into one bucket. Seeded hashing keeps lookups even.
    hasher: RandomState,
}

impl<V> ChunkTable<V> {
    pub(crate) fn new() -> Self {
        ChunkTable {
            entries: Vec::new(),
            positions: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    pub(crate) fn contains(&self, id: &Id) -> bool {
        self.position(id).is_some()
    }

    pub(crate) fn get(&self, id: &Id) -> Option<&V> {
        self.position(id).map(|at| &self.entries[at].1)
    }

    /// Adds `id` with `value`; returns false, and keeps the value held, when `id` is held
    /// already (as `HashSet::insert` does).
    pub(crate) fn insert(&mut self, id: Id, value: V) -> bool {
        let hash = self.hasher.hash_one(id);
        let Self {
            entries,
            positions,
            hasher,
        } = self;
        // One probe finds the id or the slot for it.
        let slot = match positions.entry(
            hash,
            |&at| entries[at as usize].0 == id,
            |&at| hasher.hash_one(entries[at as usize].0),
        ) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(slot) => slot,
        };
        // Four billion chunks would take 256 GiB of entries: a copy runs out of memory
        // long before the positions run out of bits.
        let at = u32::try_from(entries.len()).expect("fewer than 2^32 chunks");
        entries.push((id, value));
        slot.insert(at);
        true
    }

    fn position(&self, id: &Id) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.positions
            .find(hash, |&at| self.entries[at as usize].0 == *id)
            .map(|&at| at as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn id(n: u16) -> Id {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_le_bytes());
        Id(bytes)
    }

    proptest! {
        /// Whatever the order of inserts and lookups, the table answers as a `HashMap`
        /// that keeps the first value inserted for each id.
        #[test]
        fn it_answers_as_a_map_keeping_the_first_value(
            ops in proptest::collection::vec((any::<bool>(), 0u16..300, any::<u32>()), 0..2000)
        ) {
            let mut table = ChunkTable::new();
            let mut model = HashMap::new();
            for (is_insert, key, value) in ops {
                if is_insert {
                    let fresh = !model.contains_key(&key);
                    model.entry(key).or_insert(value);
                    prop_assert_eq!(table.insert(id(key), value), fresh);
                } else {
                    prop_assert_eq!(table.get(&id(key)), model.get(&key));
                    prop_assert_eq!(table.contains(&id(key)), model.contains_key(&key));
                }
            }
        }
    }

    #[test]
    fn it_holds_a_hundred_thousand_ids() {
        let mut table = ChunkTable::new();
        for n in 0..100_000u32 {
            let mut bytes = [0u8; 32];
            bytes[28..].copy_from_slice(&n.to_be_bytes());
            assert!(table.insert(Id(bytes), n));
        }
        for n in (0..100_000u32).step_by(7) {
            let mut bytes = [0u8; 32];
            bytes[28..].copy_from_slice(&n.to_be_bytes());
            assert_eq!(table.get(&Id(bytes)), Some(&n));
        }
        assert!(!table.contains(&Id([0xff; 32])));
    }
}
