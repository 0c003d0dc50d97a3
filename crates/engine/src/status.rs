//! `backstop status`: per policy, the last backup and its outcome, the next scheduled run,
//! the RPO exposure now against the objective, the last drill with its RTO against the
//! objective, and the drills awaiting sign-off. A pure function of the catalog's stats, the
//! policies and `now`.

use std::time::Duration;

use backstop_catalog::{BackupStats, Catalog, DrillRecord};
use serde::Serialize;

use crate::drill::objectives::RpoHistory;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::schedule::CronSchedule;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyStatus {
    pub policy: String,
    /// A daemon is running the schedules on this catalog (its heartbeat is live): without
    /// one, `next_backup` and `next_drill` are when it would run them.
    pub daemon_running: bool,
    pub source_kind: String,
    /// `succeeded`, `failed` or `cancelled`; none when it never ran.
    pub last_backup_status: Option<String>,
    pub last_backup_finished: Option<jiff::Timestamp>,
    pub last_backup_error: Option<String>,
    pub last_success: Option<jiff::Timestamp>,
    pub next_backup: Option<jiff::Timestamp>,
    /// Backups follow changes to the source's paths (`backup = "on-change"`): there is no
    /// next time.
    pub backup_on_change: bool,
    /// Now minus the newest good snapshot's data point, as [`RpoHistory`] defines it (a
    /// lower bound when no snapshot is good yet); none before the policy's first backup.
    pub rpo_exposure_seconds: Option<u64>,
    pub rpo_objective_seconds: Option<u64>,
    /// The exposure exceeds the objective.
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
    /// The worst RPO exposure over the last [`HISTORY`] (from the policy's first backup at
    /// the earliest), and how many times it breached the objective.
    pub rpo_worst_exposure_seconds: Option<u64>,
    pub rpo_breaches: usize,
    /// Per secondary repository in the policy's `copies`: its newest copy and exposure.
    pub copies: Vec<CopyStatus>,
    /// How recently the policy's repository had its packs read by checks; none before the
    /// first check that read data.
    pub verification: Option<VerificationStatus>,
}

/// A repository's verification coverage, as of its last check that read data.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct VerificationStatus {
    pub repository: String,
    pub checked_at: jiff::Timestamp,
    pub packs: u64,
    pub packs_never_read: u64,
    /// Every pack was read clean within this long before now; none while some pack was
    /// never read.
    pub every_pack_read_within_seconds: Option<u64>,
}

impl VerificationStatus {
    pub fn of(coverage: &backstop_catalog::Coverage, now: jiff::Timestamp) -> Self {
        Self {
            repository: coverage.repository.clone(),
            checked_at: coverage.checked_at,
            packs: coverage.packs,
            packs_never_read: coverage.packs_never_read,
            every_pack_read_within_seconds: coverage.every_pack_within(now).map(|d| d.as_secs()),
        }
    }
}

/// One secondary repository of a policy, measured like the policy's own RPO: now minus the
/// data point of the newest snapshot the secondary holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyStatus {
    pub repository: String,
    pub newest_data_point: Option<jiff::Timestamp>,
    /// None before the policy's first backup; since the first backup (a lower bound) while
    /// the secondary holds nothing yet.
    pub rpo_exposure_seconds: Option<u64>,
    /// The exposure exceeds the policy's RPO objective: this copy lags too far.
    pub rpo_breached: bool,
}

/// The period `status` looks back over for the worst RPO exposure.
pub const HISTORY: Duration = Duration::from_secs(30 * 86_400);

/// What the catalog knows of one policy's drills.
#[derive(Debug, Clone, Default)]
pub struct DrillStats {
    pub last: Option<DrillRecord>,
    pub last_passed: Option<jiff::Timestamp>,
    pub pending: Vec<DrillRecord>,
    /// The good points and the policy's first backup, from which RPO exposure is measured.
    pub rpo: RpoHistory,
    /// The data points the catalog records per repository holding the policy's snapshots
    /// (its own and its copies).
    pub points_by_repository: std::collections::BTreeMap<String, Vec<jiff::Timestamp>>,
}

