//! Restore drills: a snapshot restored from the repository exactly as a recovery would do it
//! (read the off-site copy, verify, decrypt, decompress, load) into a throwaway scratch
//! target, checked, measured against the policy's objectives, recorded, and removed.
//!
//! A drill never aborts half-way without a verdict: once a snapshot is chosen, every failure
//! (an unreachable scratch server, a corrupt chunk, a load error, a failed check, a recovery
//! slower than the RTO objective) becomes a failed drill that names its cause, and the
//! scratch target is removed on every path, including cancellation.

pub mod checks;
pub mod expect;
pub mod objectives;
pub mod report;
pub mod signoff;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop_catalog::{Catalog, DrillRecord, RunEnd, RunKind, RunStatus};
use backstop_repo::{Id, Repository, SnapshotReader};
use backstop_sources::scratch::{self, Scratch, ScratchOptions, ScratchSpec};
use backstop_sources::SourceError;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;
use crate::repos;
use objectives::{judge, rpo_achieved, RtoBreakdown, Verdict};
use report::{CheckResult, CheckStatus, DrillReport, DrillStatus, RtoSeconds};

/// Which snapshot to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Pick {
    /// The newest committed snapshot of the policy.
    #[default]
    Newest,
    /// A given snapshot (an id or unique prefix); it must belong to the policy.
    Id(String),
    /// One chosen at random among the policy's snapshots (all of which retention keeps).
    Random,
}

#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    pub pick: Option<Pick>,
    /// Keep the scratch target after the drill (also `keep = true` in `[drill]`).
    pub keep: bool,
    /// The configured repository to restore from: the policy's own or one of its copies.
    /// Unset: `[drill] from`, resolved by [`run_recorded`] (the policy's own repository when
    /// that is unset too).
    pub repository: Option<String>,
    /// Where to restore instead of the policy's scratch target (`backstop dr --target`).
    pub scratch: Option<ScratchSpec>,
}

/// The repository a drill of `policy` reads: `wanted` (or `[drill] from`), where `rotate`
/// takes the primary and each copy in turn, after the repository the last drill read.
pub async fn drill_repository(
    catalog: &Catalog,
    policy: &Policy,
    wanted: Option<&str>,
) -> Result<String, EngineError> {
    let from = wanted.or(policy.drill.as_ref().and_then(|d| d.from.as_deref()));
    let in_turn: Vec<&String> = std::iter::once(&policy.repository)
        .chain(policy.copies.iter())
        .collect();
    match from {
        None => Ok(policy.repository.clone()),
        Some("rotate") => {
            let last = catalog.drills(Some(&policy.name), 1).await?;
            let next = last
                .first()
                .and_then(|d| in_turn.iter().position(|r| **r == d.repository))
                .map_or(0, |i| (i + 1) % in_turn.len());
            Ok(in_turn[next].clone())
        }
        Some(name) if in_turn.iter().any(|r| *r == name) => Ok(name.to_string()),
        Some(name) => Err(EngineError::Refused(format!(
            "policy `{}` does not keep snapshots in repository `{name}`: drill from its repository `{}` or one of its copies",
            policy.name, policy.repository
        ))),
    }
}

/// Where a drill of `policy` restores to: its `[drill] target`, or for files, config and
/// sqlite sources a temporary directory or file when none is given.
pub fn scratch_spec(config: &Config, policy: &Policy) -> Result<ScratchSpec, SourceError> {
    match policy.drill.as_ref().and_then(|d| d.target.as_ref()) {
        Some(target) => target.resolve(&config.base_dir),
        None => policy
            .source
            .source_kind()
            .default_scratch()
            .ok_or_else(|| {
                let kind = policy.source.kind();
                SourceError::Invalid(format!(
                    "policy `{}` has no [drill] target: a {kind} drill needs a scratch server \
                 (target = {{ kind = \"{kind}\", url_env = \"…\" }})",
                    policy.name
                ))
            }),
    }
}

