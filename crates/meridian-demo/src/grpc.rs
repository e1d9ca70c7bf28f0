//! The RichesReach API's gRPC face: `richesreach.v1.Quotes` (`GetQuote`, unary, and
//! `StreamQuotes`, server streaming) and `grpc.health.v1.Health/Check`, served over h2c
//! on the instance's own port beside HTTP/1.1. Protobuf is encoded by hand ([`Writer`],
//! [`fields`]): two small messages do not need a code generator.
//!
//! ```text
//! message QuoteRequest { string symbol = 1; uint32 count = 2; }
//! message Quote { string symbol = 1; double price = 2; string region = 3;
//!                 string instance = 4; uint64 served = 5; uint32 seq = 6; }
//! ```

use crate::app::App;
use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use meridian_http::grpc::{self as wire, frame, get_varint, put_varint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// gRPC status INVALID_ARGUMENT.
const INVALID_ARGUMENT: u32 = 3;
/// gRPC status NOT_FOUND (the health protocol's answer for a service it does not know).
const NOT_FOUND: u32 = 5;
/// Quotes in one stream, at most.
const MAX_STREAM: u32 = 20;
/// Between two streamed quotes.
const STREAM_GAP: Duration = Duration::from_millis(50);

/// Quotes this process has answered over gRPC: each reply carries the count, so a reply
/// served twice (from a cache) would show it.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// A `QuoteRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuoteRequest {
    pub symbol: String,
    pub count: u32,
}

/// A `Quote`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    pub region: String,
    pub instance: String,
    pub served: u64,
    pub seq: u32,
}

