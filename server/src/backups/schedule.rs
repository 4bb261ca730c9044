//! Cron schedules (`minute hour day-of-month month day-of-week`) read in an
//! IANA time zone.
//!
//! Times are matched on the local wall clock, as an admin who writes
//! `0 3 * * *` in `Europe/Berlin` means it. Across DST changes: a time the
//! clock skips (02:30 on the spring-forward night) still runs that night,
//! shifted by the jump (at 03:30), and a time the clock passes twice (the
//! autumn night) runs once, at its first occurrence.

use std::collections::BTreeSet;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days: BTreeSet<u8>,
    months: BTreeSet<u8>,
    /// 0 = Sunday.
    weekdays: BTreeSet<u8>,
    /// Both day fields restricted: cron runs when either matches.
    either_day: bool,
    day_any: bool,
    weekday_any: bool,
}

/// A schedule that is ready to answer "when next".
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let text = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "a schedule has 5 fields (minute hour day month weekday), this has {}",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day of month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        // 7 is Sunday too.
        let mut weekdays = field(fields[4], "weekday", 0, 7, &DAYS)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        let day_any = fields[2] == "*" || fields[2] == "?";
        let weekday_any = fields[4] == "*" || fields[4] == "?";
        if !day_any
            && days
                .iter()
                .all(|&d| months.iter().all(|&m| d > max_days(m)))
        {
            return Err("that day of the month never occurs in the months given".into());
        }
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            either_day: !day_any && !weekday_any,
            day_any,
            weekday_any,
        })
    }

    fn date_matches(&self, date: Date) -> bool {
        if !self.months.contains(&(date.month() as u8)) {
            return false;
        }
        let day = self.days.contains(&(date.day() as u8));
        let weekday = self
            .weekdays
            .contains(&(date.weekday().to_sunday_zero_offset() as u8));
        if self.either_day {
            day || weekday
        } else {
            (self.day_any || day) && (self.weekday_any || weekday)
        }
    }
}

fn max_days(month: u8) -> u8 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One field: `*`, `5`, `1-5`, `*/15`, `10-50/10`, `mon-fri`, lists of
/// these separated by commas.
fn field(text: &str, what: &str, min: u8, max: u8, names: &[&str]) -> Result<BTreeSet<u8>, String> {
    let value = |s: &str| -> Result<u8, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u8 + min);
        }
        let n: u8 = s
            .parse()
            .map_err(|_| format!("{what} `{s}` is not a number"))?;
        if n < min || n > max {
            return Err(format!("{what} {n} is outside {min}–{max}"));
        }
        Ok(n)
    };
    let mut out = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("{what} step `{s}` is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{what} range `{range}` runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `5/15` means from 5 to the end, every 15.
            (a, if step > 1 { max } else { a })
        };
        out.extend((lo..=hi).step_by(step as usize));
    }
    if out.is_empty() {
        return Err(format!("{what} `{text}` matches nothing"));
    }
    Ok(out)
}

impl Schedule {
    pub fn new(cron: &str, timezone: &str) -> Result<Schedule, (&'static str, String)> {
        let cron = Cron::parse(cron).map_err(|e| ("schedule", e))?;
        let tz = zone(timezone).map_err(|e| ("timezone", e))?;
        Ok(Schedule { cron, tz })
    }

