use std::sync::Arc;

use anyhow::{Context, Result};
use backstop_engine::config::{KeySource, RepositorySettings};
use backstop_engine::jobs::restore::{self, Restored};
use backstop_engine::{catalog, repos, Config};
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
                // A restore writes nothing to the repository.
                object_lock: None,
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
    let context = || {
        format!(
            "restore of {} into {}",
            args.snapshot,
            shown_target(&args.to)
        )
    };
    let configured = config.map(configured_sources).unwrap_or_default();
    let selection = restore::PathSelection::new(&args.include, &args.exclude)?;
    let prepared = restore::prepare(
        Arc::clone(&repo),
        &args.snapshot,
        &args.to,
        &configured,
        args.replace_source,
    )
    .await
    .with_context(context)?
    .select(&selection)
    .await
    .and_then(|prepared| prepared.tables(&args.tables))
    .with_context(context)?;
    let replaced = prepared.replaces.clone();
    if let Some(clash) = &replaced {
        // Recorded before anything is written: a replacement that cannot be audited (when
        // there is a catalog to audit it in) does not happen.
        if let Some(config) = config.filter(|c| catalog_present(c)) {
            let store = catalog::open(config).await.with_context(context)?;
            store
                .append_event(
                    "restore.source_replaced",
                    &clash.target,
                    json!({
                        "snapshot_id": prepared.id.to_hex(),
                        "source": clash.source.to_string(),
                        "whose": clash.whose,
                        "overlap": clash.overlap.to_string(),
                        "force": args.force,
                    }),
                )
                .await
                .context(
                    "recording the replacement of a source in the audit log; nothing was restored",
                )?;
        }
        eprintln!(
            "replacing a source, as --replace-source asks: {clash}; the restore will {}",
            clash.consequence()
        );
    }
    // Interrupted, a restore removes the database or directory it created.
    let cancel = crate::signals::cancel_on_termination();
    let (id, restored) = restore::run(prepared, args.force, &tools, args.jobs, &cancel)
        .await
        .with_context(context)?;
    let replaced_json = replaced.as_ref().map(|c| {
        json!({
            "target": c.target,
            "source": c.source.to_string(),
            "whose": c.whose,
            "overlap": c.overlap.to_string(),
        })
    });
    let replaced_note = match &replaced {
        Some(clash) => format!("; replaced {}, the source of {}", clash.source, clash.whose),
        None => String::new(),
    };
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
                    "replaced_source": replaced_json,
                }));
            } else {
                println!(
                    "restored snapshot {} into {}: {}, {}, {}, {} (every chunk and file verified){replaced_note}",
                    id.short(),
                    args.to,
                    crate::output::count(report.files, "file", "files"),
                    crate::output::count(report.dirs, "directory", "directories"),
                    crate::output::count(report.symlinks, "symlink", "symlinks"),
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
                    "replaced_source": replaced_json,
                }));
            } else {
                let how = if created {
                    "created and loaded"
                } else {
                    "loaded"
                };
                println!(
                    "restored snapshot {} into {target} ({how}; every chunk verified){replaced_note}",
                    id.short()
                );
            }
        }
        Restored::SqliteFile(path) => {
            if json {
                print_json(&json!({
                    "snapshot_id": id.to_hex(),
                    "target": path.display().to_string(),
                    "replaced_source": replaced_json,
                }));
            } else {
                println!(
                    "restored snapshot {} into {} (every chunk and the file verified){replaced_note}",
                    id.short(),
                    path.display()
                );
            }
        }
    }
    Ok(EXIT_OK)
}

/// Every configured policy's source, for the target to be compared with. What cannot be
/// read or resolved is said on stderr: the restore goes on (it may be the emergency), but
/// not silently less protected.
fn configured_sources(config: &Config) -> Vec<backstop_sources::Protected> {
    // The embedded default configuration without a policies directory has no policies.
    if config.path.is_none() && !config.policies_dir.exists() {
        return Vec::new();
    }
    match restore::configured_sources(config) {
        Ok((protected, unresolved)) => {
            for policy in unresolved {
                eprintln!(
                    "warning: {policy}; a restore over that policy's source cannot be detected"
                );
            }
            protected
        }
        Err(e) => {
            eprintln!(
                "warning: the policies in {} could not be read ({e}); the target is compared with the snapshot's recorded source only",
                config.policies_dir.display()
            );
            Vec::new()
        }
    }
}

/// Whether there is a catalog to record in: one configured, or the default one already
/// made in the data directory (a break-glass restore does not create one).
fn catalog_present(config: &Config) -> bool {
    config.catalog.is_some() || config.data_dir.join("catalog.db").exists()
}

/// The target as it may be printed: a URL without its password.
fn shown_target(target: &str) -> String {
    match backstop_sources::DbUrl::parse(target) {
        Ok(url) => url.to_string(),
        Err(_) if target.contains("://") => "the --to URL".to_string(),
        Err(_) => target.to_string(),
    }
}
