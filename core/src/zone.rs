//! Time zones for business hours and reports. The core carries no time zone database: the
//! Worker's runtime already has one (the JavaScript `Intl` data), so the shell registers a
//! [`ZoneRules`] once at start-up, and the core asks it for offsets. (A compiled-in database
//! would be about a fifth of the Worker's size.) Native tests register one built on `chrono-tz`.
//! Until something is registered, only `UTC` is known.

use std::sync::OnceLock;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

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
