use anyhow::Result;
use backstop_engine::Config;
use serde_json::json;

use crate::output::{bytes, print_json, EXIT_OK};

pub async fn run(
    config: &Config,
    policy: Option<&str>,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let mut rows = Vec::new();
    for (repo_name, repo) in super::open_existing(config, repository).await? {
        for (id, s) in repo.snapshots().await? {
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
        return Ok(EXIT_OK);
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
    println!("{} snapshots", rows.len());
    Ok(EXIT_OK)
}
