//! What the balancer changes in a request's head before a target gets it: hop-by-hop and
//! balancer-only fields out, `X-Forwarded-*` and `X-Request-Id` in.
//!
//! Every request goes through here, so names are made at compile time (a name given as
//! text is parsed, and a custom one copied into an allocation, on each use) and the values
//! made per request are built to be shared: the retry loop keeps a copy of the head, and
//! a value copied into a plain `Bytes` is allocated a second time on its first clone.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Fields a target never gets from the client: the hop-by-hop ones
/// ([`meridian_http::HOP_BY_HOP`], in its order, `connection` first), the edge's signature
/// (it is for this balancer, not for the application), and the client's framing (the
/// target's is the buffered body, written by the client pool: the client's
/// `Content-Length` and `Expect` describe a different message).
const REQUEST_TEXT: [&str; HOPS + 3] = {
    let mut text = [""; HOPS + 3];
    let mut i = 0;
    while i < HOPS {
        text[i] = meridian_http::HOP_BY_HOP[i];
        i += 1;
    }
    text[HOPS] = meridian_http::signing::HEADER;
    text[HOPS + 1] = "content-length";
    text[HOPS + 2] = "expect";
    text
};

/// A list of names to remove, as names (to remove them by) and as text with masks of
/// their lengths and first letters (to find them by), all made at compile time.
pub(crate) struct Drops {
    names: &'static [HeaderName],
    text: &'static [&'static str],
    /// Bit k set: some name of the list is k bytes long.
    lengths: u64,
    /// Bit k set: some name of the list starts with a byte whose low 5 bits are k (names
    /// are lower case: `x-...`, most custom names, is passed over at once).
    firsts: u32,
}

const fn lengths(text: &[&str]) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < text.len() {
        assert!(text[i].len() < 64);
        mask |= 1 << text[i].len();
        i += 1;
    }
    mask
}

const fn firsts(text: &[&str]) -> u32 {
    let mut mask = 0u32;
    let mut i = 0;
    while i < text.len() {
        mask |= 1 << (text[i].as_bytes()[0] & 31);
        i += 1;
    }
    mask
}

static REQUEST_NAMES: [HeaderName; 12] = [
    HeaderName::from_static(REQUEST_TEXT[0]),
    HeaderName::from_static(REQUEST_TEXT[1]),
    HeaderName::from_static(REQUEST_TEXT[2]),
    HeaderName::from_static(REQUEST_TEXT[3]),
    HeaderName::from_static(REQUEST_TEXT[4]),
    HeaderName::from_static(REQUEST_TEXT[5]),
    HeaderName::from_static(REQUEST_TEXT[6]),
    HeaderName::from_static(REQUEST_TEXT[7]),
    HeaderName::from_static(REQUEST_TEXT[8]),
    HeaderName::from_static(REQUEST_TEXT[9]),
    HeaderName::from_static(REQUEST_TEXT[10]),
    HeaderName::from_static(REQUEST_TEXT[11]),
];

const HOPS: usize = meridian_http::HOP_BY_HOP.len();

/// What a request loses.
static REQUEST: Drops = Drops {
    names: &REQUEST_NAMES,
    text: &REQUEST_TEXT,
    lengths: lengths(&REQUEST_TEXT),
    firsts: firsts(&REQUEST_TEXT),
};

/// What a response loses: the hop-by-hop names alone.
pub(crate) static HOP_BY_HOP: Drops = Drops {
    names: REQUEST_NAMES.split_at(HOPS).0,
    text: REQUEST_TEXT.split_at(HOPS).0,
    lengths: lengths(REQUEST_TEXT.split_at(HOPS).0),
    firsts: firsts(REQUEST_TEXT.split_at(HOPS).0),
};

/// Removes `drops` (the first being `Connection`, whose listed fields go too) from
/// `headers`. One pass over the message's names finds which are there, comparing lengths
/// first (a name of a length none of the list has is passed over at once), and only those
/// are removed: removing a name that is absent still hashes it.
pub(crate) fn strip(headers: &mut HeaderMap, drops: &Drops) {
    let mut present = 0u32;
    for n in headers.keys() {
        let s = n.as_str();
        let first = s.as_bytes().first().map_or(0, |b| b & 31);
        if s.len() >= 64 || drops.lengths >> s.len() & 1 == 0 || drops.firsts >> first & 1 == 0 {
            continue;
        }
        if let Some(i) = drops.text.iter().position(|t| *t == s) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        for n in meridian_http::connection_fields(headers) {
            headers.remove(n);
        }
    }
    for (i, n) in drops.names.iter().enumerate() {
        if present >> i & 1 != 0 {
            headers.remove(n);
        }
    }
}

