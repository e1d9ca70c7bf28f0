//! The request path of a PoP as ordered phases, read top to bottom here (the way
//! Pingora's `ProxyHttp` reads). Each phase has its file; this one only drives them.
//!
//! | # | phase                | file                    | edge functions                   |
//! |---|----------------------|-------------------------|----------------------------------|
//! | 1 | viewer request       | `viewer.rs`, `protect.rs`, `viewer_headers.rs` | **viewer-request** (`functions.rs`) after protection |
//! | 2 | route                | `route.rs`              |                                  |
//! | 3 | cache lookup         | `cache.rs`              |                                  |
//! | 4 | collapse             | `collapse.rs`, `inflight.rs` |                             |
//! |   | (WebSocket tunnel)   | `upgrade.rs`: a viewer's handshake, after route, instead of 3–7 | |
//! |   | (gRPC pass)          | `grpc.rs`: a gRPC call on a `grpc` behavior, streamed, instead of 3–7 | |
//! | 5 | fill from origin     | `fill.rs`, `body.rs`, `pass.rs`, `idempotency.rs`, `origin_request.rs`, `../origin/` | **origin-request**, **origin-response** (`origin_functions.rs`) |
//! | 6 | store                | `store.rs`              |                                  |
//! | 7 | serve from the cache | `serve.rs`              |                                  |
//! | 8 | response headers     | `response.rs`           | **viewer-response** (`functions.rs`) |
//! | 9 | compression          | `compression.rs`        |                                  |
//! | 10| log                  | `metrics.rs`, `access_log.rs` |                            |
//!
//! Compression is applied where a stored body becomes a viewer's (serve), so a compressed
//! variant is made once and stored; on a streaming miss the identity body goes straight
//! through.

mod access_log;
mod body;
mod cache;
mod collapse;
mod compression;
mod context;
mod error;
mod fill;
mod functions;
mod grpc;
mod idempotency;
pub(crate) mod inflight;
pub(crate) mod metrics;
mod origin_functions;
mod origin_request;
pub(crate) mod outcome;
mod pass;
mod protect;
mod request_body;
pub(crate) mod response;
mod route;
mod serve;
mod store;
mod upgrade;
mod viewer;
mod viewer_headers;

use self::cache::Lookup;
use self::context::{RequestContext, Served};
use self::inflight::{FillResult, LeaderResponse, MissResult};
use self::outcome::Outcome;
use self::request_body::BodyStart;
use self::route::Route;
use crate::edge::Edge;
use bytes::Bytes;
use http::header;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body as HttpBody;
use meridian_cache::CacheControl;
use meridian_http::{Body, Peer};
use std::time::Instant;

