//! A short smoke run of what `fuzz/fuzz_targets/cache_headers.rs` does at length: cache
//! headers assembled from hostile pieces never make parsing, ages, lifetimes, usability or
//! ranges panic.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use meridian_cache::*;
use std::time::{Duration, SystemTime};

#[test]
fn hostile_cache_headers_never_panic() {
    let names = [
        "cache-control",
        "age",
        "date",
        "expires",
        "last-modified",
        "range",
    ];
    let pieces = [
        "max-age=",
        "s-maxage=",
        "stale-while-revalidate=",
        "stale-if-error=",
        "no-cache",
        "private=\"set-cookie\"",
        "18446744073709551616",
        "99999999999999999999999999",
        "4294967296",
        "-1",
        "0",
        ",",
        "\"",
        "bytes=",
        "-",
        "=",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let now = SystemTime::now();
    let ttl = TtlPolicy {
        min: Duration::ZERO,
        default: Duration::from_secs(60),
        max: Duration::from_secs(31_536_000),
    };
    for _ in 0..20_000 {
        let mut h = HeaderMap::new();
        for _ in 0..next(6) {
            let value: String = (0..1 + next(4))
                .map(|_| pieces[next(pieces.len())])
                .collect();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(HeaderName::from_static(names[next(names.len())]), v);
            }
        }
        let cc = CacheControl::from_headers(&h);
        let age = initial_age(&h, now, now + Duration::from_millis(next(5000) as u64));
        assert!(
            age <= Duration::from_secs(1 << 31),
            "Age is clamped: {age:?}"
        );
        let _ = freshness_lifetime(200, &h, now);
        let lifetime = edge_ttl(&h, ttl, now).unwrap_or_default();
        let stored = Stored::new(200, h.clone(), age, now, lifetime);
        let later = now + Duration::from_secs(next(u32::MAX as usize) as u64);
        let _ = stored.usability(&cc, later, Duration::from_secs(3600));
        let _ = current_age(&stored, later);
        let spec = h.get("range").and_then(|v| v.to_str().ok());
        let _ = byte_range(spec, next(1 << 20) as u64);
        let _ = storable(&http::Method::GET, &h, 200, &h);
    }
}
