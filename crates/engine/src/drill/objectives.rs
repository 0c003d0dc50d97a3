//! Recovery objectives, measured: pure arithmetic with `now` (or the drill's own times) as a
//! parameter, so that every rule is shown by a table of cases.
//!
//! - RTO achieved: from the start of the restore until the last check finished, broken down
//!   into fetch, decode, load and checks.
//! - RPO achieved by a drill: the drill's start minus the restored snapshot's data point.
//! - RPO exposure of an asset at time t: t minus the data point of the newest restorable
//!   snapshot at or before t. Over a period, the worst exposure is the largest gap between
//!   good points, counting the open gap up to the period's end; a breach is every stretch of
//!   time during which the exposure was over the objective.

use std::time::Duration;

use backstop_repo::timing::PhaseTimes;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a recovery's time went. The four parts add up to the RTO achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtoBreakdown {
    /// Reading from the repository: its config, index, snapshot and tree, then the data.
    pub fetch: Duration,
    /// Verifying, decrypting and decompressing what was fetched.
    pub decode: Duration,
    /// Everything else in the restore: the load tool, writing files.
    pub load: Duration,
    pub checks: Duration,
}

impl RtoBreakdown {
    /// Splits measured times into the four parts. `open` is the time to open the repository
    /// and choose the snapshot (all fetching); `restore` the wall time of the restore, within
    /// which `phases` says how long fetching and decoding held it. Phase times larger than
    /// the wall time they were measured in (they cannot be, but clocks are clocks) are cut
    /// to it, so the parts never add up to more than was measured.
    pub fn from_measured(
        open: Duration,
        restore: Duration,
        phases: PhaseTimes,
        checks: Duration,
    ) -> Self {
        let fetch = phases.fetch.min(restore);
        let decode = phases.decode.min(restore - fetch);
        Self {
            fetch: open + fetch,
            decode,
            load: restore - fetch - decode,
            checks,
        }
    }

    pub fn total(&self) -> Duration {
        self.fetch + self.decode + self.load + self.checks
    }
}

/// A measurement against its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Breached,
    /// The policy sets no objective for this.
    NoObjective,
}

/// Breached only when strictly over the objective: meeting it exactly is meeting it.
pub fn judge(achieved: Duration, objective: Option<Duration>) -> Verdict {
    match objective {
        None => Verdict::NoObjective,
        Some(limit) if achieved > limit => Verdict::Breached,
        Some(_) => Verdict::Met,
    }
}

/// The data a recovery at `drill_start` from a snapshot taken at `data_point` would lose.
pub fn rpo_achieved(drill_start: Timestamp, data_point: Timestamp) -> Duration {
    duration_between(data_point, drill_start)
}

/// `later - earlier`, or zero when `later` is not later.
pub fn duration_between(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// A policy's RPO exposure, defined once for `status`, `/metrics`, the evidence and `/ui`
/// (docs/drills.md, "RPO exposure"):
///
/// - the good points are the data points of the snapshots the catalog holds that no drill
///   has disproved (a snapshot whose drills all failed is not one);
/// - the policy's period starts at its first backup (the first backup run, or the oldest
///   good point if that is older): before it there is no exposure, and no breach;
/// - at a time `t` in the period, the exposure is `t` minus the newest good point at or
///   before `t`; with none yet, it is at least `t` minus the period's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpoHistory {
    pub points: Vec<Timestamp>,
    pub first_backup: Option<Timestamp>,
}

/// The exposure at one time, as [`RpoHistory`] defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// The policy's period had not started (no backup yet).
    NotStarted,
    /// Measured from a good point.
    Since {
        point: Timestamp,
        exposure: Duration,
    },
    /// No good point yet: at least this, counted from the period's start.
    AtLeast(Duration),
}

impl Exposure {
    /// The exposure in seconds (a lower bound without a good point); none before the
    /// period.
    pub fn seconds(&self) -> Option<u64> {
        match self {
            Exposure::NotStarted => None,
            Exposure::Since { exposure, .. } | Exposure::AtLeast(exposure) => {
                Some(exposure.as_secs())
            }
        }
    }

    pub fn breaches(&self, objective: Option<Duration>) -> bool {
        match (self, objective) {
            (Exposure::NotStarted, _) | (_, None) => false,
            (Exposure::Since { exposure, .. } | Exposure::AtLeast(exposure), Some(limit)) => {
                exposure > &limit
            }
        }
    }
}

