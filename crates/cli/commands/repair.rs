use anyhow::{Context, Result};
use backstop_engine::{repos, Config, EngineError};
use backstop_repo::{repair, RepoError};
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

/// `repair index`: indexes, from their headers, the packs no readable index object lists.
/// Exits 1 when something could not be repaired (a pack whose header cannot be read), after
/// repairing the rest.
pub async fn index(config: &Config, repository: Option<&str>, json: bool) -> Result<u8> {
    let mut code = EXIT_OK;
    let mut results = Vec::new();
    for settings in super::selected(config, repository)? {
        // The index is not loaded on opening: a damaged one is what this repairs.
        let repo = match repos::open_with(settings, &config.base_dir, repos::OpenMode::WithoutIndex)
            .await
        {
            Ok(repo) => repo,
            Err(EngineError::Repo(RepoError::NotARepository { .. })) if repository.is_none() => {
                continue
            }
            Err(e) => return Err(e).with_context(|| format!("repository `{}`", settings.name)),
        };
        let name = &settings.name;
        let report = repair::repair_index(repo)
            .await
            .with_context(|| format!("repairing the index of repository `{name}`"))?;
        if !report.is_complete() {
            code = EXIT_FAILED;
        }
        if !json {
            match &report.index_object {
                Some(object) => println!(
                    "repository `{name}`: indexed {} packs ({} chunks) from their headers into {object}",
                    report.packs_indexed, report.chunks_indexed
                ),
                None => println!("repository `{name}`: every pack is indexed; nothing to repair"),
            }
            for object in &report.index_objects_removed {
                println!("  removed the corrupt index object {object}");
            }
            for p in report
                .packs_unreadable
                .iter()
                .chain(&report.index_objects_unreadable)
            {
                eprintln!(
                    "warning: repository `{name}`: {} not repaired: {}",
                    p.object, p.error
                );
            }
        }
        results.push(json!({
            "repository": name,
            "complete": report.is_complete(),
            "packs_indexed": report.packs_indexed,
            "chunks_indexed": report.chunks_indexed,
            "index_object": report.index_object,
            "index_objects_removed": report.index_objects_removed,
            "index_objects_unreadable": report.index_objects_unreadable,
            "packs_unreadable": report.packs_unreadable,
        }));
    }
    if json {
        print_json(&json!({ "ok": code == EXIT_OK, "repositories": results }));
    }
    Ok(code)
}
