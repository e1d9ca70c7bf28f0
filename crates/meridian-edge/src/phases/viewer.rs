//! Viewer request: the request made canonical (host, path) and routed to a behavior, then
//! the behavior's viewer rules: protocol policy, allowed methods, CORS preflight. Protection
//! rules and the viewer-request function belong here.

use super::context::{RequestContext, Served};
use super::outcome::Outcome;
use super::response::allowed_origin;
use crate::edge::Edge;
use crate::viewer::{self, ViewerError};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use meridian_config::{Distribution, ViewerProtocolPolicy};
use meridian_http::{Body, Peer};

impl<'a> RequestContext<'a> {
    /// The viewer request made canonical once: every later phase reads only this. A
    /// request refused here (bad or unknown host, bad path) still gets a context, as it
    /// came, to log it by, with the reason beside.
    pub(super) fn from_viewer(
        dist: &'a Distribution,
        parts: http::request::Parts,
        peer: Peer,
    ) -> (Self, Option<ViewerError>) {
        let canonical = viewer::host(
            parts.uri.authority().map(|a| a.as_str()),
            &parts.headers,
            parts.version,
            peer.local,
        )
        .and_then(|host| match viewer::host_allowed(&dist.aliases, &host) {
            true => Ok(host),
            false => Err(ViewerError::UnknownHost(host)),
        })
        .and_then(|host| Ok((host, viewer::normalize_path(parts.uri.path())?)));
        let refused = canonical.as_ref().err().cloned();
        // What belongs to the viewer's connection (hop-by-hop fields, and those its
        // `Connection` names) is gone before anything reads the request: a field the
        // origin request drops must not key the cache, or an answer made without it
        // would be stored under a key made with it (RFC 9110 §7.6.1).
        let mut headers = parts.headers;
        meridian_http::strip_hop_by_hop(&mut headers);
        let (host, path) = canonical.unwrap_or_else(|_| {
            // Logged as it came, answered with the error.
            (String::from("-"), parts.uri.path().to_owned())
        });
        let ctx = RequestContext {
            peer,
            method: parts.method.clone(),
            behavior: dist.behavior_for(&path),
            host,
            path,
            query: parts.uri.query().map(str::to_owned),
            version: parts.version,
            request_id: request_id(),
            headers,
            origin: None,
            tier: None,
        };
        (ctx, refused)
    }
}

/// A request's id: 96 random bits as 24 hex digits.
fn request_id() -> String {
    let mut digits = [0u8; 24];
    meridian_http::ids::write_hex(&mut digits, rand::random());
    // Always ASCII: borrowed, then copied once.
    String::from_utf8_lossy(&digits).into_owned()
}

impl Edge {
    /// The behavior's viewer rules: an answer when they decide the request here (redirect
    /// to HTTPS, refusal, preflight), None when it goes on to the origin or the cache.
    pub(super) fn viewer_rules(&self, ctx: &RequestContext<'_>) -> Option<Served> {
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
                return Some(Served::at_edge(r, Outcome::Redirect));
            }
            ViewerProtocolPolicy::HttpsOnly if ctx.peer.tls.is_none() => {
                let r = meridian_http::text(
                    StatusCode::FORBIDDEN,
                    "this path is served over HTTPS only",
                );
                return Some(Served::at_edge(r, Outcome::Error));
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
            return Some(Served::at_edge(r, Outcome::Error));
        }
        if ctx.method == Method::OPTIONS {
            if let Some(r) = self.preflight(ctx) {
                return Some(Served::at_edge(r, Outcome::Preflight));
            }
        }
        None
    }

    /// A CORS preflight answered at the edge, when the behavior's headers policy has CORS.
    fn preflight(&self, ctx: &RequestContext<'_>) -> Option<Response<Body>> {
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
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn request_ids_are_24_hex_digits_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = request_id();
            assert_eq!(id.len(), 24, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
            assert!(seen.insert(id), "an id came twice");
        }
    }
}
