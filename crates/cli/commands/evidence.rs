//! `backstop evidence export|verify|public-key`.

use std::path::Path;

use anyhow::{Context, Result};
use backstop_engine::evidence::{self, pack};
use backstop_engine::policy::load_dir;
use backstop_engine::{catalog, Config};
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn export(
    config: &Config,
    from: &str,
    to: &str,
    names: &[String],
    out: &Path,
    json: bool,
) -> Result<u8> {
    let from = evidence::parse_when(from, false).context("--from")?;
    let to = evidence::parse_when(to, true).context("--to")?;
    let policies = load_dir(&config.policies_dir, config)?;
    let selected = super::select_policies(&policies, names)?;
    let store = catalog::open(config).await?;
    let (files, gathered, key) = pack::export(
        config,
        &store,
        &selected,
        (from, to),
        &out.display().to_string(),
        |evidence, key| pack::write(out, evidence, key),
        |files| {
            for f in files {
                let _ = std::fs::remove_file(f);
            }
        },
    )
    .await?;
    if json {
        print_json(&json!({
            "out": out.display().to_string(),
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "public_key": hex_key(&key),
            "audit": gathered.audit.status,
        }));
    } else {
        for f in &files {
            println!("wrote {}", f.display());
        }
        println!(
            "signed with the installation key {}; verify with: backstop evidence verify {}",
            hex_key(&key),
            out.display()
        );
        match gathered.audit.status.as_str() {
            "intact" => {}
            "contradicted" => println!(
                "warning: the audit chain is CONTRADICTED by the repositories' anchors; the pack says so"
            ),
            _ => println!("warning: the audit chain is BROKEN; the pack says so"),
        }
    }
    Ok(EXIT_OK)
}

fn hex_key(key: &ed25519_dalek::SigningKey) -> String {
    pack::public_key_hex(key)
}

pub fn public_key(config: &Config, json: bool) -> Result<u8> {
    let key = pack::signing_key(&config.data_dir)?;
    if json {
        print_json(&json!({"public_key": hex_key(&key)}));
    } else {
        println!("{}", hex_key(&key));
    }
    Ok(EXIT_OK)
}

pub fn verify(dir: &Path, public_key: Option<&Path>, json: bool) -> Result<u8> {
    let trusted = match public_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the public key {}", path.display()))?;
            Some(
                pack::parse_public_key(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    match pack::verify(dir, trusted.as_ref()) {
        Ok(verified) => {
            if json {
                print_json(&json!({
                    "ok": true,
                    "files": verified.files,
                    "public_key": verified.public_key,
                    "key_trusted": verified.key_trusted,
                }));
            } else {
                println!(
                    "evidence pack {} verified: {} file(s), signature by {}",
                    dir.display(),
                    verified.files.len(),
                    verified.public_key
                );
                if !verified.key_trusted {
                    println!("note: checked against the key the pack carries; pass --public-key with the installation's key to know who signed it");
                }
            }
            Ok(EXIT_OK)
        }
        Err(problems) => {
            if json {
                print_json(&json!({"ok": false, "problems": problems}));
            } else {
                println!("evidence pack {} FAILED verification:", dir.display());
                for p in &problems {
                    println!("  {p}");
                }
            }
            Ok(EXIT_FAILED)
        }
    }
}
