//! How the balancer fills in the shared failover loop ([`meridian_http::failover`]):
//! targets in the group's algorithm's order, idempotent requests retried (the body is
//! buffered, so it can be replayed), timeouts answered at once rather than retried (a slow
//! application would be hit again), and refused or reset targets reported to the board.

use crate::pool::{Driven, PoolError};
use crate::target::{Target, TargetGroup};
use bytes::Bytes;
use futures_util::future::Either;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use meridian_health::HealthBoard;
use meridian_http::failover::{Failover, Fault, Reason, Verdict};
use meridian_http::grpc::RequestBody;
use meridian_http::Body;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge,
};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use meridian_telemetry::Labels;

/// Responses up to this size to retryable requests are read whole before being relayed.
const BUFFERED_BODY_MAX: u64 = 256 * 1024;

/// Methods whose repetition is harmless (RFC 9110 §9.2.2): safe to retry after a request
/// may have reached a target.
pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// What the balancer's request path owns that the retries need.
pub(crate) struct Balancer<'a> {
    pub name: &'a str,
    pub group: &'a TargetGroup,
    pub board: &'a HealthBoard,
    /// The target the request's stickiness cookie names, tried first while healthy.
    pub sticky: Option<usize>,
    pub config: &'a meridian_config::LoadBalancer,
    /// The group's settings, read once for the request.
    pub group_config: &'a meridian_config::TargetGroup,
    pub retries: &'a Family<Labels, Counter>,
    pub target_errors: &'a Family<Labels, Counter>,
}

/// One request's way through the target group.
pub(crate) struct Retries<'a> {
    lb: Balancer<'a>,
    method: &'a Method,
    path: &'a http::uri::PathAndQuery,
    head: Head,
    body: &'a RequestBody,
    tried: Tried,
    failures: Vec<String>,
    /// Turns started (the first send and each retry).
    turns: u32,
    /// Where a target's 103 Early Hints go (the client, when its connection takes them).
    pub(crate) interim: Option<meridian_http::interim::Interim>,
    /// A WebSocket handshake to an HTTP/2 target group: sent as an extended CONNECT.
    pub(crate) extended_connect: bool,
}

/// A request's fields as every attempt sends them.
pub(crate) enum Head {
    /// For the balancer's own HTTP/1.1 pool: written once, and shared by the attempts.
    Written(meridian_http::h1_client::WrittenFields),
    /// For hyper's clients (HTTP/2 groups, WebSocket handshakes), a map per attempt: the
    /// first sends the map as it is, and a copy is kept only when a retry may follow.
    Map {
        first: Option<HeaderMap>,
        again: HeaderMap,
    },
}

/// What a request's head gets on its way to a target, besides the client's fields.
pub(crate) struct Added<'a> {
    pub peer: std::net::SocketAddr,
    /// The TLS listener's port when the request came through it.
    pub tls_port: Option<u16>,
    /// The plain listener's port as a value, made once.
    pub port_header: &'a http::HeaderValue,
    pub rid: &'a http::HeaderValue,
    /// The trace header (`trace.rs`), in place of the client's.
    pub trace: Option<http::HeaderValue>,
    pub grpc: bool,
    /// The target group speaks HTTP/2 (a WebSocket handshake goes as an extended CONNECT).
    pub h2: bool,
}

impl Head {
    /// The head as targets get it: hop-by-hop fields, the edge's signature and the
    /// client's framing go; the forwarding fields come in. Written once for the balancer's
    /// own pool (`own_pool`), a map for hyper's clients.
    pub(crate) fn new(
        mut headers: HeaderMap,
        extensions: &http::Extensions,
        added: Added<'_>,
        own_pool: bool,
    ) -> Self {
        crate::forwarded::strip_request(&mut headers);
        if added.grpc {
            // gRPC servers may insist on it; it is the one TE HTTP/2 allows.
            headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        // A WebSocket handshake keeps its Upgrade (`upgrade.rs`).
        crate::upgrade::restore(extensions, &mut headers, added.h2);
        let Added {
            peer,
            tls_port,
            port_header: port,
            rid,
            trace,
            ..
        } = added;
        if own_pool {
            let trace = trace.as_ref().map(|t| (&crate::trace::NAME, t));
            let written = crate::forwarded::written(&headers, peer, tls_port, port, rid, trace);
            return Head::Written(written);
        }
        if let Some(trace) = trace {
            headers.insert(&crate::trace::NAME, trace);
        }
        crate::forwarded::add(&mut headers, peer, tls_port, port, rid);
        Head::Map {
            first: Some(headers),
            again: HeaderMap::new(),
        }
    }
}

/// The targets tried so far: a few inline (a request is tried on at most `max_retries + 1`,
/// 3 by default), so that a request allocates no list; more spill to the heap.
#[derive(Default)]
struct Tried {
    inline: [usize; 4],
    len: usize,
    spill: Vec<usize>,
}

impl Tried {
    fn push(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(i);
        }
        self.len += 1;
    }