impl DrillStats {
    pub async fn load(catalog: &Catalog, policy: &Policy) -> Result<Self, EngineError> {
        let drills = catalog.drills(Some(&policy.name), u32::MAX).await?;
        // Per snapshot: whether any of its drills passed (absent: never drilled).
        let mut any_passed: std::collections::HashMap<&str, bool> =
            std::collections::HashMap::new();
        for d in &drills {
            *any_passed.entry(d.snapshot_id.as_str()).or_default() |= d.status == "passed";
        }
        let snapshots = catalog.snapshots(Some(policy.name.as_str())).await?;
        let mut points_by_repository: std::collections::BTreeMap<String, Vec<jiff::Timestamp>> =
            std::collections::BTreeMap::new();
        for s in &snapshots {
            points_by_repository
                .entry(s.repository.clone())
                .or_default()
                .push(s.data_point);
        }
        // The policy's own RPO is its own repository's; each copy is measured apart.
        let restorable_points = snapshots
            .into_iter()
            .filter(|s| s.repository == policy.repository)
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
            pending: catalog.pending_signoffs(&policy.name).await?,
            points_by_repository,
            rpo: RpoHistory {
                points: restorable_points,
                first_backup: catalog
                    .first_run_started(&policy.name, backstop_catalog::RunKind::Backup)
                    .await?,
            },
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
    let exposure_now = drills.rpo.at(now);
    let objective = policy.objectives.rpo.map(|d: Duration| d.as_secs());
    let rpo_breached = exposure_now.breaches(policy.objectives.rpo);
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
    let history = drills.rpo.over(
        now - jiff::SignedDuration::try_from(HISTORY).unwrap_or_default(),
        now,
        policy.objectives.rpo,
    );
    PolicyStatus {
        policy: policy.name.clone(),
        daemon_running: false,
        source_kind: policy.source.kind().to_string(),
        last_backup_status: last.map(|r| r.status.as_str().to_string()),
        last_backup_finished: last.and_then(|r| r.finished_at),
        last_backup_error: last.and_then(|r| r.error.clone()),
        last_success: stats.last_success,
        next_backup: next(policy.schedule.backup.as_deref()),
        backup_on_change: policy.schedule.on_change.is_some(),
        rpo_exposure_seconds: exposure_now.seconds(),
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
        copies: copies_of(policy, drills, now),
        verification: None,
    }
}

/// Each copy's exposure, as the policy's own is measured.
pub fn copies_of(policy: &Policy, drills: &DrillStats, now: jiff::Timestamp) -> Vec<CopyStatus> {
    policy
        .copies
        .iter()
        .map(|repository| {
            let newest = drills
                .points_by_repository
                .get(repository)
                .and_then(|points| points.iter().filter(|t| **t <= now).max().copied());
            let since = newest.or(drills.rpo.first_backup);
            let exposure = since.map(|t| {
                Duration::try_from(now.duration_since(t))
                    .unwrap_or_default()
                    .as_secs()
            });
            CopyStatus {
                repository: repository.clone(),
                newest_data_point: newest,
                rpo_exposure_seconds: exposure,
                rpo_breached: matches!(
                    (exposure, policy.objectives.rpo),
                    (Some(e), Some(objective)) if e > objective.as_secs()
                ),
            }
        })
        .collect()
}

pub async fn collect<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    catalog: &Catalog,
    daemon: &crate::config::DaemonSettings,
    now: jiff::Timestamp,
) -> Result<Vec<PolicyStatus>, EngineError> {
    let zone = daemon.zone().map_err(EngineError::Refused)?;
    let running = !catalog.running_daemons(now).await?.is_empty();
    let mut out = Vec::new();
    for policy in policies {
        let stats = catalog.backup_stats(&policy.name).await?;
        let drills = DrillStats::load(catalog, policy).await?;
        let mut status = of_policy(policy, &stats, &drills, &zone, now);
        status.daemon_running = running;
        status.verification = catalog
            .coverage(&policy.repository)
            .await?
            .map(|c| VerificationStatus::of(&c, now));
        out.push(status);
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

    /// Issue 16: each copy's exposure is measured from the newest data point the secondary
    /// holds (none yet: since the first backup), against the policy's RPO objective.
    #[test]
    fn each_copy_lags_on_its_own() {
        let mut config = crate::config::Config::embedded(std::path::Path::new("/tmp"));
        let mut offsite = config.repositories["local"].clone();
        offsite.name = "offsite".into();
        config
            .repositories
            .insert("offsite".into(), offsite.clone());
        let mut vault = offsite;
        vault.name = "vault".into();
        config.repositories.insert("vault".into(), vault);
        let text = "name = \"orders\"\nrepository = \"local\"\ncopies = [\"offsite\", \"vault\"]\n[source]\nkind = \"files\"\npaths = [\"x\"]\n[objectives]\nrpo = \"4h\"\n";
        let p = Policy::parse(std::path::Path::new("p.toml"), text, &config).unwrap();
        let stats = DrillStats {
            rpo: RpoHistory {
                points: vec![t("2026-11-25T09:00:00Z")],
                first_backup: Some(t("2026-11-24T00:00:00Z")),
            },
            points_by_repository: [
                ("local".to_string(), vec![t("2026-11-25T09:00:00Z")]),
                (
                    "offsite".to_string(),
                    vec![t("2026-11-25T01:00:00Z"), t("2026-11-25T12:00:00Z")],
                ),
            ]
            .into(),
            ..DrillStats::default()
        };
        let copies = copies_of(&p, &stats, t("2026-11-25T10:00:00Z"));
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].repository, "offsite");
        assert_eq!(
            copies[0].newest_data_point,
            Some(t("2026-11-25T01:00:00Z")),
            "none after now"
        );
        assert_eq!(copies[0].rpo_exposure_seconds, Some(9 * 3600));
        assert!(copies[0].rpo_breached, "9h > 4h");
        assert_eq!(copies[1].repository, "vault");
        assert_eq!(copies[1].newest_data_point, None);
        assert_eq!(
            copies[1].rpo_exposure_seconds,
            Some(34 * 3600),
            "since the first backup"
        );
        assert!(copies[1].rpo_breached);
        let caught_up = copies_of(&p, &stats, t("2026-11-25T13:00:00Z"));
        assert_eq!(caught_up[0].rpo_exposure_seconds, Some(3600));
        assert!(!caught_up[0].rpo_breached);
    }

    #[test]
    fn exposure_next_run_and_breach() {
        let p = policy("[schedule]\nbackup = \"0 0 */4 * * *\"\n[objectives]\nrpo = \"4h\"\n");
        let now = t("2026-11-25T10:30:00Z");
        let utc = jiff::tz::TimeZone::UTC;
        let none = DrillStats::default();
        let good = |points: &[&str], first: &str| DrillStats {
            rpo: RpoHistory {
                points: points.iter().map(|p| t(p)).collect(),
                first_backup: Some(t(first)),
            },
            ..DrillStats::default()
        };
        let stats = BackupStats::default();
        let fresh = good(&["2026-11-25T08:00:00Z"], "2026-11-25T08:00:00Z");
        let s = of_policy(&p, &stats, &fresh, &utc, now);
        assert_eq!(s.rpo_exposure_seconds, Some(2 * 3600 + 1800));
        assert_eq!(s.rpo_objective_seconds, Some(4 * 3600));
        assert!(!s.rpo_breached);
        assert_eq!(s.next_backup, Some(t("2026-11-25T12:00:00Z")));
        assert_eq!(s.last_backup_status, None);

        let stale = good(&["2026-11-25T06:00:00Z"], "2026-11-25T06:00:00Z");
        assert!(
            of_policy(&p, &stats, &stale, &utc, now).rpo_breached,
            "4h30m > 4h"
        );
        // A newer snapshot that the catalog knows but a drill disproved is not a good
        // point: the exposure is measured from the good one, as the evidence measures it.
        let disproved = BackupStats {
            newest_data_point: Some(t("2026-11-25T10:00:00Z")),
            ..BackupStats::default()
        };
        let s = of_policy(&p, &disproved, &stale, &utc, now);
        assert_eq!(s.rpo_exposure_seconds, Some(4 * 3600 + 1800));
        assert!(s.rpo_breached);
        // Before the first backup the period has not started: no exposure, no breach.
        let s = of_policy(&p, &stats, &none, &utc, now);
        assert_eq!(s.rpo_exposure_seconds, None);
        assert!(!s.rpo_breached);
        // Backups ran but none is good: at least the time since the first one.
        let failing = good(&[], "2026-11-25T05:00:00Z");
        let s = of_policy(&p, &stats, &failing, &utc, now);
        assert_eq!(s.rpo_exposure_seconds, Some(5 * 3600 + 1800));
        assert!(s.rpo_breached);

        let history = good(
            &["2026-11-25T00:00:00Z", "2026-11-25T08:00:00Z"],
            "2026-11-24T23:00:00Z",
        );
        let s = of_policy(&p, &stats, &history, &utc, now);
        assert_eq!(
            s.rpo_worst_exposure_seconds,
            Some(8 * 3600),
            "00:00 to 08:00 (the hour before the first good point is shorter)"
        );
        assert_eq!(s.rpo_breaches, 1);
        let no_objective = policy("");
        let s = of_policy(&no_objective, &stats, &failing, &utc, now);
        assert!(!s.rpo_breached);
        assert_eq!(s.next_backup, None);
    }
}
