//! Rows in PostgreSQL's `COPY … FROM STDIN` text format, for bulk imports.
//! COPY is the fastest way into PostgreSQL: one statement streams all the
//! rows (no 16,000-parameter statement to parse and plan per 1,000 rows),
//! and the server writes them with its multi-row heap insert.
//!
//! The format: one line a row, columns separated by tabs, `\N` for NULL, and
//! in values a backslash, tab, newline or carriage return written as a
//! backslash escape.

use std::io::Write;

use chrono::SecondsFormat;

use crate::store::sql::Param;

/// A COPY text payload, written row by row.
#[derive(Default)]
pub struct CopyRows {
    data: Vec<u8>,
}

impl CopyRows {
    pub fn push_row(&mut self, values: &[Param]) {
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.data.push(b'\t');
            }
            self.push_value(value);
        }
        self.data.push(b'\n');
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    fn push_value(&mut self, value: &Param) {
        match value {
            Param::Text(v) => self.push_escaped(v),
            Param::Int(v) => self.data.extend_from_slice(v.to_string().as_bytes()),
            // ISO 8601 in UTC with microseconds: timestamptz reads it exactly.
            Param::Time(v) => self.data.extend_from_slice(v.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes()),
            Param::Id(v) => self.data.extend_from_slice(v.hyphenated().to_string().as_bytes()),
            Param::Json(v) => self.push_escaped(v.as_str()),
            // bytea's hex form, its backslash escaped for COPY.
            Param::Bytes(v) => {
                self.data.extend_from_slice(b"\\\\x");
                for byte in v {
                    // Writing to a Vec cannot fail.
                    let _ = write!(self.data, "{byte:02x}");
                }
            }
            Param::Null | Param::NullTime | Param::NullJson | Param::NullId | Param::NullInt => {
                self.data.extend_from_slice(b"\\N")
            }
        }
    }

    fn push_escaped(&mut self, text: &str) {
        for byte in text.bytes() {
            match byte {
                b'\\' => self.data.extend_from_slice(b"\\\\"),
                b'\t' => self.data.extend_from_slice(b"\\t"),
                b'\n' => self.data.extend_from_slice(b"\\n"),
                b'\r' => self.data.extend_from_slice(b"\\r"),
                other => self.data.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn line(values: Vec<Param>) -> String {
        let mut rows = CopyRows::default();
        rows.push_row(&values);
        String::from_utf8(rows.into_bytes()).unwrap()
    }

    #[test]
    fn values_are_tab_separated_with_nulls_as_backslash_n() {
        let at = chrono::Utc.timestamp_micros(1_764_650_000_123_456).unwrap();
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let got = line(vec![
            Param::Id(id),
            Param::Text("Ada".into()),
            Param::Null,
            Param::Int(-42),
            Param::Time(at),
            Param::NullTime,
            Param::Bytes(vec![0, 255, 16]),
            Param::NullJson,
        ]);
        assert_eq!(
            got,
            "01234567-89ab-cdef-0123-456789abcdef\tAda\t\\N\t-42\t2025-12-02T04:33:20.123456Z\t\\N\t\\\\x00ff10\t\\N\n"
        );
    }

    #[test]
    fn text_and_json_escape_what_the_format_gives_meaning() {
        assert_eq!(line(vec![Param::Text("a\\b\tc\nd\re \\N".into())]), "a\\\\b\\tc\\nd\\re \\\\N\n");
        let doc = serde_json::json!({"note": "line\nbreak", "path": "C:\\x"});
        // serde_json writes the newline as the two characters \n; COPY must
        // then see the backslash doubled, or it would read a real newline.
        assert_eq!(line(vec![Param::json(&doc).unwrap()]), "{\"note\":\"line\\\\nbreak\",\"path\":\"C:\\\\\\\\x\"}\n");
        assert_eq!(line(vec![Param::Text("Bjørn Åse".into())]), "Bjørn Åse\n");
    }

    #[test]
    fn rows_follow_each_other_line_by_line() {
        let mut rows = CopyRows::default();
        rows.push_row(&[Param::Int(1), Param::Text("x".into())]);
        rows.push_row(&[Param::Int(2), Param::Null]);
        assert_eq!(rows.into_bytes(), b"1\tx\n2\t\\N\n");
    }
}
