//! Serve: a stored object as a response to this viewer, answering the viewer's
//! conditional (304), range (206/416) and HEAD requests at the edge.

use super::context::RequestContext;
use crate::edge::Edge;
use crate::store::{Object, ObjectBody};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_cache::{byte_range, current_age, not_modified, ByteRange};
use meridian_http::Body;
use std::sync::Arc;

impl Edge {
    /// A stored object as a response to this viewer: its compressed variant when the
    /// viewer accepts one, a 304 for a matching conditional, a range, or HEAD.
    pub(super) async fn serve_object(
        &self,
        ctx: &RequestContext<'_>,
        obj: Arc<Object>,
    ) -> Response<Body> {
        let now = self.0.clock.now();
        let age = current_age(&obj.meta, now);
        let mut headers = obj.meta.headers.clone();
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        let status = StatusCode::from_u16(obj.meta.status).unwrap_or(StatusCode::OK);
        let body = self
            .encode_for_viewer(ctx, &obj, status, &mut headers)
            .await;
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
}
