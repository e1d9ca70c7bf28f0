//! What our HTTP/1.1 server and client share: a parsed head's fields as spans of the bytes
//! they came in (so the header map shares those bytes instead of copying each value), and
//! reading tokens out of a field's list.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Where one field's name and value sit in a head.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    pub(crate) name: (u32, u32),
    pub(crate) value: (u32, u32),
}

/// Records spans of a head that starts at `base`.
pub(crate) struct Spans<'a> {
    base: &'a [u8],
}

impl<'a> Spans<'a> {
    pub(crate) fn new(base: &'a [u8]) -> Self {
        Spans { base }
    }

    /// Where `s`, a slice of the head, sits in it.
    pub(crate) fn at(&self, s: &[u8]) -> (u32, u32) {
        let from = (s.as_ptr() as usize - self.base.as_ptr() as usize) as u32;
        (from, from + s.len() as u32)
    }

    pub(crate) fn field(&self, h: &httparse::Header<'_>) -> Span {
        Span {
            name: self.at(h.name.as_bytes()),
            value: self.at(h.value),
        }
    }
}

/// The fields at `spans` of `head`, their values sharing its bytes, with room for `more`
/// (what a proxy adds: growing the map rehashes it); None when a name is not one the
/// `http` crate takes.
///
/// Every request a proxy passes on is parsed twice (the client's head, the upstream's
/// answer), so the two costs per field that the `http` crate's checked constructors
/// repeat are left out: names come from [`NAMES`], and values are not checked again.
pub(crate) fn header_map(head: &Bytes, spans: &[Span], more: usize) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(spans.len() + more);
    append_fields(&mut headers, head, spans.iter())?;
    Some(headers)
}

/// Appends the fields at `spans` of `head` to `headers`, as [`header_map`] makes them.
pub(crate) fn append_fields<'s>(
    headers: &mut HeaderMap,
    head: &Bytes,
    spans: impl Iterator<Item = &'s Span>,
) -> Option<()> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        for span in spans {
            let name = names.get(&head[span.name.0 as usize..span.name.1 as usize])?;
            let value = slice(head, span.value);
            // SAFETY: `from_maybe_shared_unchecked` skips the check that every byte is
            // HTAB, SP to `~`, or 0x80 and above. Every value here went through
            // httparse, which refuses any other byte in a field value with its default
            // config, the only one our server and client use; the test
            // `httparse_and_http_take_the_same_value_bytes` keeps the two sets equal.
            let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
            headers.append(name, value);
        }
        Some(())
    })
}

/// Field names seen before, by their bytes as sent, in 64 slots chosen by a hash (a
/// name whose slot is taken replaces the one there). Heads repeat the same few names,
/// and `HeaderName::from_bytes` lower-cases each, and copies a custom one (an
/// application's `x-...` field) into an allocation of its own, every time.
pub(crate) struct Names {
    slots: Vec<Option<(Box<[u8]>, HeaderName)>>,
}

/// Names longer than this are not kept: they are rare, and the slots stay small.
const NAME_KEPT: usize = 40;

thread_local! {
    static NAMES: std::cell::RefCell<Names> = std::cell::RefCell::new(Names {
        slots: vec![None; 64],
    });
}

impl Names {
    /// The name for `raw`, None when it is not a valid field name.
    fn get(&mut self, raw: &[u8]) -> Option<HeaderName> {
        if raw.len() > NAME_KEPT || raw.is_empty() {
            return HeaderName::from_bytes(raw).ok();
        }
        // Length, ends and middle tell apart the names a head carries at small cost.
        let (first, last, mid) = (raw[0], raw[raw.len() - 1], raw[raw.len() / 2]);
        let h = (raw.len() as u32)
            .wrapping_mul(31)
            .wrapping_add(first as u32 * 7 + last as u32 * 13 + mid as u32 * 17);
        let slot = &mut self.slots[(h % 64) as usize];
        if let Some((kept, name)) = slot {
            if **kept == *raw {
                return Some(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        *slot = Some((raw.into(), name.clone()));
        Some(name)
    }
}

/// The bytes of `head` at `span`, shared.
pub(crate) fn slice(head: &Bytes, (from, to): (u32, u32)) -> Bytes {
    head.slice(from as usize..to as usize)
}

/// Whether a comma-separated field value holds `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// A comma-separated field value's items, trimmed.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Appends a chunk's size line (hex digits and CRLF) to `out`.
pub(crate) fn push_chunk_size(out: &mut Vec<u8>, n: usize) {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (4 * i)) & 15]);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex() {
        for (n, line) in [
            (0, &b"0\r\n"[..]),
            (255, b"ff\r\n"),
            (0x10000, b"10000\r\n"),
        ] {
            let mut out = Vec::new();
            push_chunk_size(&mut out, n);
            assert_eq!(out, line);
        }
    }

