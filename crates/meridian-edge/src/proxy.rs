//! The request path of a PoP, as phases: the request filter (protocol policy, allowed
//! methods, CORS preflight), the cache (lookup, freshness, collapsing, stale handling),
//! the origin (group, failover), and the response filter (headers policy, compression,
//! x-cache), then the access log and metrics.

use crate::compress;
use crate::key::{self, Coding};
use crate::log::{AccessLine, AccessLog};
use crate::origin::{Group, OriginFailure, OriginResponse, Origins};
use crate::store::{storable_headers, Object, ObjectBody, Store};
use crate::viewer;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use meridian_cache::{
    byte_range, conditional_request, current_age, edge_ttl, initial_age, invalidation_targets,
    merge_not_modified, storable, vary_key, ByteRange, CacheControl, NotStorable, Stored,
    TtlPolicy, Usability,
};
use meridian_config::{Behavior, CachePolicy, Distribution, ViewerProtocolPolicy};
use meridian_http::audit::utc_date_time;
use meridian_http::{Body, Peer};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

type Labels = Vec<(&'static str, String)>;

/// Largest request body the edge buffers for an origin request.
const MAX_REQUEST_BODY: usize = 10 << 20;
/// Error bodies from origins kept to show every collapsed waiter.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A viewer's request body may go this long without data before it gets 408.
const REQUEST_BODY_IDLE: Duration = Duration::from_secs(10);
/// Frames queued for the first viewer of a streaming miss. When they are not taken the
/// fill waits (and so does the origin connection): a slow viewer holds a few frames at
/// the edge, never the object.
const TEE_FRAMES: usize = 4;
/// How long a streaming miss waits for its first viewer to take a frame before going on
/// without that viewer, for the others.
const VIEWER_STALL: Duration = Duration::from_secs(30);
/// How long a collapsed miss waits for another request's fetch before asking the origin
/// itself.
const COLLAPSE_DEADLINE: Duration = Duration::from_secs(30);
/// Origin fetches for the cache in flight at once; past it, misses pass (they stream from
/// the origin without being buffered or stored).
const MAX_FILLS: usize = 1024;

/// How a request was answered, in CloudFront's result types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    /// Served stale while a refresh runs in the background.
    StaleWhileRevalidate,
    /// Served stale because the origin failed.
    StaleIfError,
    /// Revalidated with the origin (304) and served from the cache.
    RefreshHit,
    /// Fetched from the origin and stored.
    Miss,
    /// Fetched from the origin and not stored (method, private, no-store, ...).
    Pass,
    /// The edge answered with an error.
    Error,
    /// Sent to HTTPS.
    Redirect,
    /// A CORS preflight answered at the edge.
    Preflight,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Hit,
        Outcome::StaleWhileRevalidate,
        Outcome::StaleIfError,
        Outcome::RefreshHit,
        Outcome::Miss,
        Outcome::Pass,
        Outcome::Error,
        Outcome::Redirect,
        Outcome::Preflight,
    ];

    pub fn x_cache(self) -> &'static str {
        match self {
            Outcome::Hit
            | Outcome::StaleWhileRevalidate
            | Outcome::StaleIfError
            | Outcome::Preflight => "Hit from meridian",
            Outcome::RefreshHit => "RefreshHit from meridian",
            Outcome::Miss | Outcome::Pass => "Miss from meridian",
            Outcome::Error => "Error from meridian",
            Outcome::Redirect => "Redirect from meridian",
        }
    }
    /// `x-edge-result-type` of the access log.
    pub fn result_type(self) -> &'static str {
        match self {
            Outcome::Hit
            | Outcome::StaleWhileRevalidate
            | Outcome::StaleIfError
            | Outcome::Preflight => "Hit",
            Outcome::RefreshHit => "RefreshHit",
            Outcome::Miss | Outcome::Pass => "Miss",
            Outcome::Error => "Error",
            Outcome::Redirect => "Redirect",
        }
    }
    /// The label of `meridian_edge_requests_total{cache_status}` and the detailed type.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::StaleWhileRevalidate => "stale_while_revalidate",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::RefreshHit => "refresh_hit",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
            Outcome::Redirect => "redirect",
            Outcome::Preflight => "preflight",
        }
    }
    /// The `Cache-Status` (RFC 9211) parameters.
    fn cache_status(self) -> &'static str {
        match self {
            Outcome::Hit | Outcome::Preflight => "hit",
            Outcome::StaleWhileRevalidate => "hit; detail=stale-while-revalidate",
            Outcome::StaleIfError => "hit; detail=stale-if-error",
            Outcome::RefreshHit => "fwd=stale; fwd-status=304; stored",
            Outcome::Miss => "fwd=miss; stored",
            Outcome::Pass => "fwd=uri-miss",
            Outcome::Error => "fwd=miss; detail=origin-error",
            Outcome::Redirect => "detail=redirect",
        }
    }
}

/// The result of one shared origin fetch, handed to every collapsed waiter.
#[derive(Clone)]
enum Fill {
    Stored {
        obj: Arc<Object>,
        refreshed: bool,
        origin: String,
    },
    /// Not for sharing: the leader got the response itself; the others ask on their own.
    Pass,
    /// The origin group failed: what to tell viewers (unless stale may be served).
    Failed(Arc<ErrorAnswer>),
}

/// What the leader of a fill hears privately, beside the shared result.
enum Own {
    /// The origin's answer, not for sharing.
    Origin(OriginResponse),
    /// The answer streaming to the leader while the fill stores it.
    Streaming(Response<Body>, String),
}

/// What a cache miss got: a shared fill result, or its own response as leader.
enum Got {
    Fill(Fill),
    Pass(OriginResponse),
    Streaming(Response<Body>, String),
}

/// An error answer, kept whole so every waiter can send it.
struct ErrorAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    origin: String,
}

/// Per-request header values and counters, made once: the hit path allocates little.
struct Prepared {
    cache_status: [HeaderValue; 9],
    pop: HeaderValue,
    /// Each response headers policy's fixed headers, by policy name.
    policy_headers: HashMap<String, Vec<(HeaderName, HeaderValue)>>,
    /// `requests{cache_status, status_class}` counters by outcome and status class.
    requests: [[std::sync::OnceLock<Counter>; 6]; 9],
}

struct EdgeMetrics {
    requests: Family<Labels, Counter>,
    duration: Histogram,
    bytes_to_viewers: Counter,
    bytes_from_origins: Counter,
    collapsed: Counter,
    invalidations: Counter,
    origin_fetches: Counter,
}

/// What one request carries through the phases.
struct Ctx<'a> {
    peer: Peer,
    method: Method,
    host: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    version: http::Version,
    request_id: String,
    behavior: &'a Behavior,
}

impl Ctx<'_> {
    fn path_and_query(&self, filter: impl Fn(&str) -> bool) -> String {
        let mut out = self.path.clone();
        if let Some(q) = &self.query {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty() && filter(p.split('=').next().unwrap_or("")))
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
        out
    }
}

pub(crate) struct Inner {
    pub pop: String,
    pub dist: Distribution,
    pub store: Arc<Store>,
    pub origins: Arc<Origins>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Fill>>>>,
    pub metrics: Metrics,
    m: EdgeMetrics,
    log: AccessLog,
    https_port: u16,
    body_ids: AtomicU64,
    via: HeaderValue,
    prepared: Prepared,
    /// Permits for fills in flight ([`MAX_FILLS`]).
    fills: Arc<Semaphore>,
    /// Bytes that fills may hold in memory before they are stored, across all fills: the
    /// memory tier's size. A fill that cannot reserve more stops keeping its body.
    fill_bytes: Arc<Semaphore>,
}

