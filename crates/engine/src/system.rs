//! Full-system drills: several policies (an application's files, its configuration and its
//! database) restored together and checked as one, for the "quarterly full restore".
//!
//! A system is a file under `systems/`, beside the policies directory:
//!
//! ```toml
//! name = "shop"
//! members = ["app-files", "app-config", "orders-pg"]
//! [schedule]
//! drill = "0 0 4 1 */3 *"
//! [objectives]
//! rto = "1h"
//! [drill]
//! signoff_within = "14d"
//! [[drill.checks]]
//! command = ["./checks/shop-smoke.sh"]   # sees every member's target
//! [owners]
//! recovery = "cto@example.com"
//! ```
//!
//! A system drill picks a common point in time (the oldest of the members' newest data
//! points), takes each member's snapshot nearest it, and drills every member at
//! once (at most `[daemon] max_jobs` together), each a drill of its own with its own checks
//! and RTO, their scratch targets kept until the system's checks have run across all of
//! them (`BACKSTOP_<MEMBER>_SCRATCH_DIR`, `_URL`, `_PATH`, `_NAME`). The system's RTO runs
//! from the start until the last check; its RPO is its oldest member's data point. It is
//! recorded as a drill named `system:<name>`, signed off by the system's recovery owner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backstop_catalog::{Catalog, RunEnd, RunKind, RunStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::drill::report::{CheckResult, CheckStatus, DrillReport, DrillStatus};
use crate::drill::{self, DrillOptions, Pick};
use crate::error::{EngineError, Location, Problem};
use crate::policy::{CheckSpec, NamedCheck, Owners, Policy};

/// The drill records and runs of a system are named so.
pub const RECORD_PREFIX: &str = "system:";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    name: String,
    members: Vec<String>,
    #[serde(default)]
    schedule: ScheduleFile,
    #[serde(default)]
    objectives: ObjectivesFile,
    #[serde(default)]
    drill: DrillFile,
    #[serde(default)]
    owners: Owners,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    drill: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectivesFile {
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    rto: Option<Duration>,
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    rpo: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillFile {
    #[serde(default)]
    checks: Vec<CheckSpec>,
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    signoff_within: Option<Duration>,
}

/// A system, validated against the policies it groups.
#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    pub file: PathBuf,
    pub members: Vec<String>,
    /// `[schedule] drill`: a cron expression, like a policy's.
    pub drill_schedule: Option<String>,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    /// The system's checks: commands that see every member's target.
    pub checks: Vec<NamedCheck>,
    pub signoff_within: Option<Duration>,
    pub owners: Owners,
}

impl System {
    /// The name its drills and runs are recorded under.
    pub fn record_name(&self) -> String {
        format!("{RECORD_PREFIX}{}", self.name)
    }
}

/// Where systems live: `systems/` beside the policies directory.
pub fn systems_dir(config: &Config) -> PathBuf {
    config
        .policies_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.base_dir.clone())
        .join("systems")
}

/// Every system under `dir` (none when it does not exist), checked against `policies`:
/// every problem of every file, each located.
pub fn load_dir(
    dir: &Path,
    policies: &BTreeMap<String, Policy>,
) -> Result<BTreeMap<String, System>, EngineError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(EngineError::Read {
                path: dir.display().to_string(),
                source: e,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut systems = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| EngineError::Read {
            path: file.display().to_string(),
            source: e,
        })?;
        match parse(&file, &text, policies) {
            Ok(system) => {
                if policies.contains_key(&system.name) || systems.contains_key(&system.name) {
                    problems.push(Problem {
                        location: Location::from_offset(&file.display().to_string(), &text, 0),
                        message: format!(
                            "system name `{}` is already a policy's or another system's",
                            system.name
                        ),
                    });
                } else {
                    systems.insert(system.name.clone(), system);
                }
            }
            Err(mut found) => problems.append(&mut found),
        }
    }
    if problems.is_empty() {
        Ok(systems)
    } else {
        Err(EngineError::Invalid(problems))
    }
}

