//! `backstop drill POLICY`, `backstop drill show ID`, `backstop drills`, `backstop signoff`.

use std::time::Duration;

use anyhow::{Context, Result};
use backstop_engine::drill::report::{CheckStatus, DrillReport, DrillStatus};
use backstop_engine::drill::{self, signoff, DrillOptions, Pick};
use backstop_engine::policy::load_dir;
use backstop_engine::{catalog, Config, EngineError};
use serde_json::json;

use crate::args::DrillArgs;
use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn run(config: &Config, args: &DrillArgs, json: bool) -> Result<u8> {
    if let Some(system) = &args.system {
        return run_system(config, system, json).await;
    }
    let name = args.policy.as_deref().unwrap_or_default();
    let policies = load_dir(&config.policies_dir, config)?;
    let policy = policies
        .get(name)
        .ok_or_else(|| EngineError::UnknownPolicy(name.to_string()))?;
    let store = catalog::open(config).await?;
    let cancel = crate::signals::cancel_on_termination();
    let options = DrillOptions {
        pick: match (&args.snapshot, args.random) {
            (Some(id), _) => Some(Pick::Id(id.clone())),
            (None, true) => Some(Pick::Random),
            (None, false) => None,
        },
        keep: args.keep,
        repository: args.from.clone(),
        scratch: None,
    };
    let report = drill::run_recorded(config, &store, policy, &options, &cancel)
        .await
        .with_context(|| format!("drill of policy `{name}` could not start"))?;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print_report(&report);
        if report.status == DrillStatus::Passed {
            if let Some(owner) = &policy.owners.recovery {
                println!(
                    "awaiting sign-off by {owner}: backstop signoff {} --comment \"…\"",
                    report.drill_id
                );
            }
        }
    }
    Ok(exit_code(&report))
}

fn exit_code(report: &DrillReport) -> u8 {
    match report.status {
        DrillStatus::Passed => EXIT_OK,
        DrillStatus::Failed => EXIT_FAILED,
    }
}

fn seconds(s: f64) -> String {
    let d = Duration::from_millis((s * 1000.0).round() as u64);
    if d < Duration::from_secs(10) {
        format!("{:.2}s", d.as_secs_f64())
    } else if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

async fn run_system(config: &Config, name: &str, json: bool) -> Result<u8> {
    let policies = load_dir(&config.policies_dir, config)?;
    let systems = backstop_engine::system::load_dir(
        &backstop_engine::system::systems_dir(config),
        &policies,
    )?;
    let system = systems
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("no system `{name}` under systems/"))?;
    let store = catalog::open(config).await?;
    let cancel = crate::signals::cancel_on_termination();
    let report =
        backstop_engine::system::drill_recorded(config, &store, system, &policies, &cancel)
            .await
            .with_context(|| format!("drill of system `{name}` could not start"))?;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        let verdict = match report.status {
            DrillStatus::Passed => "PASSED",
            DrillStatus::Failed => "FAILED",
        };
        println!(
            "system drill {} of `{}`: {verdict}",
            report.drill_id, report.system
        );
        println!(
            "common point {}; RPO {} (its oldest member's data)",
            report.point.strftime("%Y-%m-%d %H:%M:%S UTC"),
            format_seconds(report.rpo_seconds)
        );
        for m in &report.members {
            println!(
                "  member {}: {} in {} (drill {}, snapshot {})",
                m.policy,
                m.drill.status.as_str(),
                m.drill
                    .rto_seconds
                    .map(format_seconds)
                    .unwrap_or_else(|| "not restored".into()),
                m.drill.drill_id,
                &m.drill.snapshot_id[..m.drill.snapshot_id.len().min(12)]
            );
        }
        for c in &report.checks {
            let mark = match c.status {
                CheckStatus::Passed => "ok",
                CheckStatus::Failed => "FAILED",
                CheckStatus::Skipped => "skipped",
            };
            println!("  check {}: {mark} {}", c.name, c.detail);
        }
        println!(
            "system RTO: {}{}",
            report
                .rto_seconds
                .map(format_seconds)
                .unwrap_or_else(|| "none (a member was not restored)".into()),
            match report.rto_objective_seconds {
                Some(o) => format!(" against {}", format_seconds(o)),
                None => String::new(),
            }
        );
        if let Some(error) = &report.error {
            println!("why: {error}");
        }
        if report.status == DrillStatus::Passed {
            println!(
                "sign off with: backstop signoff {} --comment \"...\"",
                report.drill_id
            );
        }
    }
    Ok(if report.status == DrillStatus::Passed {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn format_seconds(seconds: f64) -> String {
    drill::short_duration(Duration::from_secs_f64(seconds))
}

fn print_report(r: &DrillReport) {
    let verdict = match r.status {
        DrillStatus::Passed => "PASSED",
        DrillStatus::Failed => "FAILED",
    };
    println!("drill {} of `{}`: {verdict}", r.drill_id, r.policy);
    println!(
        "snapshot {} ({}, data point {}) from repository `{}`",
        &r.snapshot_id[..r.snapshot_id.len().min(12)],
        r.source_kind,
        r.data_point.strftime("%Y-%m-%d %H:%M:%S UTC"),
        r.repository
    );
    if !r.paths.is_empty() {
        println!("partial: only the paths {}", r.paths.join(", "));
    }
    if !r.tables.is_empty() {
        println!("partial: only the tables {}", r.tables.join(", "));
    }
    if !r.target.is_empty() {
        let fate = if r.kept { "kept" } else { "removed" };
        match &r.scratch {
            Some(name) => println!("scratch target: {name} ({}; {fate})", r.target),
            None => println!("scratch target: {}", r.target),
        }
    }
    let width = r
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    for c in &r.checks {
        let mark = match c.status {
            CheckStatus::Passed => "ok     ",
            CheckStatus::Failed => "FAILED ",
            CheckStatus::Skipped => "skipped",
        };
        println!("  {mark} {:<width$}  {}", c.name, c.detail);
        if c.status == CheckStatus::Failed {
            if let Some(output) = c.output.as_deref().filter(|o| !o.trim().is_empty()) {
                for line in output
                    .trim_end()
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    println!("          | {line}");
                }
            }
        }
    }
    for d in &r.differences {
        println!(
            "  difference: {}: expected {}, got {}",
            d.object, d.expected, d.actual
        );
    }
    let b = &r.rto_breakdown;
    let objective = |o: Option<f64>, breached: bool| match o {
        Some(o) => format!(
            "; objective {}: {}",
            seconds(o),
            if breached { "BREACHED" } else { "met" }
        ),
        None => String::new(),
    };
    match r.rto_seconds {
        Some(rto) => println!(
            "RTO {} = fetch {} + decode {} + load {} + checks {}{}",
            seconds(rto),
            seconds(b.fetch_seconds),
            seconds(b.decode_seconds),
            seconds(b.load_seconds),
            seconds(b.checks_seconds),
            objective(r.rto_objective_seconds, r.rto_breached)
        ),
        None => println!(
            "RTO none: the restore did not complete, so nothing was recovered{}",
            if r.rto_objective_seconds.is_some() {
                "; the objective is not met"
            } else {
                ""
            }
        ),
    }
    println!(
        "RPO {}, the drill's start minus the snapshot's data point{}",
        seconds(r.rpo_seconds),
        objective(r.rpo_objective_seconds, r.rpo_breached)
    );
    if let Some(error) = &r.error {
        println!("cause: {error}");
    }
}

pub async fn show(config: &Config, id: &str, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let record = store.drill(id).await?;
    let signed = store.signoff(&record.id).await?;
    let report: DrillReport = serde_json::from_value(record.report.clone())
        .with_context(|| format!("drill {} has a report this backstop cannot read", record.id))?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["signoff"] = match &signed {
            Some(s) => {
                json!({"principal": s.principal, "comment": s.comment, "signed_at": s.signed_at.to_string()})
            }
            None => serde_json::Value::Null,
        };
        print_json(&value);
    } else {
        print_report(&report);
        match signed {
            Some(s) => println!(
                "signed off by {} at {}: {}",
                s.principal,
                s.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                s.comment
            ),
            None if report.status == DrillStatus::Passed => println!("not signed off yet"),
            None => {}
        }
    }
    Ok(EXIT_OK)
}

