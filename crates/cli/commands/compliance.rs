//! `backstop compliance`: each policy's requirements against what was achieved.

use anyhow::{Context, Result};
use backstop_engine::policy::load_dir;
use backstop_engine::{catalog, compliance, evidence, Config};
use serde_json::json;

use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn run(
    config: &Config,
    from: Option<&str>,
    to: Option<&str>,
    names: &[String],
    json: bool,
) -> Result<u8> {
    let to = match to {
        Some(text) => evidence::parse_when(text, true).context("--to")?,
        None => jiff::Timestamp::now(),
    }
    .min(jiff::Timestamp::now());
    let from = match from {
        Some(text) => evidence::parse_when(text, false).context("--from")?,
        None => to - jiff::SignedDuration::from_hours(30 * 24),
    };
    if from >= to {
        anyhow::bail!("the period is empty: --from {from} is not before --to {to}");
    }
    let policies = load_dir(&config.policies_dir, config)?;
    let selected = super::select_policies(&policies, names)?;
    let store = catalog::open(config).await?;
    let mut assessed = Vec::new();
    let mut without = Vec::new();
    for policy in selected {
        match compliance::assess(config, &store, policy, from, to).await? {
            Some(c) => assessed.push(c),
            None => without.push(policy.name.clone()),
        }
    }
    let all_met = assessed.iter().all(|c| c.met);
    if json {
        print_json(&json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "met": all_met,
            "policies": assessed,
            "without_requirements": without,
        }));
    } else {
        println!("compliance from {from} to {to}");
        for c in &assessed {
            println!(
                "\n{}: {}",
                c.policy,
                if c.met {
                    "every requirement met"
                } else {
                    "NOT MET"
                }
            );
            for r in &c.requirements {
                println!(
                    "  {:<8} {:<12} {:<8} {}",
                    if r.met { "met" } else { "NOT MET" },
                    r.requirement,
                    r.required,
                    r.achieved
                );
                for line in &r.evidence {
                    println!("  {:<8} {:<12} {:<8}   {line}", "", "", "");
                }
            }
        }
        if !without.is_empty() {
            println!("\nno [requirements] declared: {}", without.join(", "));
        }
    }
    Ok(if all_met { EXIT_OK } else { EXIT_FAILED })
}