/// A PoP's request handler: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Edge(pub(crate) Arc<Inner>);

impl Edge {
    pub fn new(
        pop: &str,
        config: &meridian_config::Config,
        pop_location: meridian_config::Coordinates,
        local_ip: Option<std::net::IpAddr>,
        store: Arc<Store>,
        log: AccessLog,
    ) -> Edge {
        let metrics = Metrics::new();
        let origins = Arc::new(Origins::new(config, pop_location, local_ip, &metrics));
        let m = EdgeMetrics {
            requests: metrics.register(
                "edge_requests",
                "Viewer requests, by PoP, cache status and status class",
                Family::default(),
            ),
            duration: metrics.register(
                "edge_request_duration_seconds",
                "Time from viewer request to response head",
                meridian_telemetry::latency_histogram(),
            ),
            bytes_to_viewers: metrics.register(
                "edge_bytes_to_viewers",
                "Body bytes sent to viewers",
                Counter::default(),
            ),
            bytes_from_origins: metrics.register(
                "edge_bytes_from_origins",
                "Body bytes received from origins",
                Counter::default(),
            ),
            collapsed: metrics.register(
                "edge_collapsed_requests",
                "Cache misses that waited for another request's origin fetch instead of making their own",
                Counter::default(),
            ),
            invalidations: metrics.register(
                "edge_invalidation_paths",
                "Invalidation paths applied",
                Counter::default(),
            ),
            origin_fetches: metrics.register(
                "edge_origin_fetches",
                "Requests this PoP sent to origins (after failover, one per viewer-visible fetch)",
                Counter::default(),
            ),
        };
        let via = HeaderValue::from_str(&format!("1.1 {pop} (meridian)"))
            .unwrap_or(HeaderValue::from_static("1.1 meridian"));
        let prepared = Prepared {
            cache_status: Outcome::ALL.map(|o| {
                HeaderValue::from_str(&format!("meridian-{pop}; {}", o.cache_status()))
                    .unwrap_or(HeaderValue::from_static("meridian"))
            }),
            pop: HeaderValue::from_str(pop).unwrap_or(HeaderValue::from_static("-")),
            policy_headers: config
                .distribution
                .response_headers_policies
                .iter()
                .map(|p| (p.name.clone(), policy_headers(p)))
                .collect(),
            requests: Default::default(),
        };
        Edge(Arc::new(Inner {
            pop: pop.to_owned(),
            dist: config.distribution.clone(),
            origins,
            inflight: Mutex::new(HashMap::new()),
            metrics,
            m,
            log,
            https_port: config.network.https_port,
            body_ids: AtomicU64::new(1),
            via,
            prepared,
            fills: Arc::new(Semaphore::new(MAX_FILLS)),
            fill_bytes: Arc::new(Semaphore::new(
                (store.memory_limit as usize).min(Semaphore::MAX_PERMITS),
            )),
            store,
        }))
    }

    pub fn origins(&self) -> &Arc<Origins> {
        &self.0.origins
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    pub fn pop(&self) -> &str {
        &self.0.pop
    }

    /// Metrics text, with the cache tier sizes and connection counts read now.
    pub fn metrics_text(&self) -> String {
        let s = self.0.store.stats();
        let mut out = self.0.metrics.encode();
        // Gauges computed at scrape time, written in the same exposition format.
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        let extra = format!(
            "# HELP meridian_edge_cache_objects Objects stored, by tier.\n# TYPE meridian_edge_cache_objects gauge\nmeridian_edge_cache_objects{{tier=\"memory\"}} {}\nmeridian_edge_cache_objects{{tier=\"disk\"}} {}\n# HELP meridian_edge_cache_bytes Bytes stored, by tier.\n# TYPE meridian_edge_cache_bytes gauge\nmeridian_edge_cache_bytes{{tier=\"memory\"}} {}\nmeridian_edge_cache_bytes{{tier=\"disk\"}} {}\n# HELP meridian_edge_origin_connections Connections opened to origins.\n# TYPE meridian_edge_origin_connections counter\nmeridian_edge_origin_connections_total {}\n",
            s.memory_objects,
            s.disk_objects,
            s.memory_bytes,
            s.disk_bytes,
            self.0.origins.connections_opened.load(Ordering::Relaxed)
        );
        out.insert_str(eof, &extra);
        out
    }

    /// Removes every stored object whose path matches one of `paths` (CloudFront
    /// invalidation paths: `*` matches any run of characters).
    pub fn invalidate(&self, paths: &[String]) -> usize {
        let mut n = 0;
        for p in paths {
            let pattern = p.clone();
            n += self
                .0
                .store
                .invalidate(move |path| meridian_config::path_matches(&pattern, path));
            self.0.m.invalidations.inc();
        }
        n
    }

    /// Answers one viewer request.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let dist = &self.0.dist;
        // The viewer request made canonical once: every later phase reads only these.
        let canonical = viewer::host(
            parts.uri.authority().map(|a| a.as_str()),
            &parts.headers,
            parts.version,
            peer.local,
        )
        .and_then(|host| match viewer::host_allowed(&dist.aliases, &host) {
            true => Ok(host),
            false => Err(viewer::ViewerError::UnknownHost(host)),
        })
        .and_then(|host| Ok((host, viewer::normalize_path(parts.uri.path())?)));
        let refused = canonical.as_ref().err().cloned();
        let (host, path) = canonical.unwrap_or_else(|_| {
            // Logged as it came, answered with the error below.
            (String::from("-"), parts.uri.path().to_owned())
        });
        let ctx = Ctx {
            peer,
            method: parts.method.clone(),
            behavior: dist.behavior_for(&path),
            host,
            path,
            query: parts.uri.query().map(str::to_owned),
            version: parts.version,
            request_id: format!("{:024x}", rand::random::<u128>() >> 32),
            headers: parts.headers,
        };
        let (mut res, outcome, origin) = match refused {
            // Refused before routing: no behavior, no origin, no custom error page.
            Some(e) => {
                let r = meridian_http::text(e.status(), e.to_string());
                (r, Outcome::Error, String::new())
            }
            None => {
                let (mut res, outcome, origin) = self.route(&ctx, body).await;
                if res.status().as_u16() >= 400 && !dist.custom_error_responses.is_empty() {
                    res = self.custom_error(&ctx, res).await;
                }
                (res, outcome, origin)
            }
        };
        self.respond_filter(&ctx, &mut res, outcome);
        self.finish(&ctx, &res, outcome, &origin, start);
        res
    }

