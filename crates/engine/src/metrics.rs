//! Prometheus text exposition of what the catalog knows, per policy: the last success, the
//! last run's outcome, duration and bytes, run counts, the RPO exposure now against the
//! objective, and the drills: the last outcome, its RTO against the objective, the time
//! since the last passing drill, and pending and overdue sign-offs. Rendering is a pure
//! function of its inputs (`now` included).

use std::collections::BTreeMap;
use std::fmt::Write;

use backstop_catalog::{BackupStats, RunStatus};

use crate::policy::Policy;
use crate::status::DrillStats;

/// One policy's inputs to the metrics.
pub struct PolicyMetrics<'a> {
    pub policy: &'a Policy,
    pub stats: BackupStats,
    pub drills: DrillStats,
    /// The policy's repository's verification coverage, when a check has read data.
    pub coverage: Option<backstop_catalog::Coverage>,
}

fn seconds(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// A label value, escaped as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(policies: &[PolicyMetrics<'_>], jobs_running: usize, now: jiff::Timestamp) -> String {
    let mut families: BTreeMap<&str, (&str, &str, Vec<String>)> = BTreeMap::new();
    let mut add = |name: &'static str, kind: &'static str, help: &'static str, sample: String| {
        families
            .entry(name)
            .or_insert((kind, help, Vec::new()))
            .2
            .push(sample);
    };
    add(
        "backstop_up",
        "gauge",
        "1 while the daemon runs.",
        "backstop_up 1".into(),
    );
    add(
        "backstop_jobs_running",
        "gauge",
        "Jobs running now.",
        format!("backstop_jobs_running {jobs_running}"),
    );
    for p in policies {
        let l = format!("policy=\"{}\"", label(&p.policy.name));
        let s = &p.stats;
        if let Some(t) = s.last_success {
            add(
                "backstop_backup_last_success_timestamp_seconds",
                "gauge",
                "When the newest successful backup finished (Unix seconds).",
                format!(
                    "backstop_backup_last_success_timestamp_seconds{{{l}}} {}",
                    seconds(t)
                ),
            );
        }
        if let Some(run) = &s.last_finished {
            let ok = u8::from(run.status == RunStatus::Succeeded);
            add(
                "backstop_backup_last_run_success",
                "gauge",
                "1 when the newest finished backup succeeded, 0 when it failed, was cancelled or was abandoned.",
                format!("backstop_backup_last_run_success{{{l}}} {ok}"),
            );
            add(
                "backstop_backup_last_anomalies",
                "gauge",
                "Size and content anomalies of the newest finished backup (measures beyond the policy's band since the previous one).",
                format!(
                    "backstop_backup_last_anomalies{{{l}}} {}",
                    run.warnings.len()
                ),
            );
            if let Some(end) = run.finished_at {
                let duration = end.duration_since(run.started_at).as_secs_f64().max(0.0);
                add(
                    "backstop_backup_last_duration_seconds",
                    "gauge",
                    "How long the newest finished backup took.",
                    format!("backstop_backup_last_duration_seconds{{{l}}} {duration}"),
                );
            }
            if let Some(bytes) = run.bytes {
                add(
                    "backstop_backup_last_bytes_added",
                    "gauge",
                    "Bytes the newest finished backup added to the repository.",
                    format!("backstop_backup_last_bytes_added{{{l}}} {bytes}"),
                );
            }
        }
        for (status, count) in &s.runs_by_status {
            add(
                "backstop_backup_runs_total",
                "counter",
                "Finished backup runs, by outcome.",
                format!(
                    "backstop_backup_runs_total{{{l},status=\"{}\"}} {count}",
                    label(status)
                ),
            );
        }
        if let Some(exposure) = p.drills.rpo.at(now).seconds() {
            add(
                "backstop_rpo_exposure_seconds",
                "gauge",
                "Now minus the data point of the newest good snapshot (as status and the evidence measure it).",
                format!("backstop_rpo_exposure_seconds{{{l}}} {exposure}"),
            );
        }
        for copy in crate::status::copies_of(p.policy, &p.drills, now) {
            let l = format!("{l},repository=\"{}\"", label(&copy.repository));
            if let Some(exposure) = copy.rpo_exposure_seconds {
                add(
                    "backstop_copy_rpo_exposure_seconds",
                    "gauge",
                    "Now minus the data point of the newest snapshot a secondary repository holds.",
                    format!("backstop_copy_rpo_exposure_seconds{{{l}}} {exposure}"),
                );
            }
            add(
                "backstop_copy_rpo_breached",
                "gauge",
                "1 while a secondary repository lags past the policy's RPO objective.",
                format!(
                    "backstop_copy_rpo_breached{{{l}}} {}",
                    u8::from(copy.rpo_breached)
                ),
            );
        }
        if let Some(rpo) = p.policy.objectives.rpo {
            add(
                "backstop_rpo_objective_seconds",
                "gauge",
                "The policy's recovery point objective.",
                format!(
                    "backstop_rpo_objective_seconds{{{l}}} {}",
                    rpo.as_secs_f64()
                ),
            );
        }
        if let Some(rto) = p.policy.objectives.rto {
            add(
                "backstop_rto_objective_seconds",
                "gauge",
                "The policy's recovery time objective.",
                format!(
                    "backstop_rto_objective_seconds{{{l}}} {}",
                    rto.as_secs_f64()
                ),
            );
        }
        let d = &p.drills;
        if let Some(last) = &d.last {
            add(
                "backstop_drill_last_success",
                "gauge",
                "1 when the newest drill passed, 0 when it failed.",
                format!(
                    "backstop_drill_last_success{{{l}}} {}",
                    u8::from(last.status == "passed")
                ),
            );
            if let Some(ms) = last.rto_ms {
                add(
                    "backstop_drill_last_rto_seconds",
                    "gauge",
                    "The RTO achieved by the newest drill (restore start to last check).",
                    format!(
                        "backstop_drill_last_rto_seconds{{{l}}} {}",
                        ms as f64 / 1000.0
                    ),
                );
            }
            add(
                "backstop_drill_last_timestamp_seconds",
                "gauge",
                "When the newest drill finished (Unix seconds).",
                format!(
                    "backstop_drill_last_timestamp_seconds{{{l}}} {}",
                    seconds(last.finished_at)
                ),
            );
        }
        if let Some(passed) = d.last_passed {
            add(
                "backstop_drill_since_last_pass_seconds",
                "gauge",
                "Now minus when the newest passing drill finished.",
                format!(
                    "backstop_drill_since_last_pass_seconds{{{l}}} {}",
                    now.duration_since(passed).as_secs_f64().max(0.0)
                ),
            );
        }
        let within = p
            .policy
            .drill
            .as_ref()
            .and_then(|plan| plan.signoff_within());
        add(
            "backstop_signoffs_pending",
            "gauge",
            "Passed drills awaiting the recovery owner's sign-off.",
            format!("backstop_signoffs_pending{{{l}}} {}", d.pending.len()),
        );
        add(
            "backstop_signoffs_overdue",
            "gauge",
            "Pending sign-offs older than the policy's signoff_within.",
            format!(
                "backstop_signoffs_overdue{{{l}}} {}",
                d.pending
                    .iter()
                    .filter(|r| crate::drill::signoff::overdue(r, within, now))
                    .count()
            ),
        );
        if let Some(c) = &p.coverage {
            let l = format!("{l},repository=\"{}\"", label(&c.repository));
            add(
                "backstop_verification_packs",
                "gauge",
                "Packs in the policy's repository at its last check that read data.",
                format!("backstop_verification_packs{{{l}}} {}", c.packs),
            );
            add(
                "backstop_verification_packs_never_read",
                "gauge",
                "Of those, packs no check has read clean yet.",
                format!(
                    "backstop_verification_packs_never_read{{{l}}} {}",
                    c.packs_never_read
                ),
            );
            if let Some(oldest) = c.oldest_read_at {
                add(
                    "backstop_verification_oldest_read_age_seconds",
                    "gauge",
                    "Time since the least recently read pack was read clean (every pack was read within this, when none is never read).",
                    format!(
                        "backstop_verification_oldest_read_age_seconds{{{l}}} {}",
                        now.duration_since(oldest).as_secs().max(0)
                    ),
                );
            }
        }
    }
    let mut out = String::new();
    for (name, (kind, help, samples)) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for sample in samples {
            let _ = writeln!(out, "{sample}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_catalog::Run;

    fn drill(status: &str, finished: &str) -> backstop_catalog::DrillRecord {
        let t = finished.parse::<jiff::Timestamp>().unwrap();
        backstop_catalog::DrillRecord {
            id: format!("d-{finished}"),
            policy: "orders".into(),
            repository: "local".into(),
            snapshot_id: "s".into(),
            data_point: t,
            target: "t".into(),
            status: status.into(),
            started_at: t,
            finished_at: t,
            rto_ms: Some(41_500),
            rto_objective_ms: Some(1_800_000),
            rpo_ms: Some(1000),
            rpo_objective_ms: None,
            error: None,
            report: serde_json::Value::Null,
        }
    }

    #[test]
    fn renders_every_policy_series() {
        let config = crate::config::Config::embedded(std::path::Path::new("/tmp"));
        let text = "name = \"orders\"\nrepository = \"local\"\n[source]\nkind = \"files\"\npaths = [\"x\"]\n[objectives]\nrpo = \"4h\"\nrto = \"30m\"\n[drill]\nsignoff_within = \"7d\"\n";
        let policy = Policy::parse(std::path::Path::new("p.toml"), text, &config).unwrap();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let stats = BackupStats {
            last_success: Some(t("2026-11-25T10:00:00Z")),
            last_finished: Some(Run {
                id: "r".into(),
                kind: "backup".into(),
                policy: "orders".into(),
                status: RunStatus::Failed,
                started_at: t("2026-11-25T11:00:00Z"),
                finished_at: Some(t("2026-11-25T11:00:30Z")),
                bytes: None,
                snapshot_id: None,
                error: Some("boom".into()),
                host: "h".into(),
                warnings: vec![
                    "anomaly: files went from 40 to 3 (-92%) since the previous backup".into(),
                ],
            }),
            runs_by_status: [("failed".to_string(), 1), ("succeeded".to_string(), 3)].into(),
            newest_data_point: Some(t("2026-11-25T09:59:00Z")),
        };
        let out = render(
            &[PolicyMetrics {
                policy: &policy,
                stats,
                drills: DrillStats {
                    last: Some(drill("failed", "2026-11-25T03:00:00Z")),
                    last_passed: Some(t("2026-11-24T12:00:00Z")),
                    pending: vec![
                        drill("passed", "2026-11-10T03:00:00Z"),
                        drill("passed", "2026-11-24T12:00:00Z"),
                    ],
                    rpo: crate::drill::objectives::RpoHistory {
                        points: vec![t("2026-11-25T09:59:00Z")],
                        first_backup: None,
                    },
                    points_by_repository: Default::default(),
                },
                coverage: Some(backstop_catalog::Coverage {
                    repository: "local".into(),
                    checked_at: t("2026-11-25T06:00:00Z"),
                    packs: 40,
                    packs_never_read: 2,
                    oldest_read_at: Some(t("2026-11-20T12:00:00Z")),
                    bytes_read: 1 << 20,
                }),
            }],
            1,
            t("2026-11-25T12:00:00Z"),
        );
        for line in [
            "backstop_up 1",
            "backstop_jobs_running 1",
            "backstop_backup_last_success_timestamp_seconds{policy=\"orders\"} 1795600800",
            "backstop_backup_last_run_success{policy=\"orders\"} 0",
            "backstop_backup_last_duration_seconds{policy=\"orders\"} 30",
            "backstop_backup_runs_total{policy=\"orders\",status=\"succeeded\"} 3",
            "backstop_rpo_exposure_seconds{policy=\"orders\"} 7260",
            "backstop_backup_last_anomalies{policy=\"orders\"} 1",
            "backstop_rpo_objective_seconds{policy=\"orders\"} 14400",
            "# TYPE backstop_backup_runs_total counter",
            "backstop_rto_objective_seconds{policy=\"orders\"} 1800",
            "backstop_drill_last_success{policy=\"orders\"} 0",
            "backstop_drill_last_rto_seconds{policy=\"orders\"} 41.5",
            "backstop_drill_since_last_pass_seconds{policy=\"orders\"} 86400",
            "backstop_verification_packs{policy=\"orders\",repository=\"local\"} 40",
            "backstop_verification_packs_never_read{policy=\"orders\",repository=\"local\"} 2",
            "backstop_verification_oldest_read_age_seconds{policy=\"orders\",repository=\"local\"} 432000",
            "backstop_signoffs_pending{policy=\"orders\"} 2",
            "backstop_signoffs_overdue{policy=\"orders\"} 1",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing `{line}` in:\n{out}"
            );
        }
        assert!(
            !out.contains("backstop_backup_last_bytes_added{"),
            "no bytes for a failed run"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
