//! `backstop dr`: disaster recovery from nothing but the configuration, the policies, the
//! repositories and their keys. On a fresh data directory it
//! 1. rebuilds the catalog from the repositories (history first, then snapshots);
//! 2. restores each policy's newest snapshot into its scratch target (or a target the
//!    operator names, [`RecoveryTarget`], where it is kept) and runs its drill checks (a
//!    drill, recorded like any other: restored exactly as a recovery would be, then removed
//!    unless kept), one policy after another;
//! 3. exports a signed evidence pack for the run's period and verifies it;
//! 4. reports the RTO of each asset and of the whole estate (from the start of the rebuild
//!    until the last asset was restored and checked), and the RPO each achieved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backstop_catalog::Catalog;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use backstop_sources::scratch::ScratchSpec;
use backstop_sources::UrlSource;

use crate::config::Config;
use crate::drill::report::DrillStatus;
use crate::drill::{self, DrillOptions};
use crate::error::EngineError;
use crate::evidence::{self, pack};
use crate::policy::Policy;

/// Where the operator wants an asset recovered, instead of a scratch target that is removed
/// afterwards: `--target POLICY=DIR` (files, config, SQLite) or `--target POLICY=env:VAR`
/// (PostgreSQL, MariaDB: a variable holding the server's URL; secrets never go on the command
/// line). The restored asset is kept there, under the drill's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    Dir(PathBuf),
    UrlEnv(String),
}

impl RecoveryTarget {
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("env:") {
            Some(var) => RecoveryTarget::UrlEnv(var.to_string()),
            None => RecoveryTarget::Dir(PathBuf::from(text)),
        }
    }

    fn spec(&self, policy: &Policy, base: &Path) -> Result<ScratchSpec, EngineError> {
        let url = |var: &str| {
            UrlSource {
                url_env: Some(var.to_string()),
                url_file: None,
            }
            .resolve(base)
        };
        use backstop_sources::TargetKind;
        let kind = policy.source.kind();
        Ok(match (policy.source.source_kind().target_kind(), self) {
            (TargetKind::Directory, RecoveryTarget::Dir(dir)) => ScratchSpec::Directory {
                dir: Some(base.join(dir)),
            },
            (TargetKind::Sqlite, RecoveryTarget::Dir(dir)) => ScratchSpec::Sqlite {
                dir: Some(base.join(dir)),
            },
            (TargetKind::Postgres, RecoveryTarget::UrlEnv(var)) => ScratchSpec::Postgres(url(var)?),
            (TargetKind::Mysql, RecoveryTarget::UrlEnv(var)) => ScratchSpec::Mysql(url(var)?),
            (target, _) if target.needs_server() => {
                return Err(EngineError::Refused(format!(
                    "--target {}: a {kind} asset is recovered onto a server: env:VAR, VAR holding its URL",
                    policy.name
                )))
            }
            (_, _) => {
                return Err(EngineError::Refused(format!(
                    "--target {}: a {kind} asset is recovered into a directory: --target {}=DIR",
                    policy.name, policy.name
                )))
            }
        })
    }
}

/// One asset (policy) of a recovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrAsset {
    pub policy: String,
    pub source_kind: String,
    /// `recovered` (restored and every check passed) or `failed`.
    pub status: String,
    pub repository: Option<String>,
    pub snapshot_id: Option<String>,
    pub drill_id: Option<String>,
    pub target: Option<String>,
    /// The database, file or directory the asset was restored into, when it was kept there
    /// (a target the operator named); scratch targets are removed.
    pub kept_as: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<u64>,
    pub rpo_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<u64>,
    pub checks_passed: usize,
    pub checks_failed: usize,
    pub error: Option<String>,
}

/// The whole recovery, as one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrReport {
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    /// History rows taken back, per table, and snapshots recorded, per repository.
    pub history_added: std::collections::BTreeMap<String, u64>,
    pub snapshots: std::collections::BTreeMap<String, usize>,
    /// Problems of the rebuild (unreadable history or snapshot objects, an audit chain not
    /// taken), each named.
    pub rebuild_problems: Vec<String>,
    pub assets: Vec<DrAsset>,
    /// From the start of the rebuild until the last asset was restored and checked.
    pub estate_rto_seconds: f64,
    /// The oldest data point recovered, as an RPO: the estate is as recent as its least
    /// recent asset.
    pub estate_rpo_seconds: Option<f64>,
    pub evidence: PathBuf,
    pub evidence_verified: bool,
    pub evidence_problems: Vec<String>,
    /// Every asset recovered and the evidence verified.
    pub ok: bool,
}

