//! Storability (RFC 9111 §3), freshness lifetime (§4.2.1), age (§4.2.3), and whether a
//! stored response may be served (§4.2, RFC 5861), with CloudFront's TTL clamp.

use crate::directives::CacheControl;
use crate::directives::{delta_seconds, MAX_DELTA_SECONDS};
use http::header::{HeaderMap, AGE, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED};
use http::Method;
use std::time::{Duration, SystemTime};

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only GET and HEAD responses are stored.
    Method,
    /// Interim (1xx), 304, and partial (206) responses are not stored whole.
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: for the user's own cache only.
    Private,
    /// The request carried Authorization and the response did not allow sharing it.
    Authorization,
    /// Nothing says how long it stays fresh and its status is not heuristically cacheable.
    NoFreshness,
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// Whether a shared cache may store this response (RFC 9111 §3 and §3.5).
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: u16,
    res_headers: &HeaderMap,
) -> Result<(), NotStorable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotStorable::Method);
    }
    if !(200..600).contains(&status) || status == 304 || status == 206 {
        return Err(NotStorable::Status);
    }
    let req = CacheControl::from_headers(req_headers);
    let res = CacheControl::from_headers(res_headers);
    if req.no_store || res.no_store {
        return Err(NotStorable::NoStore);
    }
    if res.private {
        return Err(NotStorable::Private);
    }
    if req_headers.contains_key(AUTHORIZATION)
        && !(res.must_revalidate || res.public || res.s_maxage.is_some())
    {
        return Err(NotStorable::Authorization);
    }
    let explicit = res.public
        || res.max_age.is_some()
        || res.max_age_invalid
        || res.s_maxage.is_some()
        || res_headers.contains_key(EXPIRES);
    if explicit || heuristically_cacheable(status) {
        Ok(())
    } else {
        Err(NotStorable::NoFreshness)
    }
}

/// The freshness lifetime a shared cache computes (§4.2.1), or None when the response
/// says nothing and no heuristic applies. A heuristic lifetime is a tenth of the time
/// since Last-Modified, capped at a day. `received_at` stands in for a missing Date, as
/// a recipient's own receipt time does (RFC 9110 §6.6.1); passed in so the caller's clock
/// decides, not the system's.
pub fn freshness_lifetime(
    status: u16,
    headers: &HeaderMap,
    received_at: SystemTime,
) -> Option<Duration> {
    let cc = CacheControl::from_headers(headers);
    if let Some(s) = cc.s_maxage {
        return Some(s);
    }
    if cc.max_age_invalid && cc.max_age.is_none() {
        return Some(Duration::ZERO);
    }
    if let Some(m) = cc.max_age {
        return Some(m);
    }
    if let Some(raw) = headers.get(EXPIRES) {
        // An invalid Expires (such as "0") means already expired (§5.3).
        let Some(expires) = raw
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return Some(Duration::ZERO);
        };
        let base = date(headers, DATE).unwrap_or(received_at);
        return Some(expires.duration_since(base).unwrap_or(Duration::ZERO));
    }
    if heuristically_cacheable(status) || cc.public {
        let last = date(headers, LAST_MODIFIED)?;
        let base = date(headers, DATE).unwrap_or(received_at);
        let since = base.duration_since(last).ok()?;
        return Some((since / 10).min(Duration::from_secs(86_400)));
    }
    None
}

/// CloudFront's time-to-live settings of a cache policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min: Duration,
    pub default: Duration,
    pub max: Duration,
}

/// How long the edge keeps a response, as CloudFront documents it: the origin's
/// s-maxage, max-age or Expires clamped to [min, max]; the default TTL when the origin
/// says nothing; and for `no-cache`, `no-store` or `private`, nothing unless the minimum
/// TTL is above zero, in which case the minimum. None means: do not cache. `received_at`
/// as in [`freshness_lifetime`].
pub fn edge_ttl(headers: &HeaderMap, ttl: TtlPolicy, received_at: SystemTime) -> Option<Duration> {
    let cc = CacheControl::from_headers(headers);
    if cc.no_cache || cc.no_store || cc.private {
        return (ttl.min > Duration::ZERO).then_some(ttl.min);
    }
    let explicit = cc.s_maxage.is_some()
        || cc.max_age.is_some()
        || cc.max_age_invalid
        || headers.contains_key(EXPIRES);
    let base = if explicit {
        // Status 200 here: explicit freshness never depends on the status.
        freshness_lifetime(200, headers, received_at).unwrap_or(Duration::ZERO)
    } else {
        ttl.default
    };
    let t = base.clamp(ttl.min, ttl.max.max(ttl.min));
    (t > Duration::ZERO || ttl.min > Duration::ZERO).then_some(t)
}

