//! An answer's fields as its upstream sent them, for a proxy that passes most of them on
//! as they came. Building a header map of an answer's fields, only to write them out
//! again, was about a tenth of the balancer's instructions per request: a name looked up
//! and a value shared and hashed into the map per field, then each read back and
//! written. Kept as lines of the head they came in, they are written out with one copy
//! each, and only what the proxy itself reads or changes costs anything.
//!
//! A response holding [`Received`] in its extensions carries those fields besides its
//! header map (where the proxy puts what it adds). Our HTTP/1.1 server writes both; every
//! other way out (HTTP/2, hyper's HTTP/1.1) and any code that reads the answer's map
//! calls [`settle`] first, which moves the fields into the map.

use crate::h1_head::{append_fields, Span};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The fields of an answer's head, each still passed on or dropped.
#[derive(Clone)]
pub struct Received {
    head: Bytes,
    /// The first fields' spans, inline: `Received` is boxed once, into the answer's
    /// extensions, and a vector would be one more allocation per answer.
    inline: [Span; INLINE],
    /// The spans of fields past [`INLINE`].
    more: Vec<Span>,
    len: usize,
    /// Bit `i` set: field `i` is passed on.
    kept: u64,
    marks: Marks,
}

/// How many fields' spans are held inline: more than most answers carry.
const INLINE: usize = 16;

/// Which fields of a head a [`Received`] must tell apart, marked as the head is read.
#[derive(Clone, Copy, Default)]
pub(crate) struct Marks {
    /// Bit `i` set: field `i` is one a server writing the answer reads ([`FramingField`]).
    read_by_server: u64,
    /// Bit `i` set: field `i` is a `Connection` field.
    connection: u64,
}

impl Marks {
    /// Marks field `i` (below [`MAX`]), of `kind`.
    pub(crate) fn mark(&mut self, i: usize, kind: Option<FramingField>) {
        if let Some(kind) = kind {
            self.read_by_server |= 1 << i;
            if kind == FramingField::Connection {
                self.connection |= 1 << i;
            }
        }
    }
}

/// The fields a server reads from an answer it writes: they decide the framing and
/// whether the connection stays open, or stand for one it would add.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FramingField {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
}

impl FramingField {
    /// The kind of a field named `name` (any case), None for every other field.
    pub(crate) fn of(name: &[u8]) -> Option<FramingField> {
        let kind = match name.len() {
            14 => FramingField::ContentLength,
            17 => FramingField::TransferEncoding,
            10 => FramingField::Connection,
            4 => FramingField::Date,
            _ => return None,
        };
        name.eq_ignore_ascii_case(kind.name().as_bytes())
            .then_some(kind)
    }

    /// The kind of a field of a header map.
    pub(crate) fn of_name(name: &HeaderName) -> Option<FramingField> {
        use http::header;
        Some(match *name {
            header::CONTENT_LENGTH => FramingField::ContentLength,
            header::TRANSFER_ENCODING => FramingField::TransferEncoding,
            header::CONNECTION => FramingField::Connection,
            header::DATE => FramingField::Date,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FramingField::ContentLength => "content-length",
            FramingField::TransferEncoding => "transfer-encoding",
            FramingField::Connection => "connection",
            FramingField::Date => "date",
        }
    }
}

/// The most fields a [`Received`] holds; a head with more is parsed into a map.
pub(crate) const MAX: usize = 64;

impl Received {
    /// The fields at `spans` of `head` (at most [`MAX`]), all passed on.
    pub(crate) fn new(head: Bytes, spans: &[Span], marks: Marks) -> Self {
        debug_assert!(spans.len() <= MAX);
        let mut inline = [Span::default(); INLINE];
        let first = spans.len().min(INLINE);
        inline[..first].copy_from_slice(&spans[..first]);
        Received {
            head,
            inline,
            more: spans[first..].to_vec(),
            len: spans.len(),
            kept: if spans.len() == MAX {
                u64::MAX
            } else {
                (1u64 << spans.len()) - 1
            },
            marks,
        }
    }

    /// Every field's span, passed on or not.
    fn spans(&self) -> impl Iterator<Item = &Span> {
        self.inline[..self.len.min(INLINE)]
            .iter()
            .chain(self.more.iter())
    }

    /// The fields passed on, as (name as sent, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.kept_spans()
            .map(|s| (self.at(s.name), self.at(s.value)))
    }

    /// [`Received::iter`], each field with whether a server writing it must read it
    /// ([`FramingField`]).
    pub(crate) fn for_server(&self) -> impl Iterator<Item = (&[u8], &[u8], bool)> {
        let read = self.marks.read_by_server;
        self.kept_indexed()
            .map(move |(i, s)| (self.at(s.name), self.at(s.value), read >> i & 1 != 0))
    }

    /// The first value of the field `name` (lower case) that is passed on.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Drops every field named `name` (lower case).
    pub fn remove(&mut self, name: &str) {
        self.drop_where(|n| n.eq_ignore_ascii_case(name.as_bytes()));
    }

    /// Drops the hop-by-hop fields (RFC 9110 §7.6.1): the standard ones and the ones the
    /// `Connection` fields name.
    pub fn strip_hop_by_hop(&mut self) {
        let mut drop = 0u64;
        let connection = self.marks.connection & self.kept;
        for (i, s) in self.kept_indexed() {
            let name = self.at(s.name);
            if is_hop_by_hop(name) || (connection != 0 && self.named_by(connection, name)) {
                drop |= 1 << i;
            }
        }
        self.kept &= !drop;
    }

