use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_engine::jobs::backup;
use backstop_engine::policy::load_dir;
use backstop_engine::{Config, EngineError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::output::{bytes, print_json, EXIT_INCOMPLETE, EXIT_OK};

pub async fn run(config: &Config, name: &str, json: bool) -> Result<u8> {
    let policies = load_dir(&config.policies_dir, config)?;
    let policy = policies
        .get(name)
        .ok_or_else(|| EngineError::UnknownPolicy(name.to_string()))?;
    // Drawn only on a terminal; scripts and logs get the summary alone.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
    );
    let ticker_bar = bar.clone();
    let catalog = backstop_engine::catalog::open(config).await?;
    // Ctrl-C or SIGTERM cancels cleanly: no snapshot, a run recorded as cancelled.
    let cancel = crate::signals::cancel_on_termination();
    let outcome = backup::run_recorded(
        config,
        &catalog,
        policy,
        move |progress| {
            tokio::spawn(async move {
                loop {
                    ticker_bar.set_message(format!(
                        "{} files, {} read, {} added",
                        progress.files_done.load(Ordering::Relaxed),
                        bytes(progress.bytes_read.load(Ordering::Relaxed)),
                        bytes(progress.bytes_added.load(Ordering::Relaxed)),
                    ));
                    ticker_bar.tick();
                    tokio::time::sleep(Duration::from_millis(120)).await;
                }
            });
        },
        &cancel,
    )
    .await
    .with_context(|| format!("backup of policy `{name}` failed; no snapshot was made"));
    bar.finish_and_clear();
    let outcome = outcome?;
    // The snapshot is committed; now its copies (and any earlier ones still missing).
    let copies = backstop_engine::jobs::copy::catch_up_recorded(config, &catalog, policy, &cancel)
        .await
        .with_context(|| {
            format!(
                "snapshot {} is saved in `{}`, but copying it failed; the next backup or `backstop copy` catches up",
                outcome.snapshot_id.short(),
                policy.repository
            )
        });
    let s = &outcome.snapshot;
    let summary = &s.summary;
    if json {
        print_json(&json!({
            "snapshot_id": outcome.snapshot_id.to_hex(),
            "policy": s.policy,
            "time": s.time.to_string(),
            "files": s.facts.file_count,
            "dirs": s.facts.dir_count,
            "bytes": s.facts.bytes,
            "files_new": summary.files_new,
            "files_changed": summary.files_changed,
            "files_unmodified": summary.files_unmodified,
            "bytes_read": summary.bytes_read,
            "bytes_added": summary.bytes_added,
            "duration_ms": summary.duration_ms,
            "warnings": summary.warnings,
            "data_point": s.data_point.to_string(),
            "facts": {
                "server_version": s.facts.server_version,
                "database_size": s.facts.database_size,
                "tables": s.facts.tables,
                "schema_fingerprint": s.facts.schema_fingerprint,
                "extra": s.facts.extra,
            },
            "anomalies": outcome.anomalies.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "copies": copies.as_ref().ok().map(|done| done.iter().map(|d| json!({
                "repository": d.repository,
                "snapshot_id": d.report.snapshot.to_hex(),
                "bytes_written": d.report.bytes_written,
            })).collect::<Vec<_>>()),
        }));
    } else {
        if outcome.repository_created {
            println!("created repository `{}`", policy.repository);
        }
        if let Some(version) = &s.facts.server_version {
            // A database: what was in it, as counted in the dump's own snapshot.
            let rows: u64 = s.facts.tables.values().sum();
            println!(
                "database: {} tables, {rows} rows ({version}); dump {}",
                s.facts.tables.len(),
                bytes(s.facts.bytes)
            );
        } else {
            println!(
                "files: {} ({} new, {} changed, {} unmodified), {} in {}",
                s.facts.file_count,
                summary.files_new,
                summary.files_changed,
                summary.files_unmodified,
                bytes(s.facts.bytes),
                crate::output::count(s.facts.dir_count, "directory", "directories")
            );
        }
        println!(
            "read {}, added {} to the repository, in {:.1}s",
            bytes(summary.bytes_read),
            bytes(summary.bytes_added),
            summary.duration_ms as f64 / 1000.0
        );
        for w in &summary.warnings {
            eprintln!("warning: {w}");
        }
        for anomaly in &outcome.anomalies {
            eprintln!("warning: {anomaly}");
        }
        println!("snapshot {} saved", outcome.snapshot_id.short());
        if let Ok(done) = &copies {
            super::copy::print_copies(done, false);
        }
    }
    copies?;
    Ok(
        if summary
            .warnings
            .iter()
            .any(|w| w.contains("not in this snapshot"))
        {
            EXIT_INCOMPLETE
        } else {
            EXIT_OK
        },
    )
}
