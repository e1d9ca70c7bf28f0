//! Serving a byte range from a stored full response (RFC 9110 §14).

/// What to send for a Range request against a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send the whole body with 200 (allowed for multiple ranges and
    /// for Range headers that are not `bytes=`).
    Full,
    /// Send bytes start..=end with 206 and `Content-Range: bytes start-end/len`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets a Range header for a body of `len` bytes.
pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(b) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(n) if len > 0 => ByteRange::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Full,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(a) {
            Some(s) if s < len => ByteRange::Partial {
                start: s,
                end: len - 1,
            },
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Full,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(s), Some(e)) if s <= e && s < len => ByteRange::Partial {
                start: s,
                end: e.min(len - 1),
            },
            (Some(s), Some(e)) if s <= e => ByteRange::Unsatisfiable,
            _ => ByteRange::Full,
        },
        (true, true) => ByteRange::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            byte_range(Some("bytes=0-99"), 1000),
            ByteRange::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=900-"), 1000),
            ByteRange::Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            byte_range(Some("bytes=-100"), 1000),
            ByteRange::Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            byte_range(Some("bytes=-5000"), 1000),
            ByteRange::Partial { start: 0, end: 999 }
        );
        assert_eq!(
            byte_range(Some("bytes=500-5000"), 1000),
            ByteRange::Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            byte_range(Some("bytes=1000-"), 1000),
            ByteRange::Unsatisfiable
        );
        assert_eq!(
            byte_range(Some("bytes=2000-3000"), 1000),
            ByteRange::Unsatisfiable
        );
        assert_eq!(byte_range(Some("bytes=-0"), 1000), ByteRange::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-1,5-9"), 1000), ByteRange::Full);
        assert_eq!(
            byte_range(Some("bytes=9-1"), 1000),
            ByteRange::Full,
            "invalid ranges are ignored"
        );
        assert_eq!(byte_range(Some("items=0-1"), 1000), ByteRange::Full);
        assert_eq!(byte_range(None, 1000), ByteRange::Full);
    }
}