    fn as_slice(&self) -> &[usize] {
        match self.spill.is_empty() {
            true => &self.inline[..self.len],
            false => &self.spill,
        }
    }
}

/// A target being tried, and its outstanding count while the request is out.
pub(crate) struct Attempt {
    i: usize,
    guard: Option<Outstanding>,
}

impl<'a> Retries<'a> {
    pub fn new(
        lb: Balancer<'a>,
        method: &'a Method,
        path: &'a http::uri::PathAndQuery,
        head: Head,
        body: &'a RequestBody,
    ) -> Self {
        Retries {
            lb,
            method,
            path,
            head,
            body,
            tried: Tried::default(),
            failures: Vec::new(),
            turns: 0,
            interim: None,
            extended_connect: false,
        }
    }

    fn target(&self, c: &Attempt) -> &'a Target {
        &self.lb.group.targets[c.i]
    }

    /// 504: the target took longer than `target_timeout`.
    fn timed_out(&self, target: &Target) -> Response<Body> {
        self.count_error(target, "timeout");
        self.timeout_answer(target)
    }

    fn timeout_answer(&self, target: &Target) -> Response<Body> {
        meridian_http::text(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{}: target {} sent no response within {}",
                self.lb.name,
                target.name,
                meridian_config::units::format_duration(self.lb.config.target_timeout)
            ),
        )
    }

    fn count_error(&self, target: &Target, kind: &str) {
        self.lb
            .target_errors
            .get_or_create(&vec![
                ("target", target.name.clone()),
                ("kind", kind.to_owned()),
            ])
            .inc();
    }

    fn target_failed(&self, target: &Target, fault: Fault, detail: &str) {
        let kind = fault.as_str();
        tracing::warn!(lb = %self.lb.name, target = %target.name, kind, detail, "target failed");
        self.count_error(target, kind);
        // A refused or reset connection says the target is gone (killed, crashed): take it
        // out at once, so the retry and the next requests go elsewhere.
        match fault {
            Fault::Connect => self
                .lb
                .board
                .report_failure(&target.name, "connection failed"),
            Fault::Reset => self
                .lb
                .board
                .report_failure(&target.name, "connection reset"),
            Fault::Io | Fault::Timeout => {}
        }
    }
}

/// The index of the target that answered, and its answer; or the balancer's own answer.
pub(crate) type Answer = Result<(usize, Response<Body>), Response<Body>>;

/// [`meridian_http::strip_hop_by_hop`] by names made once (`forwarded.rs`): removing by a
/// name given as text parses and hashes it, 18 times a request, 8% of the balancer's
/// instructions.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    crate::forwarded::strip(headers, &crate::forwarded::HOP_BY_HOP)
}

