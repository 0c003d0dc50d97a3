//! Where each kind of object lives. Keys are relative to the repository root.

use super::id::Id;

pub const CONFIG: &str = "config";
pub const DATA_PREFIX: &str = "data/";
pub const INDEX_PREFIX: &str = "index/";
pub const SNAPSHOTS_PREFIX: &str = "snapshots/";
pub const LOCKS_PREFIX: &str = "locks/";

/// Packs are spread over 256 directories by their first byte, so no directory grows huge.
pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("{DATA_PREFIX}{}/{hex}", &hex[..2])
}

pub fn index_key(id: &Id) -> String {
    format!("{INDEX_PREFIX}{id}")
}

pub fn snapshot_key(id: &Id) -> String {
    format!("{SNAPSHOTS_PREFIX}{id}")
}

pub fn lock_key(id: &Id) -> String {
    format!("{LOCKS_PREFIX}{id}")
}

/// The id at the end of a key of any kind, if it is one.
pub fn id_of(key: &str) -> Option<Id> {
    key.rsplit('/').next()?.parse().ok()
}
