//! Errors of the repository crate.
//!
//! Rules: every error names the thing it is about (the object key, the snapshot id, the
//! chunk id, the path). Storage errors say whether they are worth retrying. Secrets (keys,
//! credentials) never appear in an error message.

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error("no repository at {location}: the object `config` does not exist")]
    NotARepository { location: String },

    #[error("a repository already exists at {location}")]
    AlreadyExists { location: String },

    #[error(
        "repository at {location} has format version {found}; this backstop reads up to version {supported}, upgrade backstop to use it"
    )]
    UnsupportedVersion {
        location: String,
        found: u32,
        supported: u32,
    },

    #[error("repository at {location} is encrypted: a key is required (key_file or key_env in its configuration; --key-file or --key-env with restore --repo)")]
    KeyRequired { location: String },

    #[error("wrong key for the repository at {location}: the key check did not decrypt")]
    WrongKey { location: String },

    #[error("object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },

    /// An index object is missing or unreadable; the pack headers can say where the chunk is.
    #[error("chunk {chunk} is not in any index; run `backstop repair index` to index the packs no index lists")]
    ChunkNotIndexed { chunk: String },

    #[error("no snapshot matches `{prefix}`")]
    SnapshotNotFound { prefix: String },

    /// What was typed cannot be a snapshot id: a usage error.
    #[error("`{prefix}` is not a snapshot id: {why}")]
    BadSnapshotPrefix { prefix: String, why: &'static str },

    #[error("snapshot id prefix `{prefix}` is ambiguous: it matches {candidates}")]
    AmbiguousSnapshot { prefix: String, candidates: String },

    #[error("repository at {location} is locked by {holder}{}", waited_for(*.waited_secs))]
    Locked {
        location: String,
        holder: String,
        /// How long the lock was waited for before giving up (0: it was not).
        waited_secs: u64,
    },

    #[error("pack {key} is missing, though an index lists it; prune deletes nothing while a pack is missing (`backstop check` names the snapshots it breaks)")]
    MissingPack { key: String },

    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A restore could not write (a full disk, a read-only target): not the data's fault.
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A restore that wrote some files and failed on others; `corrupt` when a failure was
    /// the data's (a corrupt or missing object), not the target's.
    #[error("{summary}")]
    RestoreIncomplete { summary: String, corrupt: bool },

    #[error("{0}")]
    Invalid(String),

    #[error("backup cancelled before commit; nothing was made visible")]
    Cancelled,
}

fn waited_for(secs: u64) -> String {
    if secs == 0 {
        String::new()
    } else {
        format!(" (gave up after waiting {secs} s)")
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

impl RepoError {
    pub(crate) fn corrupt(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        RepoError::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        RepoError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub fn write(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        RepoError::Write {
            path: path.to_string(),
            source,
        }
    }

    /// A copy of this error for each of several files that failed by it (an error is not
    /// `Clone`), keeping what it says and whether the data is at fault.
    pub(crate) fn for_each_file(&self) -> RepoError {
        match self {
            RepoError::Write { path, source } => RepoError::Write {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            e => RepoError::RestoreIncomplete {
                summary: e.to_string(),
                corrupt: e.is_integrity_failure(),
            },
        }
    }

    /// The data is at fault: a corrupt, missing or unindexed object (a restore target that
    /// cannot be written is not).
    pub fn is_integrity_failure(&self) -> bool {
        match self {
            RepoError::Storage(s) => s.is_not_found(),
            RepoError::Corrupt { .. }
            | RepoError::ChunkNotIndexed { .. }
            | RepoError::MissingPack { .. }
            | RepoError::Invalid(_) => true,
            RepoError::RestoreIncomplete { corrupt, .. } => *corrupt,
            _ => false,
        }
    }
}
