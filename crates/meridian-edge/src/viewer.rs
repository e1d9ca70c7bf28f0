//! The viewer request made canonical before anything reads it: the host it is for and the
//! path it names. Routing to a behavior, the cache key and the origin request all use
//! these results, so two spellings of one resource can never select different behaviors
//! or share a key with another resource (cache poisoning, policy bypass).

use http::header::{self, HeaderMap};
use std::net::Ipv6Addr;

/// Why a viewer request was refused before routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerError {
    #[error("the request has no Host")]
    NoHost,
    #[error("the request has more than one Host")]
    ManyHosts,
    #[error("`{0}` is not a valid host[:port]")]
    BadHost(String),
    #[error("this distribution does not answer for `{0}`")]
    UnknownHost(String),
    #[error("the path is not valid: {0}")]
    BadPath(&'static str),
}

impl ViewerError {
    /// The status CloudFront answers with: 403 for a name not among the distribution's
    /// alternate domain names, 400 for the rest.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ViewerError::UnknownHost(_) => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// The host a request is for, lowercased, without a trailing dot: the target's authority
/// (absolute-form, or HTTP/2's `:authority`) when it has one, else the one Host header.
/// HTTP/1.0 may omit Host; then `fallback` (the address the viewer connected to) stands in.
pub fn host(
    authority: Option<&str>,
    headers: &HeaderMap,
    version: http::Version,
    fallback: std::net::SocketAddr,
) -> Result<String, ViewerError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ViewerError::ManyHosts);
    }
    let raw = match (authority, first) {
        (Some(a), _) => a,
        (None, Some(h)) => h
            .to_str()
            .map_err(|_| ViewerError::BadHost(String::from_utf8_lossy(h.as_bytes()).into()))?,
        (None, None) if version == http::Version::HTTP_11 => return Err(ViewerError::NoHost),
        (None, None) => return Ok(fallback.to_string()),
    };
    canonical_host(raw).ok_or_else(|| ViewerError::BadHost(raw.to_owned()))
}

/// `host[:port]` lowercased with the name's trailing dot removed, or None when it is not
/// a DNS name, an IPv4 address or a bracketed IPv6 address with an optional port.
pub fn canonical_host(raw: &str) -> Option<String> {
    // Nearly every viewer sends its host already canonical: checked in one pass, it is
    // taken as it is (the general path below lowercases and reassembles).
    if already_canonical(raw) {
        return Some(raw.to_owned());
    }
    reassembled_host(raw)
}

/// `canonical_host` the long way: every case, lowercasing and reassembling.
fn reassembled_host(raw: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match raw.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        // An IPv4 address is a name of digit labels to this check.
        if !meridian_config::is_dns_name(&name) {
            return None;
        }
        (name, port)
    };
    match port {
        None => Some(name),
        Some(p) => {
            let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = p.parse().ok().filter(|_| valid)?;
            (n <= 65_535).then(|| format!("{name}:{p}"))
        }
    }
}

/// Whether `raw` is a lowercase DNS name (no trailing dot) with an optional port of 1 to 5
/// digits up to 65535: what `canonical_host` would return unchanged. One pass over the
/// bytes: this runs for every request.
fn already_canonical(raw: &str) -> bool {
    let (name, port) = match raw.split_once(':') {
        Some((n, p)) => (n.as_bytes(), Some(p.as_bytes())),
        None => (raw.as_bytes(), None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let n = p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        if n > 65_535 {
            return false;
        }
    }
    // Labels of 1 to 63 of [a-z0-9-], neither starting nor ending with `-`.
    let mut label = 0usize;
    let mut prev = b'.';
    for &c in name {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => label += 1,
            b'-' if label > 0 => label += 1,
            b'.' if label > 0 && prev != b'-' => label = 0,
            _ => return false,
        }
        if label > 63 {
            return false;
        }
        prev = c;
    }
    label > 0 && prev != b'-' && name.len() <= 253
}

/// Whether the canonical `host` (with or without a port) is one of the alternate domain names; `*.`
/// covers one label, as CloudFront's wildcard CNAMEs do. No names: every host is.
pub fn host_allowed(aliases: &[String], host: &str) -> bool {
    if aliases.is_empty() {
        return true;
    }
    // `host` is canonical: a name or IPv4 address has no `:` but the port's, and an IPv6
    // address ends at its bracket.
    let name = match host.find(']') {
        Some(end) => &host[..=end],
        None => host.split(':').next().unwrap_or(host),
    };
    aliases.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|l| l.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => a == name,
    })
}

/// The path in the one form routing and keying see (`meridian_http::path`, shared with
/// the balancer's listener rules).
pub fn normalize_path(raw: &str) -> Result<String, ViewerError> {
    meridian_http::path::normalize(raw)
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| ViewerError::BadPath(e.0))
}

/// Where viewers are: each client location's network, with its name and country.
pub struct ViewerPlaces(Vec<(meridian_config::Cidr, String, Option<String>)>);

impl ViewerPlaces {
    pub fn from_config(cfg: &meridian_config::Config) -> ViewerPlaces {
        ViewerPlaces(
            cfg.client_locations
                .iter()
                .filter_map(|c| {
                    Some((
                        cfg.client_source(&c.name)?,
                        c.name.clone(),
                        c.country.clone(),
                    ))
                })
                .collect(),
        )
    }

