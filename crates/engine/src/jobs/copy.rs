//! Copies: a policy's snapshots, copied to the secondary repositories its `copies` names.
//!
//! Each snapshot copied is a run of its own (`copy`, with the bytes written), and the copy is
//! recorded in the catalog under the secondary's name, so that status and the evidence see
//! each repository's newest snapshot. The repository crate's [`Copier`] does the work: only
//! what the secondary lacks is written, every object is read back, the snapshot last.

use std::sync::Arc;

use backstop_catalog::{Catalog, RunEnd, RunKind, RunStatus};
use backstop_repo::{Copier, CopyReport, Id, Repository};
use tokio_util::sync::CancellationToken;

use crate::catalog::snapshot_record;
use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::repos;

/// One snapshot copied to one repository.
#[derive(Debug, Clone)]
pub struct CopyDone {
    pub repository: String,
    pub policy: String,
    pub report: CopyReport,
}

/// Opens a secondary to copy into, creating it on the first copy (like a backup creates
/// its repository). Encrypted snapshots are never copied into an unencrypted repository:
/// that would leave the off-site copy readable by whoever holds the storage.
async fn open_destination(
    config: &Config,
    source: &Repository,
    name: &str,
) -> Result<Arc<Repository>, EngineError> {
    let settings = config.repository(name)?;
    if source.codec().is_encrypted() && matches!(settings.key, crate::config::KeySource::None) {
        return Err(EngineError::Refused(format!(
            "repository `{name}` is not encrypted (no key_file or key_env), and the snapshots to copy are: give it a key"
        )));
    }
    let (repo, created) = repos::open_or_init(settings, &config.base_dir).await?;
    if created {
        tracing::info!(repository = name, "created the repository to copy into");
    }
    Ok(repo)
}

/// Copies snapshot `id` of `source` to the repository `to`, as one recorded run.
pub async fn copy_recorded(
    config: &Config,
    catalog: &Catalog,
    source: Arc<Repository>,
    id: Id,
    to: &str,
    cancel: &CancellationToken,
) -> Result<CopyDone, EngineError> {
    let policy = source.load_snapshot(&id).await?.policy;
    let work = async {
        let dest = open_destination(config, &source, to).await?;
        let mut copier = Copier::new(source, dest.clone()).await?;
        copy_one(catalog, &mut copier, &dest, id, &policy, to, cancel).await
    };
    tokio::select! {
        done = work => done,
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
    }
}

/// Copies every snapshot of `policy` that one of its secondaries lacks, oldest first, each
/// as a recorded run. Every secondary is tried even when one fails; the first failure is
/// returned after all were tried.
pub async fn catch_up_recorded(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    cancel: &CancellationToken,
) -> Result<Vec<CopyDone>, EngineError> {
    let mut done = Vec::new();
    let mut first_error = None;
    if policy.copies.is_empty() {
        return Ok(done);
    }
    let source = match repos::open(config.repository(&policy.repository)?, &config.base_dir).await {
        Ok(repo) => repo,
        // No backup yet: nothing to copy.
        Err(EngineError::Repo(backstop_repo::RepoError::NotARepository { .. })) => return Ok(done),
        Err(e) => return Err(e),
    };
    for to in &policy.copies {
        let work = async {
            let dest = open_destination(config, &source, to).await?;
            let mut copier = Copier::new(source.clone(), dest.clone()).await?;
            repos::warn_unreadable(to, &copier.unreadable, "listing snapshots to copy");
            // Snapshots older than the oldest the secondary keeps were pruned there (or
            // are being): copying them again would only feed the next prune.
            let oldest_held = copier
                .destination_snapshots()
                .iter()
                .filter(|(_, s)| s.policy == policy.name)
                .map(|(_, s)| s.time)
                .min();
            let missing: Vec<Id> = copier
                .missing()
                .into_iter()
                .filter(|(_, s)| s.policy == policy.name)
                .filter(|(_, s)| oldest_held.is_none_or(|oldest| s.time > oldest))
                .map(|(id, _)| id)
                .collect();
            let mut copied = Vec::new();
            for id in missing {
                copied.push(
                    copy_one(catalog, &mut copier, &dest, id, &policy.name, to, cancel).await?,
                );
            }
            Ok::<_, EngineError>(copied)
        };
        let result = tokio::select! {
            result = work => result,
            _ = cancel.cancelled() => Err(EngineError::Cancelled),
        };
        match result {
            Ok(copied) => done.extend(copied),
            Err(EngineError::Cancelled) => return Err(EngineError::Cancelled),
            Err(e) => {
                tracing::error!(policy = policy.name, repository = to, error = %e, "copy failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// One snapshot, one run: started, then succeeded with the bytes written and the copy's id,
/// or failed naming the repository.
async fn copy_one(
    catalog: &Catalog,
    copier: &mut Copier,
    dest: &Repository,
    id: Id,
    policy: &str,
    to: &str,
    cancel: &CancellationToken,
) -> Result<CopyDone, EngineError> {
    let run_id = catalog.start_run(RunKind::Copy, policy).await?;
    let result = tokio::select! {
        result = copier.copy(id) => result.map_err(EngineError::from),
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
    };
    let result = match result {
        Ok(report) => {
            let copy = dest.load_snapshot(&report.snapshot).await?;
            catalog
                .record_snapshot(&snapshot_record(to, &report.snapshot, &copy))
                .await?;
            Ok(report)
        }
        Err(e) => Err(e),
    };
    let (status, end) = match &result {
        Ok(report) => (
            RunStatus::Succeeded,
            RunEnd {
                bytes: Some(report.bytes_written),
                snapshot_id: Some(report.snapshot.to_hex()),
                ..RunEnd::default()
            },
        ),
        Err(e) => (
            if matches!(e, EngineError::Cancelled) {
                RunStatus::Cancelled
            } else {
                RunStatus::Failed
            },
            RunEnd {
                error: Some(format!(
                    "copy of snapshot {} to repository `{to}`: {e}",
                    id.short()
                )),
                ..RunEnd::default()
            },
        ),
    };
    catalog.finish_run(&run_id, status, &end).await?;
    let report = result.map_err(|e| match e {
        EngineError::Cancelled => e,
        e => EngineError::Refused(format!(
            "copy of snapshot {} to repository `{to}`: {e}",
            id.short()
        )),
    })?;
    tracing::info!(
        policy,
        repository = to,
        snapshot = %report.snapshot.short(),
        bytes_written = report.bytes_written,
        chunks_copied = report.chunks_copied,
        "snapshot copied"
    );
    Ok(CopyDone {
        repository: to.to_string(),
        policy: policy.to_string(),
        report,
    })
}
