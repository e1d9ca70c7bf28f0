//! Vary (RFC 9111 §4.1): which request headers select a stored response, and the
//! variant key a cache files each selection under.

use http::header::{HeaderMap, HeaderName, HeaderValue, VARY};

/// The request header values a stored response was selected by (its secondary key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaryKey(pub Vec<(HeaderName, String)>);

/// The secondary key of a request for a response with these headers, or None when the
/// response has `Vary: *` (it can never be reused). Values are normalized: whitespace
/// around commas collapsed, so `gzip,br` and `gzip, br` select the same response.
pub fn vary_key(response: &HeaderMap, request: &HeaderMap) -> Option<VaryKey> {
    let mut names: Vec<HeaderName> = Vec::new();
    for v in response.get_all(VARY) {
        for name in v.to_str().unwrap_or("*").split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(VaryKey(
        names
            .into_iter()
            .map(|n| {
                let joined = request
                    .get_all(&n)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(",");
                (n, joined)
            })
            .collect(),
    ))
}

/// The Vary field names of a response, lowercased, leaving out `ignored` (a cache that
/// stores one form of a representation, such as identity bodies for Accept-Encoding, does
/// not select on it); None when the response has no Vary at all.
pub fn vary_names(response: &HeaderMap, ignored: &[&str]) -> Option<Vec<String>> {
    if !response.contains_key(VARY) {
        return None;
    }
    let names: Vec<String> = response
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !ignored.contains(&n.as_str()))
        .collect();
    Some(names)
}

/// The part of a variant's storage key that a request's values of `names` make: equal for
/// two requests exactly when [`vary_key`] selects the same response for both.
pub fn variant_suffix(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut res = HeaderMap::new();
    for n in names {
        if let Ok(v) = HeaderValue::from_str(n.as_str()) {
            res.append(VARY, v);
        }
    }
    match vary_key(&res, request) {
        Some(k) => {
            k.0.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("\x1f")
        }
        None => String::new(),
    }
}

/// Adds `name` to a response's Vary unless it (or `*`) is already there: a cache that
/// changes the response by a request header must say so, or a downstream cache mixes
/// the forms up.
pub fn add_vary(headers: &mut HeaderMap, name: &'static str) {
    let present = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name) || n.trim() == "*");
    if !present {
        headers.append(VARY, HeaderValue::from_static(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::headers as h;

    #[test]
    fn vary_selects_by_the_named_request_headers() {
        let res = h(&[
            ("vary", "Accept-Encoding"),
            ("vary", "accept-language, Accept-Encoding"),
        ]);
        let a = vary_key(
            &res,
            &h(&[("accept-encoding", "gzip,br"), ("accept-language", "en")]),
        )
        .unwrap();
        let b = vary_key(
            &res,
            &h(&[
                ("accept-encoding", "gzip, br"),
                ("accept-language", "en"),
                ("cookie", "x"),
            ]),
        )
        .unwrap();
        let c = vary_key(
            &res,
            &h(&[("accept-encoding", "identity"), ("accept-language", "en")]),
        )
        .unwrap();
        assert_eq!(a, b, "normalized, and unrelated headers do not matter");
        assert_ne!(a, c);
        assert_eq!(a.0.len(), 2);
        assert!(vary_key(&h(&[("vary", "*")]), &HeaderMap::new()).is_none());
        assert_eq!(
            vary_key(&HeaderMap::new(), &h(&[("accept", "x")]))
                .unwrap()
                .0
                .len(),
            0
        );
    }

    #[test]
    fn vary_names_leave_out_the_ignored_and_none_without_vary() {
        assert_eq!(vary_names(&HeaderMap::new(), &["accept-encoding"]), None);
        let res = h(&[("vary", "Accept-Encoding, Accept-Language"), ("vary", "*")]);
        assert_eq!(
            vary_names(&res, &["accept-encoding"]).unwrap(),
            ["accept-language", "*"]
        );
        assert_eq!(
            vary_names(&h(&[("vary", "accept-encoding")]), &["accept-encoding"]).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn variant_suffix_matches_the_same_selection() {
        let names = [HeaderName::from_static("accept-language")];
        let en = variant_suffix(&names, &h(&[("accept-language", "en"), ("cookie", "a")]));
        assert_eq!(en, "accept-language=en");
        assert_eq!(en, variant_suffix(&names, &h(&[("accept-language", "en")])));
        assert_ne!(en, variant_suffix(&names, &h(&[("accept-language", "de")])));
        assert_eq!(variant_suffix(&[], &h(&[("accept-language", "en")])), "");
    }

    #[test]
    fn add_vary_once() {
        let mut res = h(&[("vary", "accept-encoding")]);
        add_vary(&mut res, "Accept-Encoding");
        assert_eq!(res.get_all(VARY).iter().count(), 1);
        add_vary(&mut res, "Origin");
        assert_eq!(res.get_all(VARY).iter().count(), 2);
        let mut star = h(&[("vary", "*")]);
        add_vary(&mut star, "Origin");
        assert_eq!(star.get_all(VARY).iter().count(), 1);
    }
}
