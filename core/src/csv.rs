//! CSV output that is safe to open in a spreadsheet: fields are quoted as RFC 4180 requires,
//! and text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return at
//! the start) is prefixed with an apostrophe so it stays text.

/// One field, escaped and guarded.
pub fn field(value: &str) -> String {
    let guarded = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    };
    if guarded.contains([',', '"', '\n', '\r']) || guarded != guarded.trim() {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One line of fields, ending in CRLF.
pub fn line<I, S>(fields: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = fields
        .into_iter()
        .map(|f| field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_stay_text() {
        assert_eq!(
            field("=HYPERLINK(\"http://evil\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""
        );
        assert_eq!(field("+1+1"), "'+1+1");
        assert_eq!(field("-2"), "'-2");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tcmd"), "'\tcmd");
    }

    #[test]
    fn quoting_follows_rfc4180() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("你好"), "你好");
        assert_eq!(line(["a", "b,c", "=1"]), "a,\"b,c\",'=1\r\n");
    }
}

/// Unix milliseconds as an ISO 8601 UTC timestamp (`2026-11-22T06:51:04.123Z`).
pub fn iso8601(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| crate::zone::iso_timestamp(t.naive_utc()))
        .unwrap_or_default()
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::iso8601(1_795_420_800_123),
            "2026-11-23T08:00:00.123Z"
        );
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_date(value: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp_millis());
    }
    crate::zone::parse_iso_date(value)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}
