//! Cache policies (TTLs and the cache key) and origin request policies (what else the
//! origin sees): both choose names by the same filters.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;
use toml::Spanned;

/// Which names of a kind (query strings, headers, cookies) take part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "behavior", content = "names")]
pub enum KeyFilter {
    None,
    All,
    AllowList(Vec<String>),
    AllExcept(Vec<String>),
}

impl KeyFilter {
    pub fn admits(&self, name: &str, case_insensitive: bool) -> bool {
        let eq = |n: &String| {
            if case_insensitive {
                n.eq_ignore_ascii_case(name)
            } else {
                n == name
            }
        };
        match self {
            KeyFilter::None => false,
            KeyFilter::All => true,
            KeyFilter::AllowList(names) => names.iter().any(eq),
            KeyFilter::AllExcept(names) => !names.iter().any(eq),
        }
    }
}

/// CloudFront's cache policy: TTLs and the cache key.
#[derive(Debug, Clone, Serialize)]
pub struct CachePolicy {
    pub name: String,
    #[serde(with = "crate::serde_duration")]
    pub min_ttl: Duration,
    #[serde(with = "crate::serde_duration")]
    pub default_ttl: Duration,
    #[serde(with = "crate::serde_duration")]
    pub max_ttl: Duration,
    pub query_strings: KeyFilter,
    /// Request headers in the key (CloudFront allows only a list or none).
    pub headers: Vec<String>,
    pub cookies: KeyFilter,
    /// The longest a stored response is served stale when the origin fails, when the
    /// response's own `stale-if-error` does not say (and the ceiling on what it says).
    #[serde(with = "crate::serde_duration")]
    pub stale_if_error: Duration,
}

/// What the edge forwards to the origin beyond the cache key.
#[derive(Debug, Clone, Serialize)]
pub struct OriginRequestPolicy {
    pub name: String,
    pub headers: KeyFilter,
    /// With `headers = "all"`: the CloudFront headers (`cloudfront-viewer-country`, ...)
    /// added as well, CloudFront's "all viewer headers and these CloudFront headers".
    pub cloudfront_headers: Vec<String>,
    pub query_strings: KeyFilter,
    pub cookies: KeyFilter,
}

pub(super) fn default_cache_policy() -> CachePolicy {
    // CloudFront's legacy defaults: keep a day when the origin says nothing.
    CachePolicy {
        name: "default".to_owned(),
        min_ttl: Duration::ZERO,
        default_ttl: Duration::from_secs(86_400),
        max_ttl: Duration::from_secs(31_536_000),
        query_strings: KeyFilter::All,
        headers: Vec::new(),
        cookies: KeyFilter::None,
        stale_if_error: Duration::from_secs(3600),
    }
}

pub(super) fn read_cache_policy(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<CachePolicy> {
    let mut p = default_cache_policy();
    p.name = name;
    p.min_ttl = s.duration(d, "min_ttl").unwrap_or(p.min_ttl);
    p.default_ttl = s.duration(d, "default_ttl").unwrap_or(p.default_ttl);
    p.max_ttl = s.duration(d, "max_ttl").unwrap_or(p.max_ttl);
    if p.min_ttl > p.default_ttl || p.default_ttl > p.max_ttl {
        let f = s
            .get("default_ttl")
            .or_else(|| s.get("min_ttl"))
            .or_else(|| s.get("max_ttl"))?;
        d.error(
            f.span,
            &f.key,
            "the TTLs must satisfy min_ttl <= default_ttl <= max_ttl",
            "raise max_ttl or lower min_ttl so the default lies between them",
        );
    }
    p.query_strings =
        read_filter(s, d, "query_strings", "query_string_names").unwrap_or(KeyFilter::None);
    p.headers = s
        .str_list(d, "headers")
        .map(|v| v.into_iter().map(|h| h.into_inner()).collect())
        .unwrap_or_default();
    p.cookies = read_filter(s, d, "cookies", "cookie_names").unwrap_or(KeyFilter::None);
    p.stale_if_error = s.duration(d, "stale_if_error").unwrap_or(p.stale_if_error);
    s.finish(d);
    Some(p)
}

/// `key = "none" | "all" | "allow_list" | "all_except"` with the names in `names_key`.
fn read_filter(
    s: &Table,
    d: &mut Diagnostics,
    key: &'static str,
    names_key: &'static str,
) -> Option<KeyFilter> {
    read_filter_and_names(s, d, key, names_key).map(|(f, _)| f)
}

/// [`read_filter`], also returning the names as given (with their places).
fn read_filter_and_names(
    s: &Table,
    d: &mut Diagnostics,
    key: &'static str,
    names_key: &'static str,
) -> Option<(KeyFilter, Vec<Spanned<String>>)> {
    let given = s.str_list(d, names_key).unwrap_or_default();
    let names: Vec<String> = given.iter().map(|h| h.get_ref().clone()).collect();
    let behavior = s.choice(d, key, &["none", "all", "allow_list", "all_except"])?;
    let needs_names = matches!(behavior, "allow_list" | "all_except");
    if needs_names && names.is_empty() {
        s.missing(
            d,
            names_key,
            &format!("list the names, for example {names_key} = [\"id\"]"),
        );
    }
    let filter = match behavior {
        "none" => KeyFilter::None,
        "all" => KeyFilter::All,
        "allow_list" => KeyFilter::AllowList(names),
        _ => KeyFilter::AllExcept(names),
    };
    Some((filter, given))
}

/// An origin request policy: by default everything the viewer sent goes to the origin.
pub(super) fn read_origin_request_policy(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<OriginRequestPolicy> {
    let (headers, names) = read_filter_and_names(s, d, "headers", "header_names")
        .unwrap_or((KeyFilter::All, Vec::new()));
    let mut cloudfront_headers = Vec::new();
    if headers == KeyFilter::All {
        let key = s.get("header_names").map(|f| f.key).unwrap_or_default();
        for n in names {
            if n.get_ref().to_ascii_lowercase().starts_with("cloudfront-") {
                cloudfront_headers.push(n.into_inner());
            } else {
                d.error(
                    n.span(),
                    &key,
                    format!(
                        "`{}` is a viewer header: with headers = \"all\" every viewer header is forwarded, and header_names may only add CloudFront headers",
                        n.get_ref()
                    ),
                    "name only cloudfront-* headers here, or set headers = \"allow_list\" to forward just the named ones",
                );
            }
        }
    }
    let p = OriginRequestPolicy {
        name,
        headers,
        cloudfront_headers,
        query_strings: read_filter(s, d, "query_strings", "query_string_names")
            .unwrap_or(KeyFilter::All),
        cookies: read_filter(s, d, "cookies", "cookie_names").unwrap_or(KeyFilter::All),
    };
    s.finish(d);
    Some(p)
}