    /// The first start strictly after `after` (Unix seconds).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = Timestamp::from_second(after)
            .ok()?
            .to_zoned(self.tz.clone());
        let mut date = start.date();
        // From the next whole minute after `after`, in local time.
        let mut from = Some(Time::new(start.hour(), start.minute(), 0, 0).ok()?);
        // Five years covers 29 February schedules.
        for _ in 0..(366 * 5) {
            if self.cron.date_matches(date) {
                for &h in &self.cron.hours {
                    for &m in &self.cron.minutes {
                        let t = Time::new(h as i8, m as i8, 0, 0).ok()?;
                        if from.is_some_and(|f| t <= f) {
                            continue;
                        }
                        if let Some(at) = self.instant(date.to_datetime(t)) {
                            if at > after {
                                return Some(at);
                            }
                        }
                    }
                }
            }
            from = None;
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The next `n` starts after `after`.
    pub fn upcoming(&self, after: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// A wall-clock time as an instant. In a gap the clock jumps over, the
    /// time read with the offset from before the jump; when the clock passes the time twice, the
    /// first pass (the second is dropped by `next_after`'s `at > after`).
    fn instant(&self, local: DateTime) -> Option<i64> {
        let zoned = self.tz.to_ambiguous_zoned(local).compatible().ok()?;
        Some(zoned.timestamp().as_second())
    }

    /// `YYYY-MM-DD HH:MM` in the schedule's zone.
    pub fn local(&self, at: i64) -> String {
        match Timestamp::from_second(at) {
            Ok(ts) => ts
                .to_zoned(self.tz.clone())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string(),
            Err(_) => String::new(),
        }
    }

    pub fn zone(&self) -> &TimeZone {
        &self.tz
    }
}

/// An IANA zone by name (`UTC`, `Europe/Berlin`).
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name.len() > 64 {
        return Err("give an IANA time zone such as `UTC` or `Europe/Berlin`".into());
    }
    TimeZone::get(name).map_err(|_| format!("`{name}` is not a known IANA time zone"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn iso(t: i64) -> String {
        Timestamp::from_second(t).unwrap().to_string()
    }

    #[test]
    fn parses_fields_and_refuses_nonsense_with_the_field_named() {
        assert!(Cron::parse("*/15 2-4 * jan-mar mon-fri").is_ok());
        assert!(Cron::parse("@daily").is_ok());
        for (bad, words) in [
            ("* * * *", "5 fields"),
            ("61 * * * *", "minute 61"),
            ("* 24 * * *", "hour 24"),
            ("* * 0 * *", "day of month 0"),
            ("* * * 13 *", "month 13"),
            ("* * * * 8", "weekday 8"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("0 0 31 2 *", "never occurs"),
            ("x * * * *", "not a number"),
        ] {
            let e = Cron::parse(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
        assert_eq!(
            Schedule::new("0 3 * * *", "Mars/Olympus").unwrap_err().0,
            "timezone"
        );
        assert_eq!(Schedule::new("0 3 * *", "UTC").unwrap_err().0, "schedule");
    }

    #[test]
    fn next_runs_in_utc() {
        let s = Schedule::new("0 3 * * *", "UTC").unwrap();
        assert_eq!(
            iso(s.next_after(at("2026-11-29T02:59:59Z")).unwrap()),
            "2026-11-29T03:00:00Z"
        );
        // Strictly after: a start at exactly 03:00 moves to the next day.
        assert_eq!(
            iso(s.next_after(at("2026-11-29T03:00:00Z")).unwrap()),
            "2026-11-30T03:00:00Z"
        );
        let s = Schedule::new("*/20 * * * *", "UTC").unwrap();
        let next: Vec<String> = s
            .upcoming(at("2026-11-29T10:05:00Z"), 3)
            .into_iter()
            .map(iso)
            .collect();
        assert_eq!(
            next,
            [
                "2026-11-29T10:20:00Z",
                "2026-11-29T10:40:00Z",
                "2026-11-29T11:00:00Z"
            ]
        );
    }

    #[test]
    fn weekday_and_day_of_month_follow_cron_either_rule() {
        // The 1st or any Monday.
        let s = Schedule::new("0 0 1 * 1", "UTC").unwrap();
        let next: Vec<String> = s
            .upcoming(at("2026-11-29T00:00:00Z"), 3)
            .into_iter()
            .map(iso)
            .collect();
        assert_eq!(
            next,
            [
                "2026-11-30T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "2026-12-07T00:00:00Z"
            ]
        );
        // Leap day: the next one is in 2028.
        let s = Schedule::new("0 12 29 2 *", "UTC").unwrap();
        assert_eq!(
            iso(s.next_after(at("2026-11-29T00:00:00Z")).unwrap()),
            "2028-02-29T12:00:00Z"
        );
    }

    #[test]
    fn local_time_zones_and_daylight_saving() {
        // 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
        let s = Schedule::new("0 3 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            iso(s.next_after(at("2026-11-29T00:00:00Z")).unwrap()),
            "2026-11-29T02:00:00Z"
        );
        assert_eq!(
            iso(s.next_after(at("2026-07-01T00:00:00Z")).unwrap()),
            "2026-07-01T01:00:00Z"
        );
        // 02:30 does not exist on 2026-03-29 in Berlin: it runs right after the gap, once.
        let s = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        let next: Vec<String> = s
            .upcoming(at("2026-03-28T12:00:00Z"), 3)
            .into_iter()
            .map(iso)
            .collect();
        assert_eq!(
            next,
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // 02:30 happens twice on 2026-10-25: it runs once.
        let next: Vec<String> = s
            .upcoming(at("2026-10-24T12:00:00Z"), 2)
            .into_iter()
            .map(iso)
            .collect();
        assert_eq!(next, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    }
}
