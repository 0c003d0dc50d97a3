//! Cron schedules (with a seconds field, in UTC or a configured zone) and the decisions
//! made from them: when a schedule fires next, whether a run was missed while the daemon
//! was down, and how much jitter a run gets. Pure functions of their inputs: `now` is always a parameter.
//!
//! Expressions are parsed by croner (the parser tokio-cron-scheduler is built on).
//! tokio-cron-scheduler is the daemon's timer, but it reads the wall clock and knows
//! nothing of runs missed while the process was down: fire times, catch-ups and jitter are
//! decided here, on times passed in, so that they are tested under paused time.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    cron: croner::Cron,
    /// The zone the expression's fields are read in (UTC unless configured).
    tz: jiff::tz::TimeZone,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl CronSchedule {
    /// Parses a cron expression with a seconds field: `sec min hour day-of-month month
    /// day-of-week`, e.g. `0 15 */4 * * *`.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            return Err(format!(
                "cron expression `{expr}` has {fields} fields; it needs 6: seconds, minutes, hours, day of month, month, day of week (e.g. \"0 15 */4 * * *\")"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(expr)
            .map_err(|e| format!("cron expression `{expr}`: {e}"))?;
        Ok(Self {
            expr: expr.to_string(),
            cron,
            tz: jiff::tz::TimeZone::UTC,
        })
    }

    /// The same schedule, its fields read as wall-clock time in `tz` (daylight saving
    /// included: a time skipped by a spring-forward fires at the first instant after the
    /// gap, and a time repeated by a fall-back fires once, at its first occurrence).
    pub fn in_zone(mut self, tz: jiff::tz::TimeZone) -> Self {
        self.tz = tz;
        self
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the zone the fields are read in (`None` for UTC or a zone without
    /// one).
    pub fn zone_name(&self) -> Option<&str> {
        self.tz.iana_name()
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        // croner matches fields against the clock it is given: hand it the zone's wall
        // clock disguised as UTC, then read the match back as wall-clock time in the zone.
        let mut wall = self.wall(t)?;
        for _ in 0..4 {
            let found = from_chrono(self.cron.find_next_occurrence(&wall, false).ok()?)?;
            let fire = self.instant(found)?;
            if fire > t {
                return Some(fire);
            }
            wall = to_chrono(found)?; // a repeated hour: look further
        }
        None
    }

    /// The last fire time at or before `t`.
    pub fn last_at_or_before(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let mut wall = self.wall(t)?;
        let mut inclusive = true;
        for _ in 0..4 {
            let found = from_chrono(self.cron.find_previous_occurrence(&wall, inclusive).ok()?)?;
            let fire = self.instant(found)?;
            if fire <= t {
                return Some(fire);
            }
            wall = to_chrono(found)?;
            inclusive = false;
        }
        None
    }

    /// `t` as the zone's wall clock, written as if it were UTC.
    fn wall(&self, t: jiff::Timestamp) -> Option<DateTime<Utc>> {
        let civil = t.to_zoned(self.tz.clone()).datetime();
        to_chrono(civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
    }

    /// The instant at which the zone's wall clock shows `wall` (written as if UTC).
    fn instant(&self, wall: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let civil = wall.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        Some(civil.to_zoned(self.tz.clone()).ok()?.timestamp())
    }
}

/// Whole seconds: schedules have a resolution of one second, and croner keeps fractions.
fn to_chrono(t: jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), 0)
}

fn from_chrono(t: DateTime<Utc>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).ok()
}

/// The fire time missed while nothing ran: the schedule's last fire at or before `now`, when
/// it is later than the last run's start. At most one, however many were missed (a catch-up
/// is one run, not a storm). Without any earlier run there is nothing to catch up on.
pub fn missed(
    schedule: &CronSchedule,
    last_run: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let last_run = last_run?;
    schedule
        .last_at_or_before(now)
        .filter(|fire| *fire > last_run)
}

