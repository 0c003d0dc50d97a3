//! `backstop audit verify` and `backstop audit list`.

use anyhow::Result;
use backstop_catalog::ChainStatus;
use backstop_engine::{anchors, catalog, Config};
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn verify(config: &Config, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let status = store.verify_audit().await?;
    match &status {
        ChainStatus::Intact { events, head } => {
            let checked = anchors::check(config, &store).await?;
            for unread in &checked.unread {
                eprintln!("warning: anchors not checked in {unread}");
            }
            let (anchors, problems) = (checked.seen, checked.problems);
            if json {
                print_json(&json!({
                    "ok": problems.is_empty(),
                    "events": events,
                    "head": head,
                    "anchors": anchors,
                    "anchor_problems": problems,
                }));
            } else if problems.is_empty() {
                println!("audit chain intact: {events} events, head {head}; {anchors} anchor(s) in the repositories agree");
            } else {
                println!("audit chain consistent in itself ({events} events) but CONTRADICTED by the repositories' anchors:");
                for p in &problems {
                    println!("  {p}");
                }
            }
            Ok(if problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        ChainStatus::Broken { seq, kind, reason } => {
            if json {
                print_json(
                    &json!({"ok": false, "broken": {"seq": seq, "kind": kind, "reason": reason}}),
                );
            } else {
                println!("audit chain BROKEN at event #{seq} ({kind}): {reason}");
            }
            Ok(EXIT_FAILED)
        }
    }
}

pub async fn anchor(config: &Config, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let written = anchors::write(config, &store).await?;
    if json {
        print_json(&json!({"anchors": written}));
    } else if written.is_empty() {
        println!("nothing to anchor (no events, or no repository written yet)");
    } else {
        for w in &written {
            println!("anchored {w}");
        }
    }
    Ok(EXIT_OK)
}

pub async fn list(config: &Config, after: i64, limit: u32, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let events = store.audit_events(after, limit).await?;
    if json {
        let items: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "time": e.time.to_string(),
                    "actor": e.actor,
                    "kind": e.kind,
                    "subject": e.subject,
                    "detail": e.detail,
                    "hash": e.hash,
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(items));
        return Ok(EXIT_OK);
    }
    for e in &events {
        println!(
            "#{:<6} {}  {:<20} {:<18} {}  {}",
            e.seq,
            e.time.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.kind,
            e.subject,
            e.detail
        );
    }
    Ok(EXIT_OK)
}
