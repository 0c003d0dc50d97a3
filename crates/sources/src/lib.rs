//! What Backstop backs up, and how it comes back.
//!
//! [`SourceSpec`] is the closed set of source kinds, deserialised from a policy's `[source]`
//! table. This version backs up `files` and `config` sources ([`files`]); the database kinds
//! are parsed and validated so that policies can be written now, and their backup reports a
//! clear "not supported yet" error.

pub mod files;

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    Postgres(DatabaseSpec),
    Mysql(DatabaseSpec),
    Sqlite(SqliteSpec),
    Files(files::FilesSpec),
    Config(files::FilesSpec),
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Postgres(_) => "postgres",
            SourceSpec::Mysql(_) => "mysql",
            SourceSpec::Sqlite(_) => "sqlite",
            SourceSpec::Files(_) => "files",
            SourceSpec::Config(_) => "config",
        }
    }
}

/// A database reached by a URL held in an environment variable or a file, never inline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSpec {
    pub path: PathBuf,
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
    #[error("{kind} sources cannot be backed up by this version of backstop yet")]
    Unsupported { kind: &'static str },
    #[error(transparent)]
    Repo(#[from] backstop_repo::RepoError),
}
