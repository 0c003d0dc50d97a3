//! Compliance: a policy's `[requirements]` against what the catalog shows was achieved over a
//! period, each met or not met with the evidence behind it (`backstop compliance` and a
//! section of the evidence).
//!
//! - `frequency`: no stretch of the period longer than this without a successful backup,
//!   counted from the policy's first backup run (a policy whose every run fails is not met),
//!   up to the period's end. Successful backup runs are used, not snapshots, so that pruning
//!   does not hide the past.
//! - `retention`: the retention rules keep snapshots at least this long (hourly N: N hours,
//!   daily N: N days, weekly N: 7N days, monthly N: 30N days, yearly N: 365N days, last N:
//!   N × `frequency` when that is declared; no rules keep everything).
//! - `offsite`: an `s3://` repository (the policy's own or a copy) holds its snapshots.
//! - `drill_every`: no stretch longer than this without a passed drill, counted from the
//!   policy's first successful backup.
//! - `copies`: at the period's end, the policy's newest snapshot is held by at least this
//!   many repositories (its own and its copies).

use std::time::Duration;

use backstop_catalog::{Catalog, RunStatus};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;

/// `[requirements]` in a policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub frequency: Option<Duration>,
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub retention: Option<Duration>,
    pub offsite: Option<bool>,
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub drill_every: Option<Duration>,
    pub copies: Option<u32>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One policy's requirements, each against what was achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyCompliance {
    pub policy: String,
    /// Every requirement met.
    pub met: bool,
    pub requirements: Vec<RequirementResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementResult {
    /// `frequency`, `retention`, `offsite`, `drill_every` or `copies`.
    pub requirement: String,
    /// As declared, e.g. "1h", "true", "2".
    pub required: String,
    /// What the catalog shows, in words.
    pub achieved: String,
    pub met: bool,
    /// The records behind the verdict: runs, drills, repositories, by id or name.
    pub evidence: Vec<String>,
}

/// The longest stretch of `[start, end]` without an event: `(since, until, length)`, where
/// `since` is the event that opened it (none: the stretch runs from `start`). Events before
/// `start` count only as the one the first stretch runs from.
fn longest_gap(
    events: &[Timestamp],
    start: Timestamp,
    end: Timestamp,
) -> (Option<Timestamp>, Timestamp, Duration) {
    let mut sorted: Vec<Timestamp> = events.iter().copied().filter(|e| *e <= end).collect();
    sorted.sort();
    let mut previous = sorted.iter().copied().rfind(|e| *e <= start);
    let mut worst = (previous, start, Duration::ZERO);
    let mut ends: Vec<Timestamp> = sorted.into_iter().filter(|e| *e > start).collect();
    ends.push(end);
    for until in ends {
        let opened = previous.unwrap_or(start);
        let length = until.duration_since(opened).unsigned_abs();
        if length > worst.2 {
            worst = (previous, until, length);
        }
        previous = Some(until);
    }
    worst
}

