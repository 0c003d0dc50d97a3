//! Scheduled retention and integrity checks of a policy's repository, recorded as runs.
//!
//! Prune is repository-wide: it applies the retention of every policy stored in the
//! repository, then collects unreferenced data (under the repository's exclusive lock, in an
//! order that keeps every kept snapshot restorable if it is interrupted). The catalog then
//! forgets the snapshots the repository no longer holds. While a snapshot object is
//! unreadable, prune applies retention but collects nothing, and the run fails naming it.

use std::collections::HashMap;

use backstop_catalog::{Catalog, RunEnd, RunKind, RunStatus};
use backstop_repo::checker::{self, ReadData};
use backstop_repo::prune;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::repos::{self, OpenMode};

/// Prunes `policy`'s repository, then each of its copies, with the retention of every
/// policy in `policies` that keeps snapshots there. Returns a one-line summary.
pub async fn prune_recorded(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    policies: &[Policy],
    cancel: &CancellationToken,
) -> Result<String, EngineError> {
    let run_id = catalog.start_run(RunKind::Prune, &policy.name).await?;
    let work = async {
        let mut summaries = Vec::new();
        let mut deleted = 0;
        for repository in policy.repositories() {
            let (summary, bytes) = prune_repository(config, catalog, repository, policies).await?;
            summaries.push(summary);
            deleted += bytes;
        }
        Ok::<_, EngineError>((summaries.join("; "), deleted))
    };
    finish(catalog, &run_id, work, cancel).await
}

async fn prune_repository(
    config: &Config,
    catalog: &Catalog,
    repository: &str,
    policies: &[Policy],
) -> Result<(String, u64), EngineError> {
    let Some(repo) = open_if_created(config, repository, OpenMode::Full).await? else {
        return Ok((not_created(repository), 0));
    };
    let retention: HashMap<String, prune::Retention> = policies
        .iter()
        .filter(|p| p.keeps_snapshots_in(repository))
        .map(|p| (p.name.clone(), p.retention.clone()))
        .collect();
    let (plan, _) = prune::prune(repo, &retention, false).await?;
    let keep: Vec<String> = plan
        .keep
        .iter()
        .chain(plan.unreadable.iter().map(|u| &u.id))
        .map(|id| id.to_hex())
        .collect();
    catalog.forget_snapshots_except(repository, &keep).await?;
    let summary = format!(
        "repository `{repository}`: kept {} snapshots, forgot {}, deleted {} packs",
        plan.keep.len(),
        plan.forget.len(),
        plan.delete_packs.len()
    );
    if !plan.unreadable.is_empty() {
        let unreadable: Vec<String> = plan.unreadable.iter().map(|u| u.to_string()).collect();
        return Err(EngineError::Refused(format!(
            "{summary}; collected no garbage while a snapshot is unreadable: {}",
            unreadable.join("; ")
        )));
    }
    Ok((summary, plan.delete_bytes))
}

/// Checks `policy`'s repository (structure and every index; no pack reads). Findings fail
/// the run, each named.
pub async fn check_recorded(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    cancel: &CancellationToken,
) -> Result<String, EngineError> {
    let run_id = catalog.start_run(RunKind::Check, &policy.name).await?;
    let work = async {
        let Some(repo) =
            open_if_created(config, &policy.repository, OpenMode::WithoutIndex).await?
        else {
            return Ok((not_created(&policy.repository), 0));
        };
        let report = checker::check(repo, ReadData::None).await?;
        if !report.is_ok() {
            let findings: Vec<String> = report
                .errors()
                .map(|f| format!("{}: {}", f.object, f.message))
                .collect();
            return Err(EngineError::Refused(format!(
                "check of repository `{}` found {} problem(s): {}",
                policy.repository,
                findings.len(),
                findings.join("; ")
            )));
        }
        Ok((
            format!(
                "repository `{}`: {} snapshots, {} packs, no errors",
                policy.repository, report.snapshots, report.packs
            ),
            0,
        ))
    };
    finish(catalog, &run_id, work, cancel).await
}

/// The repository, or none when no backup has created it yet (nothing to prune or check).
async fn open_if_created(
    config: &Config,
    name: &str,
    mode: OpenMode,
) -> Result<Option<std::sync::Arc<backstop_repo::Repository>>, EngineError> {
    let settings = config.repository(name)?;
    match repos::open_with(settings, &config.base_dir, mode).await {
        Ok(repo) => Ok(Some(repo)),
        Err(EngineError::Repo(backstop_repo::RepoError::NotARepository { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_created(name: &str) -> String {
    format!("repository `{name}` has no backup yet: nothing to do")
}

async fn finish(
    catalog: &Catalog,
    run_id: &str,
    work: impl std::future::Future<Output = Result<(String, u64), EngineError>>,
    cancel: &CancellationToken,
) -> Result<String, EngineError> {
    let result = tokio::select! {
        result = work => result,
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
    };
    let (status, end) = match &result {
        Ok((_, bytes)) => (
            RunStatus::Succeeded,
            RunEnd {
                bytes: Some(*bytes),
                ..RunEnd::default()
            },
        ),
        Err(EngineError::Cancelled) => (
            RunStatus::Cancelled,
            RunEnd {
                error: Some(EngineError::Cancelled.to_string()),
                ..RunEnd::default()
            },
        ),
        Err(e) => (
            RunStatus::Failed,
            RunEnd {
                error: Some(e.to_string()),
                ..RunEnd::default()
            },
        ),
    };
    catalog.finish_run(run_id, status, &end).await?;
    result.map(|(summary, _)| summary)
}
