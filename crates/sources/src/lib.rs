//! What Backstop backs up, and how it comes back.
//!
//! [`SourceSpec`] is the closed set of source kinds, deserialised from a policy's `[source]`
//! table: directory trees ([`files`]) and databases ([`postgres`], [`mysql`], [`sqlite`]),
//! each dumped with the ecosystem's own tools ([`tool`]) and streamed into the repository.
//! A backup records [`SourceFacts`] (row counts, schema fingerprint) that a restore is
//! later compared with. [`scratch`] restores a snapshot into a throwaway target and
//! guarantees that it is removed; [`restore`] loads a snapshot into a target named by the
//! operator (break-glass).

pub mod dburl;
pub mod dump_rows;
pub mod engine;
pub mod files;
pub mod identity;
pub mod kind;
pub mod mysql;
pub mod pg_archive;
pub mod postgres;
pub mod probe;
pub mod restore;
pub mod scratch;
pub mod sqlite;
pub mod tool;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use backstop_repo::format::snapshot::Root;
use backstop_repo::{Entry, EntryKind, SourceFacts};
use serde::Deserialize;

pub use dburl::{DbUrl, UrlSource};
pub use identity::{clash, Identity, Overlap, Protected, SourceClash};
pub use kind::{SourceKind, TargetKind};
pub use tool::Tools;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    Postgres(postgres::PostgresSpec),
    Mysql(mysql::MysqlSpec),
    Sqlite(sqlite::SqliteSpec),
    Files(files::FilesSpec),
    Config(files::FilesSpec),
}

impl SourceSpec {
    pub fn source_kind(&self) -> SourceKind {
        match self {
            SourceSpec::Postgres(_) => SourceKind::Postgres,
            SourceSpec::Mysql(_) => SourceKind::Mysql,
            SourceSpec::Sqlite(_) => SourceKind::Sqlite,
            SourceSpec::Files(_) => SourceKind::Files,
            SourceSpec::Config(_) => SourceKind::Config,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.source_kind().as_str()
    }
}

/// What a source needs from its surroundings.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext<'a> {
    /// Relative paths in the policy resolve against this directory.
    pub base: &'a Path,
    pub tools: &'a Tools,
}

/// What a database backup hands to the snapshot: its roots, its facts, and the moment its
/// data represents (the database snapshot, not the end of the dump).
#[derive(Debug)]
pub struct BackedUp {
    pub roots: Vec<Root>,
    pub facts: SourceFacts,
    pub data_point: jiff::Timestamp,
}

/// A file entry for a stream (a dump) written by this process now.
pub(crate) fn stream_entry(path: &str) -> Entry {
    let now = jiff::Timestamp::now();
    let (uid, gid) = std::fs::metadata(".")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0));
    Entry {
        path: path.to_string(),
        kind: EntryKind::File,
        mode: 0o100600,
        uid,
        gid,
        mtime_ns: now.as_nanosecond() as i64,
        size: 0,
        chunks: vec![],
        digest: None,
        target: None,
        ctime_ns: 0,
        inode: 0,
    }
}

/// `"ident"`, for PostgreSQL and SQLite.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SHA-256 over sorted lines: a fingerprint that does not depend on catalog order.
pub(crate) fn fingerprint(mut lines: Vec<String>) -> String {
    use sha2::{Digest, Sha256};
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source path {path}: {source}")]
    Path {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exclude pattern `{pattern}`: {message}")]
    Exclude { pattern: String, message: String },
    /// A URL or secret could not be read; the message names the variable or file.
    #[error("{0}")]
    Secret(String),
    #[error("{tool}: {hint}")]
    ToolMissing { tool: &'static str, hint: String },
    #[error("{tool} {tool_version} is older than the server {server} ({server_version}); use {tool} {server_version} or newer (set tools in backstop.toml)")]
    ToolTooOld {
        tool: &'static str,
        tool_version: String,
        server: String,
        server_version: String,
    },
    #[error("{tool} {detail}")]
    ToolFailed { tool: &'static str, detail: String },
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{server}: {what}: {source}")]
    Query {
        server: String,
        what: String,
        #[source]
        source: sqlx::Error,
    },
    /// Restore safety or an occupied target: nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] backstop_repo::RepoError),
    /// Stopped on request (shutdown or a timeout); what it had created is removed.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

impl SourceError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        SourceError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// A directory for temporary copies, created when missing.
pub(crate) fn temp_parent(configured: Option<&PathBuf>) -> PathBuf {
    configured
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().join("backstop-scratch"))
}

/// A private temporary directory named `prefix…` under the scratch area, removed on drop:
/// where dumps and their parts are spooled.
pub(crate) fn spool_dir(prefix: &str) -> Result<tempfile::TempDir, SourceError> {
    let parent = temp_parent(None);
    std::fs::create_dir_all(&parent).map_err(|e| SourceError::io(parent.display(), e))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(|e| SourceError::io(parent.display(), e))
}
