//! Phase 1, API protection: what a PoP checks before a viewer request is routed, in this
//! order (each step may answer the request):
//!
//! 1. geo restriction (403, as CloudFront);
//! 2. the web ACL's custom rules (`allow` ends the rules and skips the rate limits,
//!    `block` answers with the rule's status, `count` only records);
//! 3. rate-based rules keyed on the request itself (429 with `Retry-After` and the
//!    `RateLimit` headers), before authentication, so a flood of bad tokens is limited too;
//! 4. authentication: the behavior's JWT authorizer (401 with `WWW-Authenticate`) and
//!    trusted key groups (CloudFront signed URLs or cookies, 403);
//! 5. rate-based rules keyed on a verified token's claims.
//!
//! A verified token's chosen claims go to the origin as headers (the viewer's own headers of
//! those names are removed first), and signed-URL parameters are removed from the query so
//! neither the cache key nor the origin sees them.

use super::context::{RequestContext, Served};
use super::outcome::Outcome;
use crate::edge::Edge;
use crate::protect::{Protect, RateRule};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use meridian_config::{path_matches, RateKey, RuleAction};
use meridian_http::Body;
use meridian_protect::jwt::{Claims, JwtError};
use meridian_protect::rules::{cookie_values, forwarded_ip, query_values, RequestView};
use meridian_protect::signed_url::{self, SignedRequest};
use std::sync::Arc;
use std::time::SystemTime;

/// Separates the parts of a combined rate-limit key (the console shows it as " + "). A
/// decoded query value or a claim may hold it, so a client controlling two parts could
/// make two keys meet; it cannot make its own key another client's.
const KEY_SEPARATOR: char = '\u{1f}';

impl Edge {
    /// Runs the protection steps; an answer when one of them refuses the request.
    pub(super) fn protect(
        &self,
        ctx: &mut RequestContext<'_>,
        body: &[u8],
        body_oversize: bool,
    ) -> Option<Served> {
        let p = &self.0.protect;
        let ip = ctx.peer.addr.ip();
        for h in &p.claim_headers {
            ctx.headers.remove(h);
        }
        // 1. Geo restriction.
        if p.geo.restriction_type != meridian_config::GeoRestrictionType::None {
            let country = p.country(&self.0.viewer_places, ip);
            if !p.geo.admits(country.as_deref()) {
                p.geo_blocked.inc();
                return Some(refuse(
                    StatusCode::FORBIDDEN,
                    "The request could not be satisfied: this distribution is not available in your country.",
                ));
            }
        }
        // 2. The web ACL.
        let mut rate_limited = true;
        if !p.acl.is_empty() {
            let v = p.acl.evaluate(&RequestView {
                method: ctx.method.as_str(),
                path: &ctx.path,
                query: ctx.query.as_deref(),
                headers: &ctx.headers,
                ip,
                body,
                body_oversize,
            });
            for i in v.counted {
                p.acl_counters[i].counted.inc();
            }
            match v.terminal {
                Some((i, RuleAction::Block)) => {
                    p.acl_counters[i].blocked.inc();
                    let rule = p.acl.rule(i);
                    let status =
                        StatusCode::from_u16(rule.block_status).unwrap_or(StatusCode::FORBIDDEN);
                    // The rule's body exactly as configured.
                    let mut r = refuse(status, "");
                    *r.response.body_mut() = meridian_http::full(rule.block_body.clone());
                    return Some(r);
                }
                Some((i, _)) => {
                    p.acl_counters[i].allowed.inc();
                    rate_limited = false;
                }
                None => {}
            }
        }
        let now = SystemTime::now();
        // 3. Rate limits on the request's own keys.
        if rate_limited {
            if let Some(s) = rate_limit(p, ctx, None, now, false) {
                return Some(s);
            }
        }
        // 4. Authentication.
        let claims = match &ctx.behavior.jwt_authorizer {
            Some(name) => match self.authenticate(p, ctx, name, now) {
                Ok(c) => Some(c),
                Err(refused) => return Some(*refused),
            },
            None => None,
        };
        if !ctx.behavior.trusted_key_groups.is_empty() {
            if let Some(refused) = self.check_signature(p, ctx, now) {
                return Some(refused);
            }
        }
        // 5. Rate limits on claims.
        if rate_limited && claims.is_some() {
            if let Some(s) = rate_limit(p, ctx, claims.as_deref(), now, true) {
                return Some(s);
            }
        }
        None
    }

