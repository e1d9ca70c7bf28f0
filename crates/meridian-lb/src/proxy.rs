//! The request path: pick a target, forward, retry when safe, answer for the targets when
//! none can.

use crate::access_log::{AccessLog, Arrival, Record};
use crate::options::LbOptions;
use crate::rules::Decision;
use crate::settings::{Current, Settings};
use crate::target::{Target, TargetGroup};
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Incoming};
use meridian_health::{Health, HealthBoard};
use meridian_http::grpc::RequestBody;
use meridian_http::interim::Interim;
use meridian_http::{Body, BoxError};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_telemetry::Labels;
type BoxedResponse =
    Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

pub(crate) struct LbMetrics {
    pub requests: Family<Labels, Counter>,
    pub duration: Histogram,
    /// The same per target group (twins included): the console compares blue and green.
    pub group_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub retries: Family<Labels, Counter>,
    pub target_errors: Family<Labels, Counter>,
    pub target_healthy: Family<Labels, Gauge>,
    pub transitions: Family<Labels, Counter>,
    pub response_bytes: Counter,
    pub signature_rejections: Counter,
    pub unsigned_claims: Counter,
    pub tls_requests: Counter,
    pub rule_matches: Family<Labels, Counter>,
    /// Per-target gauges, kept so a target registered at run time gets its own.
    pub outstanding: Family<Labels, Gauge>,
    pub weights: Family<Labels, Gauge<f64, AtomicU64>>,
    pub anomalous: Family<Labels, Gauge>,
}

struct Inner {
    name: String,
    /// The target groups; the first is the default action's.
    groups: Vec<TargetGroup>,
    /// Their green twins and weights (`twins.rs`).
    twins: crate::twins::Twins,
    /// Rules and balancer-wide settings: swapped by a reload (`live.rs`), read once per
    /// request.
    current: Current,
    /// The targets the config gave at start (a reload that changes them is refused).
    configured: Vec<meridian_config::NodeSpec>,
    /// hyper's HTTP/1.1 pool: WebSocket handshakes only (an upgraded connection leaves
    /// the pool with the tunnel).
    client: crate::pool::Legacy,
    /// The HTTP/1.1 pool every other request uses (`pool.rs`).
    pool: crate::pool::Pool,
    /// The HTTP/2 pool, for `http2` and `grpc` target groups (h2c with prior knowledge).
    client_h2: crate::pool::Legacy,
    listen_port: u16,
    /// `listen_port` as the `X-Forwarded-Port` value, made once.
    port_header: HeaderValue,
    metrics: Metrics,
    m: LbMetrics,
    signer: Option<Arc<meridian_http::signing::Signer>>,
    /// WebSocket tunnels (`upgrade.rs`).
    ws: crate::upgrade::WsTunnels,
    /// ALB's access log (`access_log.rs`); None when off.
    log: Option<AccessLog>,
}

/// Marks a request that came through the TLS listener (on this port, with this version).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaTls(pub(crate) u16, pub(crate) Option<&'static str>);

/// The connection's id in the access log's `conn_trace_id` (ALB's `TID_...`).
#[derive(Debug, Clone)]
pub(crate) struct ConnTrace(Arc<str>);

impl ConnTrace {
    pub(crate) fn new() -> Self {
        ConnTrace(format!("TID_{:016x}", rand::random::<u64>()).into())
    }
}

/// A load balancer: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct LoadBalancer(Arc<Inner>);