/// Strips what a target must not get from a client's request head.
pub(crate) fn strip_request(headers: &mut HeaderMap) {
    strip(headers, &REQUEST)
}

/// A header value's bytes, held inline so that the value is one allocation (the `Bytes`
/// owner) and each clone of it a reference count.
struct Inline {
    len: usize,
    buf: [u8; 64],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for Inline {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes())
    }
}

impl Inline {
    fn new() -> Self {
        Inline {
            len: 0,
            buf: [0; 64],
        }
    }

    /// Appends `bytes`; an error when they do not fit.
    fn push(&mut self, bytes: &[u8]) -> std::fmt::Result {
        let end = self.len + bytes.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Appends an IPv4 address's digits by hand (`Display` goes through the formatting
    /// machinery, several hundred instructions for four numbers); other addresses through
    /// `Display`.
    fn push_ip(&mut self, ip: IpAddr) -> std::fmt::Result {
        use std::fmt::Write;
        let IpAddr::V4(v4) = ip else {
            return write!(self, "{ip}");
        };
        let mut buf = [0; meridian_http::ids::IPV4_TEXT_MAX];
        let n = meridian_http::ids::write_ipv4(&mut buf, v4);
        self.push(&buf[..n])
    }

    fn value(self) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(Bytes::from_owner(self)).ok()
    }
}

thread_local! {
    /// Where the small values made per request (its id, its trace id) are written: each
    /// is split off as a share of one buffer, a reference count rather than an allocation
    /// of its own. A buffer is freed when its last value is.
    static ARENA: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// The size of each [`ARENA`] buffer: some hundred ids.
const ARENA_SIZE: usize = 8 * 1024;

/// `bytes` as a header value that is cheap to clone; None when they are not a valid value.
pub(crate) fn shared_value(bytes: &[u8]) -> Option<HeaderValue> {
    if bytes.len() > 64 {
        return HeaderValue::from_bytes(bytes).ok();
    }
    let shared = ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < bytes.len() {
            *arena = bytes::BytesMut::with_capacity(ARENA_SIZE);
        }
        arena.extend_from_slice(bytes);
        arena.split().freeze()
    });
    HeaderValue::from_maybe_shared(shared).ok()
}

