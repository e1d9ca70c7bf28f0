//! Any bytes as a response's and a request's cache headers: parsing them, ages, lifetimes
//! and ranges must never panic (an origin's Age once overflowed a Duration).
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run cache_headers -- -max_total_time=60
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

const NAMES: [&str; 8] = [
    "cache-control",
    "age",
    "date",
    "expires",
    "last-modified",
    "vary",
    "etag",
    "range",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (i, chunk) in data.split(|b| *b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(chunk) {
            headers.append(HeaderName::from_static(NAMES[i % NAMES.len()]), v);
        }
    }
    let now = SystemTime::now();
    let _ = meridian_cache::CacheControl::from_headers(&headers);
    let age = meridian_cache::initial_age(&headers, now, now + Duration::from_millis(5));
    let _ = meridian_cache::freshness_lifetime(200, &headers);
    let ttl = meridian_cache::TtlPolicy {
        min: Duration::ZERO,
        default: Duration::from_secs(60),
        max: Duration::from_secs(86_400),
    };
    let lifetime = meridian_cache::edge_ttl(&headers, ttl).unwrap_or_default();
    let stored = meridian_cache::Stored::new(200, headers.clone(), age, now, lifetime);
    let _ = stored.usability(
        &meridian_cache::CacheControl::from_headers(&headers),
        now + Duration::from_secs(u64::from(u32::MAX)),
        Duration::from_secs(3600),
    );
    let spec = headers.get("range").and_then(|v| v.to_str().ok());
    let _ = meridian_cache::byte_range(spec, 1 << 20);
    let _ = meridian_cache::storable(&http::Method::GET, &headers, 200, &headers);
});
