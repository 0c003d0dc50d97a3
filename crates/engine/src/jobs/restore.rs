//! Break-glass restore: from the repository alone (no catalog, no daemon) into a directory.

use std::path::Path;
use std::sync::Arc;

use backstop_repo::restorer::RestoreReport;
use backstop_repo::{Repository, SnapshotReader};

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
