use anyhow::{anyhow, Result};
use backstop_engine::jobs::maintenance::{self, DataRead};
use backstop_engine::{catalog, repos, Config, EngineError};
use backstop_repo::checker::Severity;
use backstop_repo::RepoError;
use serde_json::json;

use crate::output::{bytes, count, print_json, EXIT_FAILED, EXIT_OK};

pub async fn run(
    config: &Config,
    read_data: bool,
    subset: Option<&str>,
    egress_budget: Option<&str>,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let mode = match (read_data, subset) {
        (true, _) => DataRead::All,
        (false, Some(s)) => DataRead::Subset {
            percent: maintenance::parse_percent(s)
                .map_err(|e| anyhow!("--read-data-subset {e}"))?,
            budget_bytes: egress_budget
                .map(maintenance::parse_bytes)
                .transpose()
                .map_err(|e| anyhow!("--egress-budget {e}"))?,
        },
        (false, None) => DataRead::None,
    };
    // Reads of data are recorded, so that a subset rotates and coverage can be reported.
    let store = match mode {
        DataRead::None => None,
        _ => Some(catalog::open(config).await?),
    };
    let mut all_ok = true;
    let mut reports = Vec::new();
    for settings in super::selected(config, repository)? {
        let repo = match repos::open_with(settings, &config.base_dir, repos::OpenMode::WithoutIndex)
            .await
        {
            Ok(repo) => repo,
            Err(EngineError::Repo(RepoError::NotARepository { .. })) if repository.is_none() => {
                continue
            }
            // Named, and the others checked all the same.
            Err(e) => {
                super::repository_failed(settings, &e.into());
                all_ok = false;
                reports.push(json!({ "repository": settings.name, "ok": false, "error": "could not be opened" }));
                continue;
            }
        };
        let checked = match &store {
            Some(store) => {
                maintenance::check_with_coverage(store, &settings.name, repo, mode).await
            }
            None => maintenance::check_with_coverage_unrecorded(repo).await,
        };
        let (report, coverage) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                super::repository_failed(settings, &e.into());
                all_ok = false;
                reports.push(json!({ "repository": settings.name, "ok": false, "error": "could not be checked" }));
                continue;
            }
        };
        all_ok &= report.is_ok();
        if !json {
            println!(
                "repository `{}`: {}, {}, {}; {} read ({}), {} verified",
                settings.name,
                count(report.snapshots as u64, "snapshot", "snapshots"),
                count(report.index_objects as u64, "index object", "index objects"),
                count(report.packs as u64, "pack", "packs"),
                count(report.packs_read as u64, "pack", "packs"),
                bytes(report.bytes_read),
                count(report.chunks_verified as u64, "chunk", "chunks")
            );
            if report.packs_over_budget > 0 {
                println!(
                    "  {} left for the next check by the egress budget",
                    count(report.packs_over_budget as u64, "pack", "packs")
                );
            }
            if let Some(c) = &coverage {
                println!(
                    "  coverage: {}",
                    maintenance::coverage_words(c, jiff::Timestamp::now())
                );
            }
            for f in &report.findings {
                let label = match f.severity {
                    Severity::Error => "error",
                    Severity::Info => "info",
                };
                println!("  {label}: {}: {}", f.object, f.message);
                for a in &f.affected {
                    println!("    affects {a}");
                }
            }
            println!(
                "  {}",
                if report.is_ok() {
                    "no errors"
                } else {
                    "ERRORS FOUND"
                }
            );
        }
        reports.push(json!({
            "repository": settings.name,
            "ok": report.is_ok(),
            "report": report,
            "coverage": coverage.as_ref().map(|c| json!({
                "packs": c.packs,
                "packs_never_read": c.packs_never_read,
                "oldest_read_at": c.oldest_read_at,
                "every_pack_read_within_seconds": c.every_pack_within(jiff::Timestamp::now()).map(|d| d.as_secs()),
            })),
        }));
    }
    if json {
        print_json(&json!({ "ok": all_ok, "repositories": reports }));
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAILED })
}
