//! The cache key, as a CloudFront cache policy builds it: host and path always; query
//! strings, headers and cookies as the policy says, sorted so that order does not split
//! the cache; Accept-Encoding normalised to the encodings the edge serves.

use http::HeaderMap;
use meridian_config::{CachePolicy, KeyFilter};

/// Content codings the edge produces, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
    Identity,
}

impl Coding {
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
            Coding::Identity => "identity",
        }
    }
}

/// The best coding the viewer accepts (q-values honoured, `q=0` refuses), preferring
/// Brotli, then zstd, then gzip, as CloudFront prefers Brotli over gzip.
pub fn negotiate(headers: &HeaderMap) -> Coding {
    let mut best: Option<(Coding, f32)> = None;
    let mut star: Option<f32> = None;
    let mut seen = Vec::new();
    for value in headers.get_all(http::header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let coding = match name.as_str() {
                "br" => Coding::Br,
                "zstd" => Coding::Zstd,
                "gzip" | "x-gzip" => Coding::Gzip,
                "*" => {
                    star = Some(q);
                    continue;
                }
                _ => continue,
            };
            seen.push(coding);
            if q <= 0.0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((c, bq)) => q > bq || (q == bq && (coding as u8) < (c as u8)),
            };
            if better {
                best = Some((coding, q));
            }
        }
    }
    if let Some((c, _)) = best {
        return c;
    }
    // `*` stands for any coding not named.
    if star.is_some_and(|q| q > 0.0) {
        for c in [Coding::Br, Coding::Zstd, Coding::Gzip] {
            if !seen.contains(&c) {
                return c;
            }
        }
    }
    Coding::Identity
}

/// Separates the parts of a key. Neither a canonical host, a request target nor a header
/// value can hold it, so no request's parts can run into another part.
const SEP: char = '\x1f';

/// The host a cache key was made for (lower case).
pub fn host_of(key: &str) -> &str {
    key.split(SEP).next().unwrap_or("")
}

/// The primary cache key of a request under a cache policy (without the coding): the
/// canonical host and normalised path (see [`crate::viewer`]), then what the policy adds,
/// each part delimited.
pub fn cache_key(
    policy: &CachePolicy,
    host: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> String {
    let mut key = String::with_capacity(64 + path.len());
    // Copied, then lowercased in place: the key holds only the host so far.
    key.push_str(host);
    key.make_ascii_lowercase();
    key.push(SEP);
    key.push_str(path);
    if let Some(q) = query {
        let mut pairs: Vec<&str> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                // By the name the origin will read: `%76=x` is a second `v` to it, so it
                // must not stay out of a key that lists `v`.
                let name = p.split('=').next().unwrap_or("");
                match name.contains('%') {
                    true => policy
                        .query_strings
                        .admits(&meridian_http::percent::decode(name), false),
                    false => policy.query_strings.admits(name, false),
                }
            })
            .collect();
        if !pairs.is_empty() {
            pairs.sort_unstable();
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    for name in &policy.headers {
        key.push(SEP);
        key.push_str("h:");
        key.push_str(&name.to_ascii_lowercase());
        key.push('=');
        for v in headers.get_all(name.as_str()) {
            // Each field line on its own: `a, b` in one line is not two lines `a` and `b`.
            key.push('\x1e');
            key.push_str(v.to_str().unwrap_or(""));
        }
    }
    if policy.cookies != KeyFilter::None {
        let mut cookies = cookies(headers, |name| policy.cookies.admits(name, false));
        cookies.sort_unstable();
        if !cookies.is_empty() {
            key.push(SEP);
            key.push_str("c:");
            key.push_str(&cookies.join(";"));
        }
    }
    key
}

/// The `name=value` pairs of the Cookie headers whose name `keep` accepts.
pub fn cookies(headers: &HeaderMap, keep: impl Fn(&str) -> bool) -> Vec<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && keep(c.split('=').next().unwrap_or("")))
        .collect()
}

