use anyhow::{bail, Context, Result};
use backstop_engine::{repos, Config, EngineError};
use backstop_repo::checker::{self, ReadData, Severity};
use backstop_repo::RepoError;
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

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
            Err(e) => return Err(e).with_context(|| format!("repository `{}`", settings.name)),
        };
        let report = checker::check(repo, mode)
            .await
            .with_context(|| format!("checking repository `{}`", settings.name))?;
        all_ok &= report.is_ok();
        if !json {
            println!(
                "repository `{}`: {} snapshots, {} index objects, {} packs; {} packs read, {} chunks verified",
                settings.name, report.snapshots, report.index_objects, report.packs, report.packs_read, report.chunks_verified
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
