//! `backstop dr`: disaster recovery from nothing, ending in one report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use backstop_engine::dr::RecoveryTarget;
use backstop_engine::policy::load_dir;
use backstop_engine::{catalog, Config};

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn run(
    config: &Config,
    out: &Path,
    names: &[String],
    targets: &[String],
    json: bool,
) -> Result<u8> {
    let policies = load_dir(&config.policies_dir, config)?;
    let selected = super::select_policies(&policies, names)?;
    let targets = targets
        .iter()
        .map(|t| {
            let (policy, target) = t
                .split_once('=')
                .with_context(|| format!("--target {t}: expected POLICY=DIR or POLICY=env:VAR"))?;
            Ok((policy.to_string(), RecoveryTarget::parse(target)))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let store = catalog::open(config).await?;
    let cancel = crate::signals::cancel_on_termination();
    let report = backstop_engine::dr::run(config, &store, &selected, &targets, out, &cancel)
        .await
        .context("disaster recovery stopped")?;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        println!(
            "catalog rebuilt: history {}; snapshots {}",
            crate::output::history_added(&report.history_added, "already there"),
            report
                .snapshots
                .iter()
                .map(|(r, n)| format!("{n} in `{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for problem in &report.rebuild_problems {
            eprintln!("warning: {problem}");
        }
        println!(
            "{:<20} {:<9} {:<10} {:>16} {:>16}  CHECKS",
            "ASSET", "KIND", "STATUS", "RTO (OBJECTIVE)", "RPO (OBJECTIVE)"
        );
        let secs = |s: Option<f64>, objective: Option<u64>| {
            format!(
                "{}{}",
                s.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s")),
                objective.map(|o| format!(" ({o}s)")).unwrap_or_default()
            )
        };
        for a in &report.assets {
            println!(
                "{:<20} {:<9} {:<10} {:>16} {:>16}  {} passed, {} failed",
                a.policy,
                a.source_kind,
                a.status,
                secs(a.rto_seconds, a.rto_objective_seconds),
                secs(a.rpo_seconds, a.rpo_objective_seconds),
                a.checks_passed,
                a.checks_failed
            );
            if let (Some(kept), Some(target)) = (&a.kept_as, &a.target) {
                println!("  recovered into {kept} on {target}, kept there");
            }
            if let Some(error) = &a.error {
                println!("  {error}");
            }
        }
        println!(
            "estate: RTO {:.1}s (rebuild, then every asset restored and checked), RPO {}",
            report.estate_rto_seconds,
            report.estate_rpo_seconds.map_or_else(
                || "-".to_string(),
                |s| format!("{s:.0}s (its oldest asset)")
            )
        );
        if report.evidence_verified {
            println!(
                "evidence pack {} written and verified",
                report.evidence.display()
            );
        } else {
            println!(
                "evidence pack {} does NOT verify: {}",
                report.evidence.display(),
                report.evidence_problems.join("; ")
            );
        }
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FAILED })
}
