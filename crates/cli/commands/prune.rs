use std::collections::HashMap;

use anyhow::{Context, Result};
use backstop_engine::policy::load_dir;
use backstop_engine::Config;
use backstop_repo::prune;
use serde_json::json;

use crate::output::{bytes, print_json, warn_unreadable, EXIT_FAILED, EXIT_OK};

pub async fn run(
    config: &Config,
    dry_run: bool,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let policies = load_dir(&config.policies_dir, config)?;
    let mut results = Vec::new();
    let mut code = EXIT_OK;
    let opened = super::open_existing(config, repository).await?;
    if opened.failed > 0 {
        code = EXIT_FAILED;
    }
    for (settings, repo) in opened.repos {
        let name = settings.name.clone();
        let retention: HashMap<String, prune::Retention> = policies
            .values()
            .filter(|p| p.keeps_snapshots_in(&name))
            .map(|p| (p.name.clone(), p.retention.clone()))
            .collect();
        let (plan, report) = prune::prune(repo, &retention, dry_run)
            .await
            .with_context(|| format!("prune of repository `{name}`"))?;
        if !json {
            let verb = if dry_run { "would remove" } else { "removed" };
            println!(
                "repository `{name}`: keep {} snapshots, {verb} {}; {verb} {} packs ({}); {} packs kept ({}, of which {} unused until repacked)",
                plan.keep.len(),
                plan.forget.len(),
                plan.delete_packs.len(),
                bytes(plan.delete_bytes),
                plan.keep_packs,
                bytes(plan.keep_bytes),
                bytes(plan.unused_bytes_in_kept_packs),
            );
            for id in &plan.forget {
                println!("  {verb} snapshot {}", id.short());
            }
            if !plan.temporary_files.is_empty() {
                println!(
                    "  {verb} {} temporary files of interrupted writes",
                    plan.temporary_files.len()
                );
            }
            if let Some(last) = plan.locked.iter().map(|l| l.until).max() {
                println!(
                    "  kept {} objects still under Object Lock (the last lock lapses at {last}); a later prune removes them",
                    plan.locked.len()
                );
            }
            if let Some(extended) = report.as_ref().map(|r| r.locks_extended).filter(|n| *n > 0) {
                println!("  extended the Object Lock of {extended} objects still referenced");
            }
        }
        // Retention was applied to the readable snapshots; nothing else was collected.
        for u in &plan.unreadable {
            warn_unreadable(&name, u);
        }
        if !plan.garbage_collection {
            eprintln!(
                "warning: repository `{name}`: no pack or index object was removed while a snapshot is unreadable (it may need them); remove or restore the object, then prune again"
            );
            code = EXIT_FAILED;
        }
        results.push(
            json!({ "repository": name, "dry_run": dry_run, "plan": plan, "report": report }),
        );
    }
    if json {
        print_json(&serde_json::Value::Array(results));
    }
    Ok(code)
}