/// A protobuf message being written.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    fn tag(&mut self, field: u64, wire_type: u64) {
        put_varint(&mut self.0, (field << 3) | wire_type);
    }
    pub fn string(mut self, field: u64, s: &str) -> Self {
        self.tag(field, 2);
        put_varint(&mut self.0, s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn varint(mut self, field: u64, v: u64) -> Self {
        self.tag(field, 0);
        put_varint(&mut self.0, v);
        self
    }
    pub fn double(mut self, field: u64, v: f64) -> Self {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// A field's value as protobuf carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

/// The fields of a message in order; None when it is malformed.
pub fn fields(mut msg: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = get_varint(&mut msg)?;
        let value = match key & 7 {
            0 => Value::Varint(get_varint(&mut msg)?),
            1 => {
                let (v, rest) = msg.split_first_chunk::<8>()?;
                msg = rest;
                Value::Fixed64(u64::from_le_bytes(*v))
            }
            2 => {
                let n = usize::try_from(get_varint(&mut msg)?).ok()?;
                let v = msg.get(..n)?;
                msg = &msg[n..];
                Value::Bytes(v)
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl QuoteRequest {
    pub fn encode(&self) -> Vec<u8> {
        Writer::default()
            .string(1, &self.symbol)
            .varint(2, u64::from(self.count))
            .finish()
    }
    pub fn decode(msg: &[u8]) -> Option<Self> {
        let mut r = QuoteRequest::default();
        for (f, v) in fields(msg)? {
            match (f, v) {
                (1, Value::Bytes(b)) => r.symbol = text(b),
                (2, Value::Varint(n)) => r.count = u32::try_from(n).unwrap_or(u32::MAX),
                _ => {}
            }
        }
        Some(r)
    }
}

impl Quote {
    pub fn encode(&self) -> Vec<u8> {
        Writer::default()
            .string(1, &self.symbol)
            .double(2, self.price)
            .string(3, &self.region)
            .string(4, &self.instance)
            .varint(5, self.served)
            .varint(6, u64::from(self.seq))
            .finish()
    }
    pub fn decode(msg: &[u8]) -> Option<Self> {
        let mut q = Quote::default();
        for (f, v) in fields(msg)? {
            match (f, v) {
                (1, Value::Bytes(b)) => q.symbol = text(b),
                (2, Value::Fixed64(n)) => q.price = f64::from_bits(n),
                (3, Value::Bytes(b)) => q.region = text(b),
                (4, Value::Bytes(b)) => q.instance = text(b),
                (5, Value::Varint(n)) => q.served = n,
                (6, Value::Varint(n)) => q.seq = u32::try_from(n).unwrap_or(u32::MAX),
                _ => {}
            }
        }
        Some(q)
    }
}

/// `HealthCheckResponse.ServingStatus`.
pub const SERVING: u64 = 1;
pub const NOT_SERVING: u64 = 2;

/// `grpc-status: 0` as a trailer block.
fn ok_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(wire::OK));
    t
}

fn grpc_head(body: AxumBody) -> Response<AxumBody> {
    let mut res = Response::new(body);
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    res
}

fn error(status: u32, message: &str) -> Response<AxumBody> {
    wire::trailers_only(status, message).map(AxumBody::new)
}

/// One reply message and `grpc-status: 0` in the trailers.
fn unary(message: Vec<u8>) -> Response<AxumBody> {
    let body =
        http_body_util::Full::new(frame(&message)).with_trailers(async { Some(Ok(ok_trailers())) });
    grpc_head(AxumBody::new(body))
}

/// The single request message of a unary or server-streaming call, or the answer that
/// refuses the call.
#[allow(clippy::result_large_err)]
fn request_message(headers: &HeaderMap, body: &[u8]) -> Result<Bytes, Response<AxumBody>> {
    if !wire::is_grpc(headers) {
        let mut res = Response::new(AxumBody::from("send application/grpc\n"));
        *res.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(res);
    }
    match wire::messages(body).as_deref() {
        Some([one]) => Ok(one.clone()),
        _ => Err(error(
            wire::INTERNAL,
            "expected one uncompressed request message",
        )),
    }
}

#[allow(clippy::result_large_err)]
fn quote_for(app: &App, req: &QuoteRequest, seq: u32) -> Result<Quote, Response<AxumBody>> {
    let Some(q) = crate::market::quote(&req.symbol, crate::market::now_secs()) else {
        return Err(error(
            INVALID_ARGUMENT,
            &format!("`{}` is not a ticker symbol", req.symbol),
        ));
    };
    let id = &app.opts.identity;
    Ok(Quote {
        symbol: q.symbol,
        price: q.price,
        region: id.region.clone(),
        instance: id.instance.clone(),
        served: SERVED.fetch_add(1, Ordering::Relaxed) + 1,
        seq,
    })
}

/// `richesreach.v1.Quotes/GetQuote`: one quote.
pub(crate) async fn get_quote(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<AxumBody> {
    let req = match request_message(&headers, &body) {
        Ok(m) => QuoteRequest::decode(&m).unwrap_or_default(),
        Err(res) => return res,
    };
    match quote_for(&app, &req, 0) {
        Ok(q) => unary(q.encode()),
        Err(res) => res,
    }
}

/// `richesreach.v1.Quotes/StreamQuotes`: `count` quotes (3 by default, at most 20), one
/// every 50 ms, each its own HTTP/2 data frame, then the trailers.
pub(crate) async fn stream_quotes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<AxumBody> {
    let req = match request_message(&headers, &body) {
        Ok(m) => QuoteRequest::decode(&m).unwrap_or_default(),
        Err(res) => return res,
    };
    let count = match req.count {
        0 => 3,
        n => n.min(MAX_STREAM),
    };
    // The first quote is checked before the head is sent, so a bad symbol is an error.
    let first = match quote_for(&app, &req, 0) {
        Ok(q) => q,
        Err(res) => return res,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _ = tx.send(Frame::data(frame(&first.encode()))).await;
        for seq in 1..count {
            tokio::time::sleep(STREAM_GAP).await;
            let Ok(q) = quote_for(&app, &req, seq) else {
                break;
            };
            if tx.send(Frame::data(frame(&q.encode()))).await.is_err() {
                return; // the client went away
            }
        }
        let _ = tx.send(Frame::trailers(ok_trailers())).await;
    });
    grpc_head(AxumBody::new(Frames(rx)))
}

/// `grpc.health.v1.Health/Check`: SERVING for the whole server ("") and for
/// `richesreach.v1.Quotes`, NOT_SERVING once the instance is shutting down.
pub(crate) async fn health_check(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<AxumBody> {
    let msg = match request_message(&headers, &body) {
        Ok(m) => m,
        Err(res) => return res,
    };
    let service = fields(&msg)
        .unwrap_or_default()
        .into_iter()
        .find_map(|(f, v)| match (f, v) {
            (1, Value::Bytes(b)) => Some(text(b)),
            _ => None,
        })
        .unwrap_or_default();
    if !service.is_empty() && service != "richesreach.v1.Quotes" {
        return error(NOT_FOUND, &format!("unknown service {service}"));
    }
    let status = if *app.shutdown.borrow() {
        NOT_SERVING
    } else {
        SERVING
    };
    unary(Writer::default().varint(1, status).finish())
}

/// A gRPC call to a method this server does not have: UNIMPLEMENTED, as any gRPC server
/// answers (what ALB's default gRPC health check expects).
pub(crate) fn unimplemented(path: &str) -> Response<AxumBody> {
    error(wire::UNIMPLEMENTED, &format!("unknown method {path}"))
}

/// A response body fed frame by frame from a channel, so each quote leaves when made.
struct Frames(tokio::sync::mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