    /// The request filter and the choice between the cache and a pass to the origin.
    async fn route(&self, ctx: &Ctx<'_>, body: Incoming) -> (Response<Body>, Outcome, String) {
        let b = ctx.behavior;
        match b.viewer_protocol_policy {
            ViewerProtocolPolicy::RedirectToHttps if ctx.peer.tls.is_none() => {
                let host = ctx
                    .host
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(&ctx.host);
                let mut loc = format!("https://{host}:{}{}", self.0.https_port, ctx.path);
                if let Some(q) = &ctx.query {
                    loc.push('?');
                    loc.push_str(q);
                }
                let mut r =
                    meridian_http::text(StatusCode::MOVED_PERMANENTLY, format!("moved to {loc}"));
                if let Ok(v) = HeaderValue::from_str(&loc) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return (r, Outcome::Redirect, String::new());
            }
            ViewerProtocolPolicy::HttpsOnly if ctx.peer.tls.is_none() => {
                let r = meridian_http::text(
                    StatusCode::FORBIDDEN,
                    "this path is served over HTTPS only",
                );
                return (r, Outcome::Error, String::new());
            }
            _ => {}
        }
        if !b.allowed_methods.iter().any(|m| m == ctx.method.as_str()) {
            let r = meridian_http::text(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is not allowed for {}; allowed: {}",
                    ctx.method,
                    b.path_pattern,
                    b.allowed_methods.join(", ")
                ),
            );
            return (r, Outcome::Error, String::new());
        }
        if ctx.method == Method::OPTIONS {
            if let Some(r) = self.preflight(ctx) {
                return (r, Outcome::Preflight, String::new());
            }
        }
        let Some(group) = self.0.origins.group(&b.origin_group).cloned() else {
            let r = meridian_http::text(
                StatusCode::BAD_GATEWAY,
                "the behavior's origin group has no members",
            );
            return (r, Outcome::Error, String::new());
        };
        let policy = self
            .0
            .dist
            .cache_policy(&b.cache_policy)
            .unwrap_or(&self.0.dist.cache_policies[0]);
        let cacheable_method = (ctx.method == Method::GET || ctx.method == Method::HEAD)
            && b.cached_methods.iter().any(|m| m == ctx.method.as_str());
        if cacheable_method {
            drop(body);
            self.cached(ctx, &group, policy).await
        } else {
            self.pass(ctx, &group, policy, Some(body)).await
        }
    }

    /// CloudFront's custom error response: the configured page (fetched through the cache
    /// like any object) and status instead of the error.
    async fn custom_error(&self, ctx: &Ctx<'_>, res: Response<Body>) -> Response<Body> {
        let status = res.status().as_u16();
        let Some(c) = self
            .0
            .dist
            .custom_error_responses
            .iter()
            .find(|c| c.error_code == status)
        else {
            return res;
        };
        let code = c
            .response_code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(res.status());
        let Some(page) = &c.response_page_path else {
            let (mut parts, body) = res.into_parts();
            parts.status = code;
            return Response::from_parts(parts, body);
        };
        let behavior = self.0.dist.behavior_for(page);
        let Some(group) = self.0.origins.group(&behavior.origin_group).cloned() else {
            return res;
        };
        let policy = self
            .0
            .dist
            .cache_policy(&behavior.cache_policy)
            .unwrap_or(&self.0.dist.cache_policies[0]);
        let mut headers = HeaderMap::new();
        if let Some(ae) = ctx.headers.get(header::ACCEPT_ENCODING) {
            headers.insert(header::ACCEPT_ENCODING, ae.clone());
        }
        let page_ctx = Ctx {
            peer: ctx.peer,
            method: Method::GET,
            host: ctx.host.clone(),
            path: page.clone(),
            query: None,
            headers,
            version: ctx.version,
            request_id: ctx.request_id.clone(),
            behavior,
        };
        let (page_res, _, _) = Box::pin(self.cached(&page_ctx, &group, policy)).await;
        if page_res.status() != StatusCode::OK {
            // The error page itself is missing: the original error is better than that.
            return res;
        }
        let (mut parts, body) = page_res.into_parts();
        parts.status = code;
        Response::from_parts(parts, body)
    }

    /// A CORS preflight answered at the edge, when the behavior's headers policy has CORS.
    fn preflight(&self, ctx: &Ctx<'_>) -> Option<Response<Body>> {
        ctx.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin = ctx.headers.get(header::ORIGIN)?;
        let cors = self.headers_policy(ctx.behavior)?.cors.as_ref()?;
        let mut r = Response::new(meridian_http::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        if let Some(allow) = allowed_origin(cors, origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            let methods = if cors.allow_methods.is_empty() {
                ctx.behavior.allowed_methods.join(", ")
            } else {
                cors.allow_methods.join(", ")
            };
            if let Ok(v) = HeaderValue::from_str(&methods) {
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
            }
            if !cors.allow_headers.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&cors.allow_headers.join(", ")) {
                    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
                }
            }
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(cors.max_age.as_secs()),
            );
            if cors.allow_credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        Some(r)
    }

    fn headers_policy(&self, b: &Behavior) -> Option<&meridian_config::ResponseHeadersPolicy> {
        b.response_headers_policy
            .as_deref()
            .and_then(|n| self.0.dist.response_headers_policy(n))
    }

    /// Headers for the origin request: what the cache key and the origin request policy
    /// say, plus the edge's own forwarding headers.
    fn origin_headers(&self, ctx: &Ctx<'_>, policy: &CachePolicy, for_fill: bool) -> HeaderMap {
        let orp = ctx
            .behavior
            .origin_request_policy
            .as_deref()
            .and_then(|n| self.0.dist.origin_request_policy(n));
        let mut out = HeaderMap::new();
        let per_connection = meridian_http::connection_fields(&ctx.headers);
        for (name, value) in &ctx.headers {
            let n = name.as_str();
            // The origin request's framing is the body the edge sends (hyper writes it), never
            // the viewer's: a stale Content-Length on a body-less fill stalls the origin and
            // desynchronises a pooled connection.
            if meridian_http::is_hop_by_hop(n)
                || per_connection.contains(name)
                || matches!(n, "host" | "cookie" | "content-length" | "expect")
            {
                continue;
            }
            let always = matches!(
                n,
                "accept" | "content-type" | "content-encoding" | "content-language" | "user-agent"
            ) || (!for_fill
                && matches!(
                    n,
                    "accept-encoding"
                        | "if-match"
                        | "if-unmodified-since"
                        | "if-none-match"
                        | "if-modified-since"
                        | "range"
                ));
            let by_orp = orp.is_some_and(|p| p.headers.admits(n, true));
            let by_key = policy.headers.iter().any(|h| h.eq_ignore_ascii_case(n));
            if always || by_orp || by_key {
                out.append(name.clone(), value.clone());
            }
        }
        if for_fill {
            // The edge stores identity bodies and compresses per viewer; it fetches whole
            // objects and answers ranges and conditionals itself.
            for n in [
                "accept-encoding",
                "range",
                "if-range",
                "if-none-match",
                "if-modified-since",
                "if-match",
                "if-unmodified-since",
            ] {
                out.remove(n);
            }
        }
        let cookies = key::cookies(&ctx.headers, |name| {
            policy.cookies.admits(name, false) || orp.is_some_and(|p| p.cookies.admits(name, false))
        });
        if !cookies.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
                out.insert(header::COOKIE, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.host) {
            out.insert(header::HOST, v);
        }
        let xff = match ctx
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", ctx.peer.addr.ip()),
            None => ctx.peer.addr.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            out.insert("x-forwarded-for", v);
        }
        out.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if ctx.peer.tls.is_some() {
                "https"
            } else {
                "http"
            }),
        );
        out.append(header::VIA, self.0.via.clone());
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            out.insert("x-request-id", v);
        }
        out
    }

    fn origin_path(&self, ctx: &Ctx<'_>, policy: &CachePolicy) -> String {
        let orp = ctx
            .behavior
            .origin_request_policy
            .as_deref()
            .and_then(|n| self.0.dist.origin_request_policy(n));
        ctx.path_and_query(|name| {
            policy.query_strings.admits(name, false)
                || orp.is_some_and(|p| p.query_strings.admits(name, false))
        })
    }

    /// GET and HEAD through the cache.
    async fn cached(
        &self,
        ctx: &Ctx<'_>,
        group: &Arc<Group>,
        policy: &CachePolicy,
    ) -> (Response<Body>, Outcome, String) {
        let primary = key::cache_key(
            policy,
            &ctx.host,
            &ctx.path,
            ctx.query.as_deref(),
            &ctx.headers,
        );
        let req_cc = CacheControl::from_headers(&ctx.headers);
        let now = SystemTime::now();
        let stored = self.lookup(&primary, &ctx.headers);
        let stale = match stored {
            Some(obj) => match obj.meta.usability(&req_cc, now, policy.stale_if_error) {
                Usability::Fresh { .. } => {
                    return (
                        self.serve_object(ctx, obj).await,
                        Outcome::Hit,
                        String::new(),
                    );
                }
                Usability::StaleWhileRevalidate { .. } => {
                    self.refresh_in_background(ctx, group, policy, &primary, obj.clone());
                    let o = Outcome::StaleWhileRevalidate;
                    return (self.serve_object(ctx, obj).await, o, String::new());
                }
                Usability::Stale { serve_on_error, .. } => Some((obj, serve_on_error)),
            },
            None => None,
        };
        if req_cc.only_if_cached {
            let r = meridian_http::text(
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: not in the cache",
            );
            return (r, Outcome::Error, String::new());
        }
        let got = self
            .fetch_shared(
                ctx,
                group,
                policy,
                &primary,
                stale.as_ref().map(|(o, _)| o.clone()),
            )
            .await;
        let fill = match got {
            Got::Fill(f) => f,
            Got::Pass(r) => {
                let origin = r.member.clone();
                let res = self.relay(r.response, group.cfg.response_timeout);
                return (res, Outcome::Pass, origin);
            }
            Got::Streaming(res, origin) => return (res, Outcome::Miss, origin),
        };
        match fill {
            Fill::Stored {
                obj,
                refreshed,
                origin,
            } => {
                let o = if refreshed {
                    Outcome::RefreshHit
                } else {
                    Outcome::Miss
                };
                // A variant stored under another Vary selection is not this viewer's.
                let obj = if obj.vary.is_some() {
                    match self.lookup(&primary, &ctx.headers) {
                        Some(o) => o,
                        None => return self.pass(ctx, group, policy, None).await,
                    }
                } else {
                    obj
                };
                (self.serve_object(ctx, obj).await, o, origin)
            }
            Fill::Pass => self.pass(ctx, group, policy, None).await,
            Fill::Failed(err) => {
                if let Some((obj, true)) = stale {
                    let o = Outcome::StaleIfError;
                    return (self.serve_object(ctx, obj).await, o, String::new());
                }
                let mut r = Response::new(meridian_http::full(err.body.clone()));
                *r.status_mut() = err.status;
                *r.headers_mut() = err.headers.clone();
                (r, Outcome::Error, err.origin.clone())
            }
        }
    }

    /// The stored object for a request, following a Vary marker to the variant.
    fn lookup(&self, primary: &str, req_headers: &HeaderMap) -> Option<Arc<Object>> {
        let obj = self.0.store.get(primary)?;
        match &obj.vary {
            None => Some(obj),
            Some(names) => {
                let suffix = vary_suffix(names, req_headers);
                self.0.store.get(&key::variant_key(primary, &suffix))
            }
        }
    }

    fn refresh_in_background(
        &self,
        ctx: &Ctx<'_>,
        group: &Arc<Group>,
        policy: &CachePolicy,
        primary: &str,
        stale: Arc<Object>,
    ) {
        if self.inflight().contains_key(primary) {
            return;
        }
        let req = self.fill_request(ctx, policy, primary, Some(stale));
        let edge = self.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let _ = edge.lead_fill(group, req).await;
        });
    }

    fn fill_request(
        &self,
        ctx: &Ctx<'_>,
        policy: &CachePolicy,
        primary: &str,
        stale: Option<Arc<Object>>,
    ) -> FillRequest {
        FillRequest {
            key: primary.to_owned(),
            path: ctx.path.clone(),
            path_and_query: self.origin_path(ctx, policy),
            headers: self.origin_headers(ctx, policy, true),
            viewer_headers: ctx.headers.clone(),
            policy: policy.clone(),
            stale,
            stream: false,
            compress: false,
        }
    }

    fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<Fill>>>> {
        self.0.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One origin fetch per key at a time: the first miss leads, later ones wait for its
    /// result. Returns the result and, for the leader of a fetch whose answer is not for
    /// sharing, the origin's response itself.
    async fn fetch_shared(
        &self,
        ctx: &Ctx<'_>,
        group: &Arc<Group>,
        policy: &CachePolicy,
        primary: &str,
        stale: Option<Arc<Object>>,
    ) -> Got {
        let waiting = self.inflight().get(primary).cloned();
        if let Some(rx) = waiting {
            self.0.m.collapsed.inc();
            return Got::Fill(wait_fill_until(rx, COLLAPSE_DEADLINE).await);
        }
        let mut req = self.fill_request(ctx, policy, primary, stale);
        // The leader may get the body as it arrives when it wants it whole and as stored:
        // a plain GET with no range or validators (compression is decided in the fill).
        req.stream = ctx.method == Method::GET
            && req.stale.is_none()
            && ![
                header::RANGE,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
            ]
            .iter()
            .any(|h| ctx.headers.contains_key(h));
        req.compress = ctx.behavior.compress;
        match self.lead_fill(group.clone(), req).await {
            Some(got) => got,
            // Another request started the same fetch a moment ago: wait for it.
            None => {
                let rx = self.inflight().get(primary).cloned();
                match rx {
                    Some(rx) => Got::Fill(wait_fill_until(rx, COLLAPSE_DEADLINE).await),
                    None => Got::Fill(Fill::Pass),
                }
            }
        }
    }

    /// Runs a fill as the leader in its own task, so a viewer that goes away does not
    /// cancel the fetch others wait for. None when another leader got there first.
    async fn lead_fill(&self, group: Arc<Group>, req: FillRequest) -> Option<Got> {
        let Ok(permit) = self.0.fills.clone().try_acquire_owned() else {
            // Too many fills already: this one passes, unbuffered.
            return Some(Got::Fill(Fill::Pass));
        };
        let (tx, rx) = watch::channel(None);
        {
            let mut map = self.inflight();
            if map.contains_key(&req.key) {
                return None;
            }
            map.insert(req.key.clone(), rx.clone());
        }
        let (own_tx, own_rx) = oneshot::channel();
        let edge = self.clone();
        let key = req.key.clone();
        tokio::spawn(async move {
            let fill = edge.fill(&group, req, own_tx, &tx).await;
            let _ = tx.send(Some(fill));
            edge.inflight().remove(&key);
            drop(permit);
        });
        let mine = |own: Own| match own {
            Own::Origin(r) => Got::Pass(r),
            Own::Streaming(res, origin) => Got::Streaming(res, origin),
        };
        let mut own_rx = own_rx;
        let mut own_closed = false;
        let mut shared = Box::pin(wait_fill(rx));
        loop {
            tokio::select! {
                biased;
                own = &mut own_rx, if !own_closed => match own {
                    Ok(own) => return Some(mine(own)),
                    // The fill kept nothing for the leader alone: the shared result it is.
                    Err(_) => own_closed = true,
                },
                fill = &mut shared => {
                    // A private answer is always sent before the fill ends.
                    if !own_closed {
                        if let Ok(own) = own_rx.try_recv() {
                            return Some(mine(own));
                        }
                    }
                    return Some(Got::Fill(fill));
                }
            }
        }
    }

    /// Fetches from the origin group and stores what may be stored.
    async fn fill(
        &self,
        group: &Group,
        req: FillRequest,
        own: oneshot::Sender<Own>,
        shared: &watch::Sender<Option<Fill>>,
    ) -> Fill {
        let mut headers = req.headers.clone();
        if let Some(s) = &req.stale {
            for (k, v) in &conditional_request(&s.meta.headers) {
                headers.insert(k.clone(), v.clone());
            }
        }
        self.0.m.origin_fetches.inc();
        let sent_at = SystemTime::now();
        let r = match self
            .0
            .origins
            .send(
                group,
                &Method::GET,
                &req.path_and_query,
                &headers,
                Bytes::new(),
            )
            .await
        {
            Ok(r) => r,
            Err(failure) => return Fill::Failed(Arc::new(generated_error(&self.0.pop, &failure))),
        };
        let status = r.response.status().as_u16();
        let received_at = SystemTime::now();
        if status == 304 {
            if let Some(stale) = &req.stale {
                let mut h = stale.meta.headers.clone();
                merge_not_modified(&mut h, r.response.headers());
                let meta = self.meta(&req.policy, stale.meta.status, h, sent_at, received_at);
                let refreshed = Arc::new(Object {
                    meta,
                    ..(**stale).clone()
                });
                self.0.store.put(refreshed.clone());
                return Fill::Stored {
                    obj: refreshed,
                    refreshed: true,
                    origin: r.member,
                };
            }
        }
        if status >= 500 {
            let (parts, body) = r.response.into_parts();
            let body = Collector::new(MAX_ERROR_BODY, group.cfg.response_timeout)
                .collect(body)
                .await
                .map(|(b, _)| b)
                .unwrap_or_default();
            self.0.m.bytes_from_origins.inc_by(body.len() as u64);
            let mut h = parts.headers;
            meridian_http::strip_hop_by_hop(&mut h);
            // Every collapsed waiter gets this answer: one viewer's cookie is no one else's.
            h.remove(header::SET_COOKIE);
            // CloudFront keeps an origin's error for the custom error response's caching
            // TTL, so a struggling origin is not asked again by every viewer. A stale copy
            // that may be served on error is better than that.
            let error_ttl = self
                .0
                .dist
                .custom_error_responses
                .iter()
                .find(|c| c.error_code == status)
                .map(|c| c.error_caching_min_ttl)
                .filter(|t| !t.is_zero());
            if let (Some(ttl), None) = (error_ttl, &req.stale) {
                let mut meta = self.meta(
                    &req.policy,
                    status,
                    storable_headers(&h),
                    sent_at,
                    received_at,
                );
                meta.ttl = ttl;
                let obj = Arc::new(Object {
                    key: req.key.clone(),
                    path: req.path.clone(),
                    meta,
                    body: ObjectBody::Memory(body),
                    vary: None,
                    body_id: self.0.body_ids.fetch_add(1, Ordering::Relaxed),
                });
                self.0.store.put(obj.clone());
                return Fill::Stored {
                    obj,
                    refreshed: false,
                    origin: r.member,
                };
            }
            return Fill::Failed(Arc::new(ErrorAnswer {
                status: parts.status,
                headers: h,
                body,
                origin: r.member,
            }));
        }
        let res_headers = r.response.headers();
        let Some(ttl) = self.store_ttl(&req, status, res_headers) else {
            let _ = own.send(Own::Origin(r));
            return Fill::Pass;
        };
        // Vary on anything but Accept-Encoding (the edge stores identity) selects variants.
        let vary_names = vary_names(res_headers);
        if vary_names
            .as_ref()
            .is_some_and(|v| v.iter().any(|n| n == "*"))
        {
            let _ = own.send(Own::Origin(r));
            return Fill::Pass;
        }
        let limit = self.0.store.max_object();
        if r.response.body().size_hint().lower() > limit {
            let _ = own.send(Own::Origin(r));
            return Fill::Pass;
        }
        let OriginResponse {
            member, response, ..
        } = r;
        let (parts, body) = response.into_parts();
        // A viewer that will be served a compressed variant waits for the stored object.
        let coding = self.coding_for(
            req.compress,
            &req.viewer_headers,
            status,
            &parts.headers,
            CacheControl::from_headers(&parts.headers).no_transform,
            body.size_hint().exact(),
        );
        let tee = if req.stream && coding == Coding::Identity {
            // The leader gets the bytes as they come; the fill keeps a copy to store.
            let (tx, rx) = tokio::sync::mpsc::channel::<
                Result<hyper::body::Frame<Bytes>, meridian_http::BoxError>,
            >(TEE_FRAMES);
            let mut headers = storable_headers(&parts.headers);
            meridian_http::strip_hop_by_hop(&mut headers);
            headers.insert(
                header::AGE,
                HeaderValue::from(initial_age(&parts.headers, sent_at, received_at).as_secs()),
            );
            if req.compress && compress::compressible(&headers) {
                append_vary(&mut headers, "Accept-Encoding");
            }
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|f| (f, rx))
            });
            let mut res = Response::new(http_body_util::StreamBody::new(stream).boxed());
            *res.status_mut() = parts.status;
            *res.headers_mut() = headers;
            let _ = own.send(Own::Streaming(res, member.clone()));
            Some(tx)
        } else {
            None
        };
        let collector = Collector {
            limit: limit as usize,
            idle: group.cfg.response_timeout,
            tee,
            budget: Some(self.0.fill_bytes.clone()),
            // The map of fills in flight holds one receiver; any other is a viewer waiting.
            abandoned: Some(Box::new(move || shared.receiver_count() <= 1)),
        };
        // Held until the object is stored, where the memory tier accounts for it.
        let (body, _reserved) = match collector.collect(body).await {
            Ok(b) => b,
            // Too large to keep (or no room to keep it now), or no one wants it any
            // more: a streaming leader still gets it all; others ask for themselves.
            Err(Collect::TooLarge | Collect::NoRoom | Collect::Abandoned) => return Fill::Pass,
            Err(e) => {
                return Fill::Failed(Arc::new(ErrorAnswer {
                    status: StatusCode::BAD_GATEWAY,
                    headers: text_headers(),
                    body: Bytes::from(format!(
                        "{}: the origin's response could not be read whole: {e}\n",
                        self.0.pop
                    )),
                    origin: member,
                }))
            }
        };
        self.0.m.bytes_from_origins.inc_by(body.len() as u64);
        let mut meta = self.meta(
            &req.policy,
            status,
            storable_headers(&parts.headers),
            sent_at,
            received_at,
        );
        meta.ttl = ttl;
        let body_id = self.0.body_ids.fetch_add(1, Ordering::Relaxed);
        let obj_key = match &vary_names {
            Some(names) if !names.is_empty() => {
                let names: Vec<HeaderName> = names
                    .iter()
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                    .collect();
                let suffix = vary_suffix(&names, &req.viewer_headers);
                let marker = Object {
                    key: req.key.clone(),
                    path: req.path.clone(),
                    meta: meta.clone(),
                    body: ObjectBody::Memory(Bytes::new()),
                    vary: Some(names),
                    body_id,
                };
                self.0.store.put(Arc::new(marker));
                key::variant_key(&req.key, &suffix)
            }
            _ => req.key.clone(),
        };
        let obj = Arc::new(Object {
            key: obj_key,
            path: req.path.clone(),
            meta,
            body: ObjectBody::Memory(body),
            vary: None,
            body_id,
        });
        self.0.store.put(obj.clone());
        Fill::Stored {
            obj,
            refreshed: false,
            origin: member,
        }
    }

    /// The coding a viewer gets for a response: the one it prefers when the behavior
    /// compresses, the response may be transformed, is a compressible 200 without a coding
    /// of its own, and its length (when known) is within the distribution's limits; else
    /// identity. One rule for serving stored objects and for deciding whether a miss can
    /// stream its identity body to the first viewer.
    fn coding_for(
        &self,
        compress: bool,
        viewer: &HeaderMap,
        status: u16,
        headers: &HeaderMap,
        no_transform: bool,
        len: Option<u64>,
    ) -> Coding {
        let dist = &self.0.dist;
        let eligible = compress
            && status == 200
            && !no_transform
            && !headers.contains_key(header::CONTENT_ENCODING)
            && compress::compressible(headers)
            && len.is_none_or(|n| (dist.compress_min_size..=dist.compress_max_size).contains(&n));
        if eligible {
            key::negotiate(viewer)
        } else {
            Coding::Identity
        }
    }

    fn meta(
        &self,
        policy: &CachePolicy,
        status: u16,
        headers: HeaderMap,
        sent_at: SystemTime,
        received_at: SystemTime,
    ) -> Stored {
        let ttl = edge_ttl(&headers, ttl_policy(policy)).unwrap_or(Duration::ZERO);
        let age = initial_age(&headers, sent_at, received_at);
        Stored::new(status, headers, age, received_at, ttl)
    }

    /// How long the edge may keep this response, or None when it must not be shared.
    fn store_ttl(&self, req: &FillRequest, status: u16, headers: &HeaderMap) -> Option<Duration> {
        let policy = &req.policy;
        let verdict = storable(&Method::GET, &req.viewer_headers, status, headers);
        let custom = self
            .0
            .dist
            .custom_error_responses
            .iter()
            .find(|c| c.error_code == status);
        match verdict {
            Ok(()) if status >= 400 && !explicit_freshness(headers) => {
                // Errors without freshness are kept for the error caching TTL.
                let t = custom
                    .map(|c| c.error_caching_min_ttl)
                    .unwrap_or(Duration::from_secs(10));
                (!t.is_zero()).then_some(t)
            }
            Ok(()) => edge_ttl(headers, ttl_policy(policy)),
            // CloudFront keeps even private and no-store responses when the policy's
            // minimum TTL is above zero.
            Err(NotStorable::Private | NotStorable::NoStore)
                if status < 400 && !policy.min_ttl.is_zero() =>
            {
                edge_ttl(headers, ttl_policy(policy))
            }
            Err(NotStorable::NoFreshness) if status >= 400 => custom
                .map(|c| c.error_caching_min_ttl)
                .filter(|t| !t.is_zero()),
            _ => None,
        }
    }

    /// A request that does not go through the cache: forwarded as is (within the
    /// policies), relayed back as it streams.
    async fn pass(
        &self,
        ctx: &Ctx<'_>,
        group: &Arc<Group>,
        policy: &CachePolicy,
        body: Option<Incoming>,
    ) -> (Response<Body>, Outcome, String) {
        let body = match body {
            None => Bytes::new(),
            Some(b) => {
                if b.size_hint().lower() as usize > MAX_REQUEST_BODY {
                    return (too_large(), Outcome::Error, String::new());
                }
                let b = meridian_http::IdleTimeout::new(b, REQUEST_BODY_IDLE);
                match Limited::new(b, MAX_REQUEST_BODY).collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                        return (too_large(), Outcome::Error, String::new())
                    }
                    Err(e) if e.is::<meridian_http::Idle>() => {
                        let r = meridian_http::text(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("the request body stalled: {e}"),
                        );
                        return (r, Outcome::Error, String::new());
                    }
                    Err(_) => {
                        let r = meridian_http::text(
                            StatusCode::BAD_REQUEST,
                            "the request body could not be read",
                        );
                        return (r, Outcome::Error, String::new());
                    }
                }
            }
        };
        let headers = self.origin_headers(ctx, policy, false);
        let path = self.origin_path(ctx, policy);
        self.0.m.origin_fetches.inc();
        match self
            .0
            .origins
            .send(group, &ctx.method, &path, &headers, body)
            .await
        {
            Ok(r) => {
                let status = r.response.status().as_u16();
                // RFC 9111 §4.4: a successful unsafe request invalidates what it changed.
                for target in invalidation_targets(
                    &ctx.method,
                    status,
                    &ctx.path,
                    &ctx.host,
                    r.response.headers(),
                ) {
                    let t = target.split('?').next().unwrap_or("").to_owned();
                    self.0.store.invalidate(move |p| p == t);
                }
                let origin = r.member.clone();
                let res = self.relay(r.response, group.cfg.response_timeout);
                (res, Outcome::Pass, origin)
            }
            Err(failure) => {
                let e = generated_error(&self.0.pop, &failure);
                let mut r = Response::new(meridian_http::full(e.body));
                *r.status_mut() = e.status;
                *r.headers_mut() = e.headers;
                (r, Outcome::Error, String::new())
            }
        }
    }

    /// An origin response passed to the viewer as it streams; an origin that goes quiet
    /// for `idle` mid-body ends it.
    fn relay(&self, res: Response<Incoming>, idle: Duration) -> Response<Body> {
        let (mut parts, body) = res.into_parts();
        meridian_http::strip_hop_by_hop(&mut parts.headers);
        if let Some(n) = body.size_hint().exact() {
            self.0.m.bytes_from_origins.inc_by(n);
        }
        let body = meridian_http::IdleTimeout::new(body, idle).boxed();
        Response::from_parts(parts, body)
    }

    /// A stored object as a response to this viewer: its compressed variant when the
    /// viewer accepts one, a 304 for a matching conditional, a range, or HEAD.
    async fn serve_object(&self, ctx: &Ctx<'_>, obj: Arc<Object>) -> Response<Body> {
        let now = SystemTime::now();
        let age = current_age(&obj.meta, now);
        let mut headers = obj.meta.headers.clone();
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        let status = StatusCode::from_u16(obj.meta.status).unwrap_or(StatusCode::OK);
        let mut body = obj.body.clone();
        let compressible = compress::compressible(&headers);
        let coding = self.coding_for(
            ctx.behavior.compress,
            &ctx.headers,
            status.as_u16(),
            &headers,
            obj.meta.cache_control.no_transform,
            Some(obj.body.len()),
        );
        if coding != Coding::Identity {
            if let Some(z) = self.compressed(&obj, coding).await {
                body = z;
                headers.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(coding.token()),
                );
                if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
                    if !etag.starts_with("W/") {
                        if let Ok(v) = HeaderValue::from_str(&format!("W/{etag}")) {
                            headers.insert(header::ETAG, v);
                        }
                    }
                }
            }
        }
        if ctx.behavior.compress && compressible {
            append_vary(&mut headers, "Accept-Encoding");
        }
        if status == StatusCode::OK && not_modified(&ctx.headers, &headers) {
            let mut r = Response::new(meridian_http::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::CONTENT_LENGTH,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
            ] {
                headers.remove(name);
            }
            *r.headers_mut() = headers;
            return r;
        }
        let len = body.len();
        let mut status = status;
        let mut range = (0, len);
        if status == StatusCode::OK && !headers.contains_key(header::CONTENT_ENCODING) {
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let if_range_ok = ctx
                .headers
                .get(header::IF_RANGE)
                .map(|v| Some(v) == headers.get(header::ETAG))
                .unwrap_or(true);
            let spec = ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            if if_range_ok && spec.is_some() {
                match byte_range(spec, len) {
                    ByteRange::Full => {}
                    ByteRange::Partial { start, end } => {
                        status = StatusCode::PARTIAL_CONTENT;
                        range = (start, end + 1 - start);
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                        {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                    }
                    ByteRange::Unsatisfiable => {
                        let mut r = meridian_http::text(
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            "range not satisfiable",
                        );
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                            r.headers_mut().insert(header::CONTENT_RANGE, v);
                        }
                        return r;
                    }
                }
            }
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.1));
        let body = if ctx.method == Method::HEAD {
            meridian_http::empty()
        } else {
            match body {
                ObjectBody::Memory(b) => {
                    let (s, n) = (range.0 as usize, range.1 as usize);
                    meridian_http::full(b.slice(s..s + n))
                }
                ObjectBody::Disk { file, owner, .. } => {
                    use futures_util::TryStreamExt;
                    let stream = (self.0.store)
                        .disk_stream(&file, &owner, range.0, range.1)
                        .map_ok(hyper::body::Frame::data)
                        .map_err(|e| Box::new(e) as meridian_http::BoxError);
                    http_body_util::StreamBody::new(stream).boxed()
                }
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }

    /// The `coding` variant of a stored object's body, made and stored on first use.
    async fn compressed(&self, obj: &Object, coding: Coding) -> Option<ObjectBody> {
        let vkey = key::variant_key(&obj.key, &format!("{}#{}", coding.token(), obj.body_id));
        if let Some(v) = self.0.store.get(&vkey) {
            return Some(v.body.clone());
        }
        let identity = match &obj.body {
            ObjectBody::Memory(b) => b.clone(),
            ObjectBody::Disk { file, owner, len } => {
                self.0.store.read_disk(file, owner, *len).await.ok()?
            }
        };
        let z = compress::encode(coding, &identity).await.ok()?;
        if z.len() >= identity.len() {
            return None;
        }
        let variant = Object {
            key: vkey,
            path: obj.path.clone(),
            meta: obj.meta.clone(),
            body: ObjectBody::Memory(z),
            vary: None,
            body_id: obj.body_id,
        };
        let body = variant.body.clone();
        self.0.store.put(Arc::new(variant));
        Some(body)
    }

    /// The response filter: custom error pages are not here (they need the origin);
    /// this adds the headers policy, CORS, and the edge's own headers.
    fn respond_filter(&self, ctx: &Ctx<'_>, res: &mut Response<Body>, outcome: Outcome) {
        let h = res.headers_mut();
        let prepared = &self.0.prepared;
        if let Some(p) = self.headers_policy(ctx.behavior) {
            for (k, v) in prepared.policy_headers.get(&p.name).into_iter().flatten() {
                h.insert(k.clone(), v.clone());
            }
            if let (Some(cors), Some(origin)) = (&p.cors, ctx.headers.get(header::ORIGIN)) {
                if let Some(allow) = allowed_origin(cors, origin) {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
                    if cors.allow_credentials {
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                            HeaderValue::from_static("true"),
                        );
                    }
                    if !cors.expose_headers.is_empty() {
                        if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
                            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
                        }
                    }
                    append_vary(h, "Origin");
                }
            }
            for k in &p.remove_headers {
                h.remove(k.as_str());
            }
        }
        h.insert("x-cache", HeaderValue::from_static(outcome.x_cache()));
        h.insert(
            "cache-status",
            prepared.cache_status[outcome as usize].clone(),
        );
        h.append(header::VIA, self.0.via.clone());
        h.insert("x-meridian-pop", prepared.pop.clone());
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            h.insert("x-meridian-request-id", v);
        }
    }

    /// Metrics and the access log line.
    fn finish(
        &self,
        ctx: &Ctx<'_>,
        res: &Response<Body>,
        outcome: Outcome,
        origin: &str,
        start: Instant,
    ) {
        let elapsed = start.elapsed();
        let status = res.status().as_u16();
        let bytes = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| res.body().size_hint().exact())
            .unwrap_or(0);
        let bytes = if ctx.method == Method::HEAD { 0 } else { bytes };
        self.0.m.duration.observe(elapsed.as_secs_f64());
        self.0.m.bytes_to_viewers.inc_by(bytes);
        let class = usize::from(status / 100).min(5);
        self.0.prepared.requests[outcome as usize][class]
            .get_or_init(|| {
                self.0
                    .m
                    .requests
                    .get_or_create(&vec![
                        ("pop", self.0.pop.clone()),
                        ("cache_status", outcome.label().to_owned()),
                        ("status_class", format!("{class}xx")),
                    ])
                    .clone()
            })
            .inc();
        if !self.0.log.enabled() {
            return;
        }
        let (date, time) = utc_date_time(SystemTime::now());
        let get = |n: header::HeaderName| {
            ctx.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        self.0.log.write(AccessLine {
            date,
            time,
            edge_location: self.0.pop.clone(),
            sc_bytes: bytes,
            client_ip: ctx.peer.addr.ip().to_string(),
            client_port: ctx.peer.addr.port(),
            method: ctx.method.to_string(),
            host: ctx.host.clone(),
            uri_stem: ctx.path.clone(),
            uri_query: ctx.query.clone().unwrap_or_else(|| "-".into()),
            status,
            referer: get(header::REFERER),
            user_agent: get(header::USER_AGENT),
            result_type: outcome.result_type(),
            detailed_result_type: outcome.label(),
            request_id: ctx.request_id.clone(),
            protocol: if ctx.peer.tls.is_some() {
                "https"
            } else {
                "http"
            },
            protocol_version: format!("{:?}", ctx.version),
            ssl_protocol: ctx.peer.tls.unwrap_or("-").to_owned(),
            time_taken: (elapsed.as_secs_f64() * 1e6).round() / 1e6,
            content_type: res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned(),
            content_len: bytes,
            origin: if origin.is_empty() {
                "-".into()
            } else {
                origin.to_owned()
            },
        });
    }
}

