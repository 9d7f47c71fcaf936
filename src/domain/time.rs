//! How timestamps are written: RFC 3339 in UTC with exactly six fractional
//! digits (`2026-11-23T09:15:02.120000Z`). A fixed width makes the text sort
//! as the time does, so clients may compare `updated_at` values as strings.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

pub fn micros<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    with_micros_text(at, |text| serializer.serialize_str(text))
}

/// Hands `f` the text of `at`: [`micros_text`]'s, or chrono's for the
/// timestamps it does not write.
pub fn with_micros_text<R>(at: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    match micros_text(at) {
        // Only ASCII digits went into an ASCII template.
        Some(text) => f(std::str::from_utf8(&text).unwrap_or_default()),
        None => f(&at.to_rfc3339_opts(SecondsFormat::Micros, true)),
    }
}

/// The text of `at` for years 0–9999, written digit by digit into a buffer
/// on the stack: chrono's RFC 3339 writer goes through its generic
/// formatting and allocates a `String` per timestamp (4 % of a list page's
/// server CPU, two timestamps per customer). `None` for other years, and
/// for leap seconds, which stored microseconds never produce.
///
/// The fields come from the UTC date and time as chrono keeps them (year
/// and ordinal, seconds of the day), not from a count of microseconds
/// taken apart again: that round trip, and a UTF-8 check of the result,
/// were about half of the 440 instructions a timestamp took.
pub fn micros_text(at: &DateTime<Utc>) -> Option<[u8; 27]> {
    let naive = at.naive_utc();
    let (year, nanos) = (naive.year(), naive.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    // Two digits at a time, from a table: a digit per division took 380
    // instructions a timestamp.
    let mut pair = |at: usize, value: u32| {
        let i = 2 * (value % 100) as usize;
        text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[i..i + 2]);
    };
    let (year, second_of_day, fraction) = (year as u32, naive.num_seconds_from_midnight(), nanos / 1000);
    pair(0, year / 100);
    pair(2, year);
    pair(5, naive.month());
    pair(8, naive.day());
    pair(11, second_of_day / 3600);
    pair(14, second_of_day / 60 % 60);
    pair(17, second_of_day % 60);
    pair(20, fraction / 10_000);
    pair(22, fraction / 100 % 100);
    pair(24, fraction);
    Some(text)
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

pub fn optional_micros<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// An RFC 3339 `full-date`: exactly `YYYY-MM-DD`, and a real date.
/// (chrono's own parsers also take `1990-1-1`.)
pub fn parse_full_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() });
    shape.then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()).flatten()
}

/// An RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS`, optional fraction, then
/// `Z` or `±HH:MM` (`t` and `z` in lower case too, as RFC 3339 allows).
/// Nothing shorter, no space for the `T`, no missing offset.
pub fn parse_date_time(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't') || text.get(..10).and_then(parse_full_date).is_none() {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if !(digits(11..13) && bytes[13] == b':' && digits(14..16) && bytes[16] == b':' && digits(17..19)) {
        return None;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        rest = &fraction[count..];
    }
    let offset_ok = match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    offset_ok.then(|| DateTime::parse_from_rfc3339(text).ok()).flatten().map(|t| t.with_timezone(&Utc))
}

/// Deserialises a strict [`parse_full_date`] date.
pub fn full_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse_full_date(&text).ok_or_else(|| serde::de::Error::custom("must be a date written YYYY-MM-DD (RFC 3339)"))
}

/// Deserialises a strict [`parse_date_time`] time.
pub fn date_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse_date_time(&text).ok_or_else(|| serde::de::Error::custom("must be an RFC 3339 date-time"))
}

/// [`date_time`] for an optional field (`null` is `None`).
pub fn optional_date_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct Strict(#[serde(deserialize_with = "date_time")] DateTime<Utc>);
    Ok(Option::<Strict>::deserialize(deserializer)?.map(|Strict(at)| at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_dates_are_exactly_yyyy_mm_dd_and_real() {
        assert_eq!(parse_full_date("1990-01-01"), NaiveDate::from_ymd_opt(1990, 1, 1));
        assert_eq!(parse_full_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
        for bad in [
            "1990-1-1",
            "1990-01-1",
            "90-01-01",
            "1990/01/01",
            "1990-01-01T00:00:00Z",
            " 1990-01-01",
            "2023-02-29",
            "1990-13-01",
            "+1990-01-01",
            "",
        ] {
            assert_eq!(parse_full_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_times_follow_rfc_3339() {
        let at = |s: &str| parse_date_time(s).map(|t| t.timestamp_micros());
        assert_eq!(at("2026-01-02T03:04:05Z"), Some(1_767_323_045_000_000));
        assert_eq!(at("2026-01-02t03:04:05z"), Some(1_767_323_045_000_000));
        assert_eq!(at("2026-01-02T04:04:05.5+01:00"), Some(1_767_323_045_500_000));
        for bad in [
            "2026-01-02 03:04:05Z",
            "2026-01-02T03:04:05",
            "2026-1-02T03:04:05Z",
            "2026-01-02T3:04:05Z",
            "2026-01-02T03:04Z",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+0100",
            "2026-01-02T03:04:05+01",
            "2026-01-02T25:04:05Z",
            "2026-01-02",
            "2026-01-0\u{e9}T03:04:05Z",
            "",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_have_a_fixed_width_and_sort_as_text() {
        let text = |micros: i64| {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            micros_json(&at)
        };
        assert_eq!(text(1_700_000_000_120_000), "\"2023-11-14T22:13:20.120000Z\"");
        assert_eq!(text(1_700_000_000_000_000), "\"2023-11-14T22:13:20.000000Z\"");
        let (earlier, later) = (text(1_700_000_000_123_000), text(1_700_000_000_123_456));
        assert!(earlier < later, "{earlier} < {later}");
    }

    #[test]
    fn timestamps_are_written_as_the_strftime_pattern_says() {
        // Years 0001–9999, spread over the range, with and without micros.
        for micros in (0..2000i64).map(|i| -62_135_596_800_000_000 + i * 157_000_000_123_457) {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let expected = format!("\"{}\"", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
            assert_eq!(micros_json(&at), expected, "{micros}");
        }
    }

    #[test]
    fn the_stack_writer_writes_what_chrono_writes() {
        let cases = [
            0,
            -1,
            1,
            999_999,
            1_700_000_000_123_456,
            // 0000-01-01, 9999-12-31T23:59:59.999999, and just outside both.
            -62_167_219_200_000_000,
            -62_167_219_200_000_001,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
        ];
        let spread = (0..5000i64).map(|i| -62_167_219_200_000_000 + i * 63_114_000_123_457);
        // Every day of 1896–1904 and 1996–2004: leap days, and the century
        // years that are (2000) and are not (1900) leap years.
        let days = (0..3288i64).flat_map(|d| [-27_028 + d, 9_496 + d]).map(|day| day * 86_400_000_000 + 86_399_999_999);
        for micros in cases.into_iter().chain(spread).chain(days) {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let written = with_micros_text(&at, str::to_owned);
            assert_eq!(written, at.to_rfc3339_opts(SecondsFormat::Micros, true), "{micros}");
        }
    }

    fn micros_json(at: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        micros(at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }
}
