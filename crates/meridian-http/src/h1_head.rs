//! What our HTTP/1.1 server and client share: a parsed head's fields as spans of the bytes
//! they came in (so the header map shares those bytes instead of copying each value), and
//! reading tokens out of a field's list.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Where one field's name and value sit in a head.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    name: (u32, u32),
    value: (u32, u32),
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
/// (what a proxy adds: growing the map rehashes it); None when a name or value is not one
/// the `http` crate takes.
pub(crate) fn header_map(head: &Bytes, spans: &[Span], more: usize) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(spans.len() + more);
    for span in spans {
        let name =
            HeaderName::from_bytes(&head[span.name.0 as usize..span.name.1 as usize]).ok()?;
        let value = HeaderValue::from_maybe_shared(slice(head, span.value)).ok()?;
        headers.append(name, value);
    }
    Some(headers)
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
    fn tokens_are_found_in_lists() {
        assert!(has_token(b"Keep-Alive, Upgrade", b"keep-alive"));
        assert!(has_token(b" close ", b"close"));
        assert!(!has_token(b"closed", b"close"));
    }
}