impl Edge {
    /// Answers one viewer request: the phases in order. The body is hyper's (HTTP/1.1 and
    /// HTTP/2) or an HTTP/3 stream's (`../http3.rs`): every protocol takes the same path.
    pub async fn handle<B>(&self, req: Request<B>, peer: Peer) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        // A PoP checking this regional cache: being up is the answer (`origin/tier.rs`).
        if parts.uri.path() == crate::origin::tier::HEALTH_PATH {
            return meridian_http::text(StatusCode::OK, "ok");
        }
        let tier = self.0.origins.tier_sender(&parts);
        // A WebSocket handshake is taken aside before its Upgrade is stripped (`upgrade.rs`).
        let ws = meridian_http::upgrade::WsUpgrade::take(&mut parts);
        let extended_connect = ws.as_ref().is_some_and(|w| w.is_extended_connect());
        // 1. Viewer request: made canonical once; every later phase reads only `ctx`.
        let (mut ctx, refused) = RequestContext::from_viewer(&self.0.dist, parts, peer);
        ctx.tier = tier;
        let mut served = match refused {
            // Refused before routing: no behavior, no origin, no custom error page.
            Some(e) => Served::at_edge(
                meridian_http::text(e.status(), e.to_string()),
                Outcome::Error,
            ),
            None => {
                let served = self.answer(&mut ctx, body, ws).await;
                // A refusal by API protection is never replaced by a custom error page, which
                // could hide it (a 200 page) or show a protected page to the refused.
                // The PoP in front of a regional cache makes its own error pages.
                let error = served.response.status().as_u16() >= 400
                    && served.outcome != Outcome::Blocked
                    && ctx.tier.is_none();
                if error && !self.0.dist.custom_error_responses.is_empty() {
                    self.custom_error(&ctx, served).await
                } else {
                    served
                }
            }
        };
        // An HTTP/2 client takes any 2xx to its extended CONNECT as an open WebSocket: one
        // that opened none (a function's answer, an origin that did not switch, an error
        // page made 200) must not look like one.
        if extended_connect
            && served.response.status().is_success()
            && !meridian_http::upgrade::is_tunnel(&served.response)
        {
            served.response = meridian_http::text(
                StatusCode::BAD_GATEWAY,
                "the origin did not open a WebSocket",
            );
        }
        // 8. Response headers (compression, 9., was applied where the body was chosen).
        let policy = self.headers_policy(ctx.behavior);
        self.0
            .headers
            .apply(&ctx, policy, &mut served.response, served.outcome);
        // The viewer-response function sees the response here, with the edge's headers on
        // it, and may change it before it leaves (`functions.rs`).
        if ctx.tier.is_none() {
            self.viewer_response_function(&ctx, &mut served);
        }
        // 10. Log: metrics and the access log line.
        self.log(&ctx, &served, start);
        served.response
    }

    /// Viewer rules, the viewer-request function, route, then the cache or a pass to the
    /// origin.
    async fn answer<B>(
        &self,
        ctx: &mut RequestContext<'_>,
        body: B,
        ws: Option<meridian_http::upgrade::WsUpgrade>,
    ) -> Served
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        // A request from another cache of the tier had its viewer phases at the PoP that
        // took it from the viewer: protection, functions and viewer headers run once.
        let viewer = ctx.tier.is_none();
        if viewer {
            if let Some(served) = self.viewer_rules(ctx) {
                return served;
            }
        }
        // A request the cache answers never sends its body on, so it is not read; a gRPC
        // call's streams to the origin as it comes (its messages are not inspected); of
        // others, what protection's rules may inspect is read before it, and the rest
        // (bounded) only once protection let the request through (`request_body.rs`).
        let mut stream = None;
        let mut start = None;
        let limit = self.0.protect.acl.body_limit();
        if route::is_cacheable(ctx) {
            drop(body);
        } else if grpc::is_grpc(ctx) {
            stream = Some(http_body_util::BodyExt::boxed(
                http_body_util::BodyExt::map_err(body, Into::into),
            ));
        } else {
            match BodyStart::read(body, limit).await {
                Ok(s) => start = Some(s),
                Err(refused) => return Served::at_edge(refused, Outcome::Error),
            }
        };
        // API protection (`protect.rs`): geo restriction, rules, rate limits, authentication.
        if viewer {
            let (inspected, more) = start
                .as_ref()
                .map_or((&[][..], false), |s| s.inspected(limit));
            if let Some(served) = self.protect(ctx, inspected, more) {
                BodyStart::linger(start);
                return served;
            }
            // CloudFront's viewer headers (`viewer_headers.rs`), then the viewer-request
            // function (`functions.rs`), which may rewrite `ctx` or answer.
            self.viewer_headers(ctx);
            if let Some(served) = self.viewer_request_function(ctx) {
                BodyStart::linger(start);
                return served;
            }
        }
        let body = match start {
            Some(start) => match start.whole().await {
                Ok(b) => b,
                Err(refused) => return Served::at_edge(refused, Outcome::Error),
            },
            None => Bytes::new(),
        };
        let ctx = &*ctx;
        // 2. Route.
        let Some(route) = self.route(ctx) else {
            let r = meridian_http::text(
                StatusCode::BAD_GATEWAY,
                "the behavior's origin group has no members",
            );
            return Served::at_edge(r, Outcome::Error);
        };
        // The branches a hit never takes are boxed, so the request's future (moved into its
        // box once per request) has the size of the hit path's, not of the largest branch.
        if let Some(ws) = ws {
            // A WebSocket: tunnelled to the origin, never cached nor collapsed.
            Box::pin(self.tunnel(ctx, &route, ws)).await
        } else if let Some(stream) = stream {
            // gRPC: a streaming pass over HTTP/2 (`grpc.rs`).
            Box::pin(self.grpc_pass(ctx, &route, stream)).await
        } else if route.cacheable {
            self.through_cache(ctx, &route).await
        } else {
            // Duplicates of an idempotent request wait for or replay the first
            // (`idempotency.rs`); origin functions run inside the pass (`pass.rs`,
            // `origin_functions.rs`).
            Box::pin(self.pass_once(ctx, &route, body)).await
        }
    }

    /// GET and HEAD through the cache: lookup, collapse, fill (and store), serve.
    async fn through_cache(&self, ctx: &RequestContext<'_>, route: &Route<'_>) -> Served {
        // 3. Cache lookup.
        let primary = self.cache_key(ctx, route.policy);
        // A viewer's request directives do not decide what the cache serves, as at
        // CloudFront and other CDNs: a `no-cache` or `max-age=0` would let any client send
        // every request to the origin past the cache. `only-if-cached`, which asks for
        // less, is kept.
        let request_cc = CacheControl {
            only_if_cached: CacheControl::from_headers(&ctx.headers).only_if_cached,
            ..CacheControl::default()
        };
        let stale = match self.look_up(ctx, &primary, &request_cc, route.policy) {
            Lookup::Fresh(obj) => {
                return Served::at_edge(self.serve_object(ctx, obj).await, Outcome::Hit);
            }
            Lookup::StaleWhileRevalidate(obj) => {
                self.refresh_in_background(ctx, route, &primary, obj.clone());
                let o = Outcome::StaleWhileRevalidate;
                return Served::at_edge(self.serve_object(ctx, obj).await, o);
            }
            Lookup::Stale {
                object,
                serve_on_error,
            } => Some((object, serve_on_error)),
            Lookup::Miss => None,
        };
        if request_cc.only_if_cached {
            let r = meridian_http::text(
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: not in the cache",
            );
            return Served::at_edge(r, Outcome::Error);
        }
        // 4. Collapse onto a fill in flight, or lead one: 5. fill from the origin
        // (with the origin functions, `origin_functions.rs`) and 6. store.
        let stale_obj = stale.as_ref().map(|(o, _)| o.clone());
        let fill = match Box::pin(self.collapse(ctx, route, &primary, &request_cc, stale_obj)).await
        {
            MissResult::Shared(f) => f,
            MissResult::Leader(LeaderResponse::Unshared(r)) => {
                let res = self.relay(r.response, route.group.cfg.response_timeout);
                return Served::from_origin(res, Outcome::Pass, r.member);
            }
            MissResult::Leader(LeaderResponse::Streaming { response, origin }) => {
                return Served::from_origin(response, Outcome::Miss, origin);
            }
            MissResult::Cached(object) => {
                return Served::at_edge(self.serve_object(ctx, object).await, Outcome::Hit);
            }
        };
        // 7. Serve what the fill stored.
        match fill {
            FillResult::Stored {
                object,
                refreshed,
                origin,
            } => {
                let o = if refreshed {
                    Outcome::RefreshHit
                } else {
                    Outcome::Miss
                };
                // A variant stored under another Vary selection is not this viewer's.
                let object = if object.vary.is_some() {
                    match self.stored(&primary, &ctx.headers) {
                        Some(o) => o,
                        None => return Box::pin(self.pass(ctx, route, Bytes::new())).await,
                    }
                } else {
                    object
                };
                Served::from_origin(self.serve_object(ctx, object).await, o, origin)
            }
            FillResult::Pass => Box::pin(self.pass(ctx, route, Bytes::new())).await,
            FillResult::Failed(err) => {
                if let Some((obj, true)) = stale {
                    let o = Outcome::StaleIfError;
                    return Served::at_edge(self.serve_object(ctx, obj).await, o);
                }
                Served {
                    response: err.to_response(),
                    outcome: Outcome::Error,
                    origin: err.origin.clone(),
                }
            }
        }
    }

    /// CloudFront's custom error response: the configured page (fetched through the cache
    /// like any object) and status instead of the error.
    async fn custom_error(&self, ctx: &RequestContext<'_>, served: Served) -> Served {
        let res = served.response;
        let status = res.status().as_u16();
        let keep = |response| Served { response, ..served };
        let Some(c) = self.custom_error_for(status) else {
            return keep(res);
        };
        let code = c
            .response_code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(res.status());
        let Some(page) = &c.response_page_path else {
            let (mut parts, body) = res.into_parts();
            parts.status = code;
            return keep(Response::from_parts(parts, body));
        };
        let behavior = self.0.dist.behavior_for(page);
        let Some((group, policy)) = self.route_behavior(behavior) else {
            return keep(res);
        };
        let mut headers = http::HeaderMap::new();
        if let Some(ae) = ctx.headers.get(header::ACCEPT_ENCODING) {
            headers.insert(header::ACCEPT_ENCODING, ae.clone());
        }
        let page_ctx = RequestContext {
            peer: ctx.peer.clone(),
            method: Method::GET,
            host: ctx.host.clone(),
            path: page.clone(),
            query: None,
            headers,
            version: ctx.version,
            request_id: ctx.request_id.clone(),
            behavior,
            origin: None,
            tier: None,
        };
        let route = Route {
            group,
            members: None,
            policy,
            cacheable: true,
        };
        let page = Box::pin(self.through_cache(&page_ctx, &route)).await;
        if page.response.status() != StatusCode::OK {
            // The error page itself is missing: the original error is better than that.
            return keep(res);
        }
        let (mut parts, body) = page.response.into_parts();
        parts.status = code;
        keep(Response::from_parts(parts, body))
    }

    /// Metrics and the access log line.
    fn log(&self, ctx: &RequestContext<'_>, served: &Served, start: Instant) {
        let elapsed = start.elapsed();
        let res = &served.response;
        // The body's exact size when it knows it (an object served from memory does),
        // else what the head says.
        let bytes = res
            .body()
            .size_hint()
            .exact()
            .or_else(|| {
                res.headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let bytes = if ctx.method == Method::HEAD { 0 } else { bytes };
        let status = res.status().as_u16();
        let (pop, version) = (&self.0.pop, ctx.version);
        (self.0.stats).record(pop, served.outcome, status, version, bytes, elapsed);
        access_log::write(&self.0.log, &self.0.pop, ctx, served, bytes, elapsed);
    }
}