/// A snapshot chosen for a drill.
struct Chosen {
    repo: Arc<Repository>,
    id: Id,
    snapshot: backstop_repo::Snapshot,
}

async fn choose(
    config: &Config,
    policy: &Policy,
    repository: &str,
    pick: &Pick,
) -> Result<Chosen, EngineError> {
    let settings = config.repository(repository)?;
    let no_snapshot = |why: &str| {
        EngineError::Refused(format!(
            "policy `{}` has no snapshot in repository `{repository}` to drill{why}; run a backup first",
            policy.name
        ))
    };
    // Before the first backup there is no repository either; that is the same "nothing to
    // drill yet", and says so rather than naming a missing object.
    let repo = match repos::open(settings, &config.base_dir).await {
        Err(EngineError::Repo(backstop_repo::RepoError::NotARepository { .. }))
            if !matches!(pick, Pick::Id(_)) =>
        {
            return Err(no_snapshot(" (the repository has not been created yet)"));
        }
        opened => opened?,
    };
    let (id, snapshot) = match pick {
        Pick::Id(prefix) => {
            let id = repo.find_snapshot(prefix).await?;
            let snapshot = crate::jobs::restore::load_for_policy(&repo, &id, &policy.name).await?;
            (id, snapshot)
        }
        Pick::Newest | Pick::Random => {
            let listing = repo.list_snapshots().await?;
            repos::warn_unreadable(
                repository,
                &listing.unreadable,
                "choosing the snapshot to drill",
            );
            let mut mine: Vec<_> = listing
                .snapshots
                .into_iter()
                .filter(|(_, s)| s.policy == policy.name)
                .collect();
            if mine.is_empty() {
                return Err(no_snapshot(""));
            }
            mine.sort_by_key(|(id, s)| (s.time, *id));
            let index = match pick {
                Pick::Random => rand::random::<usize>() % mine.len(),
                _ => mine.len() - 1,
            };
            mine.swap_remove(index)
        }
    };
    Ok(Chosen { repo, id, snapshot })
}

/// Runs one drill of `policy`. Returns the report (passed or failed) once a snapshot was
/// chosen; an error only when none could be (no repository, no snapshot, a bad id).
pub async fn run(
    config: &Config,
    policy: &Policy,
    drill_id: &str,
    options: &DrillOptions,
) -> Result<DrillReport, EngineError> {
    Ok(run_held(config, policy, drill_id, options)
        .await?
        .finish()
        .await)
}

/// A drill restored, checked and timed, its scratch target still in place: a system drill
/// runs its own checks across every member's target before [`Held::finish`] removes them.
pub struct Held {
    pub report: DrillReport,
    /// The scratch target, when the restore completed.
    pub scratch: Option<Scratch>,
    failures: Vec<String>,
    keep: bool,
}

impl Held {
    /// Adds a failure found after the drill's own checks (a system check).
    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// Removes the scratch target (cleanup is not part of the recovery time) and settles
    /// the drill's status.
    pub async fn finish(mut self) -> DrillReport {
        let mut report = self.report;
        if let Some(scratch) = self.scratch.take() {
            report.kept = self.keep;
            if let Err(e) = scratch.discard().await {
                tracing::error!(drill = report.drill_id, error = %e, "removing the scratch target");
                self.failures
                    .push(format!("removing the scratch target failed: {e}"));
            }
        }
        report.finished_at = jiff::Timestamp::now();
        if self.failures.is_empty() {
            report.status = DrillStatus::Passed;
        } else {
            report.error = Some(self.failures.join("; "));
        }
        report
    }
}

