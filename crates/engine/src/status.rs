//! `backstop status`: per policy, the last backup and its outcome, the next scheduled run,
//! the RPO exposure now against the objective, the last drill with its RTO against the
//! objective, and the drills awaiting sign-off. A pure function of the catalog's stats, the
//! policies and `now`.

use std::time::Duration;

use backstop_catalog::{BackupStats, Catalog, DrillRecord};
use serde::Serialize;

use crate::error::EngineError;
use crate::policy::Policy;
use crate::schedule::CronSchedule;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyStatus {
    pub policy: String,
    pub source_kind: String,
    /// `succeeded`, `failed` or `cancelled`; none when it never ran.
    pub last_backup_status: Option<String>,
    pub last_backup_finished: Option<jiff::Timestamp>,
    pub last_backup_error: Option<String>,
    pub last_success: Option<jiff::Timestamp>,
    pub next_backup: Option<jiff::Timestamp>,
    /// Now minus the newest snapshot's data point; none without a snapshot.
    pub rpo_exposure_seconds: Option<u64>,
    pub rpo_objective_seconds: Option<u64>,
    /// The exposure exceeds the objective (or there is no snapshot at all while an
    /// objective is set).
    pub rpo_breached: bool,
    /// `passed` or `failed`; none when never drilled.
    pub last_drill_status: Option<String>,
    pub last_drill_id: Option<String>,
    pub last_drill_finished: Option<jiff::Timestamp>,
    pub last_drill_rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<u64>,
    /// The last drill's recovery took longer than the objective.
    pub rto_breached: bool,
    pub last_passed_drill: Option<jiff::Timestamp>,
    pub next_drill: Option<jiff::Timestamp>,
    /// Passed drills awaiting the recovery owner's sign-off, oldest first.
    pub pending_signoffs: Vec<String>,
    /// Those of them past the policy's `signoff_within`.
    pub overdue_signoffs: Vec<String>,
    /// The worst RPO exposure over the last [`HISTORY`] (or since the first snapshot), from the data points of restorable
    /// snapshots (those not disproved by a failed drill), and how many times it breached the
    /// objective.
    pub rpo_worst_exposure_seconds: Option<u64>,
    pub rpo_breaches: usize,
}

/// The period `status` looks back over for the worst RPO exposure.
pub const HISTORY: Duration = Duration::from_secs(30 * 86_400);

/// What the catalog knows of one policy's drills.
#[derive(Debug, Clone, Default)]
pub struct DrillStats {
    pub last: Option<DrillRecord>,
    pub last_passed: Option<jiff::Timestamp>,
    pub pending: Vec<DrillRecord>,
    /// Data points of snapshots that count as restorable: completed and integrity-checked
    /// at backup, and not disproved by a drill (a snapshot whose drills all failed is not a
    /// good point).
    pub restorable_points: Vec<jiff::Timestamp>,
}

impl DrillStats {
    pub async fn load(catalog: &Catalog, policy: &str) -> Result<Self, EngineError> {
        let drills = catalog.drills(Some(policy), u32::MAX).await?;
        // Per snapshot: whether any of its drills passed (absent: never drilled).
        let mut any_passed: std::collections::HashMap<&str, bool> =
            std::collections::HashMap::new();
        for d in &drills {
            *any_passed.entry(d.snapshot_id.as_str()).or_default() |= d.status == "passed";
        }
        let restorable_points = catalog
            .snapshots(Some(policy))
            .await?
            .into_iter()
            .filter(|s| any_passed.get(s.id.as_str()) != Some(&false))
            .map(|s| s.data_point)
            .collect();
        Ok(Self {
            last: drills.first().cloned(),
            last_passed: drills
                .iter()
                .filter(|d| d.status == "passed")
                .map(|d| d.finished_at)
                .max(),
            pending: catalog.pending_signoffs(policy).await?,
            restorable_points,
        })
    }
}

