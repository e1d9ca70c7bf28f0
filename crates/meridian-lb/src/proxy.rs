//! The request path: pick a target, forward, retry when safe, answer for the targets when
//! none can.

use crate::target::{Target, TargetGroup};
use crate::LbOptions;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use meridian_health::{Health, HealthBoard};
use meridian_http::{Body, UpstreamClient};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, String)>;
type BoxedResponse =
    Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Responses up to this size to retryable requests are read whole before being relayed.
const BUFFERED_BODY_MAX: u64 = 256 * 1024;

pub(crate) struct LbMetrics {
    pub requests: Family<Labels, Counter>,
    pub duration: Histogram,
    pub retries: Family<Labels, Counter>,
    pub target_errors: Family<Labels, Counter>,
    pub target_healthy: Family<Labels, Gauge>,
    pub transitions: Family<Labels, Counter>,
    pub response_bytes: Counter,
    pub signature_rejections: Counter,
    pub tls_requests: Counter,
}

struct Inner {
    name: String,
    group: TargetGroup,
    board: HealthBoard,
    client: UpstreamClient,
    config: meridian_config::LoadBalancer,
    listen_port: u16,
    metrics: Metrics,
    m: LbMetrics,
    signer: Option<Arc<meridian_http::signing::Signer>>,
}

/// Marks a request that came through the TLS listener (on this port).
#[derive(Debug, Clone, Copy)]
struct ViaTls(u16);

/// A load balancer: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct LoadBalancer(Arc<Inner>);

/// Methods whose repetition is harmless (RFC 9110 §9.2.2): safe to retry after a request
/// may have reached a target.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .unwrap_or_else(|| {
            let id = format!("{:032x}", rand::random::<u128>());
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
        })
}