impl RpoHistory {
    /// Where the policy's period starts: its first backup, or its oldest good point.
    pub fn start(&self) -> Option<Timestamp> {
        let oldest = self.points.iter().min().copied();
        match (self.first_backup, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn at(&self, t: Timestamp) -> Exposure {
        let Some(start) = self.start().filter(|s| *s <= t) else {
            return Exposure::NotStarted;
        };
        match self.points.iter().copied().filter(|p| *p <= t).max() {
            Some(point) => Exposure::Since {
                point,
                exposure: duration_between(point, t),
            },
            None => Exposure::AtLeast(duration_between(start, t)),
        }
    }

    /// The exposure over `[from, to]` as a line, for a chart: from the policy's start (its
    /// first backup) until its first good point the exposure is a lower bound counted from
    /// that start, then [`exposure_series`]'s sawtooth. A policy with no good point yet is a
    /// rising line, not nothing.
    pub fn series(&self, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, Duration)> {
        let Some(start) = self.start().filter(|s| *s <= to) else {
            return Vec::new();
        };
        let first_good = self.points.iter().copied().filter(|p| *p <= to).min();
        let mut series = Vec::new();
        let lower_until = first_good.unwrap_or(to);
        if lower_until > from.max(start) {
            let begin = from.max(start);
            series.push((begin, duration_between(start, begin)));
            series.push((lower_until, duration_between(start, lower_until)));
        }
        series.extend(exposure_series(&self.points, from, to));
        series
    }

    /// The worst exposure and the breaches over `[from, to]`, the period clipped to start
    /// at the policy's first backup; none when the policy had not started by `to`.
    pub fn over(
        &self,
        from: Timestamp,
        to: Timestamp,
        objective: Option<Duration>,
    ) -> Option<ExposureReport> {
        let start = self.start().filter(|s| *s <= to)?;
        Some(worst_exposure(
            &self.points,
            start,
            from.max(start),
            to,
            objective,
        ))
    }
}

/// The longest exposure in a period: from `since` (the good point it is measured from; none
/// when no good point existed yet) until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub since: Option<Timestamp>,
    pub until: Timestamp,
    /// `until - since`; when `since` is none, the exposure is at least this (counted from
    /// the period's start).
    pub exposure: Duration,
}

/// A stretch of time during which the exposure was over the objective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The exposure at the end of the stretch (at least this, when no good point existed).
    pub peak: Duration,
    pub since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureReport {
    pub worst: Gap,
    pub breaches: Vec<Breach>,
}

/// The worst RPO exposure over `[from, to]` given the data points of good (restorable)
/// snapshots, and every breach of `objective` in it. Points after `to` do not count; the
/// newest point at or before `from` opens the period; before any point, the exposure is
/// counted from `origin` (the policy's first backup, at or before `from`).
pub fn worst_exposure(
    points: &[Timestamp],
    origin: Timestamp,
    from: Timestamp,
    to: Timestamp,
    objective: Option<Duration>,
) -> ExposureReport {
    let mut sorted: Vec<Timestamp> = points.iter().copied().filter(|p| *p <= to).collect();
    sorted.sort();
    sorted.dedup();
    let mut previous = sorted.iter().copied().rfind(|p| *p <= from);
    // Each gap ends at a good point inside the period, or at the period's end.
    let mut ends: Vec<Timestamp> = sorted.iter().copied().filter(|p| *p > from).collect();
    ends.push(to);
    let mut worst: Option<Gap> = None;
    let mut breaches = Vec::new();
    for end in ends {
        let start = previous.unwrap_or(origin.min(from));
        let exposure = duration_between(start, end);
        let gap = Gap {
            since: previous,
            until: end,
            exposure,
        };
        // The longer gap is worse; of two as long, the one with no good point yet.
        let worse = match &worst {
            None => true,
            Some(w) => {
                gap.exposure > w.exposure
                    || (gap.exposure == w.exposure && gap.since.is_none() && w.since.is_some())
            }
        };
        if worse {
            worst = Some(gap.clone());
        }
        if let Some(limit) = objective {
            let over_from = start + jiff::SignedDuration::try_from(limit).unwrap_or_default();
            let over_from = over_from.max(from);
            if end > over_from {
                breaches.push(Breach {
                    from: over_from,
                    to: end,
                    peak: exposure,
                    since: previous,
                });
            }
        }
        if end < to {
            previous = Some(end);
        }
    }
    ExposureReport {
        worst: worst.expect("the period's end always closes a gap"),
        breaches,
    }
}

/// The RPO exposure over `[from, to]` as a polyline for a chart: it rises linearly from
/// each good point and drops at the next. Each gap gives its start (clipped to `from`) and
/// its end, with the exposure at both; before the first good point there is no line (the
/// exposure is unknown).
pub fn exposure_series(
    points: &[Timestamp],
    from: Timestamp,
    to: Timestamp,
) -> Vec<(Timestamp, Duration)> {
    let mut sorted: Vec<Timestamp> = points.iter().copied().filter(|p| *p <= to).collect();
    sorted.sort();
    sorted.dedup();
    let mut previous = sorted.iter().copied().rfind(|p| *p <= from);
    let mut ends: Vec<Timestamp> = sorted.iter().copied().filter(|p| *p > from).collect();
    ends.push(to);
    let mut series = Vec::new();
    for end in ends {
        if let Some(point) = previous {
            let start = point.max(from);
            series.push((start, duration_between(point, start)));
            series.push((end, duration_between(point, end)));
        }
        previous = Some(end);
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        format!("2026-11-{s}:00Z").parse().unwrap()
    }

    fn h(hours: u64) -> Duration {
        Duration::from_secs(hours * 3600)
    }

    #[test]
    fn rto_parts_add_up_and_never_exceed_what_was_measured() {
        let ms = Duration::from_millis;
        // (open, restore wall, fetch, decode, checks) -> (fetch, decode, load)
        let cases = [
            ((100, 1000, 300, 200, 50), (400, 200, 500)),
            ((0, 1000, 0, 0, 0), (0, 0, 1000)),
            ((10, 1000, 1200, 300, 5), (1010, 0, 0)), // phases over the wall are cut
            ((10, 1000, 600, 900, 5), (610, 400, 0)),
            ((0, 0, 0, 0, 20), (0, 0, 0)),
        ];
        for ((open, wall, fetch, decode, checks), (e_fetch, e_decode, e_load)) in cases {
            let b = RtoBreakdown::from_measured(
                ms(open),
                ms(wall),
                PhaseTimes {
                    fetch: ms(fetch),
                    decode: ms(decode),
                },
                ms(checks),
            );
            assert_eq!(
                (b.fetch, b.decode, b.load, b.checks),
                (ms(e_fetch), ms(e_decode), ms(e_load), ms(checks)),
                "case {open} {wall} {fetch} {decode}"
            );
            assert_eq!(b.total(), ms(open) + ms(wall) + ms(checks));
        }
    }

    #[test]
    fn objectives_are_breached_only_when_exceeded() {
        let cases = [
            (h(1), Some(h(2)), Verdict::Met),
            (h(2), Some(h(2)), Verdict::Met),
            (
                h(2) + Duration::from_millis(1),
                Some(h(2)),
                Verdict::Breached,
            ),
            (h(9), None, Verdict::NoObjective),
        ];
        for (achieved, objective, expected) in cases {
            assert_eq!(
                judge(achieved, objective),
                expected,
                "{achieved:?} {objective:?}"
            );
        }
    }

    #[test]
    fn rpo_achieved_is_drill_start_minus_data_point() {
        assert_eq!(
            rpo_achieved(t("25T03:00"), t("25T00:15")),
            Duration::from_secs(9900)
        );
        // A data point after the drill started (clock skew) is no exposure, not negative.
        assert_eq!(rpo_achieved(t("25T03:00"), t("25T03:01")), Duration::ZERO);
    }

    #[test]
    fn the_exposure_series_is_a_sawtooth() {
        let points = [t("24T22:00"), t("25T01:00"), t("25T02:00")];
        let series = exposure_series(&points, t("25T00:00"), t("25T03:00"));
        let expected = [
            (t("25T00:00"), h(2)),
            (t("25T01:00"), h(3)),
            (t("25T01:00"), h(0)),
            (t("25T02:00"), h(1)),
            (t("25T02:00"), h(0)),
            (t("25T03:00"), h(1)),
        ];
        assert_eq!(series, expected);
        assert!(exposure_series(&[], t("25T00:00"), t("25T03:00")).is_empty());
    }

    /// Issue 19: a policy with no restorable point yet has a rising exposure line from its
    /// first backup (its chart was a shaded block with no line), then the sawtooth.
    #[test]
    fn the_chart_series_starts_at_the_first_backup_even_without_a_good_point() {
        let none = RpoHistory {
            points: vec![],
            first_backup: Some(t("25T01:00")),
        };
        assert_eq!(
            none.series(t("25T00:00"), t("25T03:00")),
            vec![(t("25T01:00"), h(0)), (t("25T03:00"), h(2))]
        );
        let later = RpoHistory {
            points: vec![t("25T02:00")],
            first_backup: Some(t("25T01:00")),
        };
        let series = later.series(t("25T00:00"), t("25T03:00"));
        assert_eq!(series[..2], [(t("25T01:00"), h(0)), (t("25T02:00"), h(1))]);
        assert_eq!(series.last(), Some(&(t("25T03:00"), h(1))));
        let never = RpoHistory {
            points: vec![],
            first_backup: None,
        };
        assert!(never.series(t("25T00:00"), t("25T03:00")).is_empty());
    }

    #[test]
    fn worst_exposure_over_a_period() {
        struct Case {
            name: &'static str,
            points: &'static [&'static str],
            from: &'static str,
            to: &'static str,
            objective: Option<u64>,
            worst: (Option<&'static str>, &'static str, u64),
            breaches: &'static [(&'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "hourly backups, no breach; the open gap runs to the period's end",
                points: &["24T22:00", "24T23:00", "25T00:00", "25T01:00"],
                from: "24T23:30",
                to: "25T03:00",
                objective: Some(4),
                worst: (Some("25T01:00"), "25T03:00", 2),
                breaches: &[],
            },
            Case {
                name: "a six-hour gap breaches a 4h objective for two hours",
                points: &["25T00:00", "25T06:00", "25T07:00"],
                from: "25T00:00",
                to: "25T08:00",
                objective: Some(4),
                worst: (Some("25T00:00"), "25T06:00", 6),
                breaches: &[("25T04:00", "25T06:00")],
            },
            Case {
                name: "the point before the period opens it; a breach is cut at the start",
                points: &["24T12:00", "25T02:00"],
                from: "25T00:00",
                to: "25T03:00",
                objective: Some(4),
                worst: (Some("24T12:00"), "25T02:00", 14),
                breaches: &[("25T00:00", "25T02:00")],
            },
            Case {
                name:
                    "no good point since the first backup: breached once the objective has passed",
                points: &[],
                from: "25T00:00",
                to: "25T05:00",
                objective: Some(4),
                worst: (None, "25T05:00", 5),
                breaches: &[("25T04:00", "25T05:00")],
            },
            Case {
                name: "the first point an hour into the policy's life: that hour is no breach",
                points: &["25T01:00"],
                from: "25T00:00",
                to: "25T09:00",
                objective: Some(4),
                worst: (Some("25T01:00"), "25T09:00", 8),
                breaches: &[("25T05:00", "25T09:00")],
            },
            Case {
                name: "exactly at the objective is not a breach; points after the end are ignored",
                points: &["25T00:00", "25T04:00", "25T08:00", "25T20:00"],
                from: "25T00:00",
                to: "25T08:00",
                objective: Some(4),
                worst: (Some("25T00:00"), "25T04:00", 4),
                breaches: &[],
            },
            Case {
                name: "the open gap at the end breaches",
                points: &["25T00:00"],
                from: "25T00:00",
                to: "25T07:00",
                objective: Some(6),
                worst: (Some("25T00:00"), "25T07:00", 7),
                breaches: &[("25T06:00", "25T07:00")],
            },
            Case {
                name: "no objective: the worst gap, no breaches",
                points: &["25T00:00", "25T01:00", "25T01:00"],
                from: "25T00:00",
                to: "25T02:00",
                objective: None,
                worst: (Some("25T00:00"), "25T01:00", 1),
                breaches: &[],
            },
        ];
        for case in cases {
            let points: Vec<Timestamp> = case.points.iter().map(|p| t(p)).collect();
            // Each case's policy began with its period.
            let report = worst_exposure(
                &points,
                t(case.from),
                t(case.from),
                t(case.to),
                case.objective.map(h),
            );
            let (since, until, hours) = case.worst;
            assert_eq!(report.worst.since, since.map(t), "{}", case.name);
            assert_eq!(report.worst.until, t(until), "{}", case.name);
            assert_eq!(report.worst.exposure, h(hours), "{}", case.name);
            let breaches: Vec<(Timestamp, Timestamp)> =
                report.breaches.iter().map(|b| (b.from, b.to)).collect();
            let expected: Vec<(Timestamp, Timestamp)> =
                case.breaches.iter().map(|(a, b)| (t(a), t(b))).collect();
            assert_eq!(breaches, expected, "{}", case.name);
        }
    }
}
