//! gRPC through the PoP, as CloudFront's `GrpcConfig` passes it: on a behavior with
//! `grpc = true`, a POST with `content-type: application/grpc` is a pass (never cached nor
//! collapsed) whose body streams to the origin as the viewer sends it and whose answer,
//! frames and trailers, streams back (`pass.rs` does the sending, over HTTP/2:
//! `../origin/forward.rs`). The edge's own failures reach the viewer in gRPC's shape.

use super::context::{RequestContext, Served};
use super::outcome::Outcome;
use super::route::Route;
use crate::edge::Edge;
use http::header::{HeaderMap, HeaderValue};
use http::Method;
use http_body_util::BodyExt;
use meridian_http::grpc::{RequestBody, SendOnce};
use std::time::Duration;

/// A gRPC request stream may go this long without a message (ALB's idle timeout).
const GRPC_BODY_IDLE: Duration = Duration::from_secs(60);

/// Whether the viewer's request is a gRPC call its behavior passes.
pub(super) fn is_grpc(ctx: &RequestContext<'_>) -> bool {
    ctx.behavior.grpc && ctx.method == Method::POST && meridian_http::grpc::is_grpc(&ctx.headers)
}

/// What a gRPC origin request carries beyond the policies' headers: `te: trailers` (the
/// one TE HTTP/2 allows, which gRPC servers may insist on) and the call's `grpc-*`
/// metadata (deadline, encodings), which the application needs whatever the policy says.
pub(super) fn origin_headers(ctx: &RequestContext<'_>, out: &mut HeaderMap) {
    out.insert(http::header::TE, HeaderValue::from_static("trailers"));
    for (name, value) in &ctx.headers {
        if name.as_str().starts_with("grpc-") && !out.contains_key(name) {
            out.append(name.clone(), value.clone());
        }
    }
}

impl Edge {
    /// Passes a gRPC call with its body streaming (sent to one member only: a member
    /// that refused the connection never read it, so the next may still take it).
    pub(super) async fn grpc_pass(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        body: meridian_http::Body,
    ) -> Served {
        let body = meridian_http::IdleTimeout::new(body, GRPC_BODY_IDLE).boxed();
        let served = self
            .pass(ctx, route, RequestBody::Once(SendOnce::new(body)))
            .await;
        if served.outcome != Outcome::Error {
            return served;
        }
        // A gRPC client reads statuses from `grpc-status` (UNAVAILABLE for a 502).
        let response = meridian_http::grpc::shape_error(served.response).await;
        Served { response, ..served }
    }
}