/// What a fill needs, owned so the fill can outlive the viewer request.
struct FillRequest {
    key: String,
    path: String,
    path_and_query: String,
    headers: HeaderMap,
    viewer_headers: HeaderMap,
    policy: CachePolicy,
    stale: Option<Arc<Object>>,
    /// Stream the answer to the leader while storing it.
    stream: bool,
    /// The behavior compresses (so a viewer may want a compressed variant instead).
    compress: bool,
}

async fn wait_fill(mut rx: watch::Receiver<Option<Fill>>) -> Fill {
    loop {
        if let Some(f) = rx.borrow_and_update().clone() {
            return f;
        }
        if rx.changed().await.is_err() {
            // The leader's task ended without an answer (it panicked): ask again.
            return Fill::Pass;
        }
    }
}

/// [`wait_fill`], giving up after `deadline`: the waiter then asks the origin itself.
async fn wait_fill_until(rx: watch::Receiver<Option<Fill>>, deadline: Duration) -> Fill {
    tokio::time::timeout(deadline, wait_fill(rx))
        .await
        .unwrap_or(Fill::Pass)
}

fn ttl_policy(p: &CachePolicy) -> TtlPolicy {
    TtlPolicy {
        min: p.min_ttl,
        default: p.default_ttl,
        max: p.max_ttl,
    }
}

