//! gRPC as a proxy sees it: how to tell a gRPC request, the answers a proxy makes in gRPC's
//! shape (trailers-only, as gRPC clients read them), the wire framing of one message and a
//! protobuf varint, and a request body that streams to one upstream and is never replayed.
//! Shared by the edge, the balancer and the demo origin, so none of them has its own.

use crate::body::{Body, BoxError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// gRPC status codes a proxy uses (the full list is in grpc's `statuscodes.md`).
pub const OK: u32 = 0;
pub const UNKNOWN: u32 = 2;
pub const UNIMPLEMENTED: u32 = 12;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;

/// Whether a request is gRPC: `content-type` is `application/grpc` or one of its
/// `application/grpc+<codec>` forms, as CloudFront and ALB decide it.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/grpc" || v.starts_with("application/grpc+") || {
                v.starts_with("application/grpc;")
            }
        })
}

/// The gRPC status for an HTTP status a proxy answered with, as grpc's
/// `http-grpc-status-mapping.md` maps it (429, 502, 503 and 504 are UNAVAILABLE).
pub fn status_for_http(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => INTERNAL,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// A trailers-only gRPC answer: HTTP 200 whose only header block carries `grpc-status`
/// and `grpc-message` (percent-encoded as the gRPC spec says), and no body.
pub fn trailers_only(status: u32, message: &str) -> Response<Body> {
    let mut res = Response::new(crate::body::empty());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(status));
    if let Ok(v) = HeaderValue::from_str(&encode_message(message)) {
        h.insert("grpc-message", v);
    }
    res
}

/// An error the proxy made itself (plain text) turned into its gRPC shape for a gRPC
/// client, which reads statuses from `grpc-status`, never from the HTTP status. Anything
/// that is not an error, or already gRPC, is returned as it is.
pub async fn shape_error(res: Response<Body>) -> Response<Body> {
    if res.status().is_success() || is_grpc(res.headers()) {
        return res;
    }
    let status = res.status();
    let text = match res.into_body().collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status.to_string()
    } else {
        text
    };
    trailers_only(status_for_http(status), &text)
}

/// `grpc-message`'s encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn encode_message(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    for b in m.bytes().take(1024) {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One length-prefixed message as gRPC frames it: a compressed flag (0), a big-endian
/// 32-bit length, the message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// Splits the uncompressed messages out of a gRPC body; None when a frame is cut short
/// or compressed (this code speaks no codec).
pub fn messages(mut body: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 || body[0] != 0 {
            return None;
        }
        let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body.advance(5);
        if body.len() < n {
            return None;
        }
        out.push(Bytes::copy_from_slice(&body[..n]));
        body.advance(n);
    }
    Some(out)
}

/// A request body that may be sent to one upstream only: the first attempt that reads it
/// takes it, and a later attempt finds it gone (an error, so that request fails). An
/// attempt whose connection failed never read it, so the next member or target still can:
/// how a streamed gRPC request is retried only when nothing of it was sent.
#[derive(Clone)]
pub struct SendOnce(Arc<Mutex<Option<Body>>>);

impl SendOnce {
    pub fn new(body: Body) -> Self {
        SendOnce(Arc::new(Mutex::new(Some(body))))
    }

    /// Whether an attempt has taken the body (so it may have reached an upstream).
    pub fn taken(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// The body for one attempt: it takes the real body on its first read.
    pub fn attempt(&self) -> Body {
        Attempt {
            slot: self.0.clone(),
            body: None,
        }
        .boxed()
    }
}

struct Attempt {
    slot: Arc<Mutex<Option<Body>>>,
    body: Option<Body>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was already sent to another upstream")]
struct AlreadySent;

impl HttpBody for Attempt {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(b) => self.body = Some(b),
                None => return Poll::Ready(Some(Err(Box::new(AlreadySent)))),
            }
        }
        match self.body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What a proxy sends upstream as a request body: bytes it holds (replayable on any
/// attempt) or a stream sent once ([`SendOnce`]).
#[derive(Clone)]
pub enum RequestBody {
    Full(Bytes),
    Once(SendOnce),
}

impl RequestBody {
    /// The body of one attempt.
    pub fn attempt(&self) -> Body {
        match self {
            RequestBody::Full(b) => crate::body::full(b.clone()),
            RequestBody::Once(s) => s.attempt(),
        }
    }

    /// Whether sending it again is impossible: a stream some attempt has taken.
    pub fn spent(&self) -> bool {
        matches!(self, RequestBody::Once(s) if s.taken())
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::Full(b)
    }
}

/// Appends a varint (protobuf's base-128 integer) to `out`.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint from the front of `buf`; None when it is cut short or too long.
pub fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_frames_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&mut b.as_slice()), Some(v));
        }
        let body = [frame(b"ab"), frame(b"")].concat();
        assert_eq!(messages(&body), Some(vec![Bytes::from("ab"), Bytes::new()]));
        assert_eq!(messages(&body[..4]), None);
    }

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web"),
        );
        assert!(!is_grpc(&h));
        assert_eq!(encode_message("50% off\n"), "50%25 off%0A");
    }
}
