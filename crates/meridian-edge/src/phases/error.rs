//! The edge's own error answers, kept whole so every collapsed waiter can send the same.

use crate::origin::{OriginFailure, OriginName};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use meridian_http::Body;

/// An error answer for viewers: the origin's (5xx) or the edge's own.
pub(crate) struct ErrorAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The member that sent it; None when the edge made it (no origin could answer).
    pub origin: Option<OriginName>,
}

impl ErrorAnswer {
    /// A response with this answer, for one viewer of many.
    pub fn to_response(&self) -> Response<Body> {
        let mut r = Response::new(meridian_http::full(self.body.clone()));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

pub(crate) fn text_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h
}

/// 502 (or 504 when every origin timed out) naming what was tried.
pub(crate) fn generated_error(pop: &str, f: &OriginFailure) -> ErrorAnswer {
    let status = if f.timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    ErrorAnswer {
        status,
        headers: text_headers(),
        body: Bytes::from(format!("{pop}: no origin could answer ({f})\n")),
        origin: None,
    }
}
