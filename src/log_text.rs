//! Text both logs write (the stderr log, `log`, and the access log, `access_log`): calendar
//! timestamps in UTC, and strings escaped so that a log line stays one line and parses.
//!
//! Everything appends bytes to a caller's buffer; nothing here allocates.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const HEX: &[u8; 16] = b"0123456789ABCDEF";
/// "00" to "99": numbers are written two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                  2021222324252627282930313233343536373839\
                                  4041424344454647484950515253545556575859\
                                  6061626364656667686970717273747576777879\
                                  8081828384858687888990919293949596979899";

/// A byte the combined format writes as `\xHH`: control characters, `"`, `\\`, DEL and
/// everything above ASCII (as nginx escapes them).
/// Comparisons rather than a table, so that a scan of 16 bytes at a time vectorizes.
fn log_escaped(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\'
}

/// An ASCII byte a JSON string escapes: control characters, `"` and `\\`.
fn json_escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// A moment as UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Seconds since the Unix epoch (what the fields below spell out).
    pub unix_seconds: u64,
    pub year: u32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Below the second.
    pub micros: u32,
}

impl CivilTime {
    /// `time` in UTC; a time before 1970 reads as the epoch.
    pub fn of(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let unix_seconds = since.as_secs();
        let (year, month, day) = civil_from_days(unix_seconds / 86_400);
        let of_day = (unix_seconds % 86_400) as u32;
        Self {
            unix_seconds,
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            micros: since.subsec_micros(),
        }
    }

    /// `2026-12-07T05:31:00` (ISO 8601, no fraction, no zone).
    pub fn write_iso8601_seconds(&self, out: &mut Vec<u8>) {
        write_padded(out, self.year.into(), 4);
        out.push(b'-');
        write_padded(out, self.month.into(), 2);
        out.push(b'-');
        write_padded(out, self.day.into(), 2);
        out.push(b'T');
        self.write_clock(out);
    }

    /// `2026-12-07T05:31:00.123Z`.
    pub fn write_iso8601_millis(&self, out: &mut Vec<u8>) {
        self.write_iso8601_seconds(out);
        out.push(b'.');
        write_padded(out, (self.micros / 1000).into(), 3);
        out.push(b'Z');
    }

    /// `07/Dec/2026:05:31:00 +0000`: the Common Log Format's time, in UTC.
    pub fn write_common_log(&self, out: &mut Vec<u8>) {
        write_padded(out, self.day.into(), 2);
        out.push(b'/');
        out.extend_from_slice(MONTHS[(self.month - 1) as usize % 12]);
        out.push(b'/');
        write_padded(out, self.year.into(), 4);
        out.push(b':');
        self.write_clock(out);
        out.extend_from_slice(b" +0000");
    }

    fn write_clock(&self, out: &mut Vec<u8>) {
        write_padded(out, self.hour.into(), 2);
        out.push(b':');
        write_padded(out, self.minute.into(), 2);
        out.push(b':');
        write_padded(out, self.second.into(), 2);
    }
}

/// (year, month, day) of the `days`th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = (year_of_era + era * 400 + u64::from(month <= 2)) as u32;
    (year, month, day)
}

/// `value` in decimal with at least `width` (at most 20) digits.
pub fn write_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let first = write_digits(&mut digits, value);
    out.extend_from_slice(&digits[first.min(digits.len() - width.min(digits.len()))..]);
}

/// `value` in decimal.
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0; 20];
    let first = write_digits(&mut digits, value);
    out.extend_from_slice(&digits[first..]);
}

/// Writes `value`'s digits at the end of `digits`, two at a time; returns where they start.
fn write_digits(digits: &mut [u8; 20], mut value: u64) -> usize {
    let mut at = digits.len();
    while value >= 100 {
        let pair = (value % 100) as usize * 2;
        value /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if value >= 10 {
        let pair = value as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + value as u8;
    }
    at
}

/// `micros` as seconds with six decimals: `0.000215`, `12.500000`.
pub fn write_seconds(out: &mut Vec<u8>, micros: u64) {
    // The digits of the microseconds, at least seven, with the point put in before the last
    // six: "0000215" is 0.000215 s.
    let mut digits = [b'0'; 20];
    let first = write_digits(&mut digits, micros).min(digits.len() - 7);
    let point = digits.len() - 6;
    let mut text = [b'.'; 21];
    text[..point - first].copy_from_slice(&digits[first..point]);
    text[point - first + 1..21 - first].copy_from_slice(&digits[point..]);
    out.extend_from_slice(&text[..21 - first]);
}

/// `bytes` as a JSON string, quotes included. Valid UTF-8 is kept as it is; in anything else
/// each byte above ASCII is written as the code point of the same number (`\u00e9`), so the
/// line is always valid JSON.
pub fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // `is_ascii` first: it is the usual case, and cheaper to check than UTF-8.
    let keep_non_ascii = bytes.is_ascii() || std::str::from_utf8(bytes).is_ok();
    let escaped = |byte: u8| json_escaped(byte) || (byte >= 0x80 && !keep_non_ascii);
    write_escaped(out, bytes, escaped, |out, byte| {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => {
                let hex = |nibble: u8| HEX[usize::from(nibble)].to_ascii_lowercase();
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte & 15)]);
                return;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    });
    out.push(b'"');
}

