//! Validation (RFC 9111 §4.3): revalidating a stored response with the origin and
//! answering a viewer's conditional request from it; and invalidation (§4.4).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_LOCATION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LOCATION,
};
use http::Method;

/// Headers that turn a request to the origin into a revalidation of a stored response.
pub fn conditional_request(stored: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(etag) = stored.get(ETAG) {
        h.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = stored.get(LAST_MODIFIED) {
        h.insert(IF_MODIFIED_SINCE, lm.clone());
    }
    h
}

/// Whether a request's conditional headers match a stored response's validators (RFC 9110
/// §13.1.2, §13.1.3), so the cache answers 304 instead of the body. If-None-Match decides
/// when present (weak comparison); else If-Modified-Since against Last-Modified.
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    // The request's field first: most have none, and the stored date is then not read.
    let Some(ims) = request.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(lm) = stored.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()) {
        if let (Ok(ims), Ok(lm)) = (
            httpdate::parse_http_date(ims),
            httpdate::parse_http_date(lm),
        ) {
            return lm <= ims;
        }
    }
    false
}

/// Fields a 304 never writes into a stored response: Content-Length describes the stored
/// body; the connection's own fields (§3.1) are not the representation's; and a stored
/// response is shared by every viewer, so one viewer's Set-Cookie must never enter it.
const NOT_MERGED: &[&str] = &[
    "content-length",
    "set-cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Applies a 304's header fields to the stored response (§4.3.4): each field in the 304
/// replaces the stored one, except those in [`NOT_MERGED`].
pub fn merge_not_modified(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let mut names: Vec<&HeaderName> = not_modified.keys().collect();
    names.dedup();
    for name in names {
        if NOT_MERGED.contains(&name.as_str()) {
            continue;
        }
        stored.remove(name);
        for v in not_modified.get_all(name) {
            stored.append(name.clone(), v.clone());
        }
    }
}

/// The paths a cache must invalidate after an unsafe request succeeds (§4.4): the target
/// and, when they are on the same host, the Location and Content-Location targets.
pub fn invalidation_targets(
    method: &Method,
    status: u16,
    path: &str,
    host: &str,
    response: &HeaderMap,
) -> Vec<String> {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !(200..400).contains(&status) {
        return Vec::new();
    }
    let mut out = vec![path.to_owned()];
    for h in [LOCATION, CONTENT_LOCATION] {
        if let Some(p) = response.get(h).and_then(|v| same_host_path(v, host)) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

fn same_host_path(v: &HeaderValue, host: &str) -> Option<String> {
    let s = v.to_str().ok()?;
    if s.starts_with('/') {
        return Some(s.to_owned());
    }
    let uri: http::Uri = s.parse().ok()?;
    (uri.authority()?.as_str().eq_ignore_ascii_case(host)).then(|| {
        uri.path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::headers as h;

    #[test]
    fn revalidation_uses_validators_and_304_refreshes_headers() {
        let stored = h(&[
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 02 Nov 2026 12:00:00 GMT"),
            ("cache-control", "max-age=5"),
            ("content-length", "100"),
        ]);
        let cond = conditional_request(&stored);
        assert_eq!(cond[IF_NONE_MATCH], "\"v1\"");
        assert_eq!(cond[IF_MODIFIED_SINCE], "Mon, 02 Nov 2026 12:00:00 GMT");
        let mut s = stored.clone();
        merge_not_modified(
            &mut s,
            &h(&[
                ("cache-control", "max-age=60"),
                ("date", "Tue, 24 Nov 2026 10:00:00 GMT"),
                ("content-length", "0"),
                ("set-cookie", "session=viewer-a"),
                ("connection", "close"),
            ]),
        );
        assert!(
            !s.contains_key("set-cookie"),
            "one viewer's cookie never enters the shared copy"
        );
        assert!(!s.contains_key("connection"));
        assert_eq!(s["cache-control"], "max-age=60");
        assert_eq!(s["content-length"], "100", "the stored body's length stays");
        assert_eq!(s["etag"], "\"v1\"");
        assert!(s.contains_key("date"));
    }

    #[test]
    fn conditional_matching() {
        let res = h(&[
            ("etag", "\"abc\""),
            ("last-modified", "Mon, 02 Nov 2026 12:00:00 GMT"),
        ]);
        assert!(not_modified(&h(&[("if-none-match", "\"abc\"")]), &res));
        assert!(not_modified(
            &h(&[("if-none-match", "\"x\", W/\"abc\"")]),
            &res
        ));
        assert!(!not_modified(&h(&[("if-none-match", "\"x\"")]), &res));
        assert!(not_modified(
            &h(&[("if-modified-since", "Tue, 03 Nov 2026 12:00:00 GMT")]),
            &res
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", "Sun, 01 Nov 2026 12:00:00 GMT")]),
            &res
        ));
    }

    #[test]
    fn unsafe_methods_invalidate_target_and_same_host_locations() {
        let res = h(&[
            ("location", "/api/orders/7"),
            ("content-location", "http://other.example/x"),
        ]);
        assert_eq!(
            invalidation_targets(&Method::POST, 201, "/api/orders", "shop.example", &res),
            ["/api/orders", "/api/orders/7"]
        );
        let res = h(&[("content-location", "http://SHOP.example/api/cart")]);
        assert_eq!(
            invalidation_targets(&Method::PUT, 200, "/api/cart/1", "shop.example", &res),
            ["/api/cart/1", "/api/cart"]
        );
        assert!(invalidation_targets(&Method::GET, 200, "/x", "h", &HeaderMap::new()).is_empty());
        assert!(
            invalidation_targets(&Method::DELETE, 500, "/x", "h", &HeaderMap::new()).is_empty(),
            "a failed request changes nothing"
        );
    }
}