/// Runs a recovery of every policy in `policies` (see the module docs), writing the evidence
/// pack into `evidence_dir` (absent or empty).
pub async fn run(
    config: &Config,
    catalog: &Catalog,
    policies: &[&Policy],
    targets: &BTreeMap<String, RecoveryTarget>,
    evidence_dir: &Path,
    cancel: &CancellationToken,
) -> Result<DrReport, EngineError> {
    if std::fs::read_dir(evidence_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(EngineError::Refused(format!(
            "{} is not empty; the evidence pack of a recovery goes into a new directory",
            evidence_dir.display()
        )));
    }
    // Every named target is checked before anything runs.
    let mut specs = BTreeMap::new();
    for (name, target) in targets {
        let policy = policies.iter().find(|p| p.name == *name).ok_or_else(|| {
            EngineError::Refused(format!("--target {name}: no such policy in this recovery"))
        })?;
        specs.insert(name.clone(), target.spec(policy, &config.base_dir)?);
    }
    let started_at = jiff::Timestamp::now();
    let clock = std::time::Instant::now();
    let rebuilt = crate::catalog::rebuild(config, catalog).await?;
    let mut rebuild_problems = rebuilt.history_problems.clone();
    if let Some(why) = &rebuilt.history.audit_refused {
        rebuild_problems.push(format!("audit events not taken: {why}"));
    }
    for r in &rebuilt.repositories {
        rebuild_problems.extend(
            r.unreadable
                .iter()
                .map(|u| format!("repository `{}`: {u}", r.repository)),
        );
    }

    let mut assets = Vec::new();
    for policy in policies {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let scratch = specs.get(&policy.name).cloned();
        assets.push(recover(config, catalog, policy, scratch, cancel).await?);
    }
    let estate_rto_seconds = clock.elapsed().as_secs_f64();

    let finished_at = jiff::Timestamp::now();
    let gathered = evidence::collect(config, catalog, policies, started_at, finished_at).await?;
    let key = pack::signing_key(&config.data_dir)?;
    pack::write(evidence_dir, &gathered, &key)?;
    let (evidence_verified, evidence_problems) =
        match pack::verify(evidence_dir, Some(&key.verifying_key())) {
            Ok(_) => (true, Vec::new()),
            Err(problems) => (false, problems),
        };
    catalog
        .append_event(
            "dr.completed",
            &evidence_dir.display().to_string(),
            serde_json::json!({
                "assets": assets.iter().map(|a| serde_json::json!({
                    "policy": a.policy, "status": a.status, "rto_seconds": a.rto_seconds,
                })).collect::<Vec<_>>(),
                "estate_rto_seconds": estate_rto_seconds,
            }),
        )
        .await?;
    let ok = evidence_verified && assets.iter().all(|a| a.status == "recovered");
    Ok(DrReport {
        started_at,
        finished_at,
        history_added: rebuilt.history.added.clone(),
        snapshots: rebuilt
            .repositories
            .iter()
            .map(|r| (r.repository.clone(), r.snapshots))
            .collect(),
        rebuild_problems,
        estate_rpo_seconds: assets
            .iter()
            .filter_map(|a| a.rpo_seconds)
            .fold(None, |worst: Option<f64>, r| {
                Some(worst.map_or(r, |w| w.max(r)))
            }),
        assets,
        estate_rto_seconds,
        evidence: evidence_dir.to_path_buf(),
        evidence_verified,
        evidence_problems,
        ok,
    })
}

/// Restores and checks one asset, as a recorded drill; a policy that cannot be drilled (no
/// snapshot, no scratch target) is a failed asset that says why, not the end of the run.
async fn recover(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    target: Option<ScratchSpec>,
    cancel: &CancellationToken,
) -> Result<DrAsset, EngineError> {
    // A target the operator named keeps what was restored into it.
    let options = DrillOptions {
        keep: target.is_some(),
        scratch: target,
        ..DrillOptions::default()
    };
    let mut asset = DrAsset {
        policy: policy.name.clone(),
        source_kind: policy.source.kind().to_string(),
        status: "failed".into(),
        repository: None,
        snapshot_id: None,
        drill_id: None,
        target: None,
        kept_as: None,
        rto_seconds: None,
        rto_objective_seconds: policy.objectives.rto.map(|d| d.as_secs()),
        rpo_seconds: None,
        rpo_objective_seconds: policy.objectives.rpo.map(|d| d.as_secs()),
        checks_passed: 0,
        checks_failed: 0,
        error: None,
    };
    match drill::run_recorded(config, catalog, policy, &options, cancel).await {
        Ok(report) => {
            asset.kept_as = report.kept.then(|| report.scratch.clone()).flatten();
            asset.repository = Some(report.repository.clone());
            asset.snapshot_id = Some(report.snapshot_id.clone());
            asset.drill_id = Some(report.drill_id.clone());
            asset.target = Some(report.target.clone());
            asset.rto_seconds = report.rto_seconds;
            asset.rpo_seconds = Some(report.rpo_seconds);
            asset.checks_passed = report
                .checks
                .iter()
                .filter(|c| c.status == drill::report::CheckStatus::Passed)
                .count();
            asset.checks_failed = report
                .checks
                .iter()
                .filter(|c| c.status == drill::report::CheckStatus::Failed)
                .count();
            if report.status == DrillStatus::Passed {
                asset.status = "recovered".into();
            }
            asset.error = report.error;
        }
        Err(EngineError::Cancelled) => return Err(EngineError::Cancelled),
        Err(e) => asset.error = Some(e.to_string()),
    }
    Ok(asset)
}