    #[test]
    fn httparse_and_http_take_the_same_value_bytes() {
        // Short values go through httparse's byte-by-byte check, long ones through its
        // vector paths (AVX2, SSE4.2 or eight bytes at a time).
        for (b, long) in (0..=255u8).flat_map(|b| [(b, false), (b, true)]) {
            let raw = match long {
                false => vec![b'a', b, b'z'],
                true => [&[b'a'; 40][..], &[b], &[b'z'; 40][..]].concat(),
            };
            let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
            head.extend_from_slice(&raw);
            head.extend_from_slice(b"\r\n\r\n");
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let parsed = httparse::Response::new(&mut fields).parse(&head);
            let by_httparse = matches!(parsed, Ok(httparse::Status::Complete(_)));
            let by_http = HeaderValue::from_bytes(&raw).is_ok();
            // CR and LF end the field for httparse (a bare one is refused as a whole).
            if b == b'\r' || b == b'\n' {
                assert!(!by_http);
                continue;
            }
            assert_eq!(by_httparse, by_http, "byte {b:#04x}, long: {long}");
        }
    }

    /// `received.rs` moves names httparse took into a map unchecked again: both must take
    /// the same name bytes.
    #[test]
    fn httparse_and_http_take_the_same_name_bytes() {
        for b in 0..=255u8 {
            let raw = [b'a', b, b'z'];
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            head.extend_from_slice(&raw);
            head.extend_from_slice(b": v\r\n\r\n");
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let parsed = httparse::Response::new(&mut fields).parse(&head);
            let by_httparse = matches!(parsed, Ok(httparse::Status::Complete(_)));
            let by_http = HeaderName::from_bytes(&raw).is_ok();
            // A colon ends the name for httparse ("a" with value "z: v" is another field).
            if b == b':' {
                continue;
            }
            assert_eq!(by_httparse, by_http, "byte {b:#04x}");
        }
    }

    #[test]
    fn names_are_kept_and_told_apart() {
        let mut names = Names {
            slots: vec![None; 64],
        };
        for _ in 0..3 {
            for raw in [
                &b"Content-Type"[..],
                b"content-type",
                b"x-meridian-az",
                b"x-meridian-region",
                b"X-Service-Version",
                b"a",
            ] {
                let name = names.get(raw).unwrap();
                assert_eq!(name, HeaderName::from_bytes(raw).unwrap());
            }
        }
        // Names of one length, ends and middle share a slot and replace each other.
        assert_eq!(names.get(b"x-ab-z").unwrap().as_str(), "x-ab-z");
        assert_eq!(names.get(b"x-cb-z").unwrap().as_str(), "x-cb-z");
        assert_eq!(names.get(b"x-ab-z").unwrap().as_str(), "x-ab-z");
        assert!(names.get(b"bad name").is_none());
        assert!(names.get(b"").is_none());
        let long = "x-".repeat(30);
        assert_eq!(names.get(long.as_bytes()).unwrap().as_str(), long);
    }

    #[test]
    fn tokens_are_found_in_lists() {
        assert!(has_token(b"Keep-Alive, Upgrade", b"keep-alive"));
        assert!(has_token(b" close ", b"close"));
        assert!(!has_token(b"closed", b"close"));
    }
}
