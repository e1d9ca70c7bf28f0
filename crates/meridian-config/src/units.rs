//! Human units in the config: durations such as `"500ms"` and sizes such as `"256MiB"`.

use std::fmt;
use std::time::Duration;

/// Why a unit string was rejected, phrased so it can be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub problem: String,
    pub fix: String,
}

const DURATION_UNITS: &[(&str, f64)] = &[
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];

/// Splits `"1.5 GiB"` into the number and the unit, allowing spaces between them.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    let number: f64 = t[..end].parse().ok()?;
    Some((number, t[end..].trim()))
}

/// Parses a duration: a number and one of ns, us, ms, s, m, h, d (`"500ms"`, `"1.5s"`, `"2m"`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let fix = || {
        "write a number followed by a unit: ns, us, ms, s, m, h or d (for example \"500ms\", \"2s\", \"5m\")".to_owned()
    };
    let Some((number, unit)) = split_number(text) else {
        return Err(UnitError {
            problem: format!("`{text}` is not a duration"),
            fix: fix(),
        });
    };
    if unit.is_empty() {
        return Err(UnitError {
            problem: format!("`{text}` has no unit"),
            fix: format!("add a unit, for example \"{number}s\" or \"{number}ms\""),
        });
    }
    let Some(&(_, scale)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(UnitError {
            problem: format!("`{unit}` is not a unit of time"),
            fix: fix(),
        });
    };
    let secs = number * scale;
    if !secs.is_finite() || secs > 10.0 * 365.0 * 86400.0 {
        return Err(UnitError {
            problem: format!("`{text}` is too long"),
            fix: "use a duration under ten years".to_owned(),
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way a person would write it in the config.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 3_600_000.0 && ms % 3_600_000.0 == 0.0 {
        format!("{}h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 && ms % 60_000.0 == 0.0 {
        format!("{}m", ms / 60_000.0)
    } else if ms >= 1000.0 {
        format!("{}s", (ms / 1000.0 * 1000.0).round() / 1000.0)
    } else if ms >= 1.0 || ms == 0.0 {
        format!("{}ms", (ms * 1000.0).round() / 1000.0)
    } else {
        format!("{}us", (ms * 1000.0).round())
    }
}

/// A size in bytes, written in the config as `"256MiB"`, `"10GB"` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parses a size such as `"256MiB"`; units are case-sensitive so that `mb` (millibits) is not guessed.
pub fn parse_size(text: &str) -> Result<ByteSize, UnitError> {
    let fix = || {
        "write a number followed by B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (for example \"256MiB\")".to_owned()
    };
    let Some((number, unit)) = split_number(text) else {
        return Err(UnitError {
            problem: format!("`{text}` is not a size"),
            fix: fix(),
        });
    };
    let unit = if unit.is_empty() { "B" } else { unit };
    let Some(&(_, scale)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = SIZE_UNITS
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(u, _)| format!("did you mean `{u}`? units are case-sensitive"))
            .unwrap_or_else(fix);
        return Err(UnitError {
            problem: format!("`{unit}` is not a unit of size"),
            fix: hint,
        });
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
        return Err(UnitError {
            problem: format!("`{text}` is too large"),
            fix: "use a size under 8 EiB".to_owned(),
        });
    }
    Ok(ByteSize(bytes.round() as u64))
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 2 m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        let e = parse_duration("5 parsecs").unwrap_err();
        assert!(e.problem.contains("parsecs"), "{e:?}");
        assert!(parse_duration("5").unwrap_err().fix.contains("5s"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn duration_format_round_trips() {
        for text in ["500ms", "2s", "1.5s", "5m", "1h", "250us"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), ByteSize(256 << 20));
        assert_eq!(parse_size("10GB").unwrap(), ByteSize(10_000_000_000));
        assert_eq!(parse_size("1.5 KiB").unwrap(), ByteSize(1536));
        assert_eq!(parse_size("4096").unwrap(), ByteSize(4096));
        let e = parse_size("10mib").unwrap_err();
        assert!(e.fix.contains("MiB"), "{e:?}");
        assert_eq!(ByteSize(256 << 20).to_string(), "256MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
