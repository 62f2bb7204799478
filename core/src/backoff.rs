//! Waits that double with each failure in a row, up to a ceiling.

/// The wait after `failures` failures in a row (from 1): `first_ms`, doubling each time, at
/// most `max_ms`.
pub fn doubling(first_ms: i64, max_ms: i64, failures: u32) -> i64 {
    first_ms
        .saturating_mul(1i64 << failures.saturating_sub(1).min(32))
        .min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::doubling;

    #[test]
    fn doubles_up_to_the_ceiling() {
        assert_eq!(doubling(1_000, 60_000, 0), 1_000);
        assert_eq!(doubling(1_000, 60_000, 1), 1_000);
        assert_eq!(doubling(1_000, 60_000, 3), 4_000);
        assert_eq!(doubling(1_000, 60_000, 7), 60_000);
        assert_eq!(doubling(1_000, 60_000, u32::MAX), 60_000);
    }
}
