//! Time zones, and the few fixed date layouts, for business hours, reports and exports. The
//! core carries no time zone database: the Worker's runtime already has one (the JavaScript
//! `Intl` data), so the shell registers a [`ZoneRules`] once at start-up, and the core asks it
//! for offsets. (A compiled-in database would be about a fifth of the Worker's size.) Native
//! tests register one built on `chrono-tz`. Until something is registered, only `UTC` is known.

use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};

/// A time zone database.
pub trait ZoneRules: Sync {
    /// The offset from UTC, in seconds, of the IANA zone `zone` at the instant `utc_ms`;
    /// `None` when the zone is unknown.
    fn offset_seconds(&self, zone: &str, utc_ms: i64) -> Option<i32>;
}

static RULES: OnceLock<&'static dyn ZoneRules> = OnceLock::new();

/// Registers the database for the process; later calls keep the first one.
pub fn use_rules(rules: &'static dyn ZoneRules) {
    let _ = RULES.set(rules);
}

pub const UTC: &str = "UTC";

fn offset_seconds(zone: &str, utc_ms: i64) -> Option<i32> {
    match RULES.get() {
        Some(rules) => rules.offset_seconds(zone, utc_ms),
        None => (zone == UTC).then_some(0),
    }
}

/// Whether `zone` is an IANA time zone the registered database knows.
pub fn is_known(zone: &str) -> bool {
    offset_seconds(zone, 0).is_some()
}

/// `zone` when it is known, else `UTC`.
pub fn or_utc(zone: &str) -> &str {
    if is_known(zone) {
        zone
    } else {
        UTC
    }
}

// Dates and times are written and read here by hand, not with chrono's `format` and
// `parse_from_str`: their format-string machinery is about 12 KB (gzip) of the Worker's wasm for
// three fixed layouts.

/// `YYYY-MM-DD`.
pub fn iso_date(date: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, for a time in UTC.
pub fn iso_timestamp(t: NaiveDateTime) -> String {
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        iso_date(t.date()),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1_000_000 % 1000
    )
}

