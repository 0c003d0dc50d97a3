//! Backup: policy → source → snapshot writer → the snapshot, committed last.

use std::sync::Arc;

use backstop_repo::archiver::Progress;
use backstop_repo::{Id, Snapshot, SnapshotMeta, SnapshotWriter, SourceFacts};
use backstop_sources::{files, SourceError, SourceSpec};

use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::repos;

#[derive(Debug)]
pub struct BackupOutcome {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    pub repository_created: bool,
}

/// Runs one backup of `policy`. `on_start` receives the live counters (for a progress bar).
pub async fn run(
    config: &Config,
    policy: &Policy,
    on_start: impl FnOnce(Arc<Progress>),
) -> Result<BackupOutcome, EngineError> {
    let settings = config.repository(&policy.repository)?;
    let (repo, created) = repos::open_or_init(settings, &config.base_dir).await?;
    let spec = match &policy.source {
        SourceSpec::Files(spec) | SourceSpec::Config(spec) => spec,
        other => return Err(SourceError::Unsupported { kind: other.kind() }.into()),
    };
    // The newest snapshot of this policy is the parent: its unchanged files are not read.
    let parent = repo
        .snapshots()
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| s.policy == policy.name && s.source_kind == policy.source.kind());
    let parent_tree = match &parent {
        Some((_, s)) => Some(repo.read_tree(s).await?),
        None => None,
    };
    let time = jiff::Timestamp::now();
    let mut writer = SnapshotWriter::start(repo.clone()).await?;
    on_start(writer.progress());
    let roots = files::back_up(spec, &config.base_dir, &mut writer, parent_tree.as_deref()).await?;
    let meta = SnapshotMeta {
        policy: policy.name.clone(),
        source_kind: policy.source.kind().to_string(),
        time,
        data_point: time,
        roots,
        parent: parent.map(|(id, _)| id),
    };
    let (snapshot_id, snapshot) = writer.commit(meta, SourceFacts::default()).await?;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        repository_created: created,
    })
}