pub fn of_policy(
    policy: &Policy,
    stats: &BackupStats,
    drills: &DrillStats,
    zone: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> PolicyStatus {
    let exposure = stats
        .newest_data_point
        .map(|point| now.duration_since(point).as_secs().max(0) as u64);
    let objective = policy.objectives.rpo.map(|d: Duration| d.as_secs());
    let rpo_breached = match (exposure, objective) {
        (Some(exposure), Some(objective)) => exposure > objective,
        (None, Some(_)) => true,
        _ => false,
    };
    let last = stats.last_finished.as_ref();
    let next = |expr: Option<&str>| {
        expr.and_then(|expr| CronSchedule::parse(expr).ok())
            .map(|s| s.in_zone(zone.clone()))
            .and_then(|s| s.next_after(now))
    };
    let last_drill = drills.last.as_ref();
    let rto_objective = policy.objectives.rto.map(|d| d.as_secs());
    let last_drill_rto = last_drill
        .and_then(|d| d.rto_ms)
        .map(|ms| ms as f64 / 1000.0);
    let within = policy.drill.as_ref().and_then(|d| d.signoff_within());
    let history = (!drills.restorable_points.is_empty()).then(|| {
        // Before the first snapshot the policy did not exist yet: that is not exposure.
        let earliest = drills
            .restorable_points
            .iter()
            .min()
            .copied()
            .unwrap_or(now);
        let from =
            (now - jiff::SignedDuration::try_from(HISTORY).unwrap_or_default()).max(earliest);
        crate::drill::objectives::worst_exposure(
            &drills.restorable_points,
            from,
            now,
            policy.objectives.rpo,
        )
    });
    PolicyStatus {
        policy: policy.name.clone(),
        source_kind: policy.source.kind().to_string(),
        last_backup_status: last.map(|r| r.status.as_str().to_string()),
        last_backup_finished: last.and_then(|r| r.finished_at),
        last_backup_error: last.and_then(|r| r.error.clone()),
        last_success: stats.last_success,
        next_backup: next(policy.schedule.backup.as_deref()),
        rpo_exposure_seconds: exposure,
        rpo_objective_seconds: objective,
        rpo_breached,
        last_drill_status: last_drill.map(|d| d.status.clone()),
        last_drill_id: last_drill.map(|d| d.id.clone()),
        last_drill_finished: last_drill.map(|d| d.finished_at),
        last_drill_rto_seconds: last_drill_rto,
        rto_objective_seconds: rto_objective,
        rto_breached: matches!(
            (last_drill.and_then(|d| d.rto_ms), rto_objective),
            (Some(ms), Some(objective)) if ms > objective * 1000
        ),
        last_passed_drill: drills.last_passed,
        next_drill: next(policy.schedule.drill.as_deref()),
        pending_signoffs: drills.pending.iter().map(|d| d.id.clone()).collect(),
        overdue_signoffs: drills
            .pending
            .iter()
            .filter(|d| crate::drill::signoff::overdue(d, within, now))
            .map(|d| d.id.clone())
            .collect(),
        rpo_worst_exposure_seconds: history.as_ref().map(|h| h.worst.exposure.as_secs()),
        rpo_breaches: history.as_ref().map_or(0, |h| h.breaches.len()),
    }
}

pub async fn collect<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    catalog: &Catalog,
    daemon: &crate::config::DaemonSettings,
    now: jiff::Timestamp,
) -> Result<Vec<PolicyStatus>, EngineError> {
    let zone = daemon.zone().map_err(EngineError::Refused)?;
    let mut out = Vec::new();
    for policy in policies {
        let stats = catalog.backup_stats(&policy.name).await?;
        let drills = DrillStats::load(catalog, &policy.name).await?;
        out.push(of_policy(policy, &stats, &drills, &zone, now));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let config = crate::config::Config::embedded(std::path::Path::new("/tmp"));
        let text = format!(
            "name = \"orders\"\nrepository = \"local\"\n[source]\nkind = \"files\"\npaths = [\"x\"]\n{extra}"
        );
        Policy::parse(std::path::Path::new("p.toml"), &text, &config).unwrap()
    }

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn exposure_next_run_and_breach() {
        let p = policy("[schedule]\nbackup = \"0 0 */4 * * *\"\n[objectives]\nrpo = \"4h\"\n");
        let now = t("2026-11-25T10:30:00Z");
        let utc = jiff::tz::TimeZone::UTC;
        let none = DrillStats::default();
        let fresh = BackupStats {
            newest_data_point: Some(t("2026-11-25T08:00:00Z")),
            ..BackupStats::default()
        };
        let s = of_policy(&p, &fresh, &none, &utc, now);
        assert_eq!(s.rpo_exposure_seconds, Some(2 * 3600 + 1800));
        assert_eq!(s.rpo_objective_seconds, Some(4 * 3600));
        assert!(!s.rpo_breached);
        assert_eq!(s.next_backup, Some(t("2026-11-25T12:00:00Z")));
        assert_eq!(s.last_backup_status, None);

        let stale = BackupStats {
            newest_data_point: Some(t("2026-11-25T06:00:00Z")),
            ..BackupStats::default()
        };
        assert!(
            of_policy(&p, &stale, &none, &utc, now).rpo_breached,
            "4h30m > 4h"
        );
        assert!(
            of_policy(&p, &BackupStats::default(), &none, &utc, now).rpo_breached,
            "no snapshot at all"
        );
        let history = DrillStats {
            restorable_points: vec![t("2026-11-25T00:00:00Z"), t("2026-11-25T08:00:00Z")],
            ..DrillStats::default()
        };
        let s = of_policy(&p, &fresh, &history, &utc, now);
        assert_eq!(
            s.rpo_worst_exposure_seconds,
            Some(8 * 3600),
            "00:00 to 08:00"
        );
        assert_eq!(s.rpo_breaches, 1);
        let no_objective = policy("");
        let s = of_policy(&no_objective, &BackupStats::default(), &none, &utc, now);
        assert!(!s.rpo_breached);
        assert_eq!(s.next_backup, None);
    }
}
