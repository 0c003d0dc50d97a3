//! Evidence for auditors: for a period and a set of policies, the objectives against what
//! was achieved (RPO exposure over time with its breaches, drills with their RTO and
//! checks, sign-offs), the backups, and the state of the audit chain, as a versioned JSON
//! document (docs/evidence-format.md) and a self-contained HTML page, with a manifest of
//! digests signed by the installation's ed25519 key ([`pack`]).

pub mod html;
pub mod pack;

use std::collections::BTreeMap;
use std::time::Duration;

use backstop_catalog::{Catalog, ChainStatus};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::drill::objectives::{Breach, Gap};
use crate::drill::report::DrillReport;
use crate::error::EngineError;
use crate::policy::Policy;

pub const SCHEMA: &str = "backstop.evidence/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub schema: String,
    pub generated_at: jiff::Timestamp,
    pub period: Period,
    pub host: String,
    pub policies: Vec<PolicyEvidence>,
    /// System drills of the period (several policies restored and checked together) that
    /// involve the policies of this evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<SystemDrillEvidence>,
    pub audit: AuditEvidence,
}

/// One system drill: the system's RTO and RPO, each member's drill, the system's checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemDrillEvidence {
    pub system: String,
    pub drill_id: String,
    pub started_at: jiff::Timestamp,
    pub status: String,
    pub point: jiff::Timestamp,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rto_breached: bool,
    pub rpo_seconds: f64,
    pub members: Vec<SystemMemberEvidence>,
    pub checks: Vec<CheckEvidence>,
    pub error: Option<String>,
    pub signoff: Option<SignoffEvidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemMemberEvidence {
    pub policy: String,
    pub drill_id: String,
    pub status: String,
    pub repository: String,
    pub snapshot_id: String,
    pub rto_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub from: jiff::Timestamp,
    pub to: jiff::Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvidence {
    pub policy: String,
    pub source_kind: String,
    pub repository: String,
    pub owners: Owners,
    pub objectives: Objectives,
    pub backups: Backups,
    pub rpo: RpoEvidence,
    pub drills: Vec<DrillEvidence>,
    /// Each secondary repository in the policy's `copies`, as of the period's end.
    #[serde(default)]
    pub copies: Vec<CopyEvidence>,
    /// The copy runs started in the period (to every secondary together).
    #[serde(default)]
    pub copy_runs: CopyRuns,
    /// Backups of the period that moved beyond the policy's anomaly band.
    #[serde(default)]
    pub anomalies: Vec<AnomalyEvidence>,
    /// Restore requests made in the period: who asked, who decided, what happened.
    pub restore_requests: Vec<RequestEvidence>,
    /// The policy's `[requirements]` against what was achieved in the period; absent when
    /// it declares none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<crate::compliance::PolicyCompliance>,
    /// The policy's repository's verification coverage, as of its last check that read data
    /// before the period's end; absent when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::status::VerificationStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvidence {
    pub request_id: String,
    pub created_at: jiff::Timestamp,
    pub requester: String,
    pub reason: String,
    pub snapshot_id: Option<String>,
    pub point_in_time: Option<jiff::Timestamp>,
    pub target: String,
    pub allow_overlap: bool,
    /// pending, approved, rejected, expired, running, succeeded or failed.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owners {
    pub backup: Option<String>,
    pub recovery: Option<String>,
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objectives {
    pub rpo_seconds: Option<u64>,
    pub rto_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backups {
    /// Backup runs started in the period, by outcome.
    pub runs: BTreeMap<String, u64>,
    pub bytes_added: u64,
    /// Snapshots whose data point lies in the period.
    pub snapshots: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpoEvidence {
    /// The worst exposure in the period; none when the policy's first backup came after it.
    pub worst: Option<Gap>,
    pub breaches: Vec<Breach>,
    /// The exposure over time, for the chart: `[time, seconds]` pairs.
    pub series: Vec<(jiff::Timestamp, u64)>,
}

/// A secondary repository of a policy: its newest copy and its exposure at the period's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyEvidence {
    pub repository: String,
    pub newest_data_point: Option<jiff::Timestamp>,
    pub rpo_exposure_seconds: Option<u64>,
    pub rpo_breached: bool,
}

/// A backup whose size or content moved beyond the policy's band since the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvidence {
    pub started_at: jiff::Timestamp,
    pub snapshot_id: Option<String>,
    pub anomalies: Vec<String>,
}

/// Copy runs started in the period, by status, and the bytes they wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyRuns {
    pub runs: BTreeMap<String, u64>,
    pub bytes_written: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillEvidence {
    pub drill_id: String,
    pub started_at: jiff::Timestamp,
    pub snapshot_id: String,
    /// The repository the drill restored from (the policy's own or a copy).
    #[serde(default)]
    pub repository: String,
    pub status: String,
    /// None when the drill's restore did not complete.
    pub rto_seconds: Option<f64>,
    pub rto_breakdown: crate::drill::report::RtoSeconds,
    pub rto_breached: bool,
    pub rpo_seconds: f64,
    pub checks: Vec<CheckEvidence>,
    pub error: Option<String>,
    pub signoff: Option<SignoffEvidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckEvidence {
    pub name: String,
    pub status: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignoffEvidence {
    pub principal: String,
    pub signed_at: jiff::Timestamp,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvidence {
    /// `intact`, `contradicted` (consistent in itself, but not with the repositories'
    /// anchors: the catalog was rewritten) or `broken`.
    pub status: String,
    pub events: Option<u64>,
    pub head: Option<String>,
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
    /// Anchors found in the repositories (they agree with the chain when intact).
    #[serde(default)]
    pub anchors: usize,
    /// Each anchor the catalog contradicts, named by repository and event.
    #[serde(default)]
    pub anchor_problems: Vec<String>,
    /// Repositories whose anchors could not be read (unreachable), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors_unread: Vec<String>,
}

/// Gathers the evidence for `policies` over `[from, to]` from the catalog.
pub async fn collect(
    config: &Config,
    catalog: &Catalog,
    policies: &[&Policy],
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Result<Evidence, EngineError> {
    // Nothing after now is known: a period ending in the future ends now.
    let to = to.min(jiff::Timestamp::now());
    if from >= to {
        return Err(EngineError::Refused(format!(
            "the period is empty: --from {from} is not before --to {to}"
        )));
    }
    let all_requests = catalog.requests(u32::MAX).await?;
    let mut out = Vec::new();
    for policy in policies {
        out.push(collect_policy(config, catalog, policy, &all_requests, from, to).await?);
    }
    let mut systems = Vec::new();
    for record in catalog.drills(None, u32::MAX).await? {
        if !record.policy.starts_with(crate::system::RECORD_PREFIX)
            || record.started_at < from
            || record.started_at > to
        {
            continue;
        }
        let Ok(report) =
            serde_json::from_value::<crate::system::SystemDrillReport>(record.report.clone())
        else {
            continue;
        };
        if !report
            .members
            .iter()
            .any(|m| policies.iter().any(|p| p.name == m.policy))
        {
            continue;
        }
        let signoff = signoff_evidence(catalog, &record.id).await?;
        systems.push(SystemDrillEvidence {
            system: report.system,
            drill_id: report.drill_id,
            started_at: report.started_at,
            status: report.status.as_str().into(),
            point: report.point,
            rto_seconds: report.rto_seconds,
            rto_objective_seconds: report.rto_objective_seconds,
            rto_breached: report.rto_breached,
            rpo_seconds: report.rpo_seconds,
            members: report
                .members
                .iter()
                .map(|m| SystemMemberEvidence {
                    policy: m.policy.clone(),
                    drill_id: m.drill.drill_id.clone(),
                    status: m.drill.status.as_str().into(),
                    repository: m.drill.repository.clone(),
                    snapshot_id: m.drill.snapshot_id.clone(),
                    rto_seconds: m.drill.rto_seconds,
                })
                .collect(),
            checks: report.checks.iter().map(check_evidence).collect(),
            error: report.error,
            signoff,
        });
    }
    systems.sort_by_key(|s| s.started_at);
    let audit = audit_evidence(config, catalog).await?;
    Ok(Evidence {
        schema: SCHEMA.into(),
        generated_at: jiff::Timestamp::now(),
        period: Period { from, to },
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        policies: out,
        systems,
        audit,
    })
}

/// One policy's evidence over `[from, to]`; `all_requests` are the catalog's restore
/// requests (read once for every policy).
pub async fn collect_policy(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    all_requests: &[backstop_catalog::RestoreRequest],
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Result<PolicyEvidence, EngineError> {
    let stats = crate::status::DrillStats::load(catalog, policy).await?;
    let mut backups = Backups::default();
    let mut copy_runs = CopyRuns::default();
    let mut anomalies = Vec::new();
    for run in catalog.runs(Some(&policy.name), u32::MAX).await? {
        if run.started_at < from || run.started_at > to {
            continue;
        }
        match run.kind.as_str() {
            "backup" => {
                if !run.warnings.is_empty() {
                    anomalies.push(AnomalyEvidence {
                        started_at: run.started_at,
                        snapshot_id: run.snapshot_id.clone(),
                        anomalies: run.warnings.clone(),
                    });
                }
                *backups
                    .runs
                    .entry(run.status.as_str().to_string())
                    .or_default() += 1;
                backups.bytes_added += run.bytes.unwrap_or(0);
            }
            "copy" => {
                *copy_runs
                    .runs
                    .entry(run.status.as_str().to_string())
                    .or_default() += 1;
                copy_runs.bytes_written += run.bytes.unwrap_or(0);
            }
            _ => {}
        }
    }
    backups.snapshots = catalog
        .snapshots(Some(&policy.name))
        .await?
        .iter()
        .filter(|s| s.repository == policy.repository)
        .filter(|s| s.data_point >= from && s.data_point <= to)
        .count() as u64;
    let copies = crate::status::copies_of(policy, &stats, to)
        .into_iter()
        .map(|c| CopyEvidence {
            repository: c.repository,
            newest_data_point: c.newest_data_point,
            rpo_exposure_seconds: c.rpo_exposure_seconds,
            rpo_breached: c.rpo_breached,
        })
        .collect();
    // One definition of exposure (RpoHistory): the period starts at the first backup.
    let report = stats.rpo.over(from, to, policy.objectives.rpo);
    let series = stats
        .rpo
        .series(from, to)
        .into_iter()
        .map(|(t, d)| (t, d.as_secs()))
        .collect();
    let mut drills = Vec::new();
    for record in catalog.drills(Some(&policy.name), u32::MAX).await? {
        if record.started_at < from || record.started_at > to {
            continue;
        }
        let Ok(report) = serde_json::from_value::<DrillReport>(record.report.clone()) else {
            continue;
        };
        let signoff = signoff_evidence(catalog, &record.id).await?;
        drills.push(DrillEvidence {
            drill_id: report.drill_id,
            started_at: report.started_at,
            snapshot_id: report.snapshot_id,
            repository: report.repository,
            status: report.status.as_str().into(),
            rto_seconds: report.rto_seconds,
            rto_breakdown: report.rto_breakdown,
            rto_breached: report.rto_breached,
            rpo_seconds: report.rpo_seconds,
            checks: report.checks.iter().map(check_evidence).collect(),
            error: report.error,
            signoff,
        });
    }
    drills.sort_by_key(|d| d.started_at);
    let mut restore_requests: Vec<RequestEvidence> = all_requests
        .iter()
        .filter(|r| r.policy == policy.name && r.created_at >= from && r.created_at <= to)
        .map(|r| RequestEvidence {
            request_id: r.id.clone(),
            created_at: r.created_at,
            requester: r.requester.clone(),
            reason: r.reason.clone(),
            snapshot_id: r.snapshot_id.clone(),
            point_in_time: r.point_in_time,
            target: r.target.clone(),
            allow_overlap: r.allow_overlap,
            status: r.status.as_str().to_string(),
            decided_by: r.decided_by.clone(),
            decided_at: r.decided_at,
            finished_at: r.finished_at,
            outcome: r.outcome.clone(),
        })
        .collect();
    restore_requests.sort_by_key(|r| r.created_at);
    Ok(PolicyEvidence {
        policy: policy.name.clone(),
        source_kind: policy.source.kind().into(),
        repository: policy.repository.clone(),
        owners: Owners {
            backup: policy.owners.backup.clone(),
            recovery: policy.owners.recovery.clone(),
            approvers: policy.owners.approvers.clone(),
        },
        objectives: Objectives {
            rpo_seconds: policy.objectives.rpo.map(|d: Duration| d.as_secs()),
            rto_seconds: policy.objectives.rto.map(|d: Duration| d.as_secs()),
        },
        backups,
        rpo: RpoEvidence {
            worst: report.as_ref().map(|r| r.worst.clone()),
            breaches: report.map(|r| r.breaches).unwrap_or_default(),
            series,
        },
        drills,
        copies,
        copy_runs,
        anomalies: {
            anomalies.sort_by_key(|a| a.started_at);
            anomalies
        },
        restore_requests,
        compliance: crate::compliance::assess(config, catalog, policy, from, to).await?,
        verification: catalog
            .coverage(&policy.repository)
            .await?
            .filter(|c| c.checked_at <= to)
            .map(|c| crate::status::VerificationStatus::of(&c, c.checked_at)),
    })
}
/// The audit chain's state, judged as `audit verify` judges it: in itself, then against the
/// anchors off site, so a catalog rewritten wholesale does not read as "intact".
pub async fn audit_evidence(
    config: &Config,
    catalog: &Catalog,
) -> Result<AuditEvidence, EngineError> {
    Ok(match catalog.verify_audit().await? {
        ChainStatus::Intact { events, head } => {
            let checked = crate::anchors::check(config, catalog).await?;
            let (anchors, anchor_problems) = (checked.seen, checked.problems);
            AuditEvidence {
                anchors_unread: checked.unread,
                status: if anchor_problems.is_empty() {
                    "intact"
                } else {
                    "contradicted"
                }
                .into(),
                events: Some(events),
                head: Some(head),
                broken_at: None,
                reason: None,
                anchors,
                anchor_problems,
            }
        }
        ChainStatus::Broken { seq, reason, .. } => AuditEvidence {
            status: "broken".into(),
            events: None,
            head: None,
            broken_at: Some(seq),
            reason: Some(reason),
            anchors: 0,
            anchor_problems: Vec::new(),
            anchors_unread: Vec::new(),
        },
    })
}

/// A drill's sign-off, if it has one, as the evidence shows it.
async fn signoff_evidence(
    catalog: &Catalog,
    drill_id: &str,
) -> Result<Option<SignoffEvidence>, EngineError> {
    Ok(catalog.signoff(drill_id).await?.map(|s| SignoffEvidence {
        principal: s.principal,
        signed_at: s.signed_at,
        comment: s.comment,
    }))
}

fn check_evidence(c: &crate::drill::report::CheckResult) -> CheckEvidence {
    CheckEvidence {
        name: c.name.clone(),
        status: serde_json::to_value(c.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        detail: c.detail.clone(),
    }
}

/// A date (`2026-11-01`, midnight UTC) or a timestamp (`2026-11-01T12:00:00Z`). With
/// `end_of_day`, a bare date means the end of that day (so `--to 2026-11-30` includes it).
pub fn parse_when(text: &str, end_of_day: bool) -> Result<jiff::Timestamp, EngineError> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        EngineError::Refused(format!(
            "`{text}` is not a date (2026-11-01) or a UTC timestamp (2026-11-01T12:00:00Z)"
        ))
    })?;
    let date = if end_of_day {
        date.tomorrow()
            .map_err(|e| EngineError::Refused(e.to_string()))?
    } else {
        date
    };
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| EngineError::Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_bound_the_period() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            parse_when("2026-11-01", false).unwrap(),
            t("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            parse_when("2026-11-30", true).unwrap(),
            t("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_when("2026-11-01T12:30:00Z", true).unwrap(),
            t("2026-11-01T12:30:00Z")
        );
        assert!(parse_when("last tuesday", false).is_err());
    }
}