/// The key of a stored variant: the primary key plus what selects the variant.
pub fn variant_key(primary: &str, suffix: &str) -> String {
    format!("{primary}\x1e{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn policy(q: KeyFilter, headers: &[&str], cookies: KeyFilter) -> CachePolicy {
        CachePolicy {
            name: "t".into(),
            min_ttl: Duration::ZERO,
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(600),
            query_strings: q,
            headers: headers.iter().map(|s| s.to_string()).collect(),
            cookies,
            stale_if_error: Duration::ZERO,
        }
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn query_strings_by_policy_and_order_independent() {
        let none = policy(KeyFilter::None, &[], KeyFilter::None);
        let all = policy(KeyFilter::All, &[], KeyFilter::None);
        let allow = policy(
            KeyFilter::AllowList(vec!["extensions".into(), "operationName".into()]),
            &[],
            KeyFilter::None,
        );
        let except = policy(
            KeyFilter::AllExcept(vec!["utm_source".into()]),
            &[],
            KeyFilter::None,
        );
        let e = HeaderMap::new();
        assert_eq!(cache_key(&none, "H", "/a", Some("x=1"), &e), "h\x1f/a");
        assert_eq!(
            cache_key(&all, "h", "/a", Some("b=2&a=1"), &e),
            cache_key(&all, "h", "/a", Some("a=1&b=2"), &e)
        );
        assert_eq!(
            cache_key(
                &allow,
                "h",
                "/graphql",
                Some("operationName=Q&extensions=E&t=9"),
                &e
            ),
            "h\x1f/graphql?extensions=E&operationName=Q"
        );
        assert_eq!(
            cache_key(&except, "h", "/a", Some("utm_source=x&id=1"), &e),
            "h\x1f/a?id=1"
        );
        // A listed name spelled with percent escapes is the same name to the origin, so
        // it keys too: a second `operationName` cannot hide behind `%6Fperation...`.
        assert_ne!(
            cache_key(
                &allow,
                "h",
                "/graphql",
                Some("operationName=Q&%6FperationName=EVIL"),
                &e
            ),
            cache_key(&allow, "h", "/graphql", Some("operationName=Q"), &e)
        );
        assert_eq!(
            cache_key(&except, "h", "/a", Some("%75tm_source=x&id=1"), &e),
            "h\x1f/a?id=1"
        );
    }

    #[test]
    fn headers_and_cookies_in_the_key() {
        let p = policy(
            KeyFilter::None,
            &["Accept-Language"],
            KeyFilter::AllowList(vec!["session".into()]),
        );
        let a = cache_key(
            &p,
            "h",
            "/",
            None,
            &h(&[("accept-language", "en"), ("cookie", "session=1; other=2")]),
        );
        let b = cache_key(
            &p,
            "h",
            "/",
            None,
            &h(&[("accept-language", "en"), ("cookie", "other=3; session=1")]),
        );
        let c = cache_key(&p, "h", "/", None, &h(&[("accept-language", "fr")]));
        assert_eq!(a, b, "cookies outside the list do not split the cache");
        assert_ne!(a, c);
    }

    #[test]
    fn accept_encoding_negotiation() {
        let n = |v: &str| negotiate(&h(&[("accept-encoding", v)]));
        assert_eq!(n("gzip, deflate, br"), Coding::Br);
        assert_eq!(n("gzip"), Coding::Gzip);
        assert_eq!(n("gzip, zstd"), Coding::Zstd);
        assert_eq!(n("br;q=0, gzip"), Coding::Gzip);
        assert_eq!(n("gzip;q=0.5, zstd;q=0.9"), Coding::Zstd);
        assert_eq!(n("identity"), Coding::Identity);
        assert_eq!(n("*"), Coding::Br);
        assert_eq!(n("br;q=0, *"), Coding::Zstd);
        assert_eq!(negotiate(&HeaderMap::new()), Coding::Identity);
    }
}