/// The age of a response when it was received (§4.2.3), from its Date and Age headers
/// and the times the request left and the response arrived.
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delta_seconds(v.trim()))
        .unwrap_or(Duration::ZERO);
    let apparent = date(headers, DATE)
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value.saturating_add(delay)).min(MAX_AGE)
}

/// The oldest age the edge reports or reasons with (RFC 9111 §1.2.2).
const MAX_AGE: Duration = Duration::from_secs(MAX_DELTA_SECONDS);

/// What the edge remembers about a stored response besides its body.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub headers: HeaderMap,
    /// Age when it arrived (§4.2.3 corrected_initial_age).
    pub initial_age: Duration,
    pub response_time: SystemTime,
    /// How long it is fresh for (the edge TTL).
    pub ttl: Duration,
    /// `headers`' Cache-Control, parsed once when stored rather than on every hit.
    pub cache_control: CacheControl,
}

/// `current_age` of §4.2.3.
pub fn current_age(s: &Stored, now: SystemTime) -> Duration {
    let resident = now
        .duration_since(s.response_time)
        .unwrap_or(Duration::ZERO);
    s.initial_age.saturating_add(resident).min(MAX_AGE)
}

/// Whether a stored response may answer a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Fresh: serve it.
    Fresh { age: Duration },
    /// Stale, but within stale-while-revalidate: serve it and refresh in the background.
    StaleWhileRevalidate { age: Duration },
    /// Stale: revalidate first. `serve_on_error` says whether it may still be served if
    /// the origin fails (stale-if-error, within the edge's ceiling).
    Stale { age: Duration, serve_on_error: bool },
}

impl Stored {
    pub fn new(
        status: u16,
        headers: HeaderMap,
        initial_age: Duration,
        response_time: SystemTime,
        ttl: Duration,
    ) -> Stored {
        Stored {
            cache_control: CacheControl::from_headers(&headers),
            status,
            headers,
            initial_age,
            response_time,
            ttl,
        }
    }

