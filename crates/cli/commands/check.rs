use anyhow::{bail, Result};
use backstop_engine::{repos, Config, EngineError};
use backstop_repo::checker::{self, ReadData, Severity};
use backstop_repo::RepoError;
use serde_json::json;

use crate::output::{count, print_json, EXIT_FAILED, EXIT_OK};

fn parse_subset(text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => bail!("--read-data-subset `{text}`: expected a percentage in (0, 100], e.g. 10%"),
    }
}

pub async fn run(
    config: &Config,
    read_data: bool,
    subset: Option<&str>,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let mode = match (read_data, subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::Subset(parse_subset(s)?),
        (false, None) => ReadData::None,
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
        let report = match checker::check(repo, mode).await {
            Ok(report) => report,
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
                "repository `{}`: {}, {}, {}; {} read, {} verified",
                settings.name,
                count(report.snapshots as u64, "snapshot", "snapshots"),
                count(report.index_objects as u64, "index object", "index objects"),
                count(report.packs as u64, "pack", "packs"),
                count(report.packs_read as u64, "pack", "packs"),
                count(report.chunks_verified as u64, "chunk", "chunks")
            );
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
        reports
            .push(json!({ "repository": settings.name, "ok": report.is_ok(), "report": report }));
    }
    if json {
        print_json(&json!({ "ok": all_ok, "repositories": reports }));
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAILED })
}