/// A delay in `[0, max)` for one fire of one job, spread evenly across jobs and fires, and
/// the same for every daemon that computes it (so daemons sharing a catalog agree).
pub fn jitter(job: &str, fire: jiff::Timestamp, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    job.hash(&mut hasher);
    fire.as_second().hash(&mut hasher);
    let millis = max.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_and_last_fire_times() {
        let every_4h = CronSchedule::parse("0 15 */4 * * *").unwrap();
        assert_eq!(
            every_4h.next_after(t("2026-11-25T09:00:00Z")),
            Some(t("2026-11-25T12:15:00Z"))
        );
        assert_eq!(
            every_4h.next_after(t("2026-11-25T12:15:00Z")),
            Some(t("2026-11-25T16:15:00Z")),
            "strictly after"
        );
        assert_eq!(
            every_4h.last_at_or_before(t("2026-11-25T12:15:00Z")),
            Some(t("2026-11-25T12:15:00Z"))
        );
        let tuesdays = CronSchedule::parse("0 0 3 * * Tue").unwrap();
        assert_eq!(
            tuesdays.next_after(t("2026-11-25T00:00:00Z")),
            Some(t("2026-12-01T03:00:00Z"))
        );
        let every_5s = CronSchedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            every_5s.next_after(t("2026-11-25T00:00:01.5Z")),
            Some(t("2026-11-25T00:00:05Z"))
        );
    }

    #[test]
    fn a_configured_zone_reads_fields_as_its_wall_clock() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let daily_3am = CronSchedule::parse("0 0 3 * * *").unwrap().in_zone(berlin);
        // Winter (UTC+1) and summer (UTC+2).
        assert_eq!(
            daily_3am.next_after(t("2026-11-25T00:00:00Z")),
            Some(t("2026-11-25T02:00:00Z"))
        );
        assert_eq!(
            daily_3am.next_after(t("2026-07-01T00:00:00Z")),
            Some(t("2026-07-01T01:00:00Z"))
        );
        assert_eq!(
            daily_3am.last_at_or_before(t("2026-11-25T12:00:00Z")),
            Some(t("2026-11-25T02:00:00Z"))
        );
        // 2026-03-29: 02:00-03:00 does not exist in Berlin; 02:30 fires right after the gap.
        let half_past_two = CronSchedule::parse("0 30 2 * * *")
            .unwrap()
            .in_zone(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        assert_eq!(
            half_past_two.next_after(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-29T01:30:00Z"))
        );
        // 2026-10-25: 02:30 happens twice; it fires once, at the first.
        let fire = half_past_two.next_after(t("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(fire, t("2026-10-25T00:30:00Z"));
        assert_eq!(
            half_past_two.next_after(fire),
            Some(t("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let five = CronSchedule::parse("15 */4 * * *").unwrap_err();
        assert!(
            five.contains("5 fields") && five.contains("seconds"),
            "{five}"
        );
        let bad = CronSchedule::parse("0 61 * * * *").unwrap_err();
        assert!(bad.contains("0 61 * * * *"), "{bad}");
    }

    #[test]
    fn a_catch_up_is_one_run_and_only_after_a_missed_fire() {
        let hourly = CronSchedule::parse("0 0 * * * *").unwrap();
        let now = t("2026-11-25T10:30:00Z");
        // Down since 06:10: fires at 07:00 … 10:00 were missed; one catch-up, for 10:00.
        assert_eq!(
            missed(&hourly, Some(t("2026-11-25T06:10:00Z")), now),
            Some(t("2026-11-25T10:00:00Z"))
        );
        // Ran at 10:00:02 for the 10:00 fire: nothing missed.
        assert_eq!(missed(&hourly, Some(t("2026-11-25T10:00:02Z")), now), None);
        // Never ran: no history, nothing to catch up.
        assert_eq!(missed(&hourly, None, now), None);
        // Exactly on a fire time that has not run yet.
        assert_eq!(
            missed(
                &hourly,
                Some(t("2026-11-25T09:00:01Z")),
                t("2026-11-25T10:00:00Z")
            ),
            Some(t("2026-11-25T10:00:00Z"))
        );
    }

    #[test]
    fn jitter_is_bounded_stable_and_spread() {
        let max = Duration::from_secs(60);
        let fire = t("2026-11-25T10:00:00Z");
        let a = jitter("backup:orders", fire, max);
        assert!(a < max);
        assert_eq!(
            a,
            jitter("backup:orders", fire, max),
            "the same for every daemon"
        );
        let spread: std::collections::BTreeSet<_> = (0..20)
            .map(|i| jitter(&format!("backup:p{i}"), fire, max))
            .collect();
        assert!(spread.len() > 10, "jobs are spread: {spread:?}");
        assert_eq!(jitter("x", fire, Duration::ZERO), Duration::ZERO);
    }
}