/// The request's id: the client's own `X-Request-Id` when it sent a usable one, else a
/// new one (32 hex digits, written on the stack).
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128)
    {
        return v.clone();
    }
    let mut out = [0u8; 32];
    meridian_http::ids::write_hex(&mut out, rand::random());
    shared_value(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// Adds the `X-Forwarded-*` fields and the request id. `tls_port`: the TLS listener's
/// port when the request came through it; `port_header`: the plain listener's port as a
/// value, made once.
pub(crate) fn add(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    tls_port: Option<u16>,
    port_header: &HeaderValue,
    rid: &HeaderValue,
) {
    let mut v = Inline::new();
    let xff = match forwarded_for(&mut v, headers, peer.ip()) {
        Ok(()) => v.value(),
        Err(long) => HeaderValue::from_maybe_shared(Bytes::from(long)).ok(),
    };
    if let Some(v) = xff {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    let (proto, port) = proto_port(tls_port, port_header);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(&X_FORWARDED_PORT, port);
    headers.insert(&X_REQUEST_ID, rid.clone());
}

/// A request's head for the balancer's own HTTP/1.1 pool: its fields written once, with
/// what [`add`] would insert, and `extra` (an `x-` field: the trace header), written in
/// place of the client's own (`h1_client`'s [`WrittenFields`]: no map is copied for a
/// retry, nor written twice).
///
/// [`WrittenFields`]: meridian_http::h1_client::WrittenFields
pub(crate) fn written(
    headers: &HeaderMap,
    peer: SocketAddr,
    tls_port: Option<u16>,
    port_header: &HeaderValue,
    rid: &HeaderValue,
    extra: Option<(&HeaderName, &HeaderValue)>,
) -> meridian_http::h1_client::WrittenFields {
    use meridian_http::h1_client::push_field;
    const REPLACED: [&HeaderName; 4] = [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_PORT,
        &X_REQUEST_ID,
    ];
    // All start with `x-`: most names are passed over on their first two bytes.
    let replaced = |n: &HeaderName| {
        let n = n.as_str();
        n.starts_with("x-")
            && (REPLACED.iter().any(|r| r.as_str() == n)
                || extra.is_some_and(|(name, _)| name.as_str() == n))
    };
    meridian_http::h1_client::WrittenFields::new(headers, replaced, |out| {
        let mut v = Inline::new();
        match forwarded_for(&mut v, headers, peer.ip()) {
            Ok(()) => push_field(out, X_FORWARDED_FOR.as_str().as_bytes(), v.as_ref()),
            Err(long) => push_field(out, X_FORWARDED_FOR.as_str().as_bytes(), long.as_bytes()),
        }
        let (proto, port) = proto_port(tls_port, port_header);
        push_field(out, X_FORWARDED_PROTO.as_str().as_bytes(), proto.as_bytes());
        push_field(out, X_FORWARDED_PORT.as_str().as_bytes(), port.as_bytes());
        push_field(out, X_REQUEST_ID.as_str().as_bytes(), rid.as_bytes());
        if let Some((name, value)) = extra {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    })
}

/// `X-Forwarded-For`: the client's (its first field, when it is text) with the peer
/// appended, written into `v`; a chain too long for it comes back as text instead.
fn forwarded_for(v: &mut Inline, headers: &HeaderMap, ip: IpAddr) -> Result<(), String> {
    match headers.get(&X_FORWARDED_FOR).map(|v| v.to_str()) {
        Some(Ok(prev)) => v
            .push(prev.as_bytes())
            .and_then(|_| v.push(b", "))
            .and_then(|_| v.push_ip(ip))
            .map_err(|_| format!("{prev}, {ip}")),
        // Not text: replaced by the peer alone, as before.
        Some(Err(_)) | None => v.push_ip(ip).map_err(|_| ip.to_string()),
    }
}

/// `X-Forwarded-Proto` and `-Port`: https and the TLS listener's port when the request
/// came through it, else http and the plain listener's port.
fn proto_port(tls_port: Option<u16>, port_header: &HeaderValue) -> (&'static str, HeaderValue) {
    match tls_port {
        Some(port) => ("https", HeaderValue::from(port)),
        None => ("http", port_header.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_names_are_the_shared_list() {
        let names: Vec<&str> = HOP_BY_HOP.names.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, meridian_http::HOP_BY_HOP);
        assert_eq!(HOP_BY_HOP.text, meridian_http::HOP_BY_HOP);
        assert_eq!(REQUEST_TEXT[0], http::header::CONNECTION.as_str());
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.115.1.1",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut v = Inline::new();
            v.push_ip(ip).unwrap();
            assert_eq!(v.as_ref(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn forwarded_for_appends_the_peer_and_long_chains_still_fit() {
        let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let rid = HeaderValue::from_static("abc");
        let port = HeaderValue::from_static("8080");
        let mut h = HeaderMap::new();
        add(&mut h, peer, None, &port, &rid);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_PORT], "8080");
        assert_eq!(h[&X_REQUEST_ID], "abc");
        add(&mut h, peer, Some(8443), &port, &rid);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_PORT], "8443");
        // Past what a value held inline takes: the chain is still whole.
        let long = ["192.168.100.200"; 8].join(", ");
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_str(&long).unwrap());
        add(&mut h, peer, None, &port, &rid);
        assert_eq!(h[&X_FORWARDED_FOR], format!("{long}, 10.1.2.3").as_str());
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut h = HeaderMap::new();
        let made = request_id(&h);
        assert_eq!(made.len(), 32);
        assert!(made.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(made, request_id(&h), "two requests, two ids");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("mine"));
        assert_eq!(request_id(&h), "mine");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(request_id(&h).len(), 32, "an empty id is replaced");
    }

    #[test]
    fn request_stripping_takes_hop_by_hop_signature_and_framing() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(meridian_http::signing::HEADER, "sig".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        h.insert("expect", "100-continue".parse().unwrap());
        // Same lengths as names that go, different names: kept.
        h.insert("x-meridian-region", "r".parse().unwrap());
        h.insert("cf", "1".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, ["cf", "content-type", "x-meridian-region"]);
    }
}