/// Days, hours, minutes and seconds, leaving out the zero ones: `90d`, `1h`, `2d 3h 4s`
/// (no months, whose length varies).
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let parts: Vec<String> = [
        (s / 86_400, "d"),
        (s % 86_400 / 3600, "h"),
        (s % 3600 / 60, "m"),
        (s % 60, "s"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn gap_words(gap: &(Option<Timestamp>, Timestamp, Duration), what: &str) -> String {
    match gap.0 {
        Some(since) => format!(
            "longest stretch without {what}: {} (from {since} to {})",
            human(gap.2),
            gap.1
        ),
        None => format!(
            "longest stretch without {what}: {} (from the start of the measure to {})",
            human(gap.2),
            gap.1
        ),
    }
}

/// How long the retention rules keep snapshots; none when they keep everything or when
/// nothing can be said (only `last` with no `frequency`: `Some(ZERO)`).
fn retention_coverage(
    rules: &backstop_repo::prune::Retention,
    frequency: Option<Duration>,
) -> Option<Duration> {
    if rules.is_empty() {
        return None;
    }
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;
    let spans = [
        rules.hourly.map(|n| u64::from(n) * HOUR),
        rules.daily.map(|n| u64::from(n) * DAY),
        rules.weekly.map(|n| u64::from(n) * 7 * DAY),
        rules.monthly.map(|n| u64::from(n) * 30 * DAY),
        rules.yearly.map(|n| u64::from(n) * 365 * DAY),
        rules
            .last
            .zip(frequency)
            .map(|(n, f)| u64::from(n) * f.as_secs()),
    ];
    Some(Duration::from_secs(
        spans.into_iter().flatten().max().unwrap_or(0),
    ))
}

fn retention_words(rules: &backstop_repo::prune::Retention) -> String {
    let named = [
        ("last", rules.last),
        ("hourly", rules.hourly),
        ("daily", rules.daily),
        ("weekly", rules.weekly),
        ("monthly", rules.monthly),
        ("yearly", rules.yearly),
    ];
    let parts: Vec<String> = named
        .iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
        .collect();
    parts.join(", ")
}

/// Assesses `policy`'s requirements over `[from, to]`; none when it declares none.
pub async fn assess(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<PolicyCompliance>, EngineError> {
    let required = &policy.requirements;
    if required.is_empty() {
        return Ok(None);
    }
    let to = to.min(Timestamp::now());
    let runs = catalog.runs(Some(&policy.name), u32::MAX).await?;
    let backups: Vec<_> = runs
        .iter()
        .filter(|r| r.kind == "backup" && r.started_at <= to)
        .collect();
    let good_backups: Vec<Timestamp> = backups
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .map(|r| r.started_at)
        .collect();
    let first_run = backups.iter().map(|r| r.started_at).min();
    let first_good = good_backups.iter().copied().min();
    let snapshots = catalog.snapshots(Some(&policy.name)).await?;
    let mut results = Vec::new();

    if let Some(frequency) = required.frequency {
        let result = match first_run {
            None => RequirementResult {
                requirement: "frequency".into(),
                required: human(frequency),
                achieved: format!("no backup ran by {to}"),
                met: false,
                evidence: vec![],
            },
            Some(first) => {
                let gap = longest_gap(&good_backups, from.max(first), to);
                let in_period = good_backups
                    .iter()
                    .filter(|t| **t >= from && **t <= to)
                    .count();
                let failed = backups
                    .iter()
                    .filter(|r| r.started_at >= from && r.status != RunStatus::Succeeded)
                    .filter(|r| r.status != RunStatus::Running)
                    .count();
                RequirementResult {
                    requirement: "frequency".into(),
                    required: human(frequency),
                    achieved: gap_words(&gap, "a successful backup"),
                    met: gap.2 <= frequency,
                    evidence: vec![format!(
                        "{in_period} successful backup runs in the period, {failed} that did not succeed"
                    )],
                }
            }
        };
        results.push(result);
    }

    if let Some(retention) = required.retention {
        let oldest = snapshots
            .iter()
            .filter(|s| s.repository == policy.repository)
            .map(|s| s.data_point)
            .min();
        let mut evidence = vec![match oldest {
            Some(t) => format!("oldest snapshot held in {}: {t}", policy.repository),
            None => format!("no snapshot held in {}", policy.repository),
        }];
        let (achieved, met) = match retention_coverage(&policy.retention, required.frequency) {
            None => (
                "no retention rule: every snapshot is kept".to_string(),
                true,
            ),
            Some(kept) => {
                evidence.push(format!(
                    "[retention] {}",
                    retention_words(&policy.retention)
                ));
                (
                    format!("the retention rules keep about {}", human(kept)),
                    kept >= retention,
                )
            }
        };
        results.push(RequirementResult {
            requirement: "retention".into(),
            required: human(retention),
            achieved,
            met,
            evidence,
        });
    }

    if let Some(offsite) = required.offsite {
        let mut evidence = Vec::new();
        let mut held_offsite = false;
        for name in policy.repositories() {
            let Ok(settings) = config.repository(name) else {
                continue;
            };
            let s3 = matches!(
                backstop_repo::open::RepoUrl::parse(&settings.url, &config.base_dir),
                Ok(backstop_repo::open::RepoUrl::S3 { .. })
            );
            let newest = snapshots
                .iter()
                .filter(|s| &s.repository == name && s.data_point <= to)
                .map(|s| s.data_point)
                .max();
            held_offsite |= s3 && newest.is_some();
            evidence.push(format!(
                "{name} ({}): {}, {}",
                settings.url,
                if s3 {
                    "off site"
                } else {
                    "on this machine's storage"
                },
                match newest {
                    Some(t) => format!("newest snapshot {t}"),
                    None => "no snapshot".into(),
                }
            ));
        }
        results.push(RequirementResult {
            requirement: "offsite".into(),
            required: offsite.to_string(),
            achieved: if held_offsite {
                "an off-site (s3://) repository holds the policy's snapshots".into()
            } else {
                "no off-site (s3://) repository holds the policy's snapshots".into()
            },
            met: held_offsite || !offsite,
            evidence,
        });
    }

    if let Some(every) = required.drill_every {
        let drills = catalog.drills(Some(&policy.name), u32::MAX).await?;
        let passed: Vec<Timestamp> = drills
            .iter()
            .filter(|d| d.status == "passed" && d.started_at <= to)
            .map(|d| d.started_at)
            .collect();
        let in_period = drills
            .iter()
            .filter(|d| d.started_at >= from && d.started_at <= to)
            .count();
        let result = match first_good {
            None => RequirementResult {
                requirement: "drill_every".into(),
                required: human(every),
                achieved: "no successful backup to drill".into(),
                met: false,
                evidence: vec![],
            },
            Some(first) => {
                let gap = longest_gap(&passed, from.max(first), to);
                let last = drills
                    .iter()
                    .filter(|d| d.status == "passed" && d.started_at <= to)
                    .max_by_key(|d| d.started_at);
                let mut evidence = vec![format!(
                    "{in_period} drills in the period, {} passed",
                    passed.iter().filter(|t| **t >= from).count()
                )];
                if let Some(d) = last {
                    evidence.push(format!("last passed drill {} at {}", d.id, d.started_at));
                }
                RequirementResult {
                    requirement: "drill_every".into(),
                    required: human(every),
                    achieved: gap_words(&gap, "a passed drill"),
                    met: gap.2 <= every,
                    evidence,
                }
            }
        };
        results.push(result);
    }

    if let Some(copies) = required.copies {
        let newest = snapshots
            .iter()
            .filter(|s| s.repository == policy.repository && s.data_point <= to)
            .max_by_key(|s| s.data_point);
        let (achieved, held, evidence) = match newest {
            None => (
                format!("no snapshot in {}", policy.repository),
                0,
                Vec::new(),
            ),
            Some(newest) => {
                let holders: Vec<&String> = policy
                    .repositories()
                    .filter(|name| {
                        snapshots
                            .iter()
                            .any(|s| &s.repository == *name && s.data_point == newest.data_point)
                    })
                    .collect();
                let missing: Vec<&String> = policy
                    .repositories()
                    .filter(|name| !holders.contains(name))
                    .collect();
                let mut evidence = vec![format!(
                    "newest snapshot {} of {}",
                    &newest.id, newest.data_point
                )];
                if !missing.is_empty() {
                    evidence.push(format!(
                        "not held by: {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                (
                    format!(
                        "the newest snapshot is held by {} ({})",
                        holders.len(),
                        holders
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    holders.len(),
                    evidence,
                )
            }
        };
        results.push(RequirementResult {
            requirement: "copies".into(),
            required: copies.to_string(),
            achieved,
            met: held >= copies as usize,
            evidence,
        });
    }

    Ok(Some(PolicyCompliance {
        policy: policy.name.clone(),
        met: results.iter().all(|r| r.met),
        requirements: results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_longest_gap_runs_from_the_start_between_events_and_to_the_end() {
        let start = t("2026-01-01T00:00:00Z");
        let end = t("2026-01-01T10:00:00Z");
        // No event: the whole stretch.
        assert_eq!(
            longest_gap(&[], start, end),
            (None, end, Duration::from_secs(36_000))
        );
        // Events at 1h, 2h, 6h: the longest is 2h → 6h, then 6h → 10h ties (first kept).
        let events = [
            t("2026-01-01T01:00:00Z"),
            t("2026-01-01T02:00:00Z"),
            t("2026-01-01T06:00:00Z"),
        ];
        assert_eq!(
            longest_gap(&events, start, end),
            (
                Some(t("2026-01-01T02:00:00Z")),
                t("2026-01-01T06:00:00Z"),
                Duration::from_secs(4 * 3600)
            )
        );
        // An event before the start: the first stretch runs from it.
        let events = [t("2025-12-31T20:00:00Z"), t("2026-01-01T09:00:00Z")];
        assert_eq!(
            longest_gap(&events, start, end),
            (
                Some(t("2025-12-31T20:00:00Z")),
                t("2026-01-01T09:00:00Z"),
                Duration::from_secs(13 * 3600)
            )
        );
    }

    #[test]
    fn durations_read_in_days_not_months() {
        assert_eq!(human(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(
            human(Duration::from_secs(2 * 86_400 + 3 * 3600 + 4)),
            "2d 3h 4s"
        );
        assert_eq!(human(Duration::ZERO), "0s");
    }

    #[test]
    fn retention_coverage_is_the_longest_rule() {
        let rules = backstop_repo::prune::Retention {
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            ..Default::default()
        };
        assert_eq!(
            retention_coverage(&rules, None),
            Some(Duration::from_secs(360 * 86_400))
        );
        let last_only = backstop_repo::prune::Retention {
            last: Some(48),
            ..Default::default()
        };
        assert_eq!(retention_coverage(&last_only, None), Some(Duration::ZERO));
        assert_eq!(
            retention_coverage(&last_only, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(48 * 3600))
        );
        assert_eq!(
            retention_coverage(&backstop_repo::prune::Retention::default(), None),
            None
        );
    }
}
