use anyhow::Result;
use backstop_engine::{catalog, Config};
use serde_json::json;

use crate::output::{print_json, warn_unreadable, EXIT_FAILED, EXIT_OK};

pub async fn rebuild(config: &Config, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let rebuilt = catalog::rebuild(config, &store).await?;
    let report = &rebuilt.repositories;
    if json {
        print_json(&json!({
            "catalog": store.location(),
            "history": {
                "added": rebuilt.history.added,
                "audit_refused": rebuilt.history.audit_refused,
                "unreadable": rebuilt.history_problems,
            },
            "repositories": report.iter().map(|r| json!({
                "repository": r.repository,
                "snapshots": r.snapshots,
                "added": r.added,
                "forgotten": r.forgotten,
                "unreadable": r.unreadable,
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "history from the repositories: {}",
            crate::output::history_added(&rebuilt.history.added, "nothing the catalog lacked")
        );
        for r in report {
            println!(
                "repository `{}`: {}, {} added to the catalog, {} forgotten",
                r.repository,
                crate::output::count(r.snapshots as u64, "snapshot", "snapshots"),
                r.added,
                r.forgotten
            );
        }
        println!("catalog {} rebuilt", store.location());
    }
    // Every readable snapshot is recorded; an unreadable one is named, and fails the run.
    let mut code = EXIT_OK;
    if let Some(why) = &rebuilt.history.audit_refused {
        eprintln!("warning: the audit events in the repositories were not taken: {why}");
        code = EXIT_FAILED;
    }
    for problem in &rebuilt.history_problems {
        eprintln!("warning: unreadable history object: {problem}");
        code = EXIT_FAILED;
    }
    for r in report {
        for u in &r.unreadable {
            warn_unreadable(&r.repository, u);
            code = EXIT_FAILED;
        }
    }
    Ok(code)
}