/// An error and its causes, in one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Over the balancer's own HTTP/1.1 pool or hyper's pooled client (`pool.rs`), which
/// both answer with a [`Driven`] body.
impl Failover<Driven, PoolError> for Retries<'_> {
    type Candidate = Attempt;
    type Output = Answer;

    /// A streamed (gRPC) body is never replayed once an attempt has taken it; before
    /// that (a failed connect) it can still go elsewhere.
    fn replayable(&self) -> bool {
        idempotent(self.method) && !matches!(self.body, RequestBody::Once(_))
    }

    fn retry_timeouts(&self) -> bool {
        false
    }

    fn next(&mut self) -> Option<Attempt> {
        if self.turns > self.lb.config.max_retries || self.body.spent() {
            return None;
        }
        let group = self.lb.group;
        // Every target tried once: a healthy one may be tried again, since a failure on
        // a reused connection says little about the target itself.
        let cfg = self.lb.group_config;
        let i = group
            .pick_with(cfg, self.tried.as_slice(), self.lb.sticky)
            .or_else(|| {
                let again = group.pick_with(cfg, &[], None);
                again.filter(|&i| {
                    group.targets[i].health.is_healthy() && group.targets[i].in_service()
                })
            })?;
        self.turns += 1;
        self.tried.push(i);
        Some(Attempt { i, guard: None })
    }

    fn more(&self) -> bool {
        self.turns <= self.lb.config.max_retries
    }

    fn request(&mut self, c: &mut Attempt) -> Result<Request<Body>, Answer> {
        let target = self.target(c);
        let uri = http::Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(http::uri::Scheme::HTTP);
            p.authority = Some(target.authority.clone());
            p.path_and_query = Some(self.path.clone());
            p
        });
        let Ok(uri) = uri else {
            return Err(Err(meridian_http::text(
                StatusCode::BAD_REQUEST,
                "the request's target could not be written",
            )));
        };
        // An empty body as `Empty`, which takes no allocation (a `Full` is boxed). An
        // extended CONNECT has none (hyper refuses one with a body).
        let body = match self.body {
            _ if self.extended_connect => meridian_http::empty(),
            RequestBody::Full(b) if b.is_empty() => meridian_http::empty(),
            _ => self.body.attempt(),
        };
        let more = self.more();
        let mut up = Request::new(body);
        *up.method_mut() = self.method.clone();
        if self.extended_connect {
            *up.method_mut() = Method::CONNECT;
            up.extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
        }
        *up.uri_mut() = uri;
        match &mut self.head {
            Head::Written(w) => {
                up.extensions_mut().insert(w.clone());
            }
            Head::Map { first, again } => {
                *up.headers_mut() = match first.take() {
                    Some(first) => {
                        if more {
                            *again = first.clone();
                        }
                        first
                    }
                    None => again.clone(),
                };
            }
        }
        if let Some(interim) = &self.interim {
            interim.attach(&mut up);
        }
        target.outstanding.inc();
        c.guard = Some(Outstanding(target.outstanding.clone()));
        Ok(up)
    }

    /// Not an `async fn`: what needs no waiting is done before the future is made, so
    /// that the future holds only what the wait needs (it is part of every request's
    /// state, allocated and copied whole).
    fn answered(
        &mut self,
        mut c: Attempt,
        res: Response<Driven>,
        elapsed: Duration,
    ) -> impl std::future::Future<Output = Verdict<Answer>> + Send {
        let target = self.target(&c);
        let guard = c.guard.take();
        // An error's latency says nothing of the target's speed (a fast 500 would pull its
        // peers' mean down): only answers that are not errors are timed.
        let error = res.status().is_server_error();
        self.lb
            .group
            .answered(c.i, error, (!error).then_some(elapsed));
        let (mut rp, rb) = res.into_parts();
        strip_hop_by_hop(&mut rp.headers);
        if let Some(received) = rp.extensions.get_mut::<meridian_http::received::Received>() {
            received.strip_hop_by_hop();
        }
        // A small answer to a retryable request is read whole before it is passed on, so
        // a target dying mid-body is one more retry, not a truncated response. Large
        // bodies stream.
        let small = rb
            .size_hint()
            .upper()
            .is_some_and(|n| n <= BUFFERED_BODY_MAX);
        if !(small && idempotent(self.method)) {
            // A target that stalls mid-body must not hold the client forever.
            let body = Guarded {
                inner: meridian_http::IdleTimeout::new(rb, self.lb.config.idle_timeout),
                _guard: guard,
            };
            let done = Verdict::Done(Ok((c.i, Response::from_parts(rp, body.boxed()))));
            return Either::Left(std::future::ready(done));
        }
        let timeout = self.lb.config.target_timeout;
        Either::Right(async move {
            let read = tokio::time::timeout(timeout, read_whole(rb)).await;
            drop(guard);
            match read {
                Ok(Ok(body)) => Verdict::Done(Ok((c.i, Response::from_parts(rp, body)))),
                Ok(Err(e)) => {
                    self.target_failed(target, Fault::Io, &e.to_string());
                    self.failures
                        .push(format!("{}: body cut short: {e}", target.name));
                    Verdict::Next(Reason::Fault(Fault::Io))
                }
                Err(_) => Verdict::Done(Err(self.timed_out(target))),
            }
        })
    }

    fn failed(&mut self, c: &mut Attempt, fault: Fault, error: Option<&PoolError>) {
        drop(c.guard.take());
        // A failed connection, reset or timeout is an error for anomaly detection.
        self.lb.group.answered(c.i, true, None);
        let target = self.target(c);
        match error {
            Some(e) => {
                self.target_failed(target, fault, &e.to_string());
                self.failures
                    .push(format!("{}: {}", target.name, describe(e)));
            }
            None => self.count_error(target, fault.as_str()),
        }
    }

    fn stopped(&mut self, c: Attempt, fault: Fault) -> Answer {
        let target = self.target(&c);
        if fault == Fault::Timeout {
            return Err(self.timeout_answer(target));
        }
        Err(meridian_http::text(
            StatusCode::BAD_GATEWAY,
            format!(
                "{}: target {} failed mid-request and {} is not safe to retry",
                self.lb.name, target.name, self.method
            ),
        ))
    }

    fn retrying(&mut self, reason: Reason) {
        let kind = match reason {
            Reason::Fault(f) => f.as_str(),
            Reason::Answer => "status",
            Reason::Hedge => "hedge",
        };
        self.lb
            .retries
            .get_or_create(&vec![("reason", kind.to_owned())])
            .inc();
    }

    fn exhausted(self) -> Answer {
        if self.failures.is_empty() {
            return Err(meridian_http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}: no healthy target can take the request", self.lb.name),
            ));
        }
        Err(meridian_http::text(
            StatusCode::BAD_GATEWAY,
            format!(
                "{}: every target tried failed ({})",
                self.lb.name,
                self.failures.join("; ")
            ),
        ))
    }
}

