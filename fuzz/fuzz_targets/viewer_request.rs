//! Any bytes as a viewer's Host and path, then into the cache key: canonical forms must
//! never panic, and an accepted path must be its own normal form.
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run viewer_request -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The default distribution's cache policy, read once (not per input).
fn policy() -> &'static meridian_config::CachePolicy {
    static POLICY: OnceLock<meridian_config::CachePolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        meridian_config::Config::embedded_default().distribution.cache_policies[0].clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, path) = text.split_once('\n').unwrap_or(("edge.test", text));
    let host = meridian_edge::viewer::canonical_host(host);
    let path = format!("/{path}");
    if let Ok(p) = meridian_edge::viewer::normalize_path(&path) {
        assert_eq!(
            meridian_edge::viewer::normalize_path(&p).as_deref(),
            Ok(p.as_str())
        );
        let _ = meridian_edge::key::cache_key(
            policy(),
            host.as_deref().unwrap_or("-"),
            &p,
            Some(text),
            &http::HeaderMap::new(),
        );
    }
});
