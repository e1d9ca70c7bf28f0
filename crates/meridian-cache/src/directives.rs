//! Cache-Control (RFC 9111 §5.2), parsed once into typed directives.

use http::header::{HeaderMap, CACHE_CONTROL};
use std::time::Duration;

/// The directives of one message's Cache-Control fields. Unknown directives are ignored,
/// as §5.2.3 requires; a malformed delta-seconds makes its directive count as absent,
/// except that a malformed max-age is treated as stale (§4.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age: Option<Duration>,
    /// A max-age whose value was not a number: the response is stale at once.
    pub max_age_invalid: bool,
    pub s_maxage: Option<Duration>,
    pub no_cache: bool,
    pub no_store: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub no_transform: bool,
    pub immutable: bool,
    /// RFC 5861: serve stale while revalidating in the background for this long.
    pub stale_while_revalidate: Option<Duration>,
    /// RFC 5861: serve stale when the origin fails, for this long.
    pub stale_if_error: Option<Duration>,
    // Request directives.
    /// `max-stale` without a value accepts any staleness.
    pub max_stale: Option<Option<Duration>>,
    pub min_fresh: Option<Duration>,
    pub only_if_cached: bool,
}

/// The largest delta-seconds a cache needs to represent (RFC 9111 §1.2.2): any larger
/// value, however many digits it has, means this. Clamping here keeps every later sum of
/// ages and lifetimes far from overflowing.
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A delta-seconds value (digits only), clamped to [`MAX_DELTA_SECONDS`]; None when it is
/// not one.
pub fn delta_seconds(v: &str) -> Option<Duration> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_DELTA_SECONDS);
    Some(Duration::from_secs(secs))
}

fn seconds(v: Option<&str>) -> Option<Duration> {
    delta_seconds(v?.trim_matches('"'))
}

impl CacheControl {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for part in split_directives(text) {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim())),
                    None => (part.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => match seconds(arg) {
                        Some(s) if cc.max_age.is_none() => cc.max_age = Some(s),
                        Some(_) => {}
                        None => cc.max_age_invalid = true,
                    },
                    "s-maxage" => cc.s_maxage = cc.s_maxage.or(seconds(arg)),
                    // Field-name forms (`no-cache="Set-Cookie"`) are treated as plain
                    // no-cache: stricter, and allowed by §5.2.2.4.
                    "no-cache" => cc.no_cache = true,
                    "no-store" => cc.no_store = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "must-understand" => cc.must_understand = true,
                    "no-transform" => cc.no_transform = true,
                    "immutable" => cc.immutable = true,
                    "stale-while-revalidate" => cc.stale_while_revalidate = seconds(arg),
                    "stale-if-error" => cc.stale_if_error = seconds(arg),
                    "max-stale" => cc.max_stale = Some(seconds(arg)),
                    "min-fresh" => cc.min_fresh = seconds(arg),
                    "only-if-cached" => cc.only_if_cached = true,
                    _ => {}
                }
            }
        }
        cc
    }
}

/// Splits on commas outside quoted strings.
fn split_directives(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(values: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        CacheControl::from_headers(&h)
    }

    #[test]
    fn parses_directives_across_fields_and_quotes() {
        let c = cc(&[
            "public, max-age=60",
            "S-MAXAGE=\"120\", no-cache=\"Set-Cookie, X\"",
            "stale-while-revalidate=30",
        ]);
        assert!(c.public && c.no_cache);
        assert_eq!(c.max_age, Some(Duration::from_secs(60)));
        assert_eq!(c.s_maxage, Some(Duration::from_secs(120)));
        assert_eq!(c.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert!(!c.private);
    }

    #[test]
    fn first_max_age_wins_and_garbage_is_stale() {
        assert_eq!(
            cc(&["max-age=10, max-age=99"]).max_age,
            Some(Duration::from_secs(10))
        );
        let c = cc(&["max-age=soon"]);
        assert!(c.max_age_invalid && c.max_age.is_none());
        assert_eq!(
            cc(&["max-age=99999999999999999999"]).max_age,
            Some(Duration::from_secs(MAX_DELTA_SECONDS))
        );
    }

    #[test]
    fn request_directives() {
        let c = cc(&["max-stale, min-fresh=5, only-if-cached"]);
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(c.min_fresh, Some(Duration::from_secs(5)));
        assert!(c.only_if_cached);
        assert_eq!(
            cc(&["max-stale=20"]).max_stale,
            Some(Some(Duration::from_secs(20)))
        );
    }
}
