//! Business hours in a site's own time zone, with holidays. Used to tell visitors when the team
//! is away (the widget then offers to leave a message) and to hold routing while closed.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::zone;

/// One opening span of a day, `"09:00"`–`"18:00"` in the site's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub open: String,
    pub close: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Weekly {
    pub mon: Vec<Span>,
    pub tue: Vec<Span>,
    pub wed: Vec<Span>,
    pub thu: Vec<Span>,
    pub fri: Vec<Span>,
    pub sat: Vec<Span>,
    pub sun: Vec<Span>,
}

impl Weekly {
    fn day(&self, day: Weekday) -> &[Span] {
        match day {
            Weekday::Mon => &self.mon,
            Weekday::Tue => &self.tue,
            Weekday::Wed => &self.wed,
            Weekday::Thu => &self.thu,
            Weekday::Fri => &self.fri,
            Weekday::Sat => &self.sat,
            Weekday::Sun => &self.sun,
        }
    }

    /// Every span of the week.
    fn spans(&self) -> impl Iterator<Item = &Span> {
        [
            &self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun,
        ]
        .into_iter()
        .flatten()
    }
}

/// A site's opening hours. Without `enabled`, the team counts as always open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BusinessHours {
    pub enabled: bool,
    /// IANA zone name, e.g. `Asia/Shanghai`.
    pub timezone: String,
    pub weekly: Weekly,
    /// Closed all day: `YYYY-MM-DD` in the site's time zone.
    pub holidays: BTreeSet<String>,
}

fn time(s: &str) -> Option<NaiveTime> {
    if s == "24:00" {
        return NaiveTime::from_hms_opt(23, 59, 59);
    }
    zone::parse_hour_minute(s)
}

/// A time as a site's hours are saved with: exactly `HH:MM` (or `24:00`), as the console
/// writes it. Reading stays lenient (`9:30` reads) for hours saved before this check.
fn written_time(s: &str) -> Option<NaiveTime> {
    let bytes = s.as_bytes();
    let shaped = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    shaped.then(|| time(s)).flatten()
}

/// Whether `name` is an IANA time zone the runtime knows.
pub fn is_known_zone(name: &str) -> bool {
    zone::is_known(name)
}

impl BusinessHours {
    /// The site's zone; `zone::local` and `zone::instant` read an unknown one as UTC, so it is
    /// not checked first (on the Worker each check is another call into `Intl`).
    fn zone(&self) -> &str {
        &self.timezone
    }

    /// Whether every span reads as two `HH:MM` times (`24:00` for the end of the day) and every
    /// holiday is a date written exactly `YYYY-MM-DD` (holidays are matched by their text). A
    /// span that does not read, or that closes before it opens, is never open and a holiday
    /// written otherwise never closes, so a site's hours are checked with this when they are
    /// saved: a typo is refused, not kept. A span runs within one day; one past midnight is two
    /// spans, to `24:00` and from `00:00`.
    pub fn is_well_formed(&self) -> bool {
        let spans_read = self.weekly.spans().all(|span| {
            match (written_time(&span.open), written_time(&span.close)) {
                (Some(open), Some(close)) => open < close,
                _ => false,
            }
        });
        spans_read
            && self.holidays.iter().all(|day| {
                zone::parse_iso_date(day).is_some_and(|date| zone::iso_date(date) == *day)
            })
    }

    /// Whether the team is open at `now_ms` (Unix milliseconds).
    pub fn is_open(&self, now_ms: i64) -> bool {
        if !self.enabled {
            return true;
        }
        let Some(local) = zone::local(self.zone(), now_ms) else {
            return true;
        };
        let date = local.date();
        if self.holidays.contains(&zone::iso_date(date)) {
            return false;
        }
        let now = local.time();
        self.weekly.day(date.weekday()).iter().any(|span| {
            match (time(&span.open), time(&span.close)) {
                (Some(open), Some(close)) => open <= now && now < close,
                _ => false,
            }
        })
    }

