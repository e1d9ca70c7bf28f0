//! Pass: a request that does not go through the cache (an uncached method, or a response
//! not for sharing), forwarded within the policies and relayed back as it streams.

use super::context::{RequestContext, Served};
use super::error::generated_error;
use super::origin_functions::OriginCall;
use super::outcome::Outcome;
use super::route::Route;
use crate::edge::Edge;
use crate::origin::Outbound;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use meridian_cache::invalidation_targets;
use meridian_http::grpc::RequestBody;
use meridian_http::Body;
use std::time::Duration;

impl Edge {
    /// Forwards the request (with its body, read by `request_body.rs`) and relays the answer.
    pub(super) async fn pass(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        body: impl Into<RequestBody>,
    ) -> Served {
        let group = &route.group;
        let mut headers = self.origin_headers(ctx, route.policy, false);
        if super::grpc::is_grpc(ctx) {
            super::grpc::origin_headers(ctx, &mut headers);
        }
        let mut path = self.origin_path(ctx, route.policy);
        // The origin functions, as in `fill.rs` (`origin_functions.rs`).
        let hooks = self.origin_hooks(ctx);
        match self
            .origin_request_hook(
                &hooks,
                OriginCall::new(&ctx.method, &mut path, &mut headers),
            )
            .await
        {
            Ok(None) => {}
            Ok(Some(generated)) => return Served::at_edge(generated, Outcome::Pass),
            Err(e) => return Served::at_edge(e.to_response(), Outcome::Error),
        }
        self.0.stats.origin_fetches.inc();
        match self
            .0
            .origins
            .send(
                group,
                route.members.as_deref(),
                Outbound {
                    method: &ctx.method,
                    path_and_query: &path,
                    headers: &headers,
                    body: body.into(),
                    interim: ctx.hints(),
                },
            )
            .await
        {
            Ok(mut r) => {
                if !hooks.is_empty() {
                    r.response = match self
                        .origin_response_hook(
                            &hooks,
                            OriginCall::new(&ctx.method, &mut path, &mut headers),
                            r.response,
                        )
                        .await
                    {
                        Ok(res) => res,
                        Err(e) => return Served::at_edge(e.to_response(), Outcome::Error),
                    };
                }
                let status = r.response.status().as_u16();
                // RFC 9111 §4.4: a successful unsafe request invalidates what it changed,
                // on its own host only.
                let host = ctx.host.to_ascii_lowercase();
                for target in invalidation_targets(
                    &ctx.method,
                    status,
                    &ctx.path,
                    &ctx.host,
                    r.response.headers(),
                ) {
                    let path = target.split('?').next().unwrap_or("").to_owned();
                    self.0.store.invalidate_uri(host.clone(), path);
                }
                let res = self.relay(r.response, group.cfg.response_timeout);
                Served::from_origin(res, Outcome::Pass, r.member)
            }
            Err(failure) => {
                let e = generated_error(&self.0.pop, &failure);
                Served::at_edge(e.to_response(), Outcome::Error)
            }
        }
    }

    /// An origin response passed to the viewer as it streams; an origin that goes quiet
    /// for `idle` mid-body ends it.
    pub(super) fn relay(&self, res: Response<Body>, idle: Duration) -> Response<Body> {
        let (mut parts, body) = res.into_parts();
        meridian_http::strip_hop_by_hop(&mut parts.headers);
        if let Some(n) = body.size_hint().exact() {
            self.0.stats.bytes_from_origins.inc_by(n);
        }
        let body = meridian_http::IdleTimeout::new(body, idle).boxed();
        Response::from_parts(parts, body)
    }
}
