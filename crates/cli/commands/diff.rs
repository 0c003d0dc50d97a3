use anyhow::Result;
use backstop_engine::jobs::diff;
use backstop_engine::Config;
use serde_json::json;

use crate::output::{print_json, EXIT_OK};

pub async fn run(
    config: &Config,
    a: &str,
    b: &str,
    repository: Option<&str>,
    json: bool,
) -> Result<u8> {
    let (repo, _) = super::find_snapshot_repo(config, repository, a).await?;
    let changes = diff::run(&repo, a, b).await?;
    if json {
        print_json(&json!(changes));
    } else {
        for d in &changes {
            println!("{} {}", d.change.symbol(), d.path);
        }
        println!(
            "{} changes (+ added, - removed, M content, m metadata only)",
            changes.len()
        );
    }
    Ok(EXIT_OK)
}