/// [`run`] up to the cleanup: the report with every check and the recovery times, and the
/// scratch target.
pub async fn run_held(
    config: &Config,
    policy: &Policy,
    drill_id: &str,
    options: &DrillOptions,
) -> Result<Held, EngineError> {
    let plan = policy.drill.clone().unwrap_or_default();
    let pick = options.pick.clone().unwrap_or(match plan.snapshot {
        Some(crate::policy::SnapshotPick::Random) => Pick::Random,
        Some(crate::policy::SnapshotPick::Newest) | None => Pick::Newest,
    });
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let repository = options
        .repository
        .clone()
        .unwrap_or_else(|| policy.repository.clone());
    let chosen = choose(config, policy, &repository, &pick).await?;
    let opened = clock.elapsed();
    let repo = chosen.repo.clone();
    let phases_before = repo.phase_times();

    let mut report = DrillReport {
        drill_id: drill_id.to_string(),
        policy: policy.name.clone(),
        status: DrillStatus::Failed,
        error: None,
        snapshot_id: chosen.id.to_hex(),
        repository,
        source_kind: chosen.snapshot.source_kind.clone(),
        target: String::new(),
        scratch: None,
        kept: false,
        started_at,
        finished_at: started_at,
        data_point: chosen.snapshot.data_point,
        rto_seconds: None,
        rto_breakdown: RtoSeconds::default(),
        rto_objective_seconds: policy.objectives.rto.map(|d| d.as_secs_f64()),
        rto_breached: false,
        rpo_seconds: rpo_achieved(started_at, chosen.snapshot.data_point).as_secs_f64(),
        rpo_objective_seconds: policy.objectives.rpo.map(|d| d.as_secs_f64()),
        rpo_breached: false,
        checks: Vec::new(),
        differences: Vec::new(),
        paths: plan.paths.clone(),
        tables: plan.tables.clone(),
    };
    let mut failures: Vec<String> = Vec::new();

    let scratch_name = scratch::new_name(started_at);
    report.scratch = Some(scratch_name.clone());
    let restore_started = Instant::now();
    let restored = async {
        let spec = match &options.scratch {
            Some(spec) => spec.clone(),
            None => scratch_spec(config, policy)?,
        };
        report.target = target_label(&spec);
        let mut reader = SnapshotReader::open(Arc::clone(&repo), chosen.id)
            .await
            .map_err(SourceError::from)?;
        if !plan.paths.is_empty() {
            // A partial drill: the paths asked for, restored and checked on their own.
            let selection = crate::jobs::restore::PathSelection::new(&plan.paths, &[])
                .map_err(|e| SourceError::Invalid(e.to_string()))?;
            reader = reader.select(|path| selection.keeps(path)).await?;
            if reader.entries().await?.is_empty() {
                return Err(SourceError::Invalid(format!(
                    "[drill] paths {:?} match nothing in snapshot {}",
                    plan.paths,
                    chosen.id.short()
                )));
            }
        }
        let options = ScratchOptions {
            keep: options.keep || plan.keep,
            name: Some(scratch_name.clone()),
            tables: plan.tables.clone(),
            source: Some((policy.source.clone(), config.base_dir.clone())),
            ..ScratchOptions::default()
        };
        let scratch = scratch::restore(&reader, &spec, &config.tools, &options).await?;
        Ok::<_, SourceError>((reader, scratch))
    }
    .await;
    let restore_wall = restore_started.elapsed();
    let phases = repo.phase_times();
    let phases = backstop_repo::timing::PhaseTimes {
        fetch: phases.fetch.saturating_sub(phases_before.fetch),
        decode: phases.decode.saturating_sub(phases_before.decode),
    };

    let checks_started = Instant::now();
    let mut scratch_left = None;
    match restored {
        Err(e) => {
            let corrupt = is_integrity_failure(&e);
            report.checks.push(CheckResult::new(
                "integrity",
                "integrity",
                if corrupt {
                    CheckStatus::Failed
                } else {
                    CheckStatus::Skipped
                },
                if corrupt {
                    e.to_string()
                } else {
                    "the restore did not complete".into()
                },
            ));
            if !corrupt {
                report.checks.push(CheckResult::new(
                    "restore",
                    "restore",
                    CheckStatus::Failed,
                    e.to_string(),
                ));
            }
            failures.push(format!("restore failed: {e}"));
        }
        Ok((reader, scratch)) => {
            // A file tree's counts come from the fidelity pass, which streams the tree
            // beside the restored files; a database snapshot's few entries are read whole.
            let (fidelity, differences, tree_counts) =
                checks::fidelity(&reader, &scratch, &plan.tables).await;
            let counts = match tree_counts {
                Some(counts) => Ok(counts),
                None => reader.entries().await.map(|entries| checks::TreeCounts {
                    files: entries
                        .iter()
                        .filter(|e| e.kind == backstop_repo::EntryKind::File)
                        .count() as u64,
                    chunks: entries.iter().map(|e| e.chunks.len() as u64).sum(),
                }),
            };
            let integrity = match counts {
                Ok(checks::TreeCounts { files, chunks }) => CheckResult::new(
                    "integrity",
                    "integrity",
                    CheckStatus::Passed,
                    format!("{chunks} chunk(s) verified against their ids and {files} file(s) against their SHA-256"),
                ),
                Err(e) => CheckResult::new(
                    "integrity",
                    "integrity",
                    CheckStatus::Failed,
                    format!("reading the snapshot's tree again: {e}"),
                ),
            };
            report.checks.push(integrity);
            report.checks.push(CheckResult::new(
                "restore",
                "restore",
                CheckStatus::Passed,
                format!("restored into {}", scratch.name()),
            ));
            report.checks.push(fidelity);
            report.differences = differences;
            if let Some(native) = checks::native(&scratch).await {
                report.checks.push(native);
            }
            let mut env = scratch.env();
            env.push(("BACKSTOP_POLICY".into(), policy.name.clone()));
            env.push(("BACKSTOP_SNAPSHOT".into(), chosen.id.to_hex()));
            env.push(("BACKSTOP_DRILL_ID".into(), drill_id.to_string()));
            let ctx = checks::CheckContext {
                scratch: &scratch,
                base_dir: &config.base_dir,
                env,
            };
            for check in &plan.validated {
                report.checks.push(checks::user_check(check, &ctx).await);
            }
            scratch_left = Some(scratch);
        }
    }
    let checks_time = checks_started.elapsed();
    for check in report
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
    {
        if check.kind != "integrity" && check.kind != "restore" {
            failures.push(format!("check `{}` failed: {}", check.name, check.detail));
        }
    }

    let breakdown = RtoBreakdown::from_measured(opened, restore_wall, phases, checks_time);
    report.rto_breakdown = RtoSeconds {
        fetch_seconds: breakdown.fetch.as_secs_f64(),
        decode_seconds: breakdown.decode.as_secs_f64(),
        load_seconds: breakdown.load.as_secs_f64(),
        checks_seconds: breakdown.checks.as_secs_f64(),
    };
    // Only a completed restore has a recovery time to hold against the objective.
    if scratch_left.is_some() {
        report.rto_seconds = Some(breakdown.total().as_secs_f64());
        if judge(breakdown.total(), policy.objectives.rto) == Verdict::Breached {
            report.rto_breached = true;
            failures.push(format!(
                "RTO objective breached: recovery took {}, the objective is {}",
                short_duration(breakdown.total()),
                short_duration(policy.objectives.rto.unwrap_or_default())
            ));
        }
    }
    report.rpo_breached = judge(
        Duration::from_secs_f64(report.rpo_seconds),
        policy.objectives.rpo,
    ) == Verdict::Breached;

    Ok(Held {
        report,
        scratch: scratch_left,
        failures,
        keep: options.keep || plan.keep,
    })
}

