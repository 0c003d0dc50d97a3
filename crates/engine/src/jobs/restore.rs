//! Break-glass restore: from the repository alone (no catalog, no daemon) into a directory,
//! a database URL (postgres://, mysql://) or, for SQLite snapshots, a database file.

use std::path::Path;
use std::sync::Arc;

use backstop_repo::restorer::RestoreReport;
use backstop_repo::{Id, Repository, SnapshotReader};
use backstop_sources::{restore as db_restore, DbUrl, SourceError, Tools};

use crate::error::EngineError;

/// Restores `snapshot` (an id or unique prefix) into `target`, which must be absent or an
/// empty directory unless `force` is given: a restore never mixes with existing files.
pub async fn to_directory(
    repo: Arc<Repository>,
    snapshot: &str,
    target: &Path,
    force: bool,
) -> Result<(backstop_repo::Id, RestoreReport), EngineError> {
    if !force {
        match std::fs::read_dir(target).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {
                return Err(EngineError::Refused(format!(
                    "restore target {} is not empty; choose an empty or new directory (or pass --force to write into it)",
                    target.display()
                )))
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EngineError::Read {
                    path: target.display().to_string(),
                    source: e,
                })
            }
        }
    }
    let id = repo.find_snapshot(snapshot).await?;
    let reader = SnapshotReader::open(repo, id).await?;
    let report = reader.restore_to(target).await?;
    Ok((id, report))
}

/// Loads snapshot `id` and refuses it unless it is a snapshot of `policy` (a drill or a
/// request for one policy never restores another's data).
pub async fn load_for_policy(
    repo: &Repository,
    id: &Id,
    policy: &str,
) -> Result<backstop_repo::Snapshot, EngineError> {
    let snapshot = repo.load_snapshot(id).await?;
    if snapshot.policy != policy {
        return Err(EngineError::Refused(format!(
            "snapshot {} belongs to policy `{}`, not `{policy}`",
            id.short(),
            snapshot.policy
        )));
    }
    Ok(snapshot)
}

/// Where a break-glass restore went.
#[derive(Debug)]
pub enum Restored {
    Directory(RestoreReport),
    /// A database, shown without its password; `created` when the restore made it.
    Database {
        target: String,
        created: bool,
    },
    SqliteFile(std::path::PathBuf),
}

/// Restores `snapshot` into `target`: a database URL for postgres and mysql snapshots, a
/// file path for sqlite snapshots (a directory that exists gets the raw files instead), and
/// a directory otherwise.
pub async fn to_target(
    repo: Arc<Repository>,
    snapshot: &str,
    target: &str,
    force: bool,
    tools: &Tools,
    jobs: u32,
) -> Result<(Id, Restored), EngineError> {
    if target.contains("://") {
        let url = DbUrl::parse(target)
            .map_err(|message| SourceError::Invalid(format!("--to: {message}")))?;
        let id = repo.find_snapshot(snapshot).await?;
        let reader = SnapshotReader::open(repo, id).await?;
        let done = db_restore::to_database(&reader, &url, tools, force, jobs).await?;
        return Ok((
            id,
            Restored::Database {
                target: url.to_string(),
                created: done.created,
            },
        ));
    }
    let path = Path::new(target);
    let id = repo.find_snapshot(snapshot).await?;
    let reader = SnapshotReader::open(Arc::clone(&repo), id).await?;
    if reader.snapshot().source_kind == "sqlite" && !path.is_dir() {
        db_restore::sqlite_to_file(&reader, path, force).await?;
        return Ok((id, Restored::SqliteFile(path.to_path_buf())));
    }
    let (id, report) = to_directory(repo, &id.to_hex(), path, force).await?;
    Ok((id, Restored::Directory(report)))
}
