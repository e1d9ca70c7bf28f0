//! The origin request: which of the viewer's headers, cookies and query parameters go to
//! the origin (cache key and origin request policy), and the edge's forwarding headers.
//! The place an origin-request function will rewrite the request.

use super::context::RequestContext;
use crate::edge::Edge;
use crate::key;
use http::header::{self, HeaderMap, HeaderValue};
use meridian_config::CachePolicy;

impl Edge {
    /// Headers for the origin request: what the cache key and the origin request policy
    /// say, plus the edge's own forwarding headers.
    pub(super) fn origin_headers(
        &self,
        ctx: &RequestContext<'_>,
        policy: &CachePolicy,
        for_fill: bool,
    ) -> HeaderMap {
        let orp = ctx
            .behavior
            .origin_request_policy
            .as_deref()
            .and_then(|n| self.0.dist.origin_request_policy(n));
        let claim_headers: &[(String, String)] = ctx
            .behavior
            .jwt_authorizer
            .as_deref()
            .and_then(|a| self.0.dist.protection.jwt_authorizer(a))
            .map(|a| a.forward_claims.as_slice())
            .unwrap_or(&[]);
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
            // Claims the behavior's JWT authorizer verified are for the origin by definition.
            let claim = claim_headers.iter().any(|(_, h)| h == n);
            let by_orp = orp.is_some_and(|p| p.headers.admits(n, true));
            let by_key = policy.headers.iter().any(|h| h.eq_ignore_ascii_case(n));
            if always || claim || by_orp || by_key {
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
            None => meridian_http::ids::ip_text(ctx.peer.addr.ip()),
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

    pub(super) fn origin_path(&self, ctx: &RequestContext<'_>, policy: &CachePolicy) -> String {
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
}
