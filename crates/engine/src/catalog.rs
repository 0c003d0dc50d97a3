//! The catalog seen from the engine: opening it as configured, mirroring snapshots into it,
//! and rebuilding it from the repositories (which hold the truth).

use backstop_catalog::{Catalog, SnapshotRecord};
use backstop_repo::{Id, Snapshot, UnreadableSnapshot};

use crate::config::Config;
use crate::error::EngineError;
use crate::repos::{self, OpenMode};

/// The configured catalog: `catalog` in backstop.toml, else `catalog.db` in `data_dir`.
/// Audit events name the configured principal as their actor (else `$USER@host`).
pub async fn open(config: &Config) -> Result<Catalog, EngineError> {
    let catalog = Catalog::open(config.catalog.as_deref(), &config.data_dir).await?;
    Ok(match config.principal() {
        Some(principal) => catalog.with_actor(principal),
        None => catalog,
    })
}

/// Records that a policy set was loaded: one `policy.loaded` event per policy, with the
/// SHA-256 of its file as read.
pub async fn record_policies_loaded<'a>(
    catalog: &Catalog,
    policies: impl IntoIterator<Item = &'a crate::policy::Policy>,
) -> Result<(), EngineError> {
    use sha2::Digest;
    for policy in policies {
        let digest = std::fs::read(&policy.file)
            .map(|bytes| hex::encode(sha2::Sha256::digest(bytes)))
            .unwrap_or_default();
        catalog
            .append_event(
                "policy.loaded",
                &policy.name,
                serde_json::json!({"file": policy.file.display().to_string(), "sha256": digest}),
            )
            .await?;
    }
    Ok(())
}

/// The catalog's copy of a snapshot manifest.
pub fn snapshot_record(repository: &str, id: &Id, s: &Snapshot) -> SnapshotRecord {
    SnapshotRecord {
        id: id.to_hex(),
        repository: repository.to_string(),
        policy: s.policy.clone(),
        source_kind: s.source_kind.clone(),
        time: s.time,
        data_point: s.data_point,
        hostname: s.hostname.clone(),
        files: s.facts.file_count,
        bytes: s.facts.bytes,
        digest: s.tree.digest.to_hex(),
        facts: serde_json::to_value(&s.facts).unwrap_or_default(),
        summary: serde_json::to_value(&s.summary).unwrap_or_default(),
    }
}

/// What a rebuild did, per repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub repository: String,
    pub snapshots: usize,
    pub added: usize,
    pub forgotten: u64,
    /// Snapshot objects that could not be read: not recorded, and not forgotten either (the
    /// repository still holds them).
    pub unreadable: Vec<UnreadableSnapshot>,
}

/// What a rebuild did: the history taken back from the repositories, then the snapshots per
/// repository.
#[derive(Debug, Clone, Default)]
pub struct RebuildReport {
    pub history: backstop_catalog::Imported,
    /// History objects that could not be read, each named.
    pub history_problems: Vec<String>,
    pub repositories: Vec<Rebuilt>,
}

/// Takes the history the repositories hold back into the catalog (what it lacks; see
/// [`crate::history`]), then records every snapshot (see [`rebuild_snapshots`]). The
/// history comes first, so that on a fresh data directory the audit chain is the one the
/// anchors name, and the snapshots recorded afterwards extend it.
pub async fn rebuild(config: &Config, catalog: &Catalog) -> Result<RebuildReport, EngineError> {
    let (rows, history_problems) = crate::history::read(config).await?;
    let history = catalog.import_history(&rows).await?;
    let repositories = rebuild_snapshots(config, catalog).await?;
    Ok(RebuildReport {
        history,
        history_problems,
        repositories,
    })
}

/// Records every snapshot of every configured repository in the catalog, and forgets
/// snapshots the repositories no longer hold. A repository never written is skipped. An
/// unreadable snapshot object is reported in [`Rebuilt::unreadable`], and the others are
/// recorded all the same.
pub async fn rebuild_snapshots(
    config: &Config,
    catalog: &Catalog,
) -> Result<Vec<Rebuilt>, EngineError> {
    let mut report = Vec::new();
    for settings in config.repositories.values() {
        let repo = match repos::open_with(settings, &config.base_dir, OpenMode::WithoutIndex).await
        {
            Ok(repo) => repo,
            Err(EngineError::Repo(backstop_repo::RepoError::NotARepository { .. })) => continue,
            Err(e) => return Err(e),
        };
        let listing = repo.list_snapshots().await?;
        let snapshots = listing.snapshots;
        let mut added = 0;
        for (id, snapshot) in &snapshots {
            if catalog
                .record_snapshot(&snapshot_record(&settings.name, id, snapshot))
                .await?
            {
                added += 1;
            }
        }
        let keep: Vec<String> = snapshots
            .iter()
            .map(|(id, _)| *id)
            .chain(listing.unreadable.iter().map(|u| u.id))
            .map(|id| id.to_hex())
            .collect();
        let forgotten = catalog
            .forget_snapshots_except(&settings.name, &keep)
            .await?;
        report.push(Rebuilt {
            repository: settings.name.clone(),
            snapshots: snapshots.len(),
            added,
            forgotten,
            unreadable: listing.unreadable,
        });
    }
    Ok(report)
}
