//! Durations as users write them: an integer followed by a unit (`50us`, `250ms`, `10s`,
//! `2m`, `1h`).

use std::time::Duration;

/// The longest duration accepted. Every duration in the config bounds a wait; anything
/// longer than a day is a typo, and a bound keeps `Instant + Duration` far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Each unit in microseconds.
const UNITS: &[(&str, u64)] = &[
    ("us", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
];

/// Parses `"50us"`, `"250ms"`, `"10s"`, `"2m"`, `"1h"`.
///
/// Every duration ringproxy takes is a timeout, so zero is rejected (a zero timeout would
/// fail every request), as is anything above [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = "expected an integer followed by a unit (us, ms, s, m or h), e.g. \"10s\"";
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    if digits.is_empty() || unit.is_empty() {
        return Err(format!("invalid duration {s:?} ({expected})"));
    }
    let Some(&(_, micros_per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "invalid duration unit {unit:?} in {s:?} ({expected})"
        ));
    };
    let too_long = || format!("duration {s:?} is too long (at most 24h)");
    let count: u64 = digits.parse().map_err(|_| too_long())?;
    let micros = count.checked_mul(micros_per_unit).ok_or_else(too_long)?;
    let duration = Duration::from_micros(micros);
    if duration.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the units are listed, every one is: the example config and the reference
    /// in file.rs write `(us, ms, s, m, h)`, the README `` `us`, `ms`, `s`, `m` or `h` ``.
    #[test]
    fn every_unit_is_listed_wherever_units_are_listed() {
        let names: Vec<&str> = UNITS.iter().map(|&(name, _)| name).collect();
        let plain = format!("({})", names.join(", "));
        let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let (last, rest) = quoted.split_last().unwrap();
        let readme = format!("{} or {last}", rest.join(", "));
        // file.rs: its doc comment, not the error messages its tests quote.
        let reference = include_str!("file.rs")
            .split("\nuse ")
            .next()
            .unwrap_or_default();
        let documents = [
            (
                "ringproxy.example.toml",
                include_str!("../../ringproxy.example.toml"),
                &plain,
            ),
            ("src/config/file.rs", reference, &plain),
            ("README.md", include_str!("../../README.md"), &readme),
        ];
        for (name, text, list) in documents {
            let listing: Vec<&str> = text
                .lines()
                .filter(|line| line.contains("ms, s, m") || line.contains("`ms`, `s`"))
                .collect();
            assert!(!listing.is_empty(), "{name} lists no units");
            for line in listing {
                assert!(
                    line.contains(list.as_str()),
                    "{name}: {line:?} lacks {list}"
                );
            }
        }
    }

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_zero() {
        let err = parse_duration("0s").unwrap_err();
        assert!(err.contains("greater than zero"), "{err}");
        assert!(parse_duration("0ms").is_err());
    }

    #[test]
    fn rejects_missing_or_unknown_unit() {
        for input in [
            "10", "s", "", "10 s", " 10s", "10s ", "10sec", "1.5s", "-1s", "10S", "1d", "1h30m",
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(
                err.contains("expected an integer followed by a unit"),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn rejects_too_long_without_overflowing() {
        assert!(parse_duration("25h").unwrap_err().contains("too long"));
        assert!(
            parse_duration("86400001ms")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration("18446744073709551615h")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration("99999999999999999999999s")
                .unwrap_err()
                .contains("too long")
        );
    }
}
