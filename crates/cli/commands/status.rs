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
    let daemons = store.running_daemons(now).await?;
    match daemons.as_slice() {
        [] => println!(
            "daemon: none is running on this catalog; NEXT is when one would run the schedules"
        ),
        running => {
            let names: Vec<String> = running
                .iter()
                .map(|h| format!("{} (pid {})", h.host, h.pid))
                .collect();
            println!("daemon: running on {}", names.join(", "));
        }
    }
    let when = |t: Option<jiff::Timestamp>| {
        t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let span = |s: Option<u64>| s.map(short_span).unwrap_or_else(|| "-".into());
    // Columns as wide as their widest value.
    let header = [
        "POLICY",
        "SOURCE",
        "LAST BACKUP (UTC)",
        "NEXT (UTC)",
        "RPO EXPOSURE",
        "OBJECTIVE",
    ];
    let rows: Vec<[String; 6]> = report
        .iter()
        .map(|s| {
            let last = match &s.last_backup_status {
                Some(status) => format!("{status} {}", when(s.last_backup_finished)),
                None => "never".to_string(),
            };
            // Before its first backup a policy has no exposure: that is not a breach.
            let exposure = match (s.rpo_exposure_seconds, &s.last_backup_status) {
                (None, None) => "never backed up".to_string(),
                (exposure, _) => span(exposure),
            };
            [
                s.policy.clone(),
                s.source_kind.clone(),
                last,
                if s.backup_on_change {
                    "on change".to_string()
                } else {
                    when(s.next_backup)
                },
                exposure,
                span(s.rpo_objective_seconds),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let [w0, w1, w2, w3, w4, w5] = widths;
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:>w5$}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        )
    };
    println!("{}", line(header).trim_end());
    for (s, row) in report.iter().zip(&rows) {
        println!(
            "{}{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]),
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
                "  worst RPO exposure over the last {}: {}{}",
                short_span(backstop_engine::status::HISTORY.as_secs()),
                span(Some(worst)),
                match s.rpo_breaches {
                    0 => String::new(),
                    1 => " (1 breach of the objective)".into(),
                    n => format!(" ({n} breaches of the objective)"),
                }
            );
        }
        for copy in &s.copies {
            println!(
                "  copy `{}`: newest {}, RPO exposure {}{}",
                copy.repository,
                copy.newest_data_point
                    .map_or_else(|| "none yet".to_string(), |t| when(Some(t))),
                span(copy.rpo_exposure_seconds),
                if copy.rpo_breached {
                    "  RPO BREACHED"
                } else {
                    ""
                }
            );
        }
        if let Some(v) = &s.verification {
            println!(
                "  verified: {} (`{}`, {} packs, as of the check at {})",
                match v.every_pack_read_within_seconds {
                    Some(within) =>
                        format!("every pack read within the last {}", span(Some(within))),
                    None => format!("{} of {} packs never read", v.packs_never_read, v.packs),
                },
                v.repository,
                v.packs,
                when(Some(v.checked_at))
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

/// A duration for people: the two largest units, spelled out ("30 days", "2 h 5 min").
fn short_span(seconds: u64) -> String {
    const UNITS: [(u64, &str, &str); 4] = [
        (86_400, "day", "days"),
        (3_600, "h", "h"),
        (60, "min", "min"),
        (1, "s", "s"),
    ];
    if seconds == 0 {
        return "0 s".into();
    }
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (size, one, many) in UNITS {
        if rest >= size && parts.len() < 2 {
            let n = rest / size;
            rest %= size;
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        } else if !parts.is_empty() {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_read_as_people_write_them() {
        assert_eq!(super::short_span(30 * 86_400), "30 days");
        assert_eq!(super::short_span(86_400 + 3_600), "1 day 1 h");
        assert_eq!(super::short_span(7_500), "2 h 5 min");
        assert_eq!(super::short_span(61), "1 min 1 s");
        assert_eq!(super::short_span(3_601), "1 h");
        assert_eq!(super::short_span(0), "0 s");
    }
}
