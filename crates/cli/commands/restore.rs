use std::sync::Arc;

use anyhow::{Context, Result};
use backstop_engine::config::{KeySource, RepositorySettings};
use backstop_engine::jobs::restore::{self, Restored};
use backstop_engine::{repos, Config};
use serde_json::json;

use crate::args::RestoreArgs;
use crate::output::{bytes, print_json, EXIT_OK};

pub async fn run(config: Option<&Config>, args: &RestoreArgs, json: bool) -> Result<u8> {
    let repo = match (&args.repo, config) {
        (Some(url), _) => {
            let settings = RepositorySettings {
                name: "command line".into(),
                url: url.clone(),
                endpoint: args.endpoint.clone(),
                region: args.region.clone(),
                path_style: args.path_style,
                key: match (&args.key_file, &args.key_env) {
                    (Some(file), _) => KeySource::File(file.clone()),
                    (None, Some(var)) => KeySource::Env(var.clone()),
                    (None, None) => KeySource::None,
                },
                compression_level: None,
                pack_size: None,
                retry_budget: None,
            };
            let cwd = std::env::current_dir()?;
            repos::open(&settings, &cwd)
                .await
                .with_context(|| format!("repository {url}"))?
        }
        (None, Some(config)) => {
            super::find_snapshot_repo(config, args.repository.as_deref(), &args.snapshot)
                .await?
                .0
        }
        (None, None) => unreachable!("a restore without --repo always has a configuration"),
    };
    let tools = config.map(|c| c.tools.clone()).unwrap_or_default();
    let (id, restored) = restore::to_target(
        Arc::clone(&repo),
        &args.snapshot,
        &args.to,
        args.force,
        &tools,
        args.jobs,
    )
    .await
    .with_context(|| {
        format!(
            "restore of {} into {}",
            args.snapshot,
            shown_target(&args.to)
        )
    })?;
    match restored {
        Restored::Directory(report) => {
            if json {
                print_json(&json!({
                    "snapshot_id": id.to_hex(),
                    "target": args.to,
                    "files": report.files,
                    "dirs": report.dirs,
                    "symlinks": report.symlinks,
                    "bytes": report.bytes,
                    "ownership_restored": !report.ownership_skipped,
                }));
            } else {
                println!(
                    "restored snapshot {} into {}: {} files, {} directories, {} symlinks, {} (every chunk and file verified)",
                    id.short(),
                    args.to,
                    report.files,
                    report.dirs,
                    report.symlinks,
                    bytes(report.bytes)
                );
                if report.ownership_skipped {
                    println!(
                        "note: file ownership was not restored (restoring as root restores it)"
                    );
                }
            }
        }
        Restored::Database { target, created } => {
            if json {
                print_json(&json!({
                    "snapshot_id": id.to_hex(),
                    "target": target,
                    "database_created": created,
                }));
            } else {
                let how = if created {
                    "created and loaded"
                } else {
                    "loaded"
                };
                println!(
                    "restored snapshot {} into {target} ({how}; every chunk verified)",
                    id.short()
                );
            }
        }
        Restored::SqliteFile(path) => {
            if json {
                print_json(&json!({
                    "snapshot_id": id.to_hex(),
                    "target": path.display().to_string(),
                }));
            } else {
                println!(
                    "restored snapshot {} into {} (every chunk and the file verified)",
                    id.short(),
                    path.display()
                );
            }
        }
    }
    Ok(EXIT_OK)
}

/// The target as it may be printed: a URL without its password.
fn shown_target(target: &str) -> String {
    match backstop_sources::DbUrl::parse(target) {
        Ok(url) => url.to_string(),
        Err(_) if target.contains("://") => "the --to URL".to_string(),
        Err(_) => target.to_string(),
    }
}
