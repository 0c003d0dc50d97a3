//! Backstop's repository: a self-describing, content-addressed, deduplicated, compressed and
//! optionally encrypted store of snapshots, on any [`storage::Storage`].
//!
//! The principal types: [`Repository`] (open or create; config, keys, index),
//! [`SnapshotWriter`] (the archiver: entries in, one committed snapshot out, the snapshot
//! object written last), [`SnapshotReader`] (the restorer: every chunk verified),
//! [`checker::check`] (every finding, not only the first) and [`prune`] (retention, then
//! garbage collection under an exclusive lock) and [`Copier`] (snapshots to another
//! repository, confirmed object by object). The format is specified in
//! `docs/repository-format.md`; this crate knows nothing of policies, databases or catalogs.

pub mod archiver;
pub mod checker;
mod chunk_table;
pub mod copy;
mod direct_io;
pub mod error;
pub mod format;
pub mod lock;
pub mod open;
mod pack_spool;
pub mod prune;
pub mod repair;
pub mod repository;
pub mod restorer;
pub mod storage;
pub mod timing;

pub use archiver::{FileStatus, SnapshotMeta, SnapshotWriter};
pub use copy::{Copier, CopyReport};
pub use error::{RepoError, Result};
pub use format::id::Id;
pub use format::snapshot::{Snapshot, SourceFacts};
pub use format::tree::{Entry, EntryKind};
pub use repository::{InitOptions, Repository, SnapshotList, TreeReader, UnreadableSnapshot};
pub use restorer::{EntryWindows, FileChunks, SnapshotReader};