impl LoadBalancer {
    pub fn new(opts: &LbOptions) -> Self {
        let metrics = Metrics::new();
        let m = LbMetrics {
            requests: metrics.register(
                "lb_requests",
                "Requests answered by the load balancer, by target and status",
                Family::default(),
            ),
            duration: metrics.register(
                "lb_request_duration_seconds",
                "Time from request to response head, including retries",
                meridian_telemetry::latency_histogram(),
            ),
            retries: metrics.register(
                "lb_retries",
                "Requests sent to another target after one failed, by reason",
                Family::default(),
            ),
            target_errors: metrics.register(
                "lb_target_errors",
                "Failures talking to a target, by target and kind",
                Family::default(),
            ),
            target_healthy: metrics.register(
                "lb_target_healthy",
                "1 when the target passes its health checks, else 0.",
                Family::default(),
            ),
            transitions: metrics.register(
                "lb_target_health_transitions",
                "Health state changes, by target and new state",
                Family::default(),
            ),
            response_bytes: metrics.register(
                "lb_response_bytes",
                "Body bytes of responses whose length is known up front (data out, for cost)",
                Counter::default(),
            ),
            signature_rejections: metrics.register(
                "lb_signature_rejections",
                "Requests refused with 403 for a missing, stale or wrong edge signature",
                Counter::default(),
            ),
            tls_requests: metrics.register(
                "lb_tls_requests",
                "Requests that arrived over TLS (from PoPs with origin_protocol = https)",
                Counter::default(),
            ),
        };
        let outstanding = metrics.register(
            "lb_target_outstanding_requests",
            "Requests in flight to each target",
            Family::<Labels, Gauge>::default(),
        );
        let board = HealthBoard::new();
        let hc = &opts.config.health_check;
        let targets = opts
            .targets
            .iter()
            .map(|t| Target {
                name: t.name.clone(),
                az: t.az.clone().unwrap_or_default(),
                addr: t.address,
                health: board.register(&t.name, hc.healthy_threshold, hc.unhealthy_threshold),
                outstanding: outstanding
                    .get_or_create(&vec![("target", t.name.clone())])
                    .clone(),
            })
            .collect();
        let client = meridian_http::upstream_client(
            opts.config.target_timeout.min(Duration::from_secs(5)),
            Duration::from_secs(60),
        );
        LoadBalancer(Arc::new(Inner {
            name: opts.name.clone(),
            group: TargetGroup::new(targets, opts.config.algorithm),
            board,
            client,
            config: opts.config.clone(),
            listen_port: opts.listen.port(),
            metrics,
            m,
            signer: opts.signer.clone(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn group(&self) -> &TargetGroup {
        &self.0.group
    }

    pub fn board(&self) -> &HealthBoard {
        &self.0.board
    }

    pub(crate) fn metrics_text(&self) -> String {
        self.0.metrics.encode()
    }

    /// Starts active checks of every target and keeps the health gauges current.
    pub fn start_health_checks(&self, opts: &LbOptions) -> Vec<tokio::task::JoinHandle<()>> {
        // Subscribe before the checks start, so that no early transition is missed and a
        // gauge never says unhealthy about a target the balancer routes to.
        let mut events = self.0.board.subscribe();
        let mut tasks: Vec<_> = opts
            .targets
            .iter()
            .map(|t| {
                self.0
                    .board
                    .watch(&t.name, t.address, opts.config.health_check.clone())
            })
            .collect();
        let lb = self.clone();
        for t in &self.0.group.targets {
            lb.0.m
                .target_healthy
                .get_or_create(&vec![("target", t.name.clone()), ("az", t.az.clone())])
                .set(0);
        }
        tasks.push(tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    // A burst outran the channel: keep going rather than freeze the gauges.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let az =
                    lb.0.group
                        .targets
                        .iter()
                        .find(|t| t.name == ev.target)
                        .map(|t| t.az.clone())
                        .unwrap_or_default();
                let up = i64::from(ev.to == Health::Healthy);
                lb.0.m
                    .target_healthy
                    .get_or_create(&vec![("target", ev.target.clone()), ("az", az)])
                    .set(up);
                let to = format!("{:?}", ev.to).to_lowercase();
                lb.0.m
                    .transitions
                    .get_or_create(&vec![("target", ev.target.clone()), ("to", to)])
                    .inc();
            }
        }));
        tasks
    }

    /// The per-connection service.
    pub fn service(
        &self,
        peer: SocketAddr,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = BoxedResponse,
    > + Clone {
        let lb = self.clone();
        hyper::service::service_fn(move |req| {
            let lb = lb.clone();
            Box::pin(async move { Ok(lb.handle(req, peer).await) }) as BoxedResponse
        })
    }

    /// The per-connection service of the TLS listener on `port`: requests are marked so the
    /// target sees `X-Forwarded-Proto: https`.
    pub fn service_tls(
        &self,
        peer: SocketAddr,
        port: u16,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = BoxedResponse,
    > + Clone {
        let lb = self.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let lb = lb.clone();
            req.extensions_mut().insert(ViaTls(port));
            lb.0.m.tls_requests.inc();
            Box::pin(async move { Ok(lb.handle(req, peer).await) }) as BoxedResponse
        })
    }

    /// Forwards one request. Public so tests and embedders can drive it directly.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let rid = request_id(&parts.headers);
        let (status_label, mut res) = match self.forward(parts, body, peer, &rid).await {
            Ok((target, res)) => (target, res),
            Err(res) => ("none".to_owned(), res),
        };
        res.headers_mut().insert("x-request-id", rid);
        self.0.m.duration.observe(start.elapsed().as_secs_f64());
        if let Some(n) = hyper::body::Body::size_hint(res.body()).exact() {
            self.0.m.response_bytes.inc_by(n);
        }
        self.0
            .m
            .requests
            .get_or_create(&vec![
                ("target", status_label),
                ("status", res.status().as_u16().to_string()),
            ])
            .inc();
        res
    }

    /// Origin access control: a request that did not come through the CDN gets 403,
    /// unless it is a GET or HEAD of an unsigned path (health checks). The refusal is the
    /// response itself: it is built once per refused request, so its size does not matter.
    #[allow(clippy::result_large_err)]
    fn check_signature(&self, parts: &http::request::Parts) -> Result<(), Response<Body>> {
        let cfg = &self.0.config;
        let path = parts.uri.path();
        if matches!(parts.method, Method::GET | Method::HEAD)
            && cfg.unsigned_paths.iter().any(|p| p == path)
        {
            return Ok(());
        }
        let refuse = |why: String| {
            self.0.m.signature_rejections.inc();
            meridian_http::text(StatusCode::FORBIDDEN, format!("{}: {why}", self.0.name))
        };
        let Some(signer) = &self.0.signer else {
            return Err(refuse(
                "this balancer requires an edge signature but holds no signing key".into(),
            ));
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        signer
            .verify(
                &parts.headers,
                &parts.method,
                host,
                pq,
                std::time::SystemTime::now(),
            )
            .map_err(|e| refuse(e.to_string()))
    }

    async fn forward(
        &self,
        parts: http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
        rid: &HeaderValue,
    ) -> Result<(String, Response<Body>), Response<Body>> {
        let cfg = &self.0.config;
        if cfg.require_edge_signature {
            self.check_signature(&parts)?;
        }
        let limit = cfg.max_request_body.0 as usize;
        if body.size_hint().lower() as usize > limit {
            return Err(too_large(limit));
        }
        // Buffer the request body so it can be replayed on another target.
        let body = meridian_http::IdleTimeout::new(body, cfg.idle_timeout);
        let body = match Limited::new(body, limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(limit)),
            Err(e) if e.is::<meridian_http::Idle>() => {
                return Err(meridian_http::text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("{}: the request body stalled: {e}", self.0.name),
                ))
            }
            Err(_) => {
                return Err(meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        };
        let mut headers = parts.headers.clone();
        meridian_http::strip_hop_by_hop(&mut headers);
        // The edge's signature is for this balancer, not for the application.
        headers.remove(meridian_http::signing::HEADER);
        // The target's framing is the buffered body, written by the client pool; the
        // client's own Content-Length and Expect describe a different message.
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::EXPECT);
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
        match parts.extensions.get::<ViaTls>() {
            Some(ViaTls(port)) => {
                headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
                headers.insert("x-forwarded-port", HeaderValue::from(*port));
            }
            None => {
                headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
                headers.insert("x-forwarded-port", HeaderValue::from(self.0.listen_port));
            }
        }
        headers.insert("x-request-id", rid.clone());
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();

        let group = &self.0.group;
        if group.targets.is_empty() {
            return Err(meridian_http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{}: the target group has no registered targets",
                    self.0.name
                ),
            ));
        }
        let mut tried = Vec::new();
        let mut failures = Vec::new();
        for attempt in 0..=cfg.max_retries {
            // Every target tried once: a healthy one may be tried again, since a failure on
            // a reused connection says little about the target itself.
            let Some(i) = group.pick(&tried).or_else(|| {
                let again = group.pick(&[]);
                again.filter(|&i| group.targets[i].health.is_healthy())
            }) else {
                break;
            };
            tried.push(i);
            let target = &group.targets[i];
            let uri = format!("http://{}{}", target.addr, path);
            let mut up = Request::builder().method(parts.method.clone()).uri(uri);
            if let Some(h) = up.headers_mut() {
                *h = headers.clone();
            }
            let Ok(up) = up.body(meridian_http::full(body.clone())) else {
                return Err(meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    "the request could not be forwarded",
                ));
            };
            target.outstanding.inc();
            let guard = Outstanding(target.outstanding.clone());
            let sent = tokio::time::timeout(cfg.target_timeout, self.0.client.request(up)).await;
            match sent {
                Ok(Ok(res)) => {
                    let (mut rp, rb) = res.into_parts();
                    meridian_http::strip_hop_by_hop(&mut rp.headers);
                    // A small answer to a retryable request is read whole before it is
                    // passed on, so a target dying mid-body is one more retry, not a
                    // truncated response. Large bodies stream.
                    let small = rb
                        .size_hint()
                        .upper()
                        .is_some_and(|n| n <= BUFFERED_BODY_MAX);
                    if small && idempotent(&parts.method) {
                        match tokio::time::timeout(cfg.target_timeout, rb.collect()).await {
                            Ok(Ok(collected)) => {
                                drop(guard);
                                let body = meridian_http::full(collected.to_bytes());
                                return Ok((target.name.clone(), Response::from_parts(rp, body)));
                            }
                            Ok(Err(e)) => {
                                drop(guard);
                                self.target_failed(target, "io", &e.to_string());
                                failures.push(format!("{}: body cut short: {e}", target.name));
                                if attempt < cfg.max_retries {
                                    self.0
                                        .m
                                        .retries
                                        .get_or_create(&vec![("reason", "io".to_owned())])
                                        .inc();
                                }
                                continue;
                            }
                            Err(_) => {
                                drop(guard);
                                return Err(self.timed_out(target));
                            }
                        }
                    }
                    // A target that stalls mid-body must not hold the client forever.
                    let body = Guarded {
                        inner: meridian_http::IdleTimeout::new(rb, cfg.idle_timeout),
                        _guard: guard,
                    };
                    let body = body.boxed();
                    return Ok((target.name.clone(), Response::from_parts(rp, body)));
                }
                Ok(Err(e)) => {
                    drop(guard);
                    // A failed connect means the request never left: any method may go
                    // elsewhere. Otherwise only idempotent ones may.
                    let connect = e.is_connect();
                    let kind = if connect {
                        "connect"
                    } else if was_reset(&e) {
                        "reset"
                    } else {
                        "io"
                    };
                    self.target_failed(target, kind, &e.to_string());
                    failures.push(format!("{}: {}", target.name, meridian_http::describe(&e)));
                    if !(connect || idempotent(&parts.method)) {
                        return Err(meridian_http::text(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "{}: target {} failed mid-request and {} is not safe to retry",
                                self.0.name, target.name, parts.method
                            ),
                        ));
                    }
                    if attempt < cfg.max_retries {
                        self.0
                            .m
                            .retries
                            .get_or_create(&vec![("reason", kind.to_owned())])
                            .inc();
                    }
                }
                Err(_) => {
                    drop(guard);
                    return Err(self.timed_out(target));
                }
            }
        }
        if failures.is_empty() {
            return Err(meridian_http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}: no healthy target can take the request", self.0.name),
            ));
        }
        Err(meridian_http::text(
            StatusCode::BAD_GATEWAY,
            format!(
                "{}: every target tried failed ({})",
                self.0.name,
                failures.join("; ")
            ),
        ))
    }

    /// 504: the target took longer than `target_timeout`.
    fn timed_out(&self, target: &Target) -> Response<Body> {
        self.0
            .m
            .target_errors
            .get_or_create(&vec![
                ("target", target.name.clone()),
                ("kind", "timeout".to_owned()),
            ])
            .inc();
        meridian_http::text(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{}: target {} sent no response within {}",
                self.0.name,
                target.name,
                meridian_config::units::format_duration(self.0.config.target_timeout)
            ),
        )
    }

    fn target_failed(&self, target: &Target, kind: &str, detail: &str) {
        tracing::warn!(lb = %self.0.name, target = %target.name, kind, detail, "target failed");
        self.0
            .m
            .target_errors
            .get_or_create(&vec![
                ("target", target.name.clone()),
                ("kind", kind.to_owned()),
            ])
            .inc();
        // A refused or reset connection says the target is gone (killed, crashed): take it
        // out at once, so the retry and the next requests go elsewhere.
        match kind {
            "connect" => self
                .0
                .board
                .report_failure(&target.name, "connection failed"),
            "reset" => self
                .0
                .board
                .report_failure(&target.name, "connection reset"),
            _ => {}
        }
    }
}

/// Whether a target error is its connection being reset or aborted under the request.
fn was_reset(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        src = err.source();
    }
    false
}

fn too_large(limit: usize) -> Response<Body> {
    meridian_http::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body exceeds {}",
            meridian_config::ByteSize(limit as u64)
        ),
    )
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
        _guard: Outstanding,
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