/// `bytes` for a quoted field of the combined format, as nginx escapes them: `"`, `\`, control
/// characters and bytes above ASCII as `\xHH`. An empty value is written as `-`.
pub fn write_log_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        out.push(b'-');
        return;
    }
    write_escaped(out, bytes, log_escaped, |out, byte| {
        let hex = |nibble: u8| HEX[usize::from(nibble)];
        out.extend_from_slice(&[b'\\', b'x', hex(byte >> 4), hex(byte & 15)]);
    });
}

/// Where the first byte `escaped` picks is. Most fields have none: 16 bytes are checked at
/// a time without a branch per byte.
fn first_escaped(bytes: &[u8], escaped: &impl Fn(u8) -> bool) -> Option<usize> {
    const CHUNK: usize = 16;
    let mut chunks = bytes.chunks_exact(CHUNK);
    for (index, chunk) in (&mut chunks).enumerate() {
        if chunk.iter().fold(false, |any, &byte| any | escaped(byte)) {
            let at = chunk.iter().position(|&byte| escaped(byte))?;
            return Some(index * CHUNK + at);
        }
    }
    let done = bytes.len() - chunks.remainder().len();
    let at = chunks.remainder().iter().position(|&byte| escaped(byte))?;
    Some(done + at)
}

/// Copies `bytes` in runs between the bytes `escaped` picks, which `escape` writes.
fn write_escaped(
    out: &mut Vec<u8>,
    bytes: &[u8],
    escaped: impl Fn(u8) -> bool,
    escape: impl Fn(&mut Vec<u8>, u8),
) {
    let mut rest = bytes;
    while let Some(at) = first_escaped(rest, &escaped) {
        out.extend_from_slice(&rest[..at]);
        escape(out, rest[at]);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn calendar_fields_match_date_for_known_instants() {
        // `date -u -d @1796621460`: Mon Dec 7 05:31:00 UTC 2026.
        let at = UNIX_EPOCH + Duration::from_micros(1_796_621_460_123_456);
        let civil = CivilTime::of(at);
        assert_eq!(
            text(|o| civil.write_iso8601_millis(o)),
            "2026-12-07T05:31:00.123Z"
        );
        assert_eq!(
            text(|o| civil.write_common_log(o)),
            "07/Dec/2026:05:31:00 +0000"
        );
        // A leap day, and the epoch itself.
        let leap = CivilTime::of(UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let epoch = CivilTime::of(UNIX_EPOCH);
        assert_eq!(
            text(|o| epoch.write_iso8601_seconds(o)),
            "1970-01-01T00:00:00"
        );
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let mut previous = civil_from_days(0);
        for days in 1..146_097 * 2 {
            let (y, m, d) = civil_from_days(days);
            let next_day = (y, m, d) == (previous.0, previous.1, previous.2 + 1);
            let next_month = d == 1 && (y, m) == (previous.0, previous.1 + 1);
            let next_year = (m, d) == (1, 1) && y == previous.0 + 1;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(text(|o| write_padded(o, 7, 3)), "007");
        assert_eq!(text(|o| write_padded(o, 12345, 2)), "12345");
        assert_eq!(text(|o| write_u64(o, u64::MAX)), "18446744073709551615");
        for value in (0..100_000).chain([u64::MAX - 1, 1 << 63, 10_000_000_000]) {
            assert_eq!(text(|o| write_u64(o, value)), value.to_string());
            assert_eq!(text(|o| write_padded(o, value, 6)), format!("{value:06}"));
        }
        assert_eq!(text(|o| write_seconds(o, 215)), "0.000215");
        assert_eq!(text(|o| write_seconds(o, 12_500_000)), "12.500000");
        for micros in [0, 1, 999_999, 1_000_000, 123_456_789, u64::MAX] {
            let expected = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
            assert_eq!(text(|o| write_seconds(o, micros)), expected);
        }
    }

    #[test]
    fn json_strings_escape_what_json_requires_and_stay_valid_for_any_bytes() {
        let written = text(|o| write_json_string(o, b"a\"b\\c\nd\x01\te\xe9"));
        assert_eq!(written, r#""a\"b\\c\nd\u0001\te\u00e9""#);
        let utf8 = text(|o| write_json_string(o, "caf\u{e9} \u{1f600}".as_bytes()));
        assert_eq!(utf8, "\"caf\u{e9} \u{1f600}\"");
        for bytes in [&b"\xff\xfe"[..], b"\x7f", b"x\xc3"] {
            let written = text(|o| write_json_string(o, bytes));
            let parsed: String = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed.chars().count(), bytes.len(), "{written}");
        }
    }

    #[test]
    fn combined_fields_escape_quotes_backslashes_and_non_printables() {
        assert_eq!(
            text(|o| write_log_escaped(o, b"Mozilla \"x\" \\ \x1b\xe9")),
            r#"Mozilla \x22x\x22 \x5C \x1B\xE9"#
        );
        assert_eq!(text(|o| write_log_escaped(o, b"")), "-");
    }

    #[test]
    fn escaped_bytes_are_found_wherever_they_are_in_or_across_16_byte_chunks() {
        for len in 0..50 {
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = b'"';
                assert_eq!(first_escaped(&bytes, &log_escaped), Some(at), "{len} {at}");
                bytes[at] = 0xe9;
                let written = text(|o| write_log_escaped(o, &bytes));
                assert_eq!(written.len(), len + 3);
                assert_eq!(&written[at..at + 4], "\\xE9");
            }
            assert_eq!(first_escaped(&vec![b'a'; len], &log_escaped), None);
        }
    }
}
