//! Break-glass restore of a database snapshot into a target the operator names: a database
//! URL (created when missing) or, for SQLite, a file path.
//!
//! A target that already holds data is refused unless `force` is given; with `force`,
//! the objects in the dump replace those already there. Whether the target is a source
//! (which `force` never allows) is decided before this, by [`crate::identity::clash`]. A restore that fails removes
//! the database it created, so nothing half-loaded is left looking restored; so does one
//! that is cancelled.

use std::path::Path;

use backstop_repo::SnapshotReader;
use tokio_util::sync::CancellationToken;

use crate::dburl::{DbUrl, Engine};
use crate::tool::Tools;
use crate::{sqlite, SourceError};

/// The tables of a partial restore (`--table`, `[drill] tables`), as written:
/// `schema.table` or `table` (PostgreSQL's `public`; MariaDB's and SQLite's database). Empty:
/// the whole database.
pub type Tables = [String];

/// Loads a SQLite snapshot into the file `target`: the whole database (replacing the file),
/// or only `tables` (into the file, created when missing).
pub async fn load_sqlite(
    reader: &SnapshotReader,
    target: &Path,
    clean: bool,
    tables: &Tables,
) -> Result<(), SourceError> {
    if tables.is_empty() {
        return sqlite::load(reader, target).await;
    }
    let named: Vec<String> = tables
        .iter()
        .map(|t| crate::engine::unqualified(t))
        .collect();
    sqlite::load_tables(reader, target, &named, clean).await
}

/// What a database restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRestored {
    pub created: bool,
}

pub async fn to_database(
    reader: &SnapshotReader,
    target: &DbUrl,
    tools: &Tools,
    force: bool,
    jobs: u32,
    tables: &Tables,
    cancel: &CancellationToken,
) -> Result<DatabaseRestored, SourceError> {
    let kind = reader.snapshot().source_kind.as_str();
    let Some(engine) = Engine::of_kind(kind) else {
        return Err(SourceError::Invalid(format!(
            "snapshot {} is of a {kind} source; a database URL target needs a postgres or mysql snapshot (restore it with --to DIR)",
            reader.id().short()
        )));
    };
    if target.engine() != engine {
        return Err(SourceError::Invalid(format!(
            "snapshot {} is of a {kind} source and cannot be restored into {target}",
            reader.id().short()
        )));
    }
    let database = named_database(target)?;
    // The database as named ([`DbUrl::database`]: decoded, no trailing slash), so that
    // `…/db/` loads `db` rather than a database named `db/`.
    let target = &target.with_database(&database);
    let exists = database_exists(target).await?;
    if exists {
        let empty = engine.is_empty(target).await?;
        if !empty && !force {
            return Err(SourceError::Refused(format!(
                "database `{database}` on {target} already holds tables or functions; restore into a new or empty database, or pass --force to replace the objects the dump holds"
            )));
        }
    } else {
        engine.create(target, &database).await?;
    }
    let load = engine.load(reader, target, tools, jobs, exists && force, tables);
    // Cancelling drops the load, which stops its tools (they are killed on drop).
    let loaded = tokio::select! {
        loaded = load => loaded,
        _ = cancel.cancelled() => Err(SourceError::Cancelled(if exists {
            format!("the restore into database `{database}` was stopped part-way")
        } else {
            format!("the database `{database}` it created was dropped")
        })),
    };
    if let Err(e) = loaded {
        if !exists {
            if let Err(cleanup) = drop_database(target).await {
                tracing::error!(error = %cleanup, "removing the partly restored database");
            }
        }
        return Err(e);
    }
    Ok(DatabaseRestored { created: !exists })
}

/// Whether the database `target` names exists on its server.
pub async fn database_exists(target: &DbUrl) -> Result<bool, SourceError> {
    let database = named_database(target)?;
    target.engine().exists(target, &database).await
}

/// Drops the database `target` names (a restore's own, which failed or was interrupted);
/// one that is not there is fine.
pub async fn drop_database(target: &DbUrl) -> Result<(), SourceError> {
    let database = named_database(target)?;
    target.engine().drop(target, &database).await
}

fn named_database(target: &DbUrl) -> Result<String, SourceError> {
    target.database().ok_or_else(|| {
        SourceError::Invalid(format!(
            "{target}: the URL names no database to restore into"
        ))
    })
}

/// Writes a SQLite snapshot's database to `target` (a file path).
pub async fn sqlite_to_file(
    reader: &SnapshotReader,
    target: &Path,
    force: bool,
    tables: &Tables,
) -> Result<(), SourceError> {
    // The file is replaced by a rename, never written through: a symlink here is replaced
    // too, and counts as something that is there.
    if let Ok(meta) = std::fs::symlink_metadata(target) {
        if meta.is_dir() {
            return Err(SourceError::Invalid(format!(
                "{} is a directory; name the database file to write",
                target.display()
            )));
        }
        if meta.len() > 0 && !force {
            return Err(SourceError::Refused(format!(
                "{} already exists; choose a new path, or pass --force to replace it",
                target.display()
            )));
        }
    }
    load_sqlite(reader, target, force, tables).await
}