fn explicit_freshness(h: &HeaderMap) -> bool {
    let cc = CacheControl::from_headers(h);
    cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || cc.max_age_invalid
        || h.contains_key(header::EXPIRES)
}

/// The Vary field names of a response, without Accept-Encoding; None without Vary.
fn vary_names(h: &HeaderMap) -> Option<Vec<String>> {
    if !h.contains_key(header::VARY) {
        return None;
    }
    let names: Vec<String> = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n != "accept-encoding")
        .collect();
    Some(names)
}

fn vary_suffix(names: &[HeaderName], req: &HeaderMap) -> String {
    let mut res = HeaderMap::new();
    for n in names {
        if let Ok(v) = HeaderValue::from_str(n.as_str()) {
            res.append(header::VARY, v);
        }
    }
    match vary_key(&res, req) {
        Some(k) => {
            k.0.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("\x1f")
        }
        None => String::new(),
    }
}

fn append_vary(h: &mut HeaderMap, name: &'static str) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name) || n.trim() == "*");
    if !present {
        h.append(header::VARY, HeaderValue::from_static(name));
    }
}

/// Whether the viewer's conditional headers match the stored validators (RFC 9110 §13).
fn not_modified(req: &HeaderMap, res: &HeaderMap) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = res.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    if let (Some(ims), Some(lm)) = (
        req.get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        res.get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()),
    ) {
        if let (Ok(ims), Ok(lm)) = (
            httpdate::parse_http_date(ims),
            httpdate::parse_http_date(lm),
        ) {
            return lm <= ims;
        }
    }
    false
}

