//! Prometheus text exposition of what the catalog knows, per policy: the last success, the
//! last run's outcome, duration and bytes, run counts, and the RPO exposure now against the
//! objective. Rendering is a pure function of its inputs (`now` included).

use std::collections::BTreeMap;
use std::fmt::Write;

use backstop_catalog::{BackupStats, RunStatus};

use crate::policy::Policy;

/// One policy's inputs to the metrics.
pub struct PolicyMetrics<'a> {
    pub policy: &'a Policy,
    pub stats: BackupStats,
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
                "1 when the newest finished backup succeeded, 0 when it failed or was cancelled.",
                format!("backstop_backup_last_run_success{{{l}}} {ok}"),
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
        if let Some(point) = s.newest_data_point {
            let exposure = now.duration_since(point).as_secs_f64().max(0.0);
            add(
                "backstop_rpo_exposure_seconds",
                "gauge",
                "Now minus the data point of the newest snapshot.",
                format!("backstop_rpo_exposure_seconds{{{l}}} {exposure}"),
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

    #[test]
    fn renders_every_policy_series() {
        let config = crate::config::Config::embedded(std::path::Path::new("/tmp"));
        let text = "name = \"orders\"\nrepository = \"local\"\n[source]\nkind = \"files\"\npaths = [\"x\"]\n[objectives]\nrpo = \"4h\"\n";
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
            }),
            runs_by_status: [("failed".to_string(), 1), ("succeeded".to_string(), 3)].into(),
            newest_data_point: Some(t("2026-11-25T09:59:00Z")),
        };
        let out = render(
            &[PolicyMetrics {
                policy: &policy,
                stats,
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
            "backstop_rpo_objective_seconds{policy=\"orders\"} 14400",
            "# TYPE backstop_backup_runs_total counter",
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
