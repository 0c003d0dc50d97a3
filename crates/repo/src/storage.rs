//! The one trait on the write path: a flat store of immutable objects under string keys.
//!
//! # Contract (enforced by `crates/repo/tests/storage_suite.rs`, run on every implementation)
//! - `put` is atomic: a reader sees the whole object or nothing, never a prefix. Local storage
//!   writes a temporary file, fsyncs it and renames it; S3 uses PutObject or
//!   CompleteMultipartUpload. Objects are written once; a second `put` of the same key replaces
//!   it whole (the repository only does this for content-addressed keys, where the content is
//!   the same). `put_file` stores a file's content the same way, read from the file as it
//!   is sent.
//! - `get` and `get_range` of a missing key return [`StorageError::NotFound`] naming the key.
//! - `get_range` past the end of an object is an error, never a short read.
//! - `list(prefix)` is complete: every object whose key starts with `prefix`, with its size,
//!   and nothing that is not a finished object (no temporary files, no pending uploads).
//! - `delete` of a missing key succeeds.
//! - `leftovers(prefix)` lists what an interrupted `put` left behind where it can leave
//!   anything (local storage: its temporary files), with when each was last written; `delete`
//!   removes one by the key given. Stores whose `put` leaves nothing behind list none.
//! - Every error names the key and says whether it is worth retrying
//!   ([`StorageError::is_transient`]). Retrying is the job of [`retry::RetryStorage`], a
//!   wrapper, never of an implementation; an implementation bounds each attempt, so that a
//!   request the store never answers ends as a transient error rather than hanging.

pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::Digest;

pub use local::LocalStorage;
pub use memory::MemoryStorage;
pub use retry::{RetryPolicy, RetryStorage};
pub use s3::{S3Options, S3Storage};

/// S3 Object Lock: how every object but the repository's own lock files is written, and
/// for how long it cannot be deleted or overwritten (docs/repository-format.md §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// How long each object is retained from when it is written (or its lock extended).
    pub retention: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with the `s3:BypassGovernanceRetention` permission can still delete; Backstop
    /// never asks to.
    Governance,
    /// Nobody can delete a locked version before its date, not even the account's root.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// Something an interrupted write left behind: not an object, never listed by `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What to pass to `delete` to remove it (for local storage, its relative path).
    pub key: String,
    pub size: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} not found")]
    NotFound { key: String },
    /// Throttling, a 5xx answer, a timeout or a dropped connection: worth another try.
    #[error("{op} {key}: {message} (transient)")]
    Transient {
        op: &'static str,
        key: String,
        message: String,
    },
    /// Transient errors went on for the whole retry budget ([`retry::RetryStorage`]): the
    /// store is unreachable. `store` names it ("repository offsite (s3://bucket/prefix)"),
    /// `cause` is the last transient error's message.
    #[error("{store}: unreachable after {} of retries: {cause} ({op} {key})", seconds(.budget))]
    Unreachable {
        store: String,
        op: &'static str,
        key: String,
        budget: std::time::Duration,
        cause: String,
    },
    /// Anything else (access denied, bad request, a full disk): retrying will not help.
    #[error("{op} {key}: {message}")]
    Permanent {
        op: &'static str,
        key: String,
        message: String,
    },
}

impl StorageError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Transient { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    pub fn key(&self) -> &str {
        match self {
            StorageError::NotFound { key }
            | StorageError::Transient { key, .. }
            | StorageError::Unreachable { key, .. }
            | StorageError::Permanent { key, .. } => key,
        }
    }
}

/// A budget as configured: "90s", "1500ms".
fn seconds(d: &std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key`, atomically (see the module contract).
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;
    /// Stores the content of the file at `path` under `key`, atomically as `put` does: what
    /// a writer that spooled a large object to a temporary file uploads. Implementations
    /// stream it from the file, so that the object is never held in memory; by default the
    /// file is read whole and `put`. The file is only read, never moved or removed.
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StorageError> {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| spool_error("put", key, path, e))?;
        self.put(key, Bytes::from(data)).await
    }
    /// The whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;
    /// `length` bytes from `offset`; fails when the object is shorter.
    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError>;
    /// As [`Storage::get_range`], into `buf` (its content replaced), so that a reader of many
    /// ranges reuses one buffer's memory instead of faulting in a fresh one for each.
    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        length: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let bytes = self.get_range(key, offset, length).await?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Ok(buf)
    }
    /// The SHA-256 of the whole object, and its length: what a writer reads back to confirm
    /// an object it wrote. Implementations read it as a stream, so that a confirmed pack is
    /// not held a second time; by default the object is read whole.
    async fn sha256(&self, key: &str) -> Result<([u8; 32], u64), StorageError> {
        let bytes = self.get(key).await?;
        Ok((sha2::Sha256::digest(&bytes).into(), bytes.len() as u64))
    }
    /// Every finished object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Removes the object; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// What interrupted `put`s left behind under `prefix`, sorted by key (see the module
    /// contract). None by default: most stores' `put` leaves nothing behind.
    async fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>, StorageError> {
        let _ = prefix;
        Ok(Vec::new())
    }
    /// The Object Lock every `put` applies, if any (S3 only).
    fn object_lock(&self) -> Option<ObjectLock> {
        None
    }
    /// Until when the object cannot be deleted (the latest retain-until date of any of its
    /// versions); `None` when it is not locked or the store has no locks.
    async fn locked_until(&self, key: &str) -> Result<Option<jiff::Timestamp>, StorageError> {
        let _ = key;
        Ok(None)
    }
    /// Moves the object's retain-until date to `until` (never earlier: stores refuse to
    /// shorten a compliance lock). A no-op on stores without locks.
    async fn extend_lock(&self, key: &str, until: jiff::Timestamp) -> Result<(), StorageError> {
        let _ = (key, until);
        Ok(())
    }
    /// Where this storage lives, for messages (no secrets).
    fn location(&self) -> String;
    /// Whether every request pays a network round trip (object storage): readers then keep
    /// more requests in flight to hide it. A hint only; it changes no result.
    fn is_remote(&self) -> bool {
        false
    }
}

/// Checks a key for characters that would make it unsafe on some store.
pub(crate) fn validate_key(op: &'static str, key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && !key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::Permanent {
            op,
            key: key.to_string(),
            message: "invalid object key".into(),
        })
    }
}

/// A spooled file that could not be read: named with the key it was to be stored under.
/// Permanent: the file is the writer's own, and another try would read the same.
pub(crate) fn spool_error(
    op: &'static str,
    key: &str,
    path: &std::path::Path,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::Permanent {
        op,
        key: key.to_string(),
        message: format!("reading {}: {e}", path.display()),
    }
}

pub(crate) fn range_error(
    op: &'static str,
    key: &str,
    offset: u64,
    length: u64,
    size: u64,
) -> StorageError {
    StorageError::Permanent {
        op,
        key: key.to_string(),
        message: format!("range {offset}+{length} is past the end of the object ({size} bytes)"),
    }
}
