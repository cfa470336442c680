//! Periods that change a warm key's idle count: more VMs in office hours, none at night.
//!
//! Each period names weekdays, a span of the day and a time zone (IANA names, read from the
//! system's zone database; daylight saving is the zone's business, not the recipe's). The last
//! period that matches the current time wins; outside every period the key's own `idle` holds.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One period of a warm key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Days it applies on: `mon` … `sun` (default: every day).
    #[serde(default)]
    #[schemars(extend("x-static" = true))]
    pub days: Vec<Day>,
    /// Start of the span, `HH:MM` local time (inclusive).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub from: String,
    /// End of the span, `HH:MM` local time (exclusive); before `from`, it ends the next day.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-4]):[0-5][0-9]$"))]
    pub to: String,
    /// IANA time zone, e.g. `Europe/Berlin` (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Idle VMs to keep during the period.
    #[schemars(range(max = 1000))]
    #[schemars(extend("x-static" = true))]
    pub idle: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

fn utc() -> String {
    "UTC".into()
}

/// Why a period cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PeriodError {
    #[error("unknown time zone `{0}`")]
    Zone(String),
    #[error("`{0}` is not a time of day (HH:MM)")]
    Time(String),
}

fn time_of(text: &str) -> Result<Time, PeriodError> {
    if text == "24:00" {
        return Ok(Time::MAX);
    }
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| PeriodError::Time(text.into()))?;
    let h: i8 = h.parse().map_err(|_| PeriodError::Time(text.into()))?;
    let m: i8 = m.parse().map_err(|_| PeriodError::Time(text.into()))?;
    Time::new(h, m, 0, 0).map_err(|_| PeriodError::Time(text.into()))
}

impl Period {
    /// Checks the zone and times once, so that a typo fails the daemon's start, not a night.
    pub fn validate(&self) -> Result<(), PeriodError> {
        TimeZone::get(&self.timezone).map_err(|_| PeriodError::Zone(self.timezone.clone()))?;
        time_of(&self.from)?;
        time_of(&self.to)?;
        Ok(())
    }

    /// Whether `now` falls in this period.
    pub fn covers(&self, now: Timestamp) -> bool {
        let (Ok(zone), Ok(from), Ok(to)) = (
            TimeZone::get(&self.timezone),
            time_of(&self.from),
            time_of(&self.to),
        ) else {
            return false;
        };
        let local = now.to_zoned(zone);
        let (day, time) = (local.weekday(), local.time());
        let on = |d: Weekday| self.days.is_empty() || self.days.iter().any(|x| x.weekday() == d);
        if from <= to {
            on(day) && time >= from && time < to
        } else {
            // Over midnight: the evening belongs to its day, the morning to the day before.
            (on(day) && time >= from) || (on(day.previous()) && time < to)
        }
    }
}

/// The idle count at `now`: the last covering period's, else `base`.
pub fn idle_at(base: u32, periods: &[Period], now: Timestamp) -> u32 {
    periods
        .iter()
        .rev()
        .find(|p| p.covers(now))
        .map_or(base, |p| p.idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(days: &[Day], from: &str, to: &str, tz: &str, idle: u32) -> Period {
        Period {
            days: days.to_vec(),
            from: from.into(),
            to: to.into(),
            timezone: tz.into(),
            idle,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn office_hours_in_a_zone_with_daylight_saving() {
        let office = [period(
            &[Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            "08:00",
            "18:00",
            "Europe/Berlin",
            6,
        )];
        // Monday 2026-07-06, 07:30 UTC = 09:30 in Berlin (summer time).
        assert_eq!(idle_at(1, &office, at("2026-07-06T07:30:00Z")), 6);
        // 16:30 UTC = 18:30 in Berlin: over.
        assert_eq!(idle_at(1, &office, at("2026-07-06T16:30:00Z")), 1);
        // Monday 2026-01-05, 07:30 UTC = 08:30 in Berlin (winter time): in.
        assert_eq!(idle_at(1, &office, at("2026-01-05T07:30:00Z")), 6);
        // Saturday.
        assert_eq!(idle_at(1, &office, at("2026-07-04T10:00:00Z")), 1);
    }

    #[test]
    fn a_night_period_runs_over_midnight_and_the_last_match_wins() {
        let periods = [
            period(&[], "00:00", "24:00", "UTC", 3),
            period(&[Day::Fri], "22:00", "06:00", "UTC", 0),
        ];
        // Friday 23:00 and Saturday 05:00 are in Friday's night.
        assert_eq!(idle_at(9, &periods, at("2026-07-10T23:00:00Z")), 0);
        assert_eq!(idle_at(9, &periods, at("2026-07-11T05:00:00Z")), 0);
        // Saturday 07:00: only the all-day period.
        assert_eq!(idle_at(9, &periods, at("2026-07-11T07:00:00Z")), 3);
    }

    #[test]
    fn a_wrong_zone_or_time_is_refused() {
        assert!(
            period(&[], "08:00", "18:00", "Mars/Olympus", 1)
                .validate()
                .is_err()
        );
        assert!(period(&[], "8am", "18:00", "UTC", 1).validate().is_err());
        assert!(period(&[], "08:00", "18:00", "UTC", 1).validate().is_ok());
    }
}