fn allowed_origin(cors: &meridian_config::Cors, origin: &HeaderValue) -> Option<HeaderValue> {
    let o = origin.to_str().ok()?;
    if cors.allow_origins.iter().any(|a| a == "*") && !cors.allow_credentials {
        return Some(HeaderValue::from_static("*"));
    }
    cors.allow_origins
        .iter()
        .any(|a| a == o || a == "*")
        .then(|| origin.clone())
}

/// The fixed headers a response headers policy adds (CORS depends on the request).
fn policy_headers(p: &meridian_config::ResponseHeadersPolicy) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut add = |name: &str, value: Option<&str>| {
        if let (Ok(n), Some(Ok(v))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.map(HeaderValue::from_str),
        ) {
            out.push((n, v));
        }
    };
    add(
        "strict-transport-security",
        p.strict_transport_security.as_deref(),
    );
    add(
        "content-security-policy",
        p.content_security_policy.as_deref(),
    );
    add("x-frame-options", p.frame_options.as_deref());
    add("referrer-policy", p.referrer_policy.as_deref());
    add(
        "x-content-type-options",
        p.content_type_options.then_some("nosniff"),
    );
    for (k, v) in &p.custom_headers {
        add(k, Some(v));
    }
    out
}

fn text_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h
}

/// 502 (or 504 when every origin timed out) naming what was tried.
fn generated_error(pop: &str, f: &OriginFailure) -> ErrorAnswer {
    let status = if f.timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    ErrorAnswer {
        status,
        headers: text_headers(),
        body: Bytes::from(format!("{pop}: no origin could answer ({f})\n")),
        origin: String::new(),
    }
}

