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

/// How much of a repository's data a check reads, beyond its structure and indexes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataRead {
    None,
    All,
    /// `percent` of the packs, the least recently read first (by the catalog's record), at
    /// most `budget_bytes` of them.
    Subset {
        percent: f64,
        budget_bytes: Option<u64>,
    },
}

/// `5%` (or `5`): a share of the packs, above 0 and at most 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "`{text}`: expected a percentage in (0, 100], e.g. \"5%\""
        )),
    }
}

/// `2GiB`, `500MB`, `1048576`: a number of bytes, with an optional binary (KiB, MiB, GiB,
/// TiB) or decimal (KB, MB, GB, TB) unit.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * factor as f64) as u64),
        _ => Err(format!("`{text}`: expected a size above 0, e.g. \"2GiB\"")),
    }
}

/// Checks `repo` (the repository `name`) and, when it reads data, records in the catalog which
/// packs it found clean, so that the next subset goes on where this one stopped. Returns the
/// report and the coverage it leaves.
pub async fn check_with_coverage(
    catalog: &Catalog,
    name: &str,
    repo: std::sync::Arc<backstop_repo::Repository>,
    read: DataRead,
) -> Result<(checker::CheckReport, Option<backstop_catalog::Coverage>), EngineError> {
    let mode = match read {
        DataRead::None => ReadData::None,
        DataRead::All => ReadData::All,
        DataRead::Subset {
            percent,
            budget_bytes,
        } => {
            let last_read = catalog
                .pack_reads(name)
                .await?
                .into_iter()
                .filter_map(|(pack, at)| pack.parse::<backstop_repo::Id>().ok().map(|id| (id, at)))
                .collect();
            ReadData::Subset(checker::Rotation {
                percent,
                last_read,
                budget_bytes,
            })
        }
    };
    let reads = mode != ReadData::None;
    let report = checker::check(repo, mode).await?;
    if !reads {
        return Ok((report, None));
    }
    let hex = |ids: &[backstop_repo::Id]| ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>();
    let coverage = catalog
        .record_verification(
            name,
            &hex(&report.packs_present),
            &hex(&report.packs_read_clean),
            report.bytes_read,
            jiff::Timestamp::now(),
        )
        .await?;
    Ok((report, Some(coverage)))
}

/// A structural check that reads no data and records nothing (no catalog needed).
pub async fn check_with_coverage_unrecorded(
    repo: std::sync::Arc<backstop_repo::Repository>,
) -> Result<(checker::CheckReport, Option<backstop_catalog::Coverage>), EngineError> {
    Ok((checker::check(repo, ReadData::None).await?, None))
}

/// "every pack read within 3days 2h" or "12 of 40 packs never read".
pub fn coverage_words(coverage: &backstop_catalog::Coverage, now: jiff::Timestamp) -> String {
    match coverage.every_pack_within(now) {
        Some(within) => format!(
            "every pack read within the last {}",
            humantime::format_duration(std::time::Duration::from_secs(within.as_secs()))
        ),
        None => format!(
            "{} of {} packs never read",
            coverage.packs_never_read, coverage.packs
        ),
    }
}

/// Checks `policy`'s repository (structure and every index, and the share of its packs that
/// `[check] read_data_subset` asks for). Findings fail the run, each named.
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
        let read = match policy.check.read_data_subset {
            Some(percent) => DataRead::Subset {
                percent,
                budget_bytes: policy.check.egress_budget,
            },
            None => DataRead::None,
        };
        let (report, coverage) =
            check_with_coverage(catalog, &policy.repository, repo, read).await?;
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
        let read = match &coverage {
            Some(c) => format!(
                "; read {} packs ({} bytes), {}",
                report.packs_read,
                report.bytes_read,
                coverage_words(c, jiff::Timestamp::now())
            ),
            None => String::new(),
        };
        Ok((
            format!(
                "repository `{}`: {} snapshots, {} packs, no errors{read}",
                policy.repository, report.snapshots, report.packs
            ),
            report.bytes_read,
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_percentages_parse_or_name_the_text() {
        assert_eq!(super::parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(super::parse_bytes("500 MB"), Ok(500_000_000));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("2 parsecs")
            .unwrap_err()
            .contains("2 parsecs"));
        assert!(super::parse_bytes("0").is_err());
        assert_eq!(super::parse_percent("5%"), Ok(5.0));
        assert!(super::parse_percent("120%").unwrap_err().contains("120%"));
    }
}