    /// Decides how this stored response may be used for a request with `req_cc`.
    /// `stale_if_error_ceiling` bounds how long past freshness the edge serves stale on
    /// origin errors when the response itself sets no stale-if-error.
    pub fn usability(
        &self,
        req_cc: &CacheControl,
        now: SystemTime,
        stale_if_error_ceiling: Duration,
    ) -> Usability {
        let age = current_age(self, now);
        let cc = &self.cache_control;
        let must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some();
        let mut lifetime = self.ttl;
        if let Some(min_fresh) = req_cc.min_fresh {
            lifetime = lifetime.saturating_sub(min_fresh);
        }
        if let Some(max_age) = req_cc.max_age {
            lifetime = lifetime.min(max_age);
        }
        if age < lifetime && !req_cc.no_cache {
            return Usability::Fresh { age };
        }
        let staleness = age.saturating_sub(self.ttl);
        // §4.2.4: must-revalidate (and s-maxage, for shared caches) forbid serving stale.
        if must_revalidate {
            return Usability::Stale {
                age,
                serve_on_error: false,
            };
        }
        if let Some(Some(max_stale)) = req_cc.max_stale {
            if staleness <= max_stale && !req_cc.no_cache {
                return Usability::Fresh { age };
            }
        }
        if let Some(swr) = cc.stale_while_revalidate {
            if staleness < swr && !req_cc.no_cache {
                return Usability::StaleWhileRevalidate { age };
            }
        }
        let window = cc
            .stale_if_error
            .unwrap_or(stale_if_error_ceiling)
            .min(stale_if_error_ceiling);
        Usability::Stale {
            age,
            serve_on_error: staleness < window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    use crate::test_support::headers as h;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A receipt time for responses whose Date does not matter to the test.
    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn storability_rules() {
        let get = Method::GET;
        let none = HeaderMap::new();
        assert_eq!(
            storable(&get, &none, 200, &h(&[("cache-control", "max-age=5")])),
            Ok(())
        );
        assert_eq!(
            storable(
                &Method::POST,
                &none,
                200,
                &h(&[("cache-control", "max-age=5")])
            ),
            Err(NotStorable::Method)
        );
        assert_eq!(
            storable(&get, &none, 200, &h(&[("cache-control", "no-store")])),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable(&get, &h(&[("cache-control", "no-store")]), 200, &none),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                200,
                &h(&[("cache-control", "private, max-age=60")])
            ),
            Err(NotStorable::Private)
        );
        let auth = h(&[("authorization", "Bearer x")]);
        assert_eq!(
            storable(&get, &auth, 200, &h(&[("cache-control", "max-age=60")])),
            Err(NotStorable::Authorization)
        );
        assert_eq!(
            storable(
                &get,
                &auth,
                200,
                &h(&[("cache-control", "public, max-age=60")])
            ),
            Ok(())
        );
        assert_eq!(
            storable(&get, &auth, 200, &h(&[("cache-control", "s-maxage=60")])),
            Ok(())
        );
        assert_eq!(
            storable(&get, &none, 302, &none),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            storable(&get, &none, 404, &none),
            Ok(()),
            "404 is heuristically cacheable"
        );
        assert_eq!(storable(&get, &none, 304, &none), Err(NotStorable::Status));
        assert_eq!(
            storable(&get, &none, 206, &h(&[("cache-control", "max-age=5")])),
            Err(NotStorable::Status)
        );
    }

    #[test]
    fn freshness_lifetime_order_s_maxage_max_age_expires_heuristic() {
        let both = h(&[("cache-control", "max-age=10, s-maxage=20")]);
        assert_eq!(freshness_lifetime(200, &both, T0), Some(secs(20)));
        let d = "Tue, 24 Nov 2026 10:00:00 GMT";
        let exp = h(&[("date", d), ("expires", "Tue, 24 Nov 2026 10:05:00 GMT")]);
        assert_eq!(freshness_lifetime(200, &exp, T0), Some(secs(300)));
        let exp_and_max = h(&[
            ("date", d),
            ("expires", "Tue, 24 Nov 2026 10:05:00 GMT"),
            ("cache-control", "max-age=7"),
        ]);
        assert_eq!(freshness_lifetime(200, &exp_and_max, T0), Some(secs(7)));
        assert_eq!(
            freshness_lifetime(200, &h(&[("expires", "0")]), T0),
            Some(Duration::ZERO),
            "invalid Expires is expired"
        );
        let heur = h(&[
            ("date", d),
            ("last-modified", "Tue, 24 Nov 2026 09:00:00 GMT"),
        ]);
        assert_eq!(freshness_lifetime(200, &heur, T0), Some(secs(360)));
        assert_eq!(
            freshness_lifetime(302, &heur, T0),
            None,
            "302 gets no heuristic"
        );
        assert_eq!(freshness_lifetime(200, &HeaderMap::new(), T0), None);
    }

    #[test]
    fn without_a_date_lifetimes_count_from_the_receipt_time_given() {
        let received = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        let exp = h(&[("expires", "Tue, 24 Nov 2026 10:05:00 GMT")]);
        assert_eq!(freshness_lifetime(200, &exp, received), Some(secs(300)));
        assert_eq!(
            freshness_lifetime(200, &exp, received + secs(60)),
            Some(secs(240))
        );
        let heur = h(&[("last-modified", "Tue, 24 Nov 2026 09:00:00 GMT")]);
        assert_eq!(freshness_lifetime(200, &heur, received), Some(secs(360)));
        let p = TtlPolicy {
            min: secs(0),
            default: secs(300),
            max: secs(3600),
        };
        assert_eq!(edge_ttl(&exp, p, received + secs(100)), Some(secs(200)));
    }

    #[test]
    fn cloudfront_ttls_clamp_origin_values() {
        let p = TtlPolicy {
            min: secs(0),
            default: secs(300),
            max: secs(3600),
        };
        assert_eq!(
            edge_ttl(&h(&[("cache-control", "max-age=5")]), p, T0),
            Some(secs(5))
        );
        assert_eq!(
            edge_ttl(&h(&[("cache-control", "max-age=86400")]), p, T0),
            Some(secs(3600)),
            "capped by max"
        );
        assert_eq!(
            edge_ttl(&HeaderMap::new(), p, T0),
            Some(secs(300)),
            "default when the origin says nothing"
        );
        assert_eq!(edge_ttl(&h(&[("cache-control", "no-cache")]), p, T0), None);
        assert_eq!(edge_ttl(&h(&[("cache-control", "private")]), p, T0), None);
        let floor = TtlPolicy {
            min: secs(30),
            default: secs(300),
            max: secs(3600),
        };
        assert_eq!(
            edge_ttl(&h(&[("cache-control", "max-age=5")]), floor, T0),
            Some(secs(30)),
            "raised to min"
        );
        assert_eq!(
            edge_ttl(&h(&[("cache-control", "no-store")]), floor, T0),
            Some(secs(30)),
            "min > 0 caches even no-store"
        );
        let zero = TtlPolicy {
            min: secs(0),
            default: secs(0),
            max: secs(0),
        };
        assert_eq!(edge_ttl(&HeaderMap::new(), zero, T0), None);
    }

    #[test]
    fn age_uses_date_age_header_and_delay() {
        let t0 = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        let sent = t0;
        let got = t0 + secs(2);
        let hd = h(&[("date", "Tue, 24 Nov 2026 09:59:50 GMT"), ("age", "3")]);
        // apparent 12 s beats age 3 + delay 2.
        assert_eq!(initial_age(&hd, sent, got), secs(12));
        let hd = h(&[("date", "Tue, 24 Nov 2026 10:00:02 GMT"), ("age", "30")]);
        assert_eq!(initial_age(&hd, sent, got), secs(32));
        let s = Stored::new(200, HeaderMap::new(), secs(32), got, secs(60));
        assert_eq!(current_age(&s, got + secs(10)), secs(42));
    }

    #[test]
    fn a_huge_age_is_clamped_not_a_panic() {
        let t0 = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        let max = secs(MAX_DELTA_SECONDS);
        for age in [
            "18446744073709551615",
            "99999999999999999999999",
            "4294967296",
        ] {
            let hd = h(&[("age", age)]);
            assert_eq!(initial_age(&hd, t0, t0 + secs(5)), max, "Age: {age}");
        }
        // A stored response at the ceiling stays there as it sits in the cache.
        let s = Stored::new(200, HeaderMap::new(), max, t0, secs(60));
        assert_eq!(current_age(&s, t0 + secs(3600)), max);
        assert!(matches!(
            s.usability(&CacheControl::default(), t0 + secs(1), secs(60)),
            Usability::Stale { .. }
        ));
        // Not a number: ignored, as if absent.
        assert_eq!(initial_age(&h(&[("age", "-5")]), t0, t0 + secs(2)), secs(2));
    }

    fn stored(cc: &str, ttl: u64) -> (Stored, SystemTime) {
        let t = SystemTime::UNIX_EPOCH + secs(1_000_000);
        (
            Stored::new(
                200,
                h(&[("cache-control", cc)]),
                Duration::ZERO,
                t,
                secs(ttl),
            ),
            t,
        )
    }

    #[test]
    fn fresh_stale_while_revalidate_and_stale_if_error() {
        let none = CacheControl::default();
        let ceiling = secs(600);
        let (s, t) = stored(
            "max-age=10, stale-while-revalidate=30, stale-if-error=100",
            10,
        );
        assert_eq!(
            s.usability(&none, t + secs(5), ceiling),
            Usability::Fresh { age: secs(5) }
        );
        assert_eq!(
            s.usability(&none, t + secs(20), ceiling),
            Usability::StaleWhileRevalidate { age: secs(20) }
        );
        assert_eq!(
            s.usability(&none, t + secs(50), ceiling),
            Usability::Stale {
                age: secs(50),
                serve_on_error: true
            }
        );
        assert_eq!(
            s.usability(&none, t + secs(200), ceiling),
            Usability::Stale {
                age: secs(200),
                serve_on_error: false
            }
        );
        // The edge's ceiling bounds stale-if-error.
        assert_eq!(
            s.usability(&none, t + secs(50), secs(20)),
            Usability::Stale {
                age: secs(50),
                serve_on_error: false
            }
        );
    }

    #[test]
    fn must_revalidate_forbids_stale() {
        let none = CacheControl::default();
        let (s, t) = stored("max-age=10, must-revalidate, stale-while-revalidate=30", 10);
        assert_eq!(
            s.usability(&none, t + secs(15), secs(600)),
            Usability::Stale {
                age: secs(15),
                serve_on_error: false
            }
        );
        let (s, t) = stored("s-maxage=10", 10);
        assert_eq!(
            s.usability(&none, t + secs(15), secs(600)),
            Usability::Stale {
                age: secs(15),
                serve_on_error: false
            }
        );
    }

    #[test]
    fn request_directives_narrow_or_widen_freshness() {
        let (s, t) = stored("max-age=60", 60);
        let mut req = CacheControl {
            max_age: Some(secs(5)),
            ..Default::default()
        };
        assert!(matches!(
            s.usability(&req, t + secs(10), secs(0)),
            Usability::Stale { .. }
        ));
        req = CacheControl {
            no_cache: true,
            ..Default::default()
        };
        assert!(matches!(
            s.usability(&req, t + secs(1), secs(0)),
            Usability::Stale { .. }
        ));
        req = CacheControl {
            max_stale: Some(Some(secs(30))),
            ..Default::default()
        };
        assert!(matches!(
            s.usability(&req, t + secs(80), secs(0)),
            Usability::Fresh { .. }
        ));
        req = CacheControl {
            min_fresh: Some(secs(55)),
            ..Default::default()
        };
        assert!(matches!(
            s.usability(&req, t + secs(10), secs(0)),
            Usability::Stale { .. }
        ));
    }
}