fn too_large() -> Response<Body> {
    meridian_http::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body exceeds {}",
            meridian_config::ByteSize(MAX_REQUEST_BODY as u64)
        ),
    )
}

/// Why a body could not be kept.
#[derive(Debug)]
enum Collect {
    TooLarge,
    /// The fills in flight already hold all the memory they may.
    NoRoom,
    /// No viewer wants it any more.
    Abandoned,
    Failed(String),
}

impl std::fmt::Display for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collect::TooLarge => f.write_str("larger than the largest object the cache keeps"),
            Collect::NoRoom => f.write_str("no memory left for fills in flight"),
            Collect::Abandoned => f.write_str("every viewer left"),
            Collect::Failed(e) => f.write_str(e),
        }
    }
}

type Tee = tokio::sync::mpsc::Sender<Result<hyper::body::Frame<Bytes>, meridian_http::BoxError>>;

/// Reads an origin body to keep, within bounds: at most `limit` bytes, reserved from
/// `budget` as they arrive; giving up when the origin sends nothing for `idle`, or when
/// `abandoned` says no one waits any more. Every frame also goes to `tee` (the first
/// viewer, streamed to), at that viewer's pace; past the limit the rest still goes there
/// but is not kept.
struct Collector<'a> {
    limit: usize,
    idle: Duration,
    tee: Option<Tee>,
    budget: Option<Arc<Semaphore>>,
    abandoned: Option<Box<dyn Fn() -> bool + Send + Sync + 'a>>,
}

