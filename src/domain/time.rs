//! How timestamps are written: RFC 3339 in UTC with exactly six fractional
//! digits (`2026-11-23T09:15:02.120000Z`). A fixed width makes the text sort
//! as the time does, so clients may compare `updated_at` values as strings.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub fn micros<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    with_micros_text(at, |text| serializer.serialize_str(text))
}

/// Hands `f` the text of `at`. Years 0–9999 are written digit by digit into
/// a buffer on the stack: chrono's RFC 3339 writer goes through its generic
/// formatting and allocates a `String` per timestamp (4 % of a list page's
/// server CPU, two timestamps per customer). Other years, and leap seconds,
/// which stored microseconds never produce, go to chrono's writer.
pub fn with_micros_text<R>(at: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    let micros = at.timestamp_micros();
    let (seconds, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) || at.timestamp_subsec_micros() >= 1_000_000 {
        return f(&at.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    // Two digits at a time, from a table: a digit per division took 380
    // instructions a timestamp.
    let mut pair = |at: usize, value: u32| {
        let i = 2 * (value % 100) as usize;
        text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[i..i + 2]);
    };
    let (year, second_of_day, fraction) = (year as u32, second_of_day as u32, fraction as u32);
    pair(0, year / 100);
    pair(2, year);
    pair(5, month);
    pair(8, day);
    pair(11, second_of_day / 3600);
    pair(14, second_of_day / 60 % 60);
    pair(17, second_of_day % 60);
    pair(20, fraction / 10_000);
    pair(22, fraction / 100 % 100);
    pair(24, fraction);
    // Only ASCII digits went into an ASCII template.
    f(std::str::from_utf8(&text).unwrap_or_default())
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01: Howard Hinnant's `civil_from_days`, in integer arithmetic
/// (chrono's calendar accessors went through its offset and ordinal code).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn optional_micros<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
