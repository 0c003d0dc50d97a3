//! Snapshot manifests: `snapshots/<id>`, `id = SHA-256(stored object)`, holding
//! `encode(JSON Snapshot, aad "snapshot")`. Written last: a snapshot is visible only once
//! every pack and index object it needs is durable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::Id;

pub const AAD: &[u8] = b"snapshot";
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// The policy (asset) this is a backup of.
    pub policy: String,
    /// `files`, `config`, `postgres`, `mysql` or `sqlite`.
    pub source_kind: String,
    /// When the backup started.
    pub time: jiff::Timestamp,
    /// The moment the data represents (the start of a file walk, a database's snapshot).
    pub data_point: jiff::Timestamp,
    pub hostname: String,
    /// The top-level names in the tree and what they were backed up from.
    pub roots: Vec<Root>,
    pub parent: Option<Id>,
    pub tree: TreeRef,
    pub facts: SourceFacts,
    pub summary: BackupSummary,
}

impl Snapshot {
    /// Whether `other` is the same backup, held in another repository: copies keep the policy,
    /// source kind, host and both times (nanoseconds), and change only the chunk ids of the
    /// tree, the parent, and so the snapshot's id.
    pub fn same_backup(&self, other: &Snapshot) -> bool {
        self.policy == other.policy
            && self.source_kind == other.source_kind
            && self.time == other.time
            && self.data_point == other.data_point
            && self.hostname == other.hostname
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub name: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeRef {
    /// Chunks of the tree's JSON Lines, in order.
    pub chunks: Vec<Id>,
    /// SHA-256 of the tree's JSON Lines: the snapshot's content digest, equal for equal
    /// content and metadata.
    pub digest: Id,
    pub entries: u64,
}

/// What was true of the source at backup time; drills compare a restore against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFacts {
    pub file_count: u64,
    pub dir_count: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_size: Option<u64>,
    /// Exact row count per table (`schema.table`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_fingerprint: Option<String>,
    /// Source-specific facts that have no field of their own (for example how row counts
    /// were taken).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub bytes_read: u64,
    /// Bytes of new packs and index written by this backup.
    pub bytes_added: u64,
    pub duration_ms: u64,
    /// Things the backup could not do fully (an unreadable file, a file changed while read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