impl<'a> Collector<'a> {
    fn new(limit: usize, idle: Duration) -> Self {
        Collector {
            limit,
            idle,
            tee: None,
            budget: None,
            abandoned: None,
        }
    }

    async fn collect(
        mut self,
        mut body: Incoming,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Collect> {
        let mut buf = bytes::BytesMut::new();
        let mut reserved: Option<OwnedSemaphorePermit> = None;
        // Why the body is not being kept, once it is not (the tee may still want it).
        let mut dropped: Option<Collect> = None;
        loop {
            let frame = match tokio::time::timeout(self.idle, body.frame()).await {
                Err(_) => {
                    let e = format!(
                        "no data for {}",
                        meridian_config::units::format_duration(self.idle)
                    );
                    if let Some(t) = &self.tee {
                        let _ = t.try_send(Err(e.clone().into()));
                    }
                    return Err(Collect::Failed(e));
                }
                Ok(None) => match dropped {
                    Some(why) => return Err(why),
                    None => return Ok((buf.freeze(), reserved)),
                },
                Ok(Some(Err(e))) => {
                    if let Some(t) = &self.tee {
                        let _ = t.try_send(Err(e.to_string().into()));
                    }
                    return Err(Collect::Failed(e.to_string()));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Some(t) = &self.tee {
                let sent = tokio::time::timeout(
                    VIEWER_STALL,
                    t.send(Ok(hyper::body::Frame::data(data.clone()))),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    // The viewer left or stopped reading; the fill goes on for the others.
                    self.tee = None;
                }
            }
            if self.tee.is_none() && self.abandoned.as_ref().is_some_and(|f| f()) {
                return Err(Collect::Abandoned);
            }
            if dropped.is_none() {
                dropped = self.keep(&mut buf, &mut reserved, &data).err();
                if dropped.is_some() {
                    buf = bytes::BytesMut::new();
                    reserved = None;
                }
            }
            if self.tee.is_none() {
                if let Some(why) = dropped {
                    return Err(why);
                }
            }
        }
    }

    /// Adds `data` to what is kept, within the limit and the budget.
    fn keep(
        &self,
        buf: &mut bytes::BytesMut,
        reserved: &mut Option<OwnedSemaphorePermit>,
        data: &Bytes,
    ) -> Result<(), Collect> {
        if buf.len() + data.len() > self.limit {
            return Err(Collect::TooLarge);
        }
        if let Some(budget) = &self.budget {
            let n = u32::try_from(data.len()).map_err(|_| Collect::TooLarge)?;
            let more = budget
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| Collect::NoRoom)?;
            match reserved {
                Some(r) => r.merge(more),
                None => *reserved = Some(more),
            }
        }
        buf.extend_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dates_are_utc_civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_609_845);
        assert_eq!(utc_date_time(t), ("2026-11-25".into(), "12:30:45".into()));
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(
            utc_date_time(leap),
            ("2000-02-29".into(), "00:00:00".into())
        );
        assert_eq!(
            utc_date_time(SystemTime::UNIX_EPOCH),
            ("1970-01-01".into(), "00:00:00".into())
        );
    }

    #[test]
    fn conditional_matching() {
        let mut res = HeaderMap::new();
        res.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        res.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Mon, 02 Nov 2026 12:00:00 GMT"),
        );
        let req = |k: HeaderName, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(k, HeaderValue::from_static(v));
            h
        };
        assert!(not_modified(&req(header::IF_NONE_MATCH, "\"abc\""), &res));
        assert!(not_modified(
            &req(header::IF_NONE_MATCH, "\"x\", W/\"abc\""),
            &res
        ));
        assert!(!not_modified(&req(header::IF_NONE_MATCH, "\"x\""), &res));
        assert!(not_modified(
            &req(header::IF_MODIFIED_SINCE, "Tue, 03 Nov 2026 12:00:00 GMT"),
            &res
        ));
        assert!(!not_modified(
            &req(header::IF_MODIFIED_SINCE, "Sun, 01 Nov 2026 12:00:00 GMT"),
            &res
        ));
    }
}