/// Reads a small body whole, for relaying as one piece with its trailers. Its data is most
/// often one frame, which is kept as it is: no list of frames, no copy.
async fn read_whole<B>(mut body: B) -> Result<Body, B::Error>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame?.into_data() {
            Ok(data) => {
                match (&first, &mut more) {
                    (None, _) => first = Some(data),
                    (Some(one), None) => {
                        let mut all = bytes::BytesMut::with_capacity(one.len() + data.len());
                        all.extend_from_slice(one);
                        all.extend_from_slice(&data);
                        more = Some(all);
                    }
                    (Some(_), Some(all)) => all.extend_from_slice(&data),
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(t) = frame.into_trailers() {
            match &mut trailers {
                Some(all) => all.extend(t),
                None => trailers = Some(t),
            }
        }
    }
    let data = match more {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok(match trailers {
        // Empty takes no allocation; a `Full` is boxed.
        None if data.is_empty() => meridian_http::empty(),
        None => meridian_http::full(data),
        Some(t) => http_body_util::Full::new(data)
            .map_err(|never| match never {})
            .with_trailers(async move { Some(Ok(t)) })
            .boxed(),
    })
}

/// Decrements a target's outstanding count when the response is done (or dropped).
struct Outstanding(Gauge);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its target's outstanding count until it ends.
    struct Guarded<B> {
        #[pin]
        inner: B,
        _guard: Option<Outstanding>,
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Frames = http_body_util::StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>,
        >,
    >;

    fn frames(list: Vec<Frame<Bytes>>) -> Frames {
        let list: Vec<_> = list.into_iter().map(Ok).collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(list))
    }

    #[tokio::test]
    async fn a_body_read_whole_keeps_its_data_in_order_and_its_trailers() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        let body = frames(vec![
            Frame::data(Bytes::from_static(b"ab")),
            Frame::data(Bytes::from_static(b"cd")),
            Frame::data(Bytes::from_static(b"e")),
            Frame::trailers(t),
        ]);
        let got = read_whole(body).await.unwrap().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(got.to_bytes(), "abcde");

        let one = frames(vec![Frame::data(Bytes::from_static(b"only"))]);
        let one = read_whole(one).await.unwrap();
        assert_eq!(one.size_hint().exact(), Some(4));
        assert_eq!(one.collect().await.unwrap().to_bytes(), "only");

        let none = read_whole(frames(vec![])).await.unwrap();
        assert!(none.is_end_stream());
    }

    #[test]
    fn tried_targets_are_listed_past_the_inline_ones() {
        let mut t = Tried::default();
        assert!(t.as_slice().is_empty());
        for i in 0..4 {
            t.push(i * 10);
        }
        assert_eq!(t.as_slice(), [0, 10, 20, 30]);
        t.push(40);
        t.push(50);
        assert_eq!(t.as_slice(), [0, 10, 20, 30, 40, 50]);
    }

    #[test]
    fn hop_by_hop_fields_go_and_the_rest_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut plain = HeaderMap::new();
        plain.insert("x-private", "1".parse().unwrap());
        strip_hop_by_hop(&mut plain);
        assert_eq!(
            plain.len(),
            1,
            "without Connection a field is not hop-by-hop"
        );
    }
}
