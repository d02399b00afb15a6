//! When a schedule's cron rule falls due, and where its days and months begin, in its time zone.

use std::str::FromStr as _;

use baton_core::{Schedule, Timestamp};
use chrono::{DateTime, Datelike as _, NaiveDate, Offset as _, TimeZone as _};
use chrono_tz::Tz;
use croner::Cron;

/// A schedule's cron rule read in its time zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: Tz,
}

impl Timing {
    /// The schedule's rule, or why it cannot be read.
    pub fn new(schedule: &Schedule) -> Result<Timing, String> {
        let zone = Tz::from_str(&schedule.timezone)
            .map_err(|_| format!("unknown time zone {:?} (an IANA name such as Europe/Berlin)", schedule.timezone))?;
        let cron = Cron::from_str(&schedule.cron).map_err(|error| format!("cron rule {:?}: {error}", schedule.cron))?;
        // A rule that never falls due (say, 30 February) is refused now, not silently kept.
        let timing = Timing { cron, zone };
        if timing.after(Timestamp(0)).next().is_none() {
            return Err(format!("cron rule {:?} never falls due", schedule.cron));
        }
        Ok(timing)
    }

    /// The times it falls due strictly after `after`, in order.
    pub fn after(&self, after: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        let start = self.local(after);
        self.cron.iter_after(start).map(|time| Timestamp(time.timestamp_millis()))
    }

    /// The times it falls due after `after` and at or before `upto`, at most `limit` of them.
    pub fn between(&self, after: Timestamp, upto: Timestamp, limit: usize) -> Vec<Timestamp> {
        self.after(after).take_while(|at| *at <= upto).take(limit).collect()
    }

    /// When the day that `at` falls on begins, in the schedule's time zone.
    pub fn day_start(&self, at: Timestamp) -> Timestamp {
        self.midnight(self.local(at).date_naive(), at)
    }

    /// When the month that `at` falls in begins, in the schedule's time zone.
    pub fn month_start(&self, at: Timestamp) -> Timestamp {
        let date = self.local(at).date_naive();
        self.midnight(date.with_day(1).unwrap_or(date), at)
    }

    fn local(&self, at: Timestamp) -> DateTime<Tz> {
        // Every i64 of milliseconds baton writes is in chrono's range; the epoch stands in otherwise.
        DateTime::from_timestamp_millis(at.as_millis()).unwrap_or_default().with_timezone(&self.zone)
    }

    /// The first moment of `date`; where a zone skips midnight (a daylight-saving change), the
    /// first moment after the gap, found from `at`'s own offset.
    fn midnight(&self, date: NaiveDate, at: Timestamp) -> Timestamp {
        let naive = date.and_time(chrono::NaiveTime::MIN);
        match self.zone.from_local_datetime(&naive).earliest() {
            Some(time) => Timestamp(time.timestamp_millis()),
            None => {
                let offset = self.local(at).offset().fix().local_minus_utc();
                Timestamp((naive.and_utc().timestamp() - i64::from(offset)) * 1000)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{CatchUp, DEFAULT_MAX_FAILURES, ScheduleMode};

    fn schedule(cron: &str, timezone: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            template: "t".into(),
            cron: cron.into(),
            timezone: timezone.into(),
            mode: ScheduleMode::Fresh,
            catch_up: CatchUp::Skip,
            runs_per_day: None,
            run_budget: None,
            month_budget: None,
            max_failures: DEFAULT_MAX_FAILURES,
            owner: None,
        }
    }

    fn at(text: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(text).map(|time| time.timestamp_millis()).unwrap_or(i64::MIN))
    }

    #[test]
    fn weekday_rules_fall_due_in_their_zone() {
        let timing = Timing::new(&schedule("0 3 * * 1-5", "Europe/Berlin")).map_err(|e| e.to_string());
        let Ok(timing) = timing else { panic!("{timing:?}") };
        // Friday 2026-12-04 at noon UTC: next is Monday 03:00 in Berlin (02:00 UTC), then Tuesday.
        let next: Vec<_> = timing.after(at("2026-12-04T12:00:00Z")).take(2).collect();
        assert_eq!(next, vec![at("2026-12-07T02:00:00Z"), at("2026-12-08T02:00:00Z")]);
    }

    #[test]
    fn six_fields_count_seconds_and_between_is_bounded() {
        let Ok(timing) = Timing::new(&schedule("*/2 * * * * *", "UTC")) else { panic!("refused") };
        let from = at("2026-12-02T10:00:00Z");
        let due = timing.between(from, Timestamp(from.0 + 10_000), 100);
        assert_eq!(due.len(), 5, "10 seconds of a 2-second rule, the start excluded: {due:?}");
        assert_eq!(due[0], Timestamp(from.0 + 2000));
        assert_eq!(timing.between(from, Timestamp(from.0 + 10_000), 3).len(), 3, "the limit holds");
    }

    #[test]
    fn days_and_months_begin_at_local_midnight() {
        let Ok(timing) = Timing::new(&schedule("0 * * * *", "America/New_York")) else { panic!("refused") };
        // 03:00 UTC on 2 December is still 1 December (22:00) in New York.
        let late = at("2026-12-02T03:00:00Z");
        assert_eq!(timing.day_start(late), at("2026-12-01T05:00:00Z"));
        assert_eq!(timing.month_start(late), at("2026-12-01T05:00:00Z"));
        assert_eq!(timing.month_start(at("2026-11-15T12:00:00Z")), at("2026-11-01T04:00:00Z"), "daylight time");
    }

    #[test]
    fn bad_rules_and_zones_are_refused_with_the_reason() {
        for (cron, zone, says) in [
            ("61 * * * *", "UTC", "cron rule"),
            ("* * *", "UTC", "cron rule"),
            ("0 3 * * *", "Mars/Olympus", "time zone"),
            ("0 0 30 2 *", "UTC", "never falls due"),
        ] {
            match Timing::new(&schedule(cron, zone)) {
                Ok(_) => panic!("{cron} in {zone} was accepted"),
                Err(error) => assert!(error.contains(says), "{cron} {zone}: {error}"),
            }
        }
    }
}
