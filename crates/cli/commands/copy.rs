use anyhow::{Context, Result};
use backstop_engine::jobs::copy::{self, CopyDone};
use backstop_engine::Config;
use serde_json::json;

use crate::output::{bytes, print_json, EXIT_OK};

/// `backstop copy SNAPSHOT --to REPO`: one snapshot, one recorded run.
pub async fn run(
    config: &Config,
    snapshot: &str,
    to: &str,
    from: Option<&str>,
    json: bool,
) -> Result<u8> {
    config.repository(to)?;
    let (source, id) = super::find_snapshot_repo(config, from, snapshot).await?;
    let catalog = backstop_engine::catalog::open(config).await?;
    let cancel = crate::signals::cancel_on_termination();
    let done = copy::copy_recorded(config, &catalog, source, id, to, &cancel)
        .await
        .with_context(|| {
            format!("copy of snapshot {snapshot} to `{to}` failed; no snapshot was committed there")
        })?;
    print_copies(std::slice::from_ref(&done), json);
    Ok(EXIT_OK)
}

/// One line per copy (or a JSON array with every count).
pub fn print_copies(done: &[CopyDone], json: bool) {
    if json {
        print_json(&serde_json::Value::Array(
            done.iter()
                .map(|d| {
                    json!({
                        "repository": d.repository,
                        "policy": d.policy,
                        "source_snapshot": d.report.source_snapshot.to_hex(),
                        "snapshot_id": d.report.snapshot.to_hex(),
                        "already_present": d.report.already_present,
                        "chunks_copied": d.report.chunks_copied,
                        "chunks_present": d.report.chunks_present,
                        "bytes_read": d.report.bytes_read,
                        "bytes_written": d.report.bytes_written,
                        "objects_confirmed": d.report.objects_confirmed,
                        "duration_ms": d.report.duration_ms,
                    })
                })
                .collect(),
        ));
        return;
    }
    for d in done {
        let r = &d.report;
        if r.already_present {
            println!(
                "`{}` already holds snapshot {} (as {}); nothing copied",
                d.repository,
                r.source_snapshot.short(),
                r.snapshot.short()
            );
        } else {
            println!(
                "copied snapshot {} to `{}` as {}: {} chunks written ({}), {} already there, {} objects confirmed by reading back, in {:.1}s",
                r.source_snapshot.short(),
                d.repository,
                r.snapshot.short(),
                r.chunks_copied,
                bytes(r.bytes_written),
                r.chunks_present,
                r.objects_confirmed,
                r.duration_ms as f64 / 1000.0
            );
        }
    }
}