/// The number in `text` when it is `min_digits` to `max_digits` ASCII digits after any leading
/// white space (which chrono's parser skipped too), and nothing else.
fn digits(text: &str, min_digits: usize, max_digits: usize) -> Option<u32> {
    let text = text.trim_start();
    let fits = (min_digits..=max_digits).contains(&text.len());
    (fits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Reads `YYYY-MM-DD` (month and day may have one digit).
pub fn parse_iso_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let year = i32::try_from(digits(year, 4, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(month, 1, 2)?, digits(day, 1, 2)?)
}

/// Reads `HH:MM` (either may have one digit).
pub fn parse_hour_minute(text: &str) -> Option<NaiveTime> {
    let (hour, minute) = text.split_once(':')?;
    NaiveTime::from_hms_opt(digits(hour, 1, 2)?, digits(minute, 1, 2)?, 0)
}

/// The wall-clock time in `zone` at the instant `utc_ms` (an unknown zone reads as UTC).
pub fn local(zone: &str, utc_ms: i64) -> Option<NaiveDateTime> {
    let offset = offset_seconds(zone, utc_ms).unwrap_or(0);
    let utc = DateTime::<Utc>::from_timestamp_millis(utc_ms)?;
    Some(utc.naive_utc() + TimeDelta::seconds(i64::from(offset)))
}

/// The first instant (Unix ms) at which the wall clock in `zone` reads `local`; for a time the
/// clocks skip (spring forward), the instant the skipped hour would have been, read with the
/// offset before the change.
pub fn instant(zone: &str, local: NaiveDateTime) -> i64 {
    let as_utc = local.and_utc().timestamp_millis();
    // The offset is that of an instant near the answer: try both offsets in force a day around
    // it and keep the earliest one that reads back as `local`.
    let candidates = [as_utc - 86_400_000, as_utc + 86_400_000]
        .map(|probe| offset_seconds(zone, probe).unwrap_or(0));
    let mut best: Option<i64> = None;
    for offset in candidates {
        let at = as_utc - i64::from(offset) * 1000;
        if self::local(zone, at) == Some(local) {
            best = Some(best.map_or(at, |b| b.min(at)));
        }
    }
    best.unwrap_or(as_utc - i64::from(candidates[0]) * 1000)
}

#[cfg(test)]
pub(crate) mod testing {
    /// `chrono-tz` as the database, for the core's own tests.
    pub struct ChronoTz;

    impl super::ZoneRules for ChronoTz {
        fn offset_seconds(&self, zone: &str, utc_ms: i64) -> Option<i32> {
            use chrono::{Offset, TimeZone};
            let tz: chrono_tz::Tz = zone.parse().ok()?;
            let utc = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(utc_ms)?;
            Some(
                tz.offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        }
    }

    pub fn install() {
        super::use_rules(&ChronoTz);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, 0))
            .expect("a valid date")
    }

    #[test]
    fn dates_and_times_read_and_written_as_chrono_would() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        assert_eq!(iso_date(date), date.format("%Y-%m-%d").to_string());
        let t = date.and_hms_milli_opt(8, 5, 9, 42).unwrap();
        assert_eq!(
            iso_timestamp(t),
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
        // chrono also takes years of other lengths and signs; a date here has four digits.
        for text in [
            "2026-11-22",
            "2026-02-29",
            "2024-02-29",
            "2026-1-2",
            "2026-11-22x",
            "2026/11/22",
            "2026-11",
            " 2026-11-22",
            "2026- 11-22",
            "2026-11-22 ",
            "",
        ] {
            assert_eq!(
                parse_iso_date(text),
                NaiveDate::parse_from_str(text, "%Y-%m-%d").ok(),
                "{text}"
            );
        }
        for text in [
            "09:30", "9:30", "23:59", "00:00", "24:00", "12:60", "12:5", "ab:cd", "1230", "",
            "9:30x", " 9:30", "9: 30", "9:30 ",
        ] {
            assert_eq!(
                parse_hour_minute(text),
                NaiveTime::parse_from_str(text, "%H:%M").ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn local_and_instant_agree_across_daylight_saving_changes() {
        testing::install();
        let zone = "America/New_York";
        // 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
        let before = instant(zone, at(2026, 3, 8, 1, 30));
        assert_eq!(before, at(2026, 3, 8, 6, 30).and_utc().timestamp_millis());
        let after = instant(zone, at(2026, 3, 8, 3, 30));
        assert_eq!(after, at(2026, 3, 8, 7, 30).and_utc().timestamp_millis());
        // A skipped wall time maps to where it would have been, before the change.
        let skipped = instant(zone, at(2026, 3, 8, 2, 30));
        assert_eq!(skipped, at(2026, 3, 8, 7, 30).and_utc().timestamp_millis());
        // A repeated wall time maps to its first occurrence.
        let repeated = instant(zone, at(2026, 11, 1, 1, 30));
        assert_eq!(
            repeated,
            at(2026, 11, 1, 5, 30).and_utc().timestamp_millis()
        );
        for ms in [before, after, repeated] {
            let back = local(zone, ms).expect("in range");
            assert_eq!(instant(zone, back), ms);
        }
        assert_eq!(
            local("Asia/Shanghai", 0),
            Some(at(1970, 1, 1, 8, 0)),
            "UTC+8 without daylight saving"
        );
    }

    #[test]
    fn unknown_zones_read_as_utc() {
        testing::install();
        assert!(!is_known("Mars/Olympus"));
        assert_eq!(or_utc("Mars/Olympus"), UTC);
        assert_eq!(local("Mars/Olympus", 0), Some(at(1970, 1, 1, 0, 0)));
        assert!(is_known("Asia/Shanghai"));
    }
}
