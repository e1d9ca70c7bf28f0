//! The viewer headers CloudFront adds so functions and origins can personalise: where the
//! viewer is (`cloudfront-viewer-address`, `-country`, `-city`), what it is
//! (`cloudfront-is-mobile-viewer`, `-tablet-`, `-desktop-`) and how it came
//! (`cloudfront-forwarded-proto`). A viewer can never send them itself: what it sends under
//! these names is removed first, so nothing downstream trusts a forged country.

use super::context::RequestContext;
use crate::edge::Edge;
use http::header::{HeaderName, HeaderValue};
use meridian_config::{Behavior, KeyFilter};

const ADDED: [&str; 7] = [
    "cloudfront-viewer-address",
    "cloudfront-viewer-country",
    "cloudfront-viewer-city",
    "cloudfront-is-mobile-viewer",
    "cloudfront-is-tablet-viewer",
    "cloudfront-is-desktop-viewer",
    "cloudfront-forwarded-proto",
];

/// Whether a behavior's functions or origin request policy use the headers: only then are
/// they worked out, so the hit path of other behaviors pays nothing.
pub(crate) fn wanted(b: &Behavior, dist: &meridian_config::Distribution) -> bool {
    if !b.function_associations.is_empty() {
        return true;
    }
    let named = |f: &KeyFilter| matches!(f, KeyFilter::AllowList(l) if l.iter().any(|h| h.to_ascii_lowercase().starts_with("cloudfront-")));
    b.origin_request_policy
        .as_deref()
        .and_then(|p| dist.origin_request_policy(p))
        .is_some_and(|p| named(&p.headers))
}

impl Edge {
    /// Removes viewer-sent `cloudfront-*` headers of the kinds the edge adds, then adds them
    /// when the behavior wants them.
    pub(super) fn viewer_headers(&self, ctx: &mut RequestContext<'_>) {
        // One pass over the names the viewer sent (a handful) instead of seven lookups on
        // every request: this runs on the hit path of every behavior.
        let forged = ctx
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("cloudfront-"));
        if forged {
            for h in ADDED {
                ctx.headers.remove(h);
            }
        }
        if !wanted(ctx.behavior, &self.0.dist) {
            return;
        }
        let ip = ctx.peer.addr.ip();
        let (mobile, tablet) = device(
            ctx.headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        // Static values where they can be: no allocation for the flags and the protocol.
        let mut put = |name: &'static str, v: HeaderValue| {
            ctx.headers.insert(HeaderName::from_static(name), v);
        };
        let text = |value: &str| HeaderValue::from_str(value).ok();
        if let Some(v) = text(&ctx.peer.addr.to_string()) {
            put("cloudfront-viewer-address", v);
        }
        put(
            "cloudfront-forwarded-proto",
            HeaderValue::from_static(if ctx.peer.tls.is_some() {
                "https"
            } else {
                "http"
            }),
        );
        if let Some((city, country)) = self.0.viewer_places.of(ip) {
            if let Some(v) = text(city) {
                put("cloudfront-viewer-city", v);
            }
            if let Some(v) = country.and_then(text) {
                put("cloudfront-viewer-country", v);
            }
        }
        let flag = |b: bool| HeaderValue::from_static(if b { "true" } else { "false" });
        put("cloudfront-is-mobile-viewer", flag(mobile));
        put("cloudfront-is-tablet-viewer", flag(tablet));
        put("cloudfront-is-desktop-viewer", flag(!mobile && !tablet));
    }
}

/// (mobile, tablet) from a User-Agent, the way device detection usually reads it: tablets
/// name themselves (iPad, Tablet, Android without "Mobile"), phones say Mobi, iPhone or
/// Android Mobile.
fn device(ua: &str) -> (bool, bool) {
    let tablet = ua.contains("iPad")
        || ua.contains("Tablet")
        || (ua.contains("Android") && !ua.contains("Mobile"));
    let mobile = !tablet && (ua.contains("Mobi") || ua.contains("iPhone"));
    (mobile, tablet)
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_from_user_agents() {
        use super::device;
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let ipad =
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let android_phone =
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120 Mobile Safari/537.36";
        let android_tablet = "Mozilla/5.0 (Linux; Android 14; SM-X710) Chrome/120 Safari/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
        assert_eq!(device(iphone), (true, false));
        assert_eq!(device(ipad), (false, true));
        assert_eq!(device(android_phone), (true, false));
        assert_eq!(device(android_tablet), (false, true));
        assert_eq!(device(desktop), (false, false));
        assert_eq!(device(""), (false, false));
    }
}