pub async fn list(config: &Config, policy: Option<&str>, limit: u32, json: bool) -> Result<u8> {
    let store = catalog::open(config).await?;
    let drills = store.drills(policy, limit).await?;
    let mut rows = Vec::new();
    for d in &drills {
        rows.push((d, store.signoff(&d.id).await?));
    }
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(d, s)| {
                json!({
                    "drill_id": d.id,
                    "policy": d.policy,
                    "status": d.status,
                    "snapshot_id": d.snapshot_id,
                    "target": d.target,
                    "started_at": d.started_at.to_string(),
                    "finished_at": d.finished_at.to_string(),
                    "rto_seconds": d.rto_ms.map(|ms| ms as f64 / 1000.0),
                    "rto_objective_seconds": d.rto_objective_ms.map(|ms| ms as f64 / 1000.0),
                    "rpo_seconds": d.rpo_ms.map(|ms| ms as f64 / 1000.0),
                    "error": d.error,
                    "signed_off_by": s.as_ref().map(|s| s.principal.clone()),
                    "signed_off_at": s.as_ref().map(|s| s.signed_at.to_string()),
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(items));
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        println!("no drills recorded");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<26} {:<18} {:<7} {:<20} {:>8} {:>10}  SIGN-OFF",
        "DRILL", "POLICY", "STATUS", "STARTED (UTC)", "RTO", "RPO"
    );
    for (d, s) in &rows {
        let ms = |v: Option<u64>| {
            v.map(|ms| seconds(ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let signed = match (s, d.status.as_str()) {
            (Some(s), _) => s.principal.clone(),
            (None, "passed") => "pending".into(),
            (None, _) => "-".into(),
        };
        println!(
            "{:<26} {:<18} {:<7} {:<20} {:>8} {:>10}  {signed}",
            d.id,
            d.policy,
            d.status,
            d.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            ms(d.rto_ms),
            ms(d.rpo_ms),
        );
    }
    Ok(EXIT_OK)
}

pub async fn signoff(config: &Config, drill: &str, comment: &str, json: bool) -> Result<u8> {
    let principal = config.principal().ok_or_else(|| {
        anyhow::anyhow!(
            "no principal: set `principal` in backstop.toml or BACKSTOP_PRINCIPAL to the recovery owner's identity"
        )
    })?;
    let policies = load_dir(&config.policies_dir, config)?;
    let store = catalog::open(config).await?;
    let signed = signoff::sign_off(
        config,
        &store,
        &policies,
        drill,
        &principal,
        comment,
        jiff::Timestamp::now(),
    )
    .await?;
    if json {
        print_json(&json!({
            "drill_id": signed.drill_id,
            "principal": signed.principal,
            "comment": signed.comment,
            "signed_at": signed.signed_at.to_string(),
        }));
    } else {
        println!(
            "drill {} signed off by {}",
            signed.drill_id, signed.principal
        );
    }
    Ok(EXIT_OK)
}