/// A corrupt or missing object, or a file whose content does not match its digest (not a
/// target that could not be written).
fn is_integrity_failure(e: &SourceError) -> bool {
    match e {
        SourceError::Repo(r) => r.is_integrity_failure(),
        _ => false,
    }
}

fn target_label(spec: &ScratchSpec) -> String {
    match spec {
        ScratchSpec::Postgres(url) | ScratchSpec::Mysql(url) => url.to_string(),
        ScratchSpec::Sqlite { dir } => format!("sqlite file in {}", dir_label(dir)),
        ScratchSpec::Directory { dir } => format!("directory in {}", dir_label(dir)),
    }
}

fn dir_label(dir: &Option<PathBuf>) -> String {
    dir.as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "the temporary directory".into())
}

pub fn short_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// Runs a drill and records it: a run of kind `drill` and, once a snapshot was chosen, the
/// drill with its report. Cancelling removes the scratch target and records the run as
/// cancelled (a cancelled drill proves nothing and is not a drill record).
pub async fn run_recorded(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    options: &DrillOptions,
    cancel: &CancellationToken,
) -> Result<DrillReport, EngineError> {
    let run_id = catalog.start_run(RunKind::Drill, &policy.name).await?;
    let options = &DrillOptions {
        repository: Some(drill_repository(catalog, policy, options.repository.as_deref()).await?),
        ..options.clone()
    };
    let result = tokio::select! {
        result = run(config, policy, &run_id, options) => result,
        _ = cancel.cancelled() => {
            let end = RunEnd { error: Some("cancelled; the scratch target was removed".into()), ..RunEnd::default() };
            catalog.finish_run(&run_id, RunStatus::Cancelled, &end).await?;
            return Err(EngineError::Cancelled);
        }
    };
    record_result(catalog, &run_id, result).await
}