    /// The behavior's JWT authorizer: the verified claims, with the chosen ones set as
    /// request headers; else the 401.
    fn authenticate(
        &self,
        p: &Protect,
        ctx: &mut RequestContext<'_>,
        name: &str,
        now: SystemTime,
    ) -> Result<Arc<Claims>, Box<Served>> {
        let (Some(verifier), Some(cfg)) = (
            p.verifiers.get(name),
            self.0.dist.protection.jwt_authorizer(name),
        ) else {
            // Config validation makes this impossible; refuse rather than let it through.
            return Err(Box::new(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "authorizer missing",
            )));
        };
        // The token is borrowed from the request; the headers change only after it is checked.
        // One Authorization header, of the Bearer scheme, or none and the token cookie: the
        // origin must not receive a credential other than the one verified here.
        let result = {
            let mut auth = ctx.headers.get_all(http::header::AUTHORIZATION).iter();
            let (first, second) = (auth.next(), auth.next());
            let token = match (first, second) {
                (Some(_), Some(_)) => Err(JwtError::Malformed("two Authorization headers")),
                (Some(v), None) => v
                    .to_str()
                    .ok()
                    .and_then(meridian_protect::jwt::bearer_token)
                    .ok_or(JwtError::Malformed("Authorization is not a Bearer token")),
                (None, _) => cfg
                    .token_cookie
                    .as_deref()
                    .and_then(|c| cookie_values(&ctx.headers, c).next())
                    .ok_or(JwtError::Missing),
            };
            token.and_then(|t| verifier.verify(t, now))
        };
        // Every claim the authorizer forwards must be there: an origin that reads the
        // verified user from its header would otherwise get none, and could take the
        // request as nobody's in particular. (A refused request's headers go nowhere, so
        // those set before a missing claim do no harm.)
        let result = result.and_then(|claims| {
            for (claim, header) in &cfg.forward_claims {
                let value = claims
                    .get(claim)
                    .and_then(|v| HeaderValue::from_str(&v).ok())
                    .ok_or_else(|| JwtError::MissingClaim(claim.clone()))?;
                if let Ok(h) = HeaderName::from_bytes(header.as_bytes()) {
                    ctx.headers.insert(h, value);
                }
            }
            Ok(claims)
        });
        match result {
            Ok(claims) => Ok(claims),
            Err(e) => {
                p.auth_failed("jwt", name, e.reason());
                let mut r = refuse(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized: a valid bearer token is required",
                );
                if let Ok(v) =
                    HeaderValue::from_str(&e.www_authenticate(&self.0.distribution_domain))
                {
                    r.response
                        .headers_mut()
                        .insert(http::header::WWW_AUTHENTICATE, v);
                }
                Err(Box::new(r))
            }
        }
    }

    /// The behavior's trusted key groups: a CloudFront signed URL or signed cookies made
    /// with a key of one of them; else 403, as CloudFront.
    fn check_signature(
        &self,
        p: &Protect,
        ctx: &mut RequestContext<'_>,
        now: SystemTime,
    ) -> Option<Served> {
        let scheme = if ctx.peer.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}{}", ctx.host, ctx.path);
        let cookies: Vec<&str> = ctx
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let req = SignedRequest {
            url: &url,
            query: ctx.query.as_deref(),
            cookie_headers: &cookies,
            viewer_ip: ctx.peer.addr.ip(),
        };
        let mut last = None;
        for g in &ctx.behavior.trusted_key_groups {
            let Some(keys) = p.key_groups.get(g) else {
                continue;
            };
            match signed_url::verify(&req, keys, now) {
                Ok(_) => {
                    ctx.query = ctx
                        .query
                        .as_deref()
                        .and_then(signed_url::strip_signing_params);
                    return None;
                }
                Err(e) => last = Some((g.as_str(), e)),
            }
        }
        // No group could be asked (configs name only defined groups): refuse, never admit.
        let Some((group, e)) = last else {
            return Some(refuse(StatusCode::FORBIDDEN, "Access denied"));
        };
        p.auth_failed("signed_url", group, e.reason());
        let message = match e.reason() {
            "missing" => "Missing Key-Pair-Id query parameter or cookie value",
            "expired" => "Access denied: the signed URL or cookie has expired",
            _ => "Access denied",
        };
        Some(refuse(StatusCode::FORBIDDEN, message))
    }
}

