use std::sync::Arc;

use anyhow::{Context, Result};
use backstop_engine::config::{KeySource, RepositorySettings};
use backstop_engine::jobs::restore;
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
    let (id, report) =
        restore::to_directory(Arc::clone(&repo), &args.snapshot, &args.to, args.force)
            .await
            .with_context(|| format!("restore of {} into {}", args.snapshot, args.to.display()))?;
    if json {
        print_json(&json!({
            "snapshot_id": id.to_hex(),
            "target": args.to.display().to_string(),
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
            args.to.display(),
            report.files,
            report.dirs,
            report.symlinks,
            bytes(report.bytes)
        );
        if report.ownership_skipped {
            println!("note: file ownership was not restored (restoring as root restores it)");
        }
    }
    Ok(EXIT_OK)
}