    pub fn of(&self, ip: std::net::IpAddr) -> Option<(&str, Option<&str>)> {
        self.0
            .iter()
            .find(|(net, _, _)| net.contains(ip))
            .map(|(_, name, country)| (name.as_str(), country.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hosts(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_validated_and_canonical() {
        let v11 = http::Version::HTTP_11;
        let addr: std::net::SocketAddr = "1.2.3.4:80".parse().unwrap();
        let ok = |v: &str| host(None, &hosts(&[v]), v11, addr);
        assert_eq!(ok("CDN.Example.COM."), Ok("cdn.example.com".into()));
        assert_eq!(
            ok("cdn.example.com:8080"),
            Ok("cdn.example.com:8080".into())
        );
        assert_eq!(ok("127.0.0.1:80"), Ok("127.0.0.1:80".into()));
        assert_eq!(ok("[::1]:8443"), Ok("[::1]:8443".into()));
        for bad in [
            "cdn.example/static",
            "a b",
            "",
            "a..b",
            "host:99999",
            "host:",
            "host:8x",
            "[::1",
            "[nope]",
            "a:b:c",
            "evil.com#x",
            "x@y",
        ] {
            assert!(
                matches!(ok(bad), Err(ViewerError::BadHost(_))),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(
            host(None, &hosts(&["a", "b"]), v11, addr),
            Err(ViewerError::ManyHosts)
        );
        assert_eq!(
            host(None, &HeaderMap::new(), v11, addr),
            Err(ViewerError::NoHost)
        );
        assert_eq!(
            host(None, &HeaderMap::new(), http::Version::HTTP_10, addr),
            Ok("1.2.3.4:80".into())
        );
        // The target's authority wins over Host (RFC 9112 §3.2.2).
        assert_eq!(
            host(Some("a.example"), &hosts(&["b.example"]), v11, addr),
            Ok("a.example".into())
        );
    }

    #[test]
    fn alternate_domain_names_and_wildcards() {
        let aliases = vec!["cdn.example.com".to_owned(), "*.img.example.com".to_owned()];
        assert!(host_allowed(&aliases, "cdn.example.com"));
        assert!(host_allowed(&aliases, "cdn.example.com:8443"));
        assert!(host_allowed(&aliases, "a.img.example.com"));
        assert!(!host_allowed(&aliases, "a.b.img.example.com"));
        assert!(!host_allowed(&aliases, "img.example.com"));
        assert!(!host_allowed(&aliases, "evil.example"));
        assert!(!host_allowed(&aliases, "127.0.0.1:8080"));
        assert!(host_allowed(&[], "anything.example"));
    }

    #[test]
    fn paths_are_normalised_once() {
        let n = |p: &str| normalize_path(p);
        assert_eq!(n("/static/app.js"), Ok("/static/app.js".into()));
        assert_eq!(n("/x/../admin"), Ok("/admin".into()));
        assert_eq!(n("/static/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/static/%2E%2E/admin"), Ok("/admin".into()));
        assert_eq!(n("//admin//x"), Ok("/admin/x".into()));
        assert_eq!(n("/./a/./b/."), Ok("/a/b/".into()));
        assert_eq!(n("/../../etc"), Ok("/etc".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/"), Ok("/".into()));
        assert_eq!(n("/.."), Ok("/".into()));
        assert_eq!(n("/%7Euser/%41b"), Ok("/~user/Ab".into()));
        assert_eq!(n("/a%20b/%c3%a9"), Ok("/a%20b/%C3%A9".into()));
        for bad in [
            "/a%2fb",
            "/a%2F..%2Fadmin",
            "/a%5cb",
            "/a%00",
            "/a%zz",
            "/a%4",
            "/a\\b",
            // Found by the fuzzer: a byte past ASCII was taken as a char and re-encoded.
            "/\u{c8}\u{bc}\u{1}",
            "/a b",
        ] {
            assert!(n(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(n("relative").is_err());
    }

    /// Hosts built from the pieces that matter to the fast path: it agrees with the long
    /// way on every one (taken unchanged only when the long way leaves it unchanged).
    #[test]
    fn the_fast_host_path_agrees_with_the_long_way() {
        use rand::{Rng, SeedableRng};
        let alphabet: &[&str] = &[
            "a", "Z", "0", "9", "-", ".", ":", "8080", "99999", "65535", "[", "]", "::1", "_",
            "\u{e9}", "",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let mut taken = 0;
        for _ in 0..50_000 {
            let n = rng.random_range(1..8);
            let s: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let fast = already_canonical(&s);
            assert_eq!(canonical_host(&s), reassembled_host(&s), "host {s:?}");
            if fast {
                assert_eq!(reassembled_host(&s).as_deref(), Some(s.as_str()), "{s:?}");
                taken += 1;
            }
        }
        assert!(taken > 1_000, "the fast path was taken {taken} times");
    }

    /// Mutated paths and hosts: never a panic; an accepted path is a fixed point with no
    /// empty, `.` or `..` segment, so no second normalisation anywhere could differ.
    #[test]
    fn mutated_inputs_normalise_to_fixed_points() {
        use rand::{Rng, SeedableRng};
        let alphabet: &[&str] = &[
            "/", ".", "..", "%2e", "%2E", "%2f", "%", "a", "%41", "~", "%7e", "%zz", ":", "[", "]",
            "\\", "\u{e9}", "\u{1}", " ",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for _ in 0..30_000 {
            let n = rng.random_range(0..12);
            let s: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(canonical_host(&s), reassembled_host(&s), "host {s:?}");
            // Paths: `meridian_http::path`'s own test.
        }
    }
}