    /// The next moment (Unix ms) after `now_ms` at which `is_open` changes, within two weeks.
    pub fn next_change(&self, now_ms: i64) -> Option<i64> {
        if !self.enabled {
            return None;
        }
        let zone = self.zone();
        let local_now = zone::local(zone, now_ms)?;
        let open_now = self.is_open(now_ms);
        let start: NaiveDate = local_now.date();
        for offset in 0..15 {
            let date = start + Duration::days(offset);
            let midnight = date.and_hms_opt(0, 0, 0)?;
            let mut boundaries = vec![midnight];
            for span in self.weekly.day(date.weekday()) {
                for t in [time(&span.open), time(&span.close)].into_iter().flatten() {
                    boundaries.push(date.and_time(t));
                }
            }
            boundaries.sort();
            for boundary in boundaries {
                let ms = zone::instant(zone, boundary);
                if ms > now_ms && self.is_open(ms) != open_now {
                    return Some(ms);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai_office() -> BusinessHours {
        crate::zone::testing::install();
        let nine_to_six = vec![Span {
            open: "09:00".into(),
            close: "18:00".into(),
        }];
        BusinessHours {
            enabled: true,
            timezone: "Asia/Shanghai".into(),
            weekly: Weekly {
                mon: nine_to_six.clone(),
                tue: nine_to_six.clone(),
                wed: nine_to_six.clone(),
                thu: nine_to_six.clone(),
                fri: nine_to_six,
                ..Weekly::default()
            },
            holidays: BTreeSet::from(["2026-10-01".to_string()]),
        }
    }

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn hours_that_do_not_read_are_not_well_formed() {
        let hours = shanghai_office();
        assert!(hours.is_well_formed());
        let mut typo = hours.clone();
        typo.weekly.tue = vec![Span {
            open: "9.30".into(),
            close: "18:00".into(),
        }];
        assert!(!typo.is_well_formed());
        let mut end_of_day = hours.clone();
        end_of_day.weekly.sat = vec![Span {
            open: "20:00".into(),
            close: "24:00".into(),
        }];
        assert!(end_of_day.is_well_formed());
        for (open, close) in [
            ("18:00", "09:00"),
            ("09:00", "09:00"),
            ("24:00", "24:00"),
            ("9:30", "18:00"),
            ("09:30", " 18:0"),
            ("09:30", "18:60"),
        ] {
            let mut span = hours.clone();
            span.weekly.wed = vec![Span {
                open: open.into(),
                close: close.into(),
            }];
            assert!(!span.is_well_formed(), "{open}–{close}");
        }
        for written_otherwise in ["2026-13-01", "2026-1-2", " 2026-10-01", "2026/10/01", ""] {
            let mut holiday = hours.clone();
            holiday.holidays.insert(written_otherwise.into());
            assert!(!holiday.is_well_formed(), "{written_otherwise:?}");
        }
    }

    #[test]
    fn open_in_the_sites_own_time_zone() {
        let hours = shanghai_office();
        // Monday 2026-11-23 09:30 in Shanghai is 01:30 UTC.
        assert!(hours.is_open(utc("2026-11-23T01:30:00Z")));
        assert!(!hours.is_open(utc("2026-11-23T00:59:00Z")));
        assert!(!hours.is_open(utc("2026-11-23T10:00:00Z"))); // 18:00 local: closed
        assert!(!hours.is_open(utc("2026-11-22T03:00:00Z"))); // Sunday
        assert!(!hours.is_open(utc("2026-10-01T03:00:00Z"))); // holiday (a Thursday)
    }

    #[test]
    fn daylight_saving_is_followed() {
        let mut hours = shanghai_office();
        hours.timezone = "Europe/Berlin".into();
        // 09:30 Berlin is 07:30 UTC in summer and 08:30 UTC in winter.
        assert!(hours.is_open(utc("2026-07-06T07:30:00Z")));
        assert!(!hours.is_open(utc("2026-12-07T07:30:00Z")));
        assert!(hours.is_open(utc("2026-12-07T08:30:00Z")));
    }

    #[test]
    fn next_change_finds_the_opening_after_a_weekend() {
        let hours = shanghai_office();
        // Saturday noon Shanghai → Monday 09:00 Shanghai = Monday 01:00 UTC.
        assert_eq!(
            hours.next_change(utc("2026-11-21T04:00:00Z")),
            Some(utc("2026-11-23T01:00:00Z"))
        );
        // Monday 10:00 → closes at 18:00.
        assert_eq!(
            hours.next_change(utc("2026-11-23T02:00:00Z")),
            Some(utc("2026-11-23T10:00:00Z"))
        );
    }

    #[test]
    fn disabled_or_unknown_zone_is_handled() {
        assert!(BusinessHours::default().is_open(0));
        let mut hours = shanghai_office();
        hours.timezone = "Not/AZone".into();
        // Falls back to UTC rather than failing.
        assert!(hours.is_open(utc("2026-11-23T09:30:00Z")));
    }
}
