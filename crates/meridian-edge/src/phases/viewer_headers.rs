//! The viewer headers CloudFront adds so functions and origins can personalise: where the
//! viewer is (`cloudfront-viewer-address`, `-country`, `-city`), what it is
//! (`cloudfront-is-mobile-viewer`, `-tablet-`, `-desktop-`) and how it came
//! (`cloudfront-forwarded-proto`). As at CloudFront, a behavior gets the ones its cache
//! policy or origin request policy names, and functions see exactly those. A viewer can
//! never send them itself: what it sends under these names is removed first, so nothing
//! downstream trusts a forged country.

use super::context::RequestContext;
use crate::edge::Edge;
use http::header::{HeaderName, HeaderValue};
use meridian_config::{Behavior, Distribution, KeyFilter};

const ADDRESS: usize = 0;
const COUNTRY: usize = 1;
const CITY: usize = 2;
const MOBILE: usize = 3;
const TABLET: usize = 4;
const DESKTOP: usize = 5;
const PROTO: usize = 6;

const ADDED: [&str; 7] = [
    "cloudfront-viewer-address",
    "cloudfront-viewer-country",
    "cloudfront-viewer-city",
    "cloudfront-is-mobile-viewer",
    "cloudfront-is-tablet-viewer",
    "cloudfront-is-desktop-viewer",
    "cloudfront-forwarded-proto",
];

/// Which of [`ADDED`] a behavior gets, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted(u8);

impl Wanted {
    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// The headers a behavior's policies name: its cache policy's key headers and its origin
/// request policy's headers (its allow list, or the CloudFront headers it adds to all
/// viewer headers). As at CloudFront, "all viewer headers" alone does not include these.
pub(crate) fn wanted(b: &Behavior, dist: &Distribution) -> Wanted {
    let mut bits = 0u8;
    let mut name = |n: &str| {
        if let Some(i) = ADDED.iter().position(|a| a.eq_ignore_ascii_case(n)) {
            bits |= 1 << i;
        }
    };
    if let Some(p) = dist.cache_policy(&b.cache_policy) {
        p.headers.iter().for_each(|h| name(h));
    }
    let policy = b.origin_request_policy.as_deref();
    if let Some(p) = policy.and_then(|p| dist.origin_request_policy(p)) {
        if let KeyFilter::AllowList(l) = &p.headers {
            l.iter().for_each(|h| name(h));
        }
        p.cloudfront_headers.iter().for_each(|h| name(h));
    }
    Wanted(bits)
}

impl Edge {
    /// Removes viewer-sent `cloudfront-*` headers of the kinds the edge adds, then adds the
    /// ones the behavior wants.
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
        let want = wanted(ctx.behavior, &self.0.dist);
        if want.0 == 0 {
            return;
        }
        let ip = ctx.peer.addr.ip();
        let (mobile, tablet) = if want.has(MOBILE) || want.has(TABLET) || want.has(DESKTOP) {
            device(
                ctx.headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        } else {
            (false, false)
        };
        // Static values where they can be: no allocation for the flags and the protocol.
        let mut put = |i: usize, v: HeaderValue| {
            if want.has(i) {
                ctx.headers.insert(HeaderName::from_static(ADDED[i]), v);
            }
        };
        let text = |value: &str| HeaderValue::from_str(value).ok();
        if want.has(ADDRESS) {
            if let Some(v) = text(&ctx.peer.addr.to_string()) {
                put(ADDRESS, v);
            }
        }
        put(
            PROTO,
            HeaderValue::from_static(if ctx.peer.tls.is_some() {
                "https"
            } else {
                "http"
            }),
        );
        if want.has(CITY) || want.has(COUNTRY) {
            if let Some((city, country)) = self.0.viewer_places.of(ip) {
                if let Some(v) = text(city) {
                    put(CITY, v);
                }
                if let Some(v) = country.and_then(text) {
                    put(COUNTRY, v);
                }
            }
        }
        let flag = |b: bool| HeaderValue::from_static(if b { "true" } else { "false" });
        put(MOBILE, flag(mobile));
        put(TABLET, flag(tablet));
        put(DESKTOP, flag(!mobile && !tablet));
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