impl LoadBalancer {
    pub fn new(opts: &LbOptions) -> Self {
        let metrics = Metrics::new();
        let outstanding = metrics.register(
            "lb_target_outstanding_requests",
            "Requests in flight to each target",
            Family::<Labels, Gauge>::default(),
        );
        let weights = metrics.register(
            "lb_target_weight",
            "Each target's share weight in its group, 0 to 1 (below 1 during slow start)",
            Family::<Labels, Gauge<f64, AtomicU64>>::default(),
        );
        let anomalous = metrics.register(
            "lb_target_anomalous",
            "1 while anomaly detection finds the target's error rate an outlier in its group",
            Family::<Labels, Gauge>::default(),
        );
        let m = LbMetrics {
            outstanding: outstanding.clone(),
            weights: weights.clone(),
            anomalous: anomalous.clone(),
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
            group_duration: metrics.register(
                "lb_target_group_request_duration_seconds",
                "Time from request to response head, by the target group that answered",
                Family::new_with_constructor(meridian_telemetry::latency_histogram as fn() -> _),
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
            unsigned_claims: metrics.register(
                "lb_unsigned_claims_removed",
                "Claim fields (a JWT authorizer's forwarded claims) removed from requests no edge signed",
                Counter::default(),
            ),
            tls_requests: metrics.register(
                "lb_tls_requests",
                "Requests that arrived over TLS (from PoPs with origin_protocol = https)",
                Counter::default(),
            ),
            rule_matches: metrics.register(
                "lb_rule_matches",
                "Requests a listener rule matched, by rule (the default action is not a rule)",
                Family::default(),
            ),
        };
        let ws = crate::upgrade::WsTunnels::new(&metrics, &opts.config);
        let groups: Vec<TargetGroup> = opts
            .config
            .effective_target_groups()
            .into_iter()
            .map(|g| {
                let board = HealthBoard::new();
                let hc = &g.health_check;
                let in_group = |t: &&meridian_config::NodeSpec| match &g.azs {
                    Some(azs) => t.az.as_ref().is_some_and(|a| azs.contains(a)),
                    None => true,
                };
                let targets = opts
                    .targets
                    .iter()
                    .filter(in_group)
                    .map(|t| {
                        Target::new(
                            t.name.clone(),
                            t.az.clone().unwrap_or_default(),
                            t.address,
                            board.register(&t.name, hc.healthy_threshold, hc.unhealthy_threshold),
                            outstanding
                                .get_or_create(&vec![("target", t.name.clone())])
                                .clone(),
                            weights
                                .get_or_create(&vec![
                                    ("target_group", g.name.clone()),
                                    ("target", t.name.clone()),
                                ])
                                .clone(),
                            anomalous
                                .get_or_create(&vec![
                                    ("target_group", g.name.clone()),
                                    ("target", t.name.clone()),
                                ])
                                .clone(),
                        )
                    })
                    .collect();
                TargetGroup::new(g, targets, board)
            })
            .collect();
        let settings = Settings::new(opts.config.clone(), &groups);
        let dropped = metrics.register(
            "lb_access_log_dropped",
            "Access log lines dropped because the writer fell behind (requests never wait)",
            Counter::default(),
        );
        let log = opts
            .access_log
            .clone()
            .and_then(|path| AccessLog::open(path, dropped));
        let connect_timeout = opts.config.target_timeout.min(Duration::from_secs(5));
        let client = meridian_http::upstream_client(connect_timeout, Duration::from_secs(60));
        let client_h2 = meridian_http::upstream_client_h2(connect_timeout, Duration::from_secs(60));
        let pool = crate::pool::Pool::new(connect_timeout, Duration::from_secs(60));
        LoadBalancer(Arc::new(Inner {
            name: opts.name.clone(),
            twins: crate::twins::Twins::new(groups.len()),
            groups,
            current: Current::new(settings, ""),
            configured: opts.targets.clone(),
            client: crate::pool::Legacy(client),
            pool,
            client_h2: crate::pool::Legacy(client_h2),
            listen_port: opts.listen.port(),
            port_header: HeaderValue::from(opts.listen.port()),
            metrics,
            m,
            signer: opts.signer.clone(),
            ws,
            log,
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The default action's target group (the only one when the config declares none).
    pub fn group(&self) -> &TargetGroup {
        &self.0.groups[0]
    }

    pub fn groups(&self) -> &[TargetGroup] {
        &self.0.groups
    }

    pub(crate) fn twins(&self) -> &crate::twins::Twins {
        &self.0.twins
    }

    pub(crate) fn current(&self) -> &Current {
        &self.0.current
    }

    pub(crate) fn configured_targets(&self) -> &[meridian_config::NodeSpec] {
        &self.0.configured
    }

    /// The balancer-wide settings now (a reload may change them).
    pub fn config(&self) -> meridian_config::LoadBalancer {
        self.0.current.get().config.clone()
    }

    pub fn board(&self) -> &HealthBoard {
        &self.group().board
    }

    /// Whether the access log is on (connections then get a trace id for it).
    pub(crate) fn logged(&self) -> bool {
        self.0.log.is_some()
    }

    pub(crate) fn lb_metrics(&self) -> &LbMetrics {
        &self.0.m
    }

    pub(crate) fn websockets(&self) -> &crate::upgrade::WsTunnels {
        &self.0.ws
    }

    pub(crate) fn metrics_text(&self) -> String {
        self.0.metrics.encode()
    }

    /// Starts active checks of every target (each group with its own check) and keeps the
    /// health gauges and slow start weights current.
    pub fn start_health_checks(&self, _opts: &LbOptions) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for gi in 0..self.0.groups.len() {
            tasks.extend(self.watch_group(gi));
        }
        tasks
    }

    fn watch_group(&self, gi: usize) -> Vec<tokio::task::JoinHandle<()>> {
        let group = &self.0.groups[gi];
        // Subscribe before the checks start, so that no early transition is missed and a
        // gauge never says unhealthy about a target the balancer routes to.
        let mut events = group.board.subscribe();
        // Each target's checks live with it: deregistering a target ends them.
        for t in &group.targets {
            let probe = group
                .board
                .watch(&t.name, t.addr, group.config().health_check.clone());
            *t.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
        }
        let mut tasks = Vec::new();
        // A target in several groups is checked by each; its health gauge (one per
        // target, as dashboards sum it) follows the first group that holds it.
        for t in group
            .targets
            .iter()
            .filter(|t| self.health_owner(&t.name) == Some(gi))
        {
            self.0
                .m
                .target_healthy
                .get_or_create(&vec![("target", t.name.clone()), ("az", t.az.clone())])
                .set(0);
        }
        let lb = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    // A burst outran the channel: keep going rather than freeze the gauges.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let group = &lb.0.groups[gi];
                let i = group.index_of(&ev.target);
                let az = i.map(|i| group.targets[i].az.clone()).unwrap_or_default();
                // Targets registered together at start are not slow-started: only one
                // that comes back (or comes up late) while others serve.
                if let (Some(i), Health::Healthy, false) = (i, ev.to, ev.from == Health::Unknown) {
                    group.became_healthy(i);
                }
                if lb.health_owner(&ev.target) == Some(gi) {
                    let up = i64::from(ev.to == Health::Healthy);
                    lb.0.m
                        .target_healthy
                        .get_or_create(&vec![("target", ev.target.clone()), ("az", az)])
                        .set(up);
                }
                let to = format!("{:?}", ev.to).to_lowercase();
                lb.0.m
                    .transitions
                    .get_or_create(&vec![("target", ev.target.clone()), ("to", to)])
                    .inc();
            }
        }));
        // Always there: a reload may turn slow start on (or off) for the group.
        let lb = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let group = &lb.0.groups[gi];
                if !group.config().slow_start.is_zero() {
                    group.refresh_weights();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
        tasks
    }

    /// The first group holding `target`: the one its `lb_target_healthy` gauge follows.
    fn health_owner(&self, target: &str) -> Option<usize> {
        self.0
            .groups
            .iter()
            .position(|g| g.index_of(target).is_some())
    }

    /// The per-connection service, as hyper's (tests and embedders); the balancer's own
    /// listeners serve [`crate::Clients`].
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
        hyper::service::service_fn(move |req: Request<Incoming>| {
            Box::pin(lb.clone().handle_with(req, peer, None).map(|mut res| {
                // hyper writes the header map alone.
                meridian_http::received::settle_response(&mut res);
                Ok(res)
            })) as BoxedResponse
        })
    }