/// Records a drill's outcome under its run `run_id`: the drill with its report, and the run
/// succeeded or failed; an error (no snapshot could be chosen) fails the run.
pub async fn record_result(
    catalog: &Catalog,
    run_id: &str,
    result: Result<DrillReport, EngineError>,
) -> Result<DrillReport, EngineError> {
    match result {
        Ok(report) => {
            let snapshot = Some(report.snapshot_id.clone());
            record_finished(catalog, run_id, &drill_record(&report), snapshot).await?;
            Ok(report)
        }
        Err(e) => Err(record_not_made(catalog, run_id, e).await),
    }
}

/// Records a drill that ran (passed or failed) and closes its run `run_id` to match.
pub async fn record_finished(
    catalog: &Catalog,
    run_id: &str,
    record: &DrillRecord,
    snapshot_id: Option<String>,
) -> Result<(), EngineError> {
    catalog.record_drill(record).await?;
    let (status, error) = if record.status == DrillStatus::Passed.as_str() {
        (RunStatus::Succeeded, None)
    } else {
        (RunStatus::Failed, record.error.clone())
    };
    let end = RunEnd {
        snapshot_id,
        error,
        ..RunEnd::default()
    };
    catalog.finish_run(run_id, status, &end).await?;
    Ok(())
}

/// Closes the run of a drill that could not be made (no snapshot to choose) as failed, and
/// hands back why.
pub async fn record_not_made(catalog: &Catalog, run_id: &str, e: EngineError) -> EngineError {
    let end = RunEnd {
        error: Some(e.to_string()),
        ..RunEnd::default()
    };
    if let Err(record) = catalog.finish_run(run_id, RunStatus::Failed, &end).await {
        tracing::error!(error = %record, "recording the failed drill");
    }
    e
}

pub fn drill_record(report: &DrillReport) -> DrillRecord {
    let ms = |s: f64| (s * 1000.0).round() as u64;
    DrillRecord {
        id: report.drill_id.clone(),
        policy: report.policy.clone(),
        repository: report.repository.clone(),
        snapshot_id: report.snapshot_id.clone(),
        data_point: report.data_point,
        target: report.target.clone(),
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
