//! What Backstop backs up, and how it comes back.
//!
//! [`SourceSpec`] is the closed set of source kinds, deserialised from a policy's `[source]`
//! table: directory trees ([`files`]) and databases ([`postgres`], [`mysql`], [`sqlite`]),
//! each dumped with the ecosystem's own tools ([`tool`]) and streamed into the repository.
//! A backup records [`SourceFacts`] (row counts, schema fingerprint) that a restore is
//! later compared with. [`scratch`] restores a snapshot into a throwaway target and
//! guarantees that it is removed; [`restore`] loads a snapshot into a target named by the
//! operator (break-glass).

pub mod command;
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
    Command(command::CommandSpec),
}

impl SourceSpec {
    pub fn source_kind(&self) -> SourceKind {
        match self {
            SourceSpec::Postgres(_) => SourceKind::Postgres,
            SourceSpec::Mysql(_) => SourceKind::Mysql,
            SourceSpec::Sqlite(_) => SourceKind::Sqlite,
            SourceSpec::Files(_) => SourceKind::Files,
            SourceSpec::Config(_) => SourceKind::Config,
            SourceSpec::Command(_) => SourceKind::Command,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.source_kind().as_str()
    }

    /// Whether a backup walks a tree of files (and so can skip the parent's unchanged
    /// files) rather than reading a stream whole.
    pub fn walks_files(&self) -> bool {
        matches!(self, SourceSpec::Files(_) | SourceSpec::Config(_))
    }

    /// Backs the source up into `writer`; `parent` is the previous snapshot's tree, whose
    /// unchanged files a file walk does not read again.
    pub async fn back_up(
        &self,
        ctx: SourceContext<'_>,
        writer: &mut backstop_repo::SnapshotWriter,
        parent: Option<backstop_repo::TreeReader<'_>>,
    ) -> Result<BackedUp, SourceError> {
        match self {
            SourceSpec::Files(spec) | SourceSpec::Config(spec) => {
                let data_point = jiff::Timestamp::now();
                let roots = files::back_up(spec, ctx.base, writer, parent).await?;
                Ok(BackedUp {
                    roots,
                    facts: SourceFacts::default(),
                    data_point,
                })
            }
            SourceSpec::Postgres(spec) => postgres::back_up(spec, ctx, writer).await,
            SourceSpec::Mysql(spec) => mysql::back_up(spec, ctx, writer).await,
            SourceSpec::Sqlite(spec) => sqlite::back_up(spec, ctx, writer).await,
            SourceSpec::Command(spec) => command::back_up(spec, ctx, writer).await,
        }
    }

    /// What is wrong with the source as written: each problem with the keys it concerns
    /// (`["source", "paths"]`), for the policy's validation to locate.
    pub fn problems(&self, base: &Path) -> Vec<(Vec<&'static str>, String)> {
        let url_problem = |url: UrlSource| {
            (url.url_env.is_none() == url.url_file.is_none()).then(|| {
                let key = if url.url_file.is_some() {
                    "url_file"
                } else {
                    "url_env"
                };
                (
                    vec!["source", key],
                    "[source] needs exactly one of url_env or url_file".to_string(),
                )
            })
        };
        match self {
            SourceSpec::Files(spec) | SourceSpec::Config(spec) if spec.paths.is_empty() => {
                vec![(
                    vec!["source", "paths"],
                    "[source] paths must name at least one path".into(),
                )]
            }
            SourceSpec::Files(spec) | SourceSpec::Config(spec) => {
                // Each path is kept (and restored) under its last component: two that share
                // one would collide, and every backup would fail.
                let mut problems = Vec::new();
                let mut seen: std::collections::BTreeMap<String, &PathBuf> =
                    std::collections::BTreeMap::new();
                for path in &spec.paths {
                    let name = files::root_name(&base.join(path));
                    if let Some(first) = seen.insert(name.clone(), path) {
                        problems.push((
                            vec!["source", "paths"],
                            format!(
                                "[source] paths `{}` and `{}` both end in `{name}`: each path is kept under its last component, so they would collide; back up a common parent, or split them into two policies",
                                first.display(),
                                path.display()
                            ),
                        ));
                    }
                }
                problems
            }
            SourceSpec::Postgres(pg) => {
                let mut problems: Vec<_> = url_problem(pg.url_source()).into_iter().collect();
                if pg.jobs.is_some_and(|j| j > 1) && pg.format != postgres::DumpFormat::Directory {
                    problems.push((
                        vec!["source", "jobs"],
                        "[source] jobs needs format = \"directory\" (pg_dump dumps in parallel only into a directory)".into(),
                    ));
                }
                problems
            }
            SourceSpec::Mysql(my) => url_problem(my.url_source()).into_iter().collect(),
            SourceSpec::Sqlite(_) => Vec::new(),
            SourceSpec::Command(spec) => spec.problems(),
        }
    }

    /// What may go wrong at the first backup though the source is valid: a path that does
    /// not exist, a URL whose variable is not set, a dump tool that is not installed. Read
    /// only: nothing is connected to or written.
    pub fn preflight(&self, base: &Path, tools: &Tools) -> Vec<String> {
        // As written under the base, without `./` steps.
        let shown = |p: &Path| -> PathBuf {
            base.join(p)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect()
        };
        let mut warnings = Vec::new();
        match self {
            SourceSpec::Files(spec) | SourceSpec::Config(spec) => {
                for path in &spec.paths {
                    if std::fs::symlink_metadata(base.join(path)).is_err() {
                        warnings.push(format!(
                            "source path {} does not exist",
                            shown(path).display()
                        ));
                    }
                }
            }
            SourceSpec::Sqlite(spec) => {
                if !base.join(&spec.path).exists() {
                    warnings.push(format!(
                        "database file {} does not exist",
                        shown(&spec.path).display()
                    ));
                }
            }
            SourceSpec::Postgres(pg) => {
                if let Err(e) = pg.url_source().resolve(base) {
                    warnings.push(format!("[source]: {e}"));
                }
                if let Err(e) = tools.find(tool::Tool::PgDump) {
                    warnings.push(e.to_string());
                }
            }
            SourceSpec::Mysql(my) => {
                if let Err(e) = my.url_source().resolve(base) {
                    warnings.push(format!("[source]: {e}"));
                }
                if let Err(e) = tools.find(tool::Tool::MariadbDump) {
                    warnings.push(e.to_string());
                }
            }
            SourceSpec::Command(spec) => warnings.extend(spec.preflight(base)),
        }
        warnings
    }

    /// What the source is (its paths, its database), resolved now: what a restore must not
    /// replace.
    pub fn identities(&self, base: &Path) -> Result<Vec<Identity>, SourceError> {
        Ok(match self {
            SourceSpec::Files(files) | SourceSpec::Config(files) => files
                .paths
                .iter()
                .map(|p| Identity::of_path(&base.join(p)))
                .collect(),
            SourceSpec::Sqlite(sqlite) => vec![Identity::of_path(&base.join(&sqlite.path))],
            SourceSpec::Postgres(pg) => vec![Identity::of_url(&pg.url_source().resolve(base)?)],
            SourceSpec::Mysql(my) => vec![Identity::of_url(&my.url_source().resolve(base)?)],
            // What a command exports cannot be named, so nothing is protected from a restore.
            SourceSpec::Command(_) => Vec::new(),
        })
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
