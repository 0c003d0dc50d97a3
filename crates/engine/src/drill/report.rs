//! A drill's report: what was restored where, every check with its outcome, every difference
//! from the backup's facts, the objectives against what was achieved, and the verdict. It is
//! printed by `backstop drill`, kept whole in the catalog, and later exported as evidence;
//! `--json` prints it as is (the field names are the contract).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    Passed,
    Failed,
}

impl DrillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Passed => "passed",
            DrillStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Not run: an earlier step failed, or the check cannot run on this target (the detail
    /// says which).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    /// integrity, restore, fidelity, native, sql, file or command.
    pub kind: String,
    pub status: CheckStatus,
    pub detail: String,
    /// A command check's output (stdout and stderr interleaved), truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub duration_ms: u64,
}

impl CheckResult {
    pub fn new(
        name: impl Into<String>,
        kind: &str,
        status: CheckStatus,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            status,
            detail: detail.into(),
            output: None,
            duration_ms: 0,
        }
    }
}

/// One way the restored target differs from what the backup recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// `table public.orders`, `file app/config.json`, `schema`, `file count`…
    pub object: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RtoSeconds {
    pub fetch_seconds: f64,
    pub decode_seconds: f64,
    pub load_seconds: f64,
    pub checks_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub drill_id: String,
    pub policy: String,
    pub status: DrillStatus,
    /// Why the drill failed: every failed step, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub snapshot_id: String,
    pub repository: String,
    pub source_kind: String,
    /// The scratch target's kind and server (never its password).
    pub target: String,
    /// The scratch database, file or directory made for this drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<String>,
    /// The scratch target was left in place (`keep`) for investigation.
    pub kept: bool,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub data_point: jiff::Timestamp,
    /// From the start of the restore until the last check finished; none when the restore
    /// did not complete (a recovery that did not happen has no recovery time).
    pub rto_seconds: Option<f64>,
    pub rto_breakdown: RtoSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_objective_seconds: Option<f64>,
    pub rto_breached: bool,
    /// The drill's start minus the snapshot's data point.
    pub rpo_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_objective_seconds: Option<f64>,
    pub rpo_breached: bool,
    pub checks: Vec<CheckResult>,
    pub differences: Vec<Difference>,
    /// A partial drill: the paths (globs) restored and checked, as `[drill] paths` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// A partial drill of a database: the tables restored and checked, as `[drill] tables`
    /// says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}
