use anyhow::Result;
use backstop_engine::Config;
use serde_json::json;

use crate::output::{bytes, print_json, warn_unreadable, EXIT_FAILED, EXIT_OK};

/// Lists every readable snapshot. An unreadable snapshot object is named on stderr after
/// the list (its policy is unknown, so whatever the policy filter), and makes the exit code
/// 1; `--json` prints the readable ones all the same, the array being the contract.
pub async fn run(
    config: &Config,
    policy: Option<&str>,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let opened = super::open_existing(config, repository).await?;
    let mut failed = opened.failed;
    for (settings, repo) in opened.repos {
        let repo_name = settings.name.clone();
        let listing = match repo.list_snapshots().await {
            Ok(listing) => listing,
            Err(e) => {
                super::repository_failed(&settings, &e.into());
                failed += 1;
                continue;
            }
        };
        unreadable.extend(
            listing
                .unreadable
                .into_iter()
                .map(|u| (repo_name.clone(), u)),
        );
        for (id, s) in listing.snapshots {
            if policy.is_some_and(|p| p != s.policy) {
                continue;
            }
            rows.push((repo_name.clone(), id, s));
        }
    }
    rows.sort_by_key(|(_, id, s)| (s.time, *id));
    if json {
        print_json(&serde_json::Value::Array(
            rows.iter()
                .map(|(repo, id, s)| {
                    json!({
                        "id": id.to_hex(),
                        "policy": s.policy,
                        "time": s.time.to_string(),
                        "data_point": s.data_point.to_string(),
                        "source_kind": s.source_kind,
                        "repository": repo,
                        "hostname": s.hostname,
                        "files": s.facts.file_count,
                        "bytes": s.facts.bytes,
                        "digest": s.tree.digest.to_hex(),
                        "parent": s.parent.map(|p| p.to_hex()),
                        "warnings": s.summary.warnings.len(),
                    })
                })
                .collect(),
        ));
        return Ok(finish(&unreadable, failed));
    }
    println!(
        "{:<10} {:<22} {:<20} {:<10} {:>8} {:>11}",
        "ID", "TIME (UTC)", "POLICY", "REPOSITORY", "FILES", "SIZE"
    );
    for (repo, id, s) in &rows {
        let time = s.time.strftime("%Y-%m-%d %H:%M:%S").to_string();
        println!(
            "{:<10} {:<22} {:<20} {:<10} {:>8} {:>11}",
            id.short(),
            time,
            s.policy,
            repo,
            s.facts.file_count,
            bytes(s.facts.bytes)
        );
    }
    println!(
        "{}",
        crate::output::count(rows.len() as u64, "snapshot", "snapshots")
    );
    Ok(finish(&unreadable, failed))
}

/// Names the unreadable objects; exit 1 when there were any, or repositories that could
/// not be listed (named as they failed).
fn finish(unreadable: &[(String, backstop_repo::UnreadableSnapshot)], failed: usize) -> u8 {
    for (repo, u) in unreadable {
        warn_unreadable(repo, u);
    }
    if unreadable.is_empty() && failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