fn parse(
    file: &Path,
    text: &str,
    policies: &BTreeMap<String, Policy>,
) -> Result<System, Vec<Problem>> {
    let file_name = file.display().to_string();
    let raw: SystemFile =
        toml::from_str(text).map_err(|e| vec![crate::error::toml_problem(&file_name, text, &e)])?;
    let at = |key: &str| {
        let offset = text.find(key).unwrap_or(0);
        Location::from_offset(&file_name, text, offset)
    };
    let mut problems = Vec::new();
    if raw.name.trim().is_empty() {
        problems.push(Problem {
            location: at("name"),
            message: "a system needs a name".into(),
        });
    }
    if raw.members.is_empty() {
        problems.push(Problem {
            location: at("members"),
            message: "a system needs members (the policies drilled together)".into(),
        });
    }
    for (i, member) in raw.members.iter().enumerate() {
        if !policies.contains_key(member) {
            problems.push(Problem {
                location: at("members"),
                message: format!("member `{member}` is not a policy"),
            });
        } else if raw.members[..i].contains(member) {
            problems.push(Problem {
                location: at("members"),
                message: format!("member `{member}` is named twice"),
            });
        }
    }
    if let Some(expr) = &raw.schedule.drill {
        if let Err(e) = crate::schedule::CronSchedule::parse(expr) {
            problems.push(Problem {
                location: at("drill ="),
                message: e,
            });
        }
    }
    let mut checks = Vec::new();
    for spec in &raw.drill.checks {
        if spec.command.is_none() {
            problems.push(Problem {
                location: at("[[drill.checks]]"),
                message: "a system's checks are commands (each sees every member's target); a member's own sql and file checks go in its policy".into(),
            });
            continue;
        }
        match spec.validated() {
            Some(check) => checks.push(check),
            None => problems.push(Problem {
                location: at("[[drill.checks]]"),
                message: "a check needs exactly one of sql, file or command".into(),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(System {
        name: raw.name,
        file: file.to_path_buf(),
        members: raw.members,
        drill_schedule: raw.schedule.drill,
        rto: raw.objectives.rto,
        rpo: raw.objectives.rpo,
        checks,
        signoff_within: raw.drill.signoff_within,
        owners: raw.owners,
    })
}

/// One member of a system drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub policy: String,
    /// The member's own drill: its snapshot, target, checks and RTO.
    pub drill: DrillReport,
}

/// What a system drill found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemDrillReport {
    pub drill_id: String,
    pub system: String,
    pub status: DrillStatus,
    pub error: Option<String>,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    /// The common point in time: each member's snapshot is the one nearest it.
    pub point: jiff::Timestamp,
    /// From the start until every member was restored and every check had run; none when a
    /// member's restore did not complete.
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rto_breached: bool,
    /// The system's data is as old as its oldest member's.
    pub rpo_seconds: f64,
    pub rpo_objective_seconds: Option<f64>,
    pub rpo_breached: bool,
    pub members: Vec<MemberReport>,
    /// The system's own checks, across every member's target.
    pub checks: Vec<CheckResult>,
}

/// `BACKSTOP_SCRATCH_DIR` of member `orders-pg` → `BACKSTOP_ORDERS_PG_SCRATCH_DIR`.
pub fn member_variable(member: &str, variable: &str) -> Option<String> {
    let rest = variable.strip_prefix("BACKSTOP_SCRATCH_")?;
    let member: String = member
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    Some(format!("BACKSTOP_{member}_SCRATCH_{rest}"))
}

/// Each member's snapshot for a common point: the oldest of the members' newest data points
/// in their own repositories, and each member's snapshot nearest it.
async fn common_point(
    catalog: &Catalog,
    members: &[&Policy],
) -> Result<(jiff::Timestamp, Vec<String>), EngineError> {
    let mut newest = Vec::new();
    let mut all = Vec::new();
    for policy in members {
        let snapshots: Vec<_> = catalog
            .snapshots(Some(&policy.name))
            .await?
            .into_iter()
            .filter(|s| s.repository == policy.repository)
            .collect();
        let Some(last) = snapshots.iter().map(|s| s.data_point).max() else {
            return Err(EngineError::Refused(format!(
                "member `{}` has no snapshot in repository `{}` to drill",
                policy.name, policy.repository
            )));
        };
        newest.push(last);
        all.push(snapshots);
    }
    // The newest time every member has reached; each member's snapshot nearest it (on a
    // tie, the earlier), so that the restored set is as close to one moment as there is.
    let point = newest.into_iter().min().expect("a system has members");
    let distance = |t: jiff::Timestamp| t.duration_since(point).abs();
    let ids = all
        .iter()
        .filter_map(|snapshots| {
            snapshots
                .iter()
                .min_by_key(|s| (distance(s.data_point), s.data_point))
                .map(|s| s.id.clone())
        })
        .collect();
    Ok((point, ids))
}

/// Runs and records a drill of `system`: each member's drill (recorded as its own), then the
/// system's checks, then the system's record (`system:<name>`).
pub async fn drill_recorded(
    config: &Config,
    catalog: &Catalog,
    system: &System,
    policies: &BTreeMap<String, Policy>,
    cancel: &CancellationToken,
) -> Result<SystemDrillReport, EngineError> {
    let members: Vec<&Policy> = system
        .members
        .iter()
        .map(|m| {
            policies
                .get(m)
                .ok_or_else(|| EngineError::UnknownPolicy(m.clone()))
        })
        .collect::<Result<_, _>>()?;
    let (point, ids) = common_point(catalog, &members).await?;
    let record_name = system.record_name();
    let run_id = catalog.start_run(RunKind::Drill, &record_name).await?;
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    // Started here, so that a cancelled system drill can close the ones it leaves open.
    let mut member_runs = Vec::new();
    for policy in &members {
        member_runs.push(catalog.start_run(RunKind::Drill, &policy.name).await?);
    }
    let work = async {
        // Every member at once, within the daemon's limit of jobs.
        let parallel = config.daemon.max_jobs.max(1);
        // Owned inputs: the stream's futures must not borrow from its items.
        let inputs: Vec<(Policy, String, String)> = members
            .iter()
            .zip(&ids)
            .zip(&member_runs)
            .map(|((policy, id), run)| ((*policy).clone(), id.clone(), run.clone()))
            .collect();
        let held: Vec<Result<drill::Held, EngineError>> = futures::stream::iter(inputs)
            .map(|(policy, id, member_run)| async move {
                let options = DrillOptions {
                    pick: Some(Pick::Id(id)),
                    ..DrillOptions::default()
                };
                drill::run_held(config, &policy, &member_run, &options).await
            })
            .buffered(parallel)
            .collect()
            .await;
        let restored = held
            .iter()
            .all(|h| h.as_ref().is_ok_and(|h| h.scratch.is_some()));
        let mut checks = Vec::new();
        if restored {
            let mut env = vec![
                ("BACKSTOP_SYSTEM".to_string(), system.name.clone()),
                ("BACKSTOP_DRILL_ID".to_string(), run_id.clone()),
            ];
            let mut secrets = Vec::new();
            for (policy, h) in members.iter().zip(&held) {
                let Ok(h) = h else { continue };
                let Some(scratch) = &h.scratch else { continue };
                for (variable, value) in scratch.env() {
                    if let Some(named) = member_variable(&policy.name, &variable) {
                        env.push((named, value));
                    }
                }
                secrets.extend(scratch.url().and_then(|u| u.password()));
            }
            for check in &system.checks {
                checks.push(
                    crate::drill::checks::command_check_with(
                        check,
                        &config.base_dir,
                        &env,
                        &secrets,
                    )
                    .await,
                );
            }
        } else {
            for check in &system.checks {
                checks.push(CheckResult::new(
                    &check.name,
                    "command",
                    CheckStatus::Skipped,
                    "a member's restore did not complete".to_string(),
                ));
            }
        }
        let rto = restored.then(|| clock.elapsed());
        // The members' targets go only now: the system's checks needed them all.
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for ((policy, h), member_run) in members.iter().zip(held).zip(&member_runs) {
            let result = match h {
                Ok(h) => Ok(h.finish().await),
                Err(e) => Err(e),
            };
            match drill::record_result(catalog, member_run, result).await {
                Ok(report) => {
                    if report.status == DrillStatus::Failed {
                        failures.push(format!(
                            "member `{}` failed: {}",
                            policy.name,
                            report.error.clone().unwrap_or_default()
                        ));
                    }
                    reports.push(MemberReport {
                        policy: policy.name.clone(),
                        drill: report,
                    });
                }
                Err(e) => failures.push(format!("member `{}`: {e}", policy.name)),
            }
        }
        for check in checks.iter().filter(|c| c.status == CheckStatus::Failed) {
            failures.push(format!("check `{}` failed: {}", check.name, check.detail));
        }
        let rto_breached =
            matches!((rto, system.rto), (Some(took), Some(objective)) if took > objective);
        if let (true, Some(took), Some(objective)) = (rto_breached, rto, system.rto) {
            failures.push(format!(
                "RTO objective breached: the system took {}, the objective is {}",
                drill::short_duration(took),
                drill::short_duration(objective)
            ));
        }
        let oldest = reports
            .iter()
            .map(|m| m.drill.data_point)
            .min()
            .unwrap_or(point);
        let rpo = crate::drill::objectives::rpo_achieved(started_at, oldest);
        Ok::<_, EngineError>(SystemDrillReport {
            drill_id: run_id.clone(),
            system: system.name.clone(),
            status: if failures.is_empty() {
                DrillStatus::Passed
            } else {
                DrillStatus::Failed
            },
            error: (!failures.is_empty()).then(|| failures.join("; ")),
            started_at,
            finished_at: jiff::Timestamp::now(),
            point,
            rto_seconds: rto.map(|d| d.as_secs_f64()),
            rto_objective_seconds: system.rto.map(|d| d.as_secs_f64()),
            rto_breached,
            rpo_seconds: rpo.as_secs_f64(),
            rpo_objective_seconds: system.rpo.map(|d| d.as_secs_f64()),
            rpo_breached: system.rpo.is_some_and(|objective| rpo > objective),
            members: reports,
            checks,
        })
    };
    let result = tokio::select! {
        result = work => result,
        _ = cancel.cancelled() => {
            let end = RunEnd { error: Some("cancelled; the scratch targets were removed".into()), ..RunEnd::default() };
            // Each member's run still open is cancelled with it (one already recorded
            // keeps its outcome), rather than left `running` until a reconciliation.
            for (policy, member_run) in members.iter().zip(&member_runs) {
                let open = catalog
                    .runs(Some(&policy.name), 50)
                    .await?
                    .iter()
                    .any(|r| &r.id == member_run && r.status == RunStatus::Running);
                if open {
                    let member_end = RunEnd {
                        error: Some(format!("cancelled with system drill {run_id}; the scratch target was removed")),
                        ..RunEnd::default()
                    };
                    catalog.finish_run(member_run, RunStatus::Cancelled, &member_end).await?;
                }
            }
            catalog.finish_run(&run_id, RunStatus::Cancelled, &end).await?;
            return Err(EngineError::Cancelled);
        }
    };
    match result {
        Ok(report) => {
            drill::record_finished(catalog, &run_id, &record(&report), None).await?;
            Ok(report)
        }
        Err(e) => Err(drill::record_not_made(catalog, &run_id, e).await),
    }
}

/// The catalog's record of a system drill: under `system:<name>`, its snapshots those of
/// its members, its data point the oldest member's.
fn record(report: &SystemDrillReport) -> backstop_catalog::DrillRecord {
    let ms = |s: f64| (s * 1000.0).round() as u64;
    backstop_catalog::DrillRecord {
        id: report.drill_id.clone(),
        policy: format!("{RECORD_PREFIX}{}", report.system),
        repository: report
            .members
            .iter()
            .map(|m| m.drill.repository.clone())
            .collect::<Vec<_>>()
            .join(","),
        snapshot_id: report
            .members
            .iter()
            .map(|m| m.drill.snapshot_id.clone())
            .collect::<Vec<_>>()
            .join(","),
        data_point: report
            .members
            .iter()
            .map(|m| m.drill.data_point)
            .min()
            .unwrap_or(report.point),
        target: "system".into(),
        status: report.status.as_str().into(),
        started_at: report.started_at,
        finished_at: report.finished_at,
        rto_ms: report.rto_seconds.map(ms),
        rto_objective_ms: report.rto_objective_seconds.map(ms),
        rpo_ms: Some(ms(report.rpo_seconds)),
        rpo_objective_ms: report.rpo_objective_seconds.map(ms),
        error: report.error.clone(),
        report: serde_json::to_value(report).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn member_variables_name_the_member() {
        assert_eq!(
            super::member_variable("orders-pg", "BACKSTOP_SCRATCH_URL").as_deref(),
            Some("BACKSTOP_ORDERS_PG_SCRATCH_URL")
        );
        assert_eq!(super::member_variable("x", "PGHOST"), None);
    }
}