    /// Whether one of the `Connection` fields at `connection` (a mask) names `name`.
    fn named_by(&self, connection: u64, name: &[u8]) -> bool {
        self.spans()
            .enumerate()
            .filter(|(i, _)| connection >> i & 1 != 0)
            .any(|(_, s)| crate::h1_head::has_token(self.at(s.value), name))
    }

    /// How many bytes the fields passed on take as head lines (`name: value` and CRLF).
    pub fn head_bytes(&self) -> usize {
        self.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }

    /// Appends the fields passed on to `headers`.
    fn append_to(&self, headers: &mut HeaderMap) {
        // Names and values went through httparse when the head was read, which takes
        // the same bytes as the `http` crate (`h1_head.rs`'s tests), so none is refused.
        let _ = append_fields(headers, &self.head, self.kept_spans());
    }

    fn kept_spans(&self) -> impl Iterator<Item = &Span> {
        self.kept_indexed().map(|(_, s)| s)
    }

    /// The spans of the fields passed on, with their places in the head.
    fn kept_indexed(&self) -> impl Iterator<Item = (usize, &Span)> {
        let kept = self.kept;
        self.spans()
            .enumerate()
            .filter(move |(i, _)| kept >> i & 1 != 0)
    }

    fn drop_where(&mut self, mut drop: impl FnMut(&[u8]) -> bool) {
        let mut dropped = 0u64;
        for (i, s) in self.kept_indexed() {
            if drop(self.at(s.name)) {
                dropped |= 1 << i;
            }
        }
        self.kept &= !dropped;
    }

    fn at(&self, (from, to): (u32, u32)) -> &[u8] {
        &self.head[from as usize..to as usize]
    }
}

/// Whether `name` (any case) is one of [`crate::hop::HOP_BY_HOP`]; by length first, since
/// every field of every answer is asked.
fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(name.len(), 2 | 7 | 10 | 16 | 17 | 18 | 19)
        && crate::hop::HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Moves a response's received fields, if it has any, into its header map.
pub fn settle(parts: &mut http::response::Parts) {
    if let Some(received) = parts.extensions.remove::<Received>() {
        received.append_to(&mut parts.headers);
    }
}

/// [`settle`] on a whole response.
pub fn settle_response<B>(res: &mut http::Response<B>) {
    if let Some(received) = res.extensions_mut().remove::<Received>() {
        received.append_to(res.headers_mut());
    }
}

/// Sets the field `name` of a response to `value` alone: any the upstream sent is dropped.
pub fn replace<B>(res: &mut http::Response<B>, name: &HeaderName, value: HeaderValue) {
    if let Some(received) = res.extensions_mut().get_mut::<Received>() {
        received.remove(name.as_str());
    }
    res.headers_mut().insert(name, value);
}

/// The bytes a response's fields take as head lines, received ones included.
pub fn head_bytes<B>(res: &http::Response<B>) -> usize {
    let map: usize = res
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    map + res
        .extensions()
        .get::<Received>()
        .map_or(0, Received::head_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1_head::Spans;

    fn received(head: &[u8]) -> Received {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut fields);
        res.parse(head).unwrap();
        let at = Spans::new(head);
        let spans: Vec<Span> = res.headers.iter().map(|f| at.field(f)).collect();
        let mut marks = Marks::default();
        for (i, f) in res.headers.iter().enumerate() {
            marks.mark(i, FramingField::of(f.name.as_bytes()));
        }
        Received::new(Bytes::copy_from_slice(head), &spans, marks)
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_dropped() {
        let mut r = received(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nx-secret: 1\r\nX-Kept: 2\r\nUpgrade: h2c\r\n\r\n",
        );
        r.strip_hop_by_hop();
        let left: Vec<_> = r.iter().collect();
        assert_eq!(
            left,
            [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"X-Kept", b"2")
            ]
        );
        assert_eq!(
            r.head_bytes(),
            "Content-Type: text/plain\r\nX-Kept: 2\r\n".len()
        );
    }

    #[test]
    fn settled_fields_join_the_map_and_replaced_ones_are_gone() {
        let r = received(
            b"HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        );
        let mut res = http::Response::new(());
        res.extensions_mut().insert(r);
        let rid = HeaderName::from_static("x-request-id");
        replace(&mut res, &rid, HeaderValue::from_static("ours"));
        assert_eq!(
            head_bytes(&res),
            "x-request-id: ours\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n".len()
        );
        settle_response(&mut res);
        assert!(res.extensions().get::<Received>().is_none());
        let h = res.headers();
        assert_eq!(
            h.get_all("x-request-id").iter().collect::<Vec<_>>(),
            ["ours"]
        );
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            ["a=1", "b=2"]
        );
    }

    #[test]
    fn a_head_of_the_most_fields_keeps_them_all() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..MAX {
            head.extend_from_slice(format!("f{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut fields = vec![httparse::EMPTY_HEADER; MAX];
        let mut res = httparse::Response::new(&mut fields);
        res.parse(&head).unwrap();
        let at = Spans::new(&head);
        let spans: Vec<Span> = res.headers.iter().map(|f| at.field(f)).collect();
        let mut r = Received::new(Bytes::copy_from_slice(&head), &spans, Marks::default());
        assert_eq!(r.iter().count(), MAX);
        let last = format!("f{}", MAX - 1);
        assert_eq!(r.get(&last), Some((MAX - 1).to_string().as_bytes()));
        r.remove(&last);
        assert_eq!(r.iter().count(), MAX - 1);
        assert_eq!(r.get("f0"), Some(&b"0"[..]));
        assert_eq!(r.get(&last), None);
    }
}
