use std::path::Path;

use anyhow::Result;
use backstop_engine::policy::load_dir;
use backstop_engine::Config;
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub fn check(config: &Config, dir: Option<&Path>, json: bool) -> Result<u8> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.policies_dir.clone());
    match load_dir(&dir, config) {
        Ok(policies) => {
            // A preflight of what the first backup needs, without side effects.
            let warnings: Vec<(String, String)> = policies
                .values()
                .flat_map(|p| {
                    backstop_engine::policy::preflight(p, config)
                        .into_iter()
                        .map(|w| (p.name.clone(), w))
                })
                .collect();
            if json {
                print_json(&json!({
                    "ok": true,
                    "policies": policies.keys().collect::<Vec<_>>(),
                    "warnings": warnings.iter().map(|(policy, message)| json!({"policy": policy, "message": message})).collect::<Vec<_>>(),
                }));
            } else {
                for (name, p) in &policies {
                    println!("ok  {name}  ({}, {})", p.source.kind(), p.file.display());
                }
                for (policy, message) in &warnings {
                    eprintln!("warning: policy `{policy}`: {message}");
                }
                println!(
                    "{} valid in {}",
                    crate::output::count(policies.len() as u64, "policy", "policies"),
                    dir.display()
                );
            }
            Ok(EXIT_OK)
        }
        Err(backstop_engine::EngineError::Invalid(problems)) => {
            if json {
                print_json(&json!({
                    "ok": false,
                    "errors": problems.iter().map(|p| json!({
                        "file": p.location.file, "line": p.location.line,
                        "column": p.location.column, "message": p.message,
                    })).collect::<Vec<_>>(),
                }));
            }
            for p in &problems {
                eprintln!("error: {p}");
            }
            Ok(EXIT_FAILED)
        }
        Err(e) => Err(e.into()),
    }
}
