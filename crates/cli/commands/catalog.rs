use anyhow::Result;
use backstop_engine::{catalog, Config};
use serde_json::json;

use crate::output::{print_json, EXIT_OK};

pub async fn rebuild(config: &Config, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let report = catalog::rebuild(config, &store).await?;
    if json {
        print_json(&json!({
            "catalog": store.location(),
            "repositories": report.iter().map(|r| json!({
                "repository": r.repository,
                "snapshots": r.snapshots,
                "added": r.added,
                "forgotten": r.forgotten,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for r in &report {
            println!(
                "repository `{}`: {} snapshots, {} added to the catalog, {} forgotten",
                r.repository, r.snapshots, r.added, r.forgotten
            );
        }
        println!("catalog {} rebuilt", store.location());
    }
    Ok(EXIT_OK)
}
