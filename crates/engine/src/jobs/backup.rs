//! Backup: policy → source → snapshot writer → the snapshot, committed last.

use std::sync::Arc;

use backstop_repo::archiver::Progress;
use backstop_repo::{Id, Snapshot, SnapshotMeta, SnapshotWriter};
use backstop_sources::SourceContext;

use backstop_catalog::{Catalog, RunEnd, RunKind, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::catalog::snapshot_record;
use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::repos;

#[derive(Debug)]
pub struct BackupOutcome {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    pub repository_created: bool,
    /// Measures that moved beyond the policy's band since its previous backup.
    pub anomalies: Vec<crate::anomalies::Anomaly>,
}

/// Runs one backup of `policy`. `on_start` receives the live counters (for a progress bar).
pub async fn run(
    config: &Config,
    policy: &Policy,
    on_start: impl FnOnce(Arc<Progress>),
) -> Result<BackupOutcome, EngineError> {
    let settings = config.repository(&policy.repository)?;
    let (repo, created) = repos::open_or_init(settings, &config.base_dir).await?;
    // The newest snapshot of this policy is the parent: its unchanged files are not read.
    // An unreadable snapshot object is skipped (it may be this policy's newest): the parent
    // only saves reading unchanged files, so a backup never needs any particular one.
    let listing = repo.list_snapshots().await?;
    repos::warn_unreadable(
        &policy.repository,
        &listing.unreadable,
        "choosing the parent snapshot",
    );
    let parent = listing
        .snapshots
        .into_iter()
        .rev()
        .find(|(_, s)| s.policy == policy.name && s.source_kind == policy.source.kind());
    // What the new snapshot is compared with for anomalies: the previous one, whether or
    // not it serves as the parent.
    let previous_facts = parent.as_ref().map(|(_, s)| s.facts.clone());
    // Only a file walk uses the parent's tree (to skip unchanged files); a dump is read whole.
    let walks_files = policy.source.walks_files();
    let time = jiff::Timestamp::now();
    let mut writer = SnapshotWriter::start(repo.clone()).await?;
    // Read alongside the walk, as a stream, through the index the writer read under its
    // lock; a tree that cannot be read is given up with a warning in the log, and the files
    // are read again (slower, never wrong).
    let indexed = writer.repository().clone();
    let parent_tree = match &parent {
        Some((_, s)) if walks_files => Some(indexed.tree_reader(s)),
        _ => None,
    };
    on_start(writer.progress());
    let ctx = SourceContext {
        base: &config.base_dir,
        tools: &config.tools,
    };
    // A failure anywhere here drops the writer uncommitted: no snapshot becomes visible.
    let backed = policy.source.back_up(ctx, &mut writer, parent_tree).await?;
    let meta = SnapshotMeta {
        policy: policy.name.clone(),
        source_kind: policy.source.kind().to_string(),
        time,
        data_point: backed.data_point,
        roots: backed.roots,
        parent: parent.map(|(id, _)| id),
    };
    let (snapshot_id, snapshot) = writer.commit(meta, backed.facts).await?;
    let anomalies = previous_facts
        .map(|previous| {
            crate::anomalies::compare(&previous, &snapshot.facts, policy.anomalies.band)
        })
        .unwrap_or_default();
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        repository_created: created,
        anomalies,
    })
}

/// Runs one backup of `policy` and records it in the catalog: the run (started, then
/// succeeded with its snapshot, or failed with its error) and the snapshot. A failure to
/// record a finished backup is reported after the snapshot is safe in the repository (it
/// can be recorded later with `backstop catalog rebuild`).
pub async fn run_recorded(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    on_start: impl FnOnce(Arc<Progress>),
    cancel: &CancellationToken,
) -> Result<BackupOutcome, EngineError> {
    let run_id = catalog.start_run(RunKind::Backup, &policy.name).await?;
    // Cancelling drops the backup before its commit: no snapshot becomes visible, dump
    // tools are killed, and the run is recorded as cancelled.
    let result = tokio::select! {
        result = run(config, policy, on_start) => result,
        _ = cancel.cancelled() => {
            let end = RunEnd { error: Some(EngineError::Cancelled.to_string()), ..RunEnd::default() };
            catalog.finish_run(&run_id, RunStatus::Cancelled, &end).await?;
            return Err(EngineError::Cancelled);
        }
    };
    match result {
        Ok(outcome) => {
            let record =
                snapshot_record(&policy.repository, &outcome.snapshot_id, &outcome.snapshot);
            catalog.record_snapshot(&record).await?;
            let end = RunEnd {
                bytes: Some(outcome.snapshot.summary.bytes_added),
                snapshot_id: Some(outcome.snapshot_id.to_hex()),
                error: None,
                warnings: outcome.anomalies.iter().map(ToString::to_string).collect(),
            };
            catalog
                .finish_run(&run_id, RunStatus::Succeeded, &end)
                .await?;
            Ok(outcome)
        }
        Err(e) => {
            let end = RunEnd {
                error: Some(e.to_string()),
                ..RunEnd::default()
            };
            if let Err(record) = catalog.finish_run(&run_id, RunStatus::Failed, &end).await {
                tracing::error!(error = %record, "recording the failed backup");
            }
            Err(e)
        }
    }
}
