use anyhow::Result;
use backstop_engine::policy::load_dir;
use backstop_engine::{catalog, status, Config};

use crate::output::{print_json, EXIT_OK};

pub async fn run(config: &Config, json: bool) -> Result<u8> {
    let policies = load_dir(&config.policies_dir, config)?;
    let store = catalog::open(config).await?;
    let now = jiff::Timestamp::now();
    // A run whose process died shows as abandoned, not as running for ever, even when no
    // daemon is there to reconcile it.
    store.reconcile_abandoned(now).await?;
    let report = status::collect(policies.values(), &store, &config.daemon, now).await?;
    if json {
        print_json(&serde_json::to_value(&report)?);
        return Ok(EXIT_OK);
    }
    println!(
        "{:<20} {:<8} {:<28} {:<20} {:>12} {:>10}",
        "POLICY", "SOURCE", "LAST BACKUP (UTC)", "NEXT (UTC)", "RPO EXPOSURE", "OBJECTIVE"
    );
    let when = |t: Option<jiff::Timestamp>| {
        t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let span = |s: Option<u64>| {
        s.map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
            .unwrap_or_else(|| "-".into())
    };
    for s in &report {
        let last = match &s.last_backup_status {
            Some(status) => format!("{status} {}", when(s.last_backup_finished)),
            None => "never".to_string(),
        };
        println!(
            "{:<20} {:<8} {:<28} {:<20} {:>12} {:>10}{}",
            s.policy,
            s.source_kind,
            last,
            when(s.next_backup),
            span(s.rpo_exposure_seconds),
            span(s.rpo_objective_seconds),
            if s.rpo_breached { "  RPO BREACHED" } else { "" }
        );
        if let (Some("failed"), Some(error)) =
            (s.last_backup_status.as_deref(), &s.last_backup_error)
        {
            println!("  last error: {error}");
        }
        if let (Some(status), Some(id)) = (&s.last_drill_status, &s.last_drill_id) {
            let rto = s
                .last_drill_rto_seconds
                .map(|r| format!(", RTO {r:.1}s"))
                .unwrap_or_default();
            let objective = s
                .rto_objective_seconds
                .map(|o| format!(" against {}", span(Some(o))))
                .unwrap_or_default();
            println!(
                "  last drill: {status} {} ({id}{rto}{objective}){}",
                when(s.last_drill_finished),
                if s.rto_breached { "  RTO BREACHED" } else { "" }
            );
        } else if s.next_drill.is_some() {
            println!("  last drill: never");
        }
        if let Some(worst) = s.rpo_worst_exposure_seconds {
            println!(
                "  worst RPO exposure over {}: {}{}",
                humantime::format_duration(backstop_engine::status::HISTORY),
                span(Some(worst)),
                match s.rpo_breaches {
                    0 => String::new(),
                    n => format!(" ({n} breach(es) of the objective)"),
                }
            );
        }
        if let Some(next) = s.next_drill {
            println!("  next drill: {}", when(Some(next)));
        }
        if !s.pending_signoffs.is_empty() {
            println!(
                "  awaiting sign-off: {}{}",
                s.pending_signoffs.join(", "),
                if s.overdue_signoffs.is_empty() {
                    String::new()
                } else {
                    format!("  (OVERDUE: {})", s.overdue_signoffs.join(", "))
                }
            );
        }
    }
    Ok(EXIT_OK)
}
