//! Response headers: the behavior's response headers policy (fixed headers, CORS,
//! removals) and the edge's own (x-cache, Cache-Status, Via, PoP, request id). The place
//! a viewer-response function will see the response.

use super::context::RequestContext;
use super::outcome::Outcome;
use http::header::{self, HeaderName, HeaderValue};
use http::Response;
use meridian_cache::add_vary;
use meridian_config::{Distribution, ResponseHeadersPolicy};
use meridian_http::Body;
use std::collections::HashMap;

// Names made at compile time: a name given as a string is parsed again on every use.
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const X_MERIDIAN_POP: HeaderName = HeaderName::from_static("x-meridian-pop");
const X_MERIDIAN_REQUEST_ID: HeaderName = HeaderName::from_static("x-meridian-request-id");

/// Header values made once per PoP: the hit path allocates little.
pub(crate) struct ResponseHeaders {
    /// `Cache-Status` by outcome.
    cache_status: [HeaderValue; Outcome::ALL.len()],
    pop: HeaderValue,
    via: HeaderValue,
    /// Each response headers policy's fixed headers, by policy name.
    policy_headers: HashMap<String, Vec<(HeaderName, HeaderValue)>>,
    /// The targeted cache-control fields removed from every response.
    cache_control_targets: Vec<HeaderName>,
    /// With the tier on, the caches before this one keep their `Cache-Status` entries and
    /// this one's is added after them (RFC 9211: the cache nearest the origin first).
    chain: bool,
    /// `Alt-Svc: h3=":<port>"; ma=86400` when the PoP serves HTTP/3 (`../http3.rs`): how a
    /// viewer on TLS over TCP learns it may come back over QUIC.
    alt_svc: Option<HeaderValue>,
}

impl ResponseHeaders {
    pub fn new(pop: &str, via: HeaderValue, dist: &Distribution, https_port: u16) -> Self {
        ResponseHeaders {
            alt_svc: dist
                .http_version
                .http3()
                .then(|| alt_svc(https_port))
                .flatten(),
            cache_status: Outcome::ALL.map(|o| {
                HeaderValue::from_str(&format!("meridian-{pop}; {}", o.cache_status()))
                    .unwrap_or(HeaderValue::from_static("meridian"))
            }),
            pop: HeaderValue::from_str(pop).unwrap_or(HeaderValue::from_static("-")),
            via,
            chain: dist.tiered_cache.enabled,
            cache_control_targets: dist
                .cache_control_targets
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            policy_headers: dist
                .response_headers_policies
                .iter()
                .map(|p| (p.name.clone(), policy_headers(p)))
                .collect(),
        }
    }

    /// Adds the headers policy `policy` (with CORS for this request) and the edge's own
    /// headers. Custom error pages are not here: they need the origin.
    pub fn apply(
        &self,
        ctx: &RequestContext<'_>,
        policy: Option<&ResponseHeadersPolicy>,
        res: &mut Response<Body>,
        outcome: Outcome,
    ) {
        let h = res.headers_mut();
        // To a PoP of the tier this is an origin's answer: it keeps the targeted cache
        // control it stores by, and the viewer's policy (CORS for one viewer's Origin) is
        // the PoP's to apply, never stored with the object.
        let to_viewer = ctx.tier.is_none();
        // Targeted cache control (RFC 9213) is for this PoP, never for viewers.
        for t in self.cache_control_targets.iter().filter(|_| to_viewer) {
            h.remove(t);
        }
        if let Some(p) = policy.filter(|_| to_viewer) {
            for (k, v) in self.policy_headers.get(&p.name).into_iter().flatten() {
                h.insert(k.clone(), v.clone());
            }
            if let (Some(cors), Some(origin)) = (&p.cors, ctx.headers.get(header::ORIGIN)) {
                if let Some(allow) = allowed_origin(cors, origin) {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
                    if cors.allow_credentials {
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                            HeaderValue::from_static("true"),
                        );
                    }
                    if !cors.expose_headers.is_empty() {
                        if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
                            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
                        }
                    }
                    add_vary(h, "Origin");
                }
            }
            for k in &p.remove_headers {
                h.remove(k.as_str());
            }
        }
        h.insert(X_CACHE, HeaderValue::from_static(outcome.x_cache()));
        let ours = self.cache_status[outcome as usize].clone();
        match self.chain.then(|| upstream_cache_status(h)).flatten() {
            Some(before) => {
                let both = [before.as_bytes(), b", ", ours.as_bytes()].concat();
                h.insert(CACHE_STATUS, HeaderValue::from_bytes(&both).unwrap_or(ours));
            }
            None => {
                h.insert(CACHE_STATUS, ours);
            }
        }
        h.append(header::VIA, self.via.clone());
        h.insert(X_MERIDIAN_POP, self.pop.clone());
        // Only viewers over TLS are told of HTTP/3 (browsers take `Alt-Svc` only from an
        // https origin); a PoP of the tier speaks to this one over TCP.
        if let Some(v) = self.alt_svc.as_ref() {
            if to_viewer && ctx.peer.tls.is_some() {
                h.insert(header::ALT_SVC, v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            h.insert(X_MERIDIAN_REQUEST_ID, v);
        }
    }
}

/// The `Alt-Svc` value announcing HTTP/3 on UDP `port` of the same host, kept a day as
/// CloudFront's is.
pub(crate) fn alt_svc(port: u16) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok()
}

/// The `Cache-Status` entries a response came with from the caches before this one (a
/// regional cache's), as one field value; None when there are none.
fn upstream_cache_status(h: &http::HeaderMap) -> Option<HeaderValue> {
    let entries: Vec<&str> = h
        .get_all(CACHE_STATUS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if entries.is_empty() {
        return None;
    }
    HeaderValue::from_str(&entries.join(", ")).ok()
}

/// The Access-Control-Allow-Origin a CORS policy gives a request's Origin, if any.
pub(crate) fn allowed_origin(
    cors: &meridian_config::Cors,
    origin: &HeaderValue,
) -> Option<HeaderValue> {
    let o = origin.to_str().ok()?;
    if cors.allow_origins.iter().any(|a| a == "*") && !cors.allow_credentials {
        return Some(HeaderValue::from_static("*"));
    }
    cors.allow_origins
        .iter()
        .any(|a| a == o || a == "*")
        .then(|| origin.clone())
}

/// The fixed headers a response headers policy adds (CORS depends on the request).
fn policy_headers(p: &meridian_config::ResponseHeadersPolicy) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut add = |name: &str, value: Option<&str>| {
        if let (Ok(n), Some(Ok(v))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.map(HeaderValue::from_str),
        ) {
            out.push((n, v));
        }
    };
    add(
        "strict-transport-security",
        p.strict_transport_security.as_deref(),
    );
    add(
        "content-security-policy",
        p.content_security_policy.as_deref(),
    );
    add("x-frame-options", p.frame_options.as_deref());
    add("referrer-policy", p.referrer_policy.as_deref());
    add(
        "x-content-type-options",
        p.content_type_options.then_some("nosniff"),
    );
    for (k, v) in &p.custom_headers {
        add(k, Some(v));
    }
    out
}