/// The rate-based rules that apply to this request (scope, and keyed on claims or not),
/// checked in order; the 429 of the first that refuses.
fn rate_limit(
    p: &Protect,
    ctx: &RequestContext<'_>,
    claims: Option<&Claims>,
    now: SystemTime,
    on_claims: bool,
) -> Option<Served> {
    for r in &p.rate_rules {
        if r.cfg.keys_on_claims() != on_claims
            || !path_matches(&r.cfg.path_pattern, &ctx.path)
            || (!r.cfg.methods.is_empty()
                && !r.cfg.methods.iter().any(|m| m == ctx.method.as_str()))
        {
            continue;
        }
        // A request without every part of the key is not counted, as AWS WAF.
        let Some(key) = rate_key(r, ctx, claims) else {
            continue;
        };
        if r.cfg.action == RuleAction::Count {
            let d = r.counter.count_only(&key, now);
            if !d.admitted {
                r.counted.inc();
            }
            continue;
        }
        let d = r.counter.check(&key, now);
        if d.admitted {
            r.admitted.inc();
            continue;
        }
        r.blocked.inc();
        let mut s = refuse(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        for (name, value) in meridian_protect::rate::rate_limit_headers(&d, r.cfg.window) {
            s.response.headers_mut().insert(name, value);
        }
        return Some(s);
    }
    None
}

/// The rule's key for this request: its parts joined, or None when one is missing.
fn rate_key(r: &RateRule, ctx: &RequestContext<'_>, claims: Option<&Claims>) -> Option<String> {
    let mut key = String::with_capacity(48);
    for (i, part) in r.cfg.key.iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        match part {
            RateKey::Ip => {
                use std::fmt::Write;
                let _ = write!(key, "{}", ctx.peer.addr.ip());
            }
            RateKey::ForwardedIp(h) => {
                // A missing or unreadable header counts as the connection's address (AWS
                // WAF's fallback), so leaving it out is no way around the limit.
                use std::fmt::Write;
                let ip = forwarded_ip(&ctx.headers, h).unwrap_or(ctx.peer.addr.ip());
                let _ = write!(key, "{ip}");
            }
            RateKey::Header(h) => key.push_str(ctx.headers.get(h.as_str())?.to_str().ok()?),
            RateKey::Cookie(c) => key.push_str(cookie_values(&ctx.headers, c).next()?),
            RateKey::QueryArgument(q) => {
                key.push_str(&query_values(ctx.query.as_deref(), q).next()?)
            }
            RateKey::JwtClaim(c) => key.push_str(&claims?.get(c)?),
        }
    }
    Some(key)
}

/// A refusal answered at the edge, never cached.
fn refuse(status: StatusCode, body: &str) -> Served {
    let mut r: Response<Body> = meridian_http::text(status, body.to_owned());
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Served::at_edge(r, Outcome::Blocked)
}
