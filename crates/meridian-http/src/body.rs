//! The response body every Meridian handler returns, and the small responses built from it.
//! A leaf so handlers and connection plumbing can share it without depending on `lib`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every Meridian handler returns.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body read whole, sent on with its trailers (gRPC's `grpc-status` lives there).
pub fn collected(c: http_body_util::Collected<Bytes>) -> Body {
    let trailers = c.trailers().cloned();
    let data = Full::new(c.to_bytes()).map_err(|never| match never {});
    match trailers {
        None => data.boxed(),
        Some(t) => data.with_trailers(async move { Some(Ok(t)) }).boxed(),
    }
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A short plain-text response, for errors a person will read.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut body = message.into();
    body.push('\n');
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

pub fn json(status: StatusCode, value: String) -> Response<Body> {
    let mut res = Response::new(full(value));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A `/metrics` answer in the Prometheus text format.
pub fn metrics(text: String) -> Response<Body> {
    let mut res = Response::new(full(text));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(meridian_telemetry::CONTENT_TYPE),
    );
    res
}