    /// Forwards one request. Public so tests and embedders can drive it directly.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let mut res = self.clone().handle_with(req, peer, None).await;
        // The caller reads the answer's fields from its map.
        meridian_http::received::settle_response(&mut res);
        res
    }

    /// [`Balancer::handle`], relaying the target's interim responses to `hints`. The
    /// target's fields may still be lines of its head
    /// ([`meridian_http::received::Received`]): meridian-http's servers write them, any
    /// other reader calls [`meridian_http::received::settle_response`] first.
    ///
    /// It takes the balancer by value and does what needs no waiting before it makes its
    /// future, rather than being an `async fn`: every request's future is allocated and
    /// copied whole, and an `async fn` keeps its arguments twice (here the request, and
    /// again the parts taken from it). The request's parts live here alone; the steps
    /// below borrow them.
    pub fn handle_with<B>(
        self,
        req: Request<B>,
        peer: SocketAddr,
        hints: Option<Interim>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let ws = crate::upgrade::take(&mut parts); // WebSockets: `upgrade.rs`
        let rid = crate::forwarded::request_id(&parts.headers);
        let grpc = meridian_http::grpc::is_grpc(&parts.headers);
        let mut rec = self.record(&parts, peer, ws.is_some(), start);
        async move {
            let (group, answer) = self
                .forward(&mut parts, body, peer, grpc, &rid, &mut rec, hints)
                .await;
            // The target that answered (None: the balancer answered itself).
            let (target, res) = match answer {
                Ok((i, res)) => (group.and_then(|g| g.targets.get(i)), res),
                // A gRPC client reads the balancer's own errors from `grpc-status`.
                Err(res) if grpc => (None, meridian_http::grpc::shape_error(res).await),
                Err(res) => (None, res),
            };
            let target_name = target.map_or("none", |t| t.name.as_str());
            let mut res = self.0.ws.finish(ws, target_name, res);
            meridian_http::received::replace(&mut res, &crate::forwarded::X_REQUEST_ID, rid);
            let took = start.elapsed().as_secs_f64();
            self.0.m.duration.observe(took);
            if let Some(g) = group {
                g.duration(&self.0.m.group_duration).observe(took);
            }
            if let Some(n) = hyper::body::Body::size_hint(res.body()).exact() {
                self.0.m.response_bytes.inc_by(n);
            }
            let status = res.status().as_u16();
            match (target, group) {
                (Some(t), Some(g)) => t.count_answer(&self.0.m.requests, &g.name, status),
                _ => {
                    self.0
                        .m
                        .requests
                        .get_or_create(&vec![
                            ("target", "none".to_owned()),
                            ("status", status.to_string()),
                            ("target_group", group.map_or("none", |g| &g.name).to_owned()),
                        ])
                        .inc();
                }
            }
            match &self.0.log {
                Some(log) => {
                    let done = rec.finish(&res, log.clone());
                    res.map(|b| crate::access_log::Logged::new(b, done).boxed())
                }
                None => res,
            }
        }
    }

    /// Starts a request's access log record, with ALB's trace header (`trace.rs`) that
    /// the target gets and the log keeps.
    fn record(
        &self,
        parts: &http::request::Parts,
        peer: SocketAddr,
        ws: bool,
        start: Instant,
    ) -> Record {
        let incoming = parts.headers.get(&crate::trace::NAME);
        let trace = crate::trace::header_for(incoming, std::time::SystemTime::now());
        if self.0.log.is_none() {
            let mut rec = Record::unlogged(peer, String::new(), start);
            rec.trace = Some(trace);
            return rec;
        }
        let trace_id = trace.to_str().unwrap_or("-").to_owned();
        let tls = parts.extensions.get::<ViaTls>().copied();
        let conn_trace = parts.extensions.get::<ConnTrace>().map(|c| c.0.to_string());
        let arrival = Arrival {
            elb: &self.0.name,
            client: peer,
            port: tls.map(|t| t.0).unwrap_or(self.0.listen_port),
            tls: tls.map(|t| t.1),
            websocket: ws,
            trace_id,
            conn_trace: conn_trace.unwrap_or_else(|| "-".into()),
            start,
        };
        let mut rec = Record::new(parts, arrival);
        rec.trace = Some(trace);
        rec
    }

    /// The listener rules choose a target group (or answer), then the group a target.
    /// Returns the group (None when no group took the request) and the answer. `grpc`:
    /// whether the request is gRPC (read once, in `handle`). What needs no waiting is
    /// done before the future is made (see [`LoadBalancer::handle_with`]).
    #[allow(clippy::too_many_arguments)]
    fn forward<'s, 'a, B>(
        &'s self,
        parts: &'a mut http::request::Parts,
        body: B,
        peer: SocketAddr,
        grpc: bool,
        rid: &'a HeaderValue,
        rec: &'a mut Record,
        hints: Option<Interim>,
    ) -> impl Future<Output = (Option<&'s TargetGroup>, crate::retry::Answer)> + Send + use<'s, 'a, B>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        // One version of the settings for the whole request, retries included.
        let current = self.0.current.get();
        let cfg = &current.config;
        let signer = self.0.signer.as_deref();
        let mut verified = false;
        if cfg.require_edge_signature {
            let rejections = &self.0.m.signature_rejections;
            match crate::origin_access::check(signer, rejections, &self.0.name, cfg, parts) {
                Ok(checked) => verified = checked,
                Err(res) => return Either::Left(std::future::ready((None, Err(res)))),
            }
        }
        // Unsigned paths too: a health check's path carries no claim past the edge.
        if !verified && !cfg.claim_headers.is_empty() {
            let removed = crate::origin_access::drop_unsigned_claims(signer, cfg, parts);
            if removed > 0 {
                self.0.m.unsigned_claims.inc_by(removed as u64);
            }
        }
        let tls = parts.extensions.get::<ViaTls>().map(|t| t.0);
        let port = tls.unwrap_or(self.0.listen_port);
        let (rule, decision) = current.rules.decide(parts, peer.ip(), tls.is_some(), port);
        if let Some(rule) = rule {
            self.0
                .m
                .rule_matches
                .get_or_create(&vec![("rule", rule.name.clone())])
                .inc();
        }
        rec.priority = Some(rule.map(|r| r.priority).unwrap_or(0));
        let group = match decision {
            Decision::Answer(res) => {
                crate::access_log::answered_by_rule(rec, rule, &res);
                return Either::Left(std::future::ready((None, Err(res))));
            }
            Decision::Forward(i) => self.route(i),
        };
        // The group's settings, read once for the request.
        let gcfg = group.config();
        if let Err(res) = crate::grpc::admits(group, &gcfg, parts) {
            return Either::Left(std::future::ready((None, Err(res))));
        }
        rec.action = Some("forward");
        let logged = self.0.log.is_some();
        if logged {
            rec.group = Some(group.name.clone());
        }
        // Stickiness reads the request's cookies again once the target has answered.
        let cookies = gcfg.stickiness.is_some().then(|| parts.headers.clone());
        Either::Right(async move {
            let mut answer = self
                .forward_to(
                    &current.config,
                    group,
                    &gcfg,
                    parts,
                    body,
                    peer,
                    grpc,
                    rid,
                    rec,
                    hints,
                )
                .await;
            if let (Ok((i, res)), true) = (&answer, logged) {
                rec.target = group.targets.get(*i).map(|t| t.addr);
                rec.target_status = Some(res.status().as_u16());
            }
            if let (Ok((i, res)), Some(cookies)) = (&mut answer, &cookies) {
                if let Some(t) = group.targets.get(*i) {
                    // The application's cookie is read from the answer's map.
                    meridian_http::received::settle_response(res);
                    crate::sticky::stick(group, &t.name, cookies, res.headers_mut());
                }
            }
            (Some(group), answer)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward_to<B>(
        &self,
        cfg: &meridian_config::LoadBalancer,
        group: &TargetGroup,
        gcfg: &meridian_config::TargetGroup,
        parts: &mut http::request::Parts,
        body: B,
        peer: SocketAddr,
        grpc: bool,
        rid: &HeaderValue,
        rec: &mut Record,
        hints: Option<Interim>,
    ) -> crate::retry::Answer
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = cfg.max_request_body.0 as usize;
        if body.size_hint().lower() as usize > limit {
            return Err(too_large(limit));
        }
        // A request without a body (most) has nothing to read or time.
        let empty = !grpc && body.is_end_stream();
        let body = meridian_http::IdleTimeout::new(body, cfg.idle_timeout);
        // gRPC streams: its body goes to one target as it comes (`grpc.rs`).
        let body: RequestBody = match grpc {
            true => crate::grpc::streamed(body, limit),
            false if empty => RequestBody::Full(bytes::Bytes::new()),
            // Buffer the request body so it can be replayed on another target.
            false => match Limited::new(body, limit).collect().await {
                Ok(b) => {
                    let b = b.to_bytes();
                    rec.received_bytes += b.len() as u64;
                    RequestBody::Full(b)
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(too_large(limit))
                }
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
            },
        };
        let sticky = match gcfg.stickiness {
            Some(_) => crate::sticky::sticky_target(group, &parts.headers),
            None => None,
        };
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));

        if !group.targets.iter().any(|t| t.in_service()) {
            return Err(meridian_http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{}: the target group {} has no registered targets",
                    self.0.name, group.name
                ),
            ));
        }
        let lb = crate::retry::Balancer {
            name: &self.0.name,
            group,
            board: &group.board,
            sticky,
            config: cfg,
            group_config: gcfg,
            retries: &self.0.m.retries,
            target_errors: &self.0.m.target_errors,
        };
        // The log's timings: the clock is read only for a log that is on.
        let logged = self.0.log.is_some();
        if logged {
            rec.dispatched = Some(Instant::now());
        }
        let timeout = cfg.target_timeout;
        let upgrade = crate::upgrade::requested(&parts.extensions);
        // Over HTTP/2, unless a WebSocket that the group does not take as a stream: that
        // goes as an HTTP/1.1 upgrade, as to any group.
        let h2 = gcfg.protocol_version.is_h2() && (!upgrade || gcfg.websocket_streams);
        // The retry loop is made in each branch, just before its await: made once before
        // the branches and then changed, it kept its room in this future's state after
        // it was moved.
        let added = crate::retry::Added {
            peer,
            tls_port: parts.extensions.get::<ViaTls>().map(|t| t.0),
            port_header: &self.0.port_header,
            rid,
            trace: rec.trace.take(),
            grpc,
            h2,
        };
        let answer = if h2 {
            let mut retries = self.retries(lb, parts, &path, &body, added, None, false);
            retries.extended_connect = upgrade;
            meridian_http::failover::run_on(&self.0.client_h2, timeout, retries).await
        } else if upgrade {
            let retries = self.retries(lb, parts, &path, &body, added, hints, false);
            meridian_http::failover::run_on(&self.0.client, timeout, retries).await
        } else {
            let retries = self.retries(lb, parts, &path, &body, added, hints, true);
            meridian_http::failover::run_on(&self.0.pool, timeout, retries).await
        };
        if logged {
            rec.answered = Some(Instant::now());
        }
        answer
    }

    /// The retry loop for one request, with its head as targets get it (`retry::Head`,
    /// written once for the balancer's own pool: `own_pool`). `hints` get the target's
    /// interim heads (HTTP/1.1 only: hyper's client hands them over there).
    #[allow(clippy::too_many_arguments)]
    fn retries<'r>(
        &'r self,
        lb: crate::retry::Balancer<'r>,
        parts: &'r mut http::request::Parts,
        path: &'r http::uri::PathAndQuery,
        body: &'r RequestBody,
        added: crate::retry::Added<'_>,
        hints: Option<Interim>,
        own_pool: bool,
    ) -> crate::retry::Retries<'r> {
        let headers = std::mem::take(&mut parts.headers);
        let head = crate::retry::Head::new(headers, &parts.extensions, added, own_pool);
        let parts: &'r http::request::Parts = parts;
        let mut retries = crate::retry::Retries::new(lb, &parts.method, path, head, body);
        retries.interim = hints;
        retries
    }
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
