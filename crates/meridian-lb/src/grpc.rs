//! gRPC through the balancer, as ALB carries it: a `grpc` target group takes only gRPC
//! requests, spoken to its targets over HTTP/2; a gRPC request's body streams to one
//! target (never buffered, so client streams work, and never replayed once sent), and the
//! target's frames and trailers stream back as they come (`retry.rs` relays them).

use crate::target::TargetGroup;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use meridian_config::ProtocolVersion;
use meridian_http::grpc::{RequestBody, SendOnce};
use meridian_http::{Body, IdleTimeout};

/// Whether `group` takes this request: a `grpc` group refuses anything but gRPC with 415
/// (the request's media type is the one thing wrong with it).
#[allow(clippy::result_large_err)]
pub(crate) fn admits(
    group: &TargetGroup,
    config: &meridian_config::TargetGroup,
    parts: &http::request::Parts,
) -> Result<(), Response<Body>> {
    if config.protocol_version != ProtocolVersion::Grpc
        || meridian_http::grpc::is_grpc(&parts.headers)
    {
        return Ok(());
    }
    Err(meridian_http::text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "the target group {} takes only gRPC requests (content-type application/grpc)",
            group.name
        ),
    ))
}

/// A gRPC request body, streamed to the one target that takes it, within the balancer's
/// body limit and idle timeout (an error mid-stream resets the target's stream).
pub(crate) fn streamed<B>(body: IdleTimeout<B>, limit: usize) -> RequestBody
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<meridian_http::BoxError>,
{
    RequestBody::Once(SendOnce::new(Limited::new(body, limit).boxed()))
}
