//! `[distribution]`: what the edge PoPs serve and how, in CloudFront's terms (behaviors,
//! cache, origin request and response headers policies, origin groups, custom errors), so a
//! CloudFront user recognizes every knob.

mod behavior;
mod cache_policy;
mod function;
mod origin;
mod protection;
mod response_headers;
mod tiered_cache;

pub use behavior::{path_matches, Behavior, ViewerProtocolPolicy};
pub use cache_policy::{CachePolicy, KeyFilter, OriginRequestPolicy};
pub use function::{
    EdgeFunction, FunctionAssociation, FunctionEvent, FunctionRuntime, FunctionSource,
    KeyValueStoreConfig,
};
pub use origin::{OriginGroup, OriginMember, OriginSelection};
pub use protection::{
    compile_regex, Field, GeoRestriction, GeoRestrictionType, JwtAuthorizer, KeyGroup, Match,
    Operator, Oversize, Protection, PublicKey, RateBasedRule, RateKey, Rule, RuleAction,
};
pub use response_headers::{Cors, ResponseHeadersPolicy};
pub use tiered_cache::TieredCache;

use crate::common::{is_dns_name, read_named};
use crate::error::Diagnostics;
use crate::read::Table;
use crate::region::Region;
use crate::security::{read_origin_transport, OriginProtocol};
use behavior::{default_behavior, read_behavior, Known, Refs};
use cache_policy::{default_cache_policy, read_cache_policy, read_origin_request_policy};
use origin::{default_origin_group, read_origin_group};
use response_headers::read_response_headers;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// The CDN configuration every PoP serves.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub origin_groups: Vec<OriginGroup>,
    pub cache_policies: Vec<CachePolicy>,
    pub origin_request_policies: Vec<OriginRequestPolicy>,
    pub response_headers_policies: Vec<ResponseHeadersPolicy>,
    /// Ordered: the first whose path pattern matches wins.
    pub behaviors: Vec<Behavior>,
    /// Used when no behavior matches (path pattern `*`).
    pub default_behavior: Behavior,
    pub custom_error_responses: Vec<CustomErrorResponse>,
    /// Edge functions behaviors may associate (`function_associations`).
    pub functions: Vec<EdgeFunction>,
    pub key_value_stores: Vec<KeyValueStoreConfig>,
    /// Rules, rate limits, authorizers, key groups and geo restriction (AWS WAF and
    /// CloudFront's own), checked before a request is routed.
    pub protection: Protection,
    /// Certificates (PEM) for HTTPS viewers, chosen by SNI; without any, `up` makes a
    /// development certificate.
    pub certificates: Vec<TlsFiles>,
    /// Alternate domain names (CloudFront's CNAMEs), lowercase; `*.` covers one label.
    /// With any, a PoP answers only requests for these hosts (403 for others), so a
    /// forged Host can neither reach the origin nor split or share the cache.
    pub aliases: Vec<String>,
    /// On-the-fly compression applies to bodies within these sizes (CloudFront: 1,000 to
    /// 10,000,000 bytes).
    pub compress_min_size: u64,
    pub compress_max_size: u64,
    /// CloudFront's standard logging: a JSON access log line per request on every PoP.
    pub access_log: bool,
    /// Targeted cache-control fields (RFC 9213) that speak to these PoPs, most specific
    /// first, lowercase: the first present and valid one replaces `Cache-Control` for the
    /// edge, and none of them reaches a viewer.
    pub cache_control_targets: Vec<String>,
    /// How the edge talks to `lb:<region>` members: HTTPS verifies the balancer's
    /// certificate against `origin_ca_file`, else the deployment CA `up` makes.
    pub origin_protocol: OriginProtocol,
    pub origin_ca_file: Option<PathBuf>,
    /// Regional edge caches and Origin Shield (`tiered_cache.rs`).
    pub tiered_cache: TieredCache,
    /// CloudFront's `HttpVersion`: which HTTP versions viewers may use over TLS.
    pub http_version: HttpVersion,
}

/// CloudFront's `HttpVersion` values the edge serves. HTTP/1.1 is always served beside
/// them, as CloudFront serves viewers that cannot speak HTTP/2. The default is CloudFront's
/// (`http2`): HTTP/3 is opt-in, since it needs UDP to reach the PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum HttpVersion {
    #[default]
    #[serde(rename = "http2")]
    Http2,
    /// HTTP/3 (QUIC) on UDP at the HTTPS address and port too, announced with `Alt-Svc`.
    #[serde(rename = "http2and3")]
    Http2And3,
}

impl HttpVersion {
    /// Whether PoPs serve HTTP/3.
    pub fn http3(self) -> bool {
        self == HttpVersion::Http2And3
    }
}

/// One certificate: the chain and key files, and the server names it is for (`*.` for a
/// wildcard). The first certificate also answers clients that send no or an unknown name.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFiles {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// CloudFront's custom error response: what viewers see for an origin error status.
#[derive(Debug, Clone, Serialize)]
pub struct CustomErrorResponse {
    pub error_code: u16,
    pub response_code: Option<u16>,
    /// A path on the origin group of the default behavior whose body replaces the error.
    pub response_page_path: Option<String>,
    #[serde(with = "crate::serde_duration")]
    pub error_caching_min_ttl: Duration,
}

impl Distribution {
    /// The behavior for a request path: the first matching pattern, else the default.
    pub fn behavior_for(&self, path: &str) -> &Behavior {
        self.behaviors
            .iter()
            .find(|b| path_matches(&b.path_pattern, path))
            .unwrap_or(&self.default_behavior)
    }

    pub fn origin_group(&self, name: &str) -> Option<&OriginGroup> {
        self.origin_groups.iter().find(|g| g.name == name)
    }
    pub fn cache_policy(&self, name: &str) -> Option<&CachePolicy> {
        self.cache_policies.iter().find(|p| p.name == name)
    }
    pub fn origin_request_policy(&self, name: &str) -> Option<&OriginRequestPolicy> {
        self.origin_request_policies.iter().find(|p| p.name == name)
    }
    pub fn response_headers_policy(&self, name: &str) -> Option<&ResponseHeadersPolicy> {
        self.response_headers_policies
            .iter()
            .find(|p| p.name == name)
    }
}

/// The distribution used when the config has no `[distribution]`: every region behind
/// one latency-selected origin group, cached by CloudFront's defaults.
pub(crate) fn default_distribution(regions: &[Region]) -> Distribution {
    Distribution {
        origin_groups: vec![default_origin_group(regions)],
        cache_policies: vec![default_cache_policy()],
        origin_request_policies: Vec::new(),
        response_headers_policies: Vec::new(),
        behaviors: Vec::new(),
        default_behavior: default_behavior("default", "default"),
        custom_error_responses: Vec::new(),
        functions: Vec::new(),
        key_value_stores: Vec::new(),
        protection: Protection {
            body_inspection_limit: 16 * 1024,
            ..Protection::default()
        },
        certificates: Vec::new(),
        aliases: Vec::new(),
        compress_min_size: 1000,
        compress_max_size: 10_000_000,
        access_log: true,
        cache_control_targets: vec![
            "meridian-cdn-cache-control".to_owned(),
            "cdn-cache-control".to_owned(),
        ],
        origin_protocol: OriginProtocol::Http,
        origin_ca_file: None,
        tiered_cache: TieredCache::default(),
        http_version: HttpVersion::default(),
    }
}

pub(crate) fn read_distribution(
    t: &Table,
    d: &mut Diagnostics,
    regions: &[Region],
) -> Option<Distribution> {
    let mut dist = default_distribution(regions);
    let mut ok = true;
    let groups = read_named(t, d, "origin_group", |s, d, name| {
        read_origin_group(s, d, name, regions)
    });
    match groups {
        Some(g) if !g.is_empty() => dist.origin_groups = g,
        Some(_) => {}
        None => ok = false,
    }
    match read_named(t, d, "cache_policy", read_cache_policy) {
        Some(p) => {
            // A user's own "default" policy replaces the built-in one.
            if p.iter().any(|p| p.name == "default") {
                dist.cache_policies.clear();
            }
            dist.cache_policies.extend(p);
        }
        None => ok = false,
    }
    match read_named(t, d, "origin_request_policy", read_origin_request_policy) {
        Some(p) => dist.origin_request_policies = p,
        None => ok = false,
    }
    match read_named(t, d, "response_headers_policy", read_response_headers) {
        Some(p) => dist.response_headers_policies = p,
        None => ok = false,
    }
    match read_named(t, d, "key_value_store", function::read_key_value_store) {
        Some(s) => dist.key_value_stores = s,
        None => ok = false,
    }
    let stores = dist.key_value_stores.clone();
    match read_named(t, d, "function", |s, d, name| {
        function::read_function(s, d, name, &stores)
    }) {
        Some(f) => dist.functions = f,
        None => ok = false,
    }
    match protection::read_protection(t, d) {
        Some(p) => dist.protection = p,
        None => ok = false,
    }
    let names = |n: Vec<&String>| Refs {
        names: n.into_iter().cloned().collect(),
    };
    let known = Known {
        groups: names(dist.origin_groups.iter().map(|g| &g.name).collect()),
        cache_policies: names(dist.cache_policies.iter().map(|p| &p.name).collect()),
        origin_request_policies: names(
            dist.origin_request_policies
                .iter()
                .map(|p| &p.name)
                .collect(),
        ),
        response_headers_policies: names(
            dist.response_headers_policies
                .iter()
                .map(|p| &p.name)
                .collect(),
        ),
        first_group: dist.origin_groups[0].name.clone(),
        functions: dist.functions.clone(),
        protection: dist.protection.clone(),
    };
    for s in t.tables(d, "behavior") {
        match read_behavior(&s, d, false, &known) {
            Some(b) => dist.behaviors.push(b),
            None => ok = false,
        }
    }
    match t.table(d, "default_behavior") {
        Some(s) => match read_behavior(&s, d, true, &known) {
            Some(b) => dist.default_behavior = b,
            None => ok = false,
        },
        // Without one, the default behavior serves from the first origin group, as a
        // behavior that names none does (the built-in group is gone once groups are given).
        None => dist.default_behavior.origin_group = known.first_group.clone(),
    }
    for s in t.tables(d, "custom_error_response") {
        let code = s.int(d, "error_code", 400..=599).map(|c| c as u16);
        if !s.has("error_code") {
            s.missing(
                d,
                "error_code",
                "add error_code = 503 (a 4xx or 5xx status)",
            );
        }
        let response_code = s.int(d, "response_code", 200..=599).map(|c| c as u16);
        let response_page_path = s.str(d, "response_page_path");
        if let (Some(p), Some(f)) = (&response_page_path, s.get("response_page_path")) {
            if !p.starts_with('/') {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{p}` is not a path"),
                    "write a path that starts with /, such as \"/errors/503.html\"",
                );
            }
        }
        let ttl = s
            .duration(d, "error_caching_min_ttl")
            .unwrap_or(Duration::from_secs(10));
        s.finish(d);
        match code {
            Some(error_code) => dist.custom_error_responses.push(CustomErrorResponse {
                error_code,
                response_code,
                response_page_path,
                error_caching_min_ttl: ttl,
            }),
            None => ok = false,
        }
    }
    for s in t.tables(d, "certificate") {
        let cert = s.req_str(d, "cert", "add cert = \"/path/to/fullchain.pem\"");
        let key = s.req_str(d, "key", "add key = \"/path/to/privkey.pem\"");
        let names: Vec<String> = s
            .str_list(d, "names")
            .map(|v| {
                v.into_iter()
                    .map(|n| n.into_inner().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        s.finish(d);
        if let (Some(cert), Some(key)) = (cert, key) {
            dist.certificates.push(TlsFiles {
                names,
                cert: cert.into(),
                key: key.into(),
            });
        }
    }
    for a in t.str_list(d, "aliases").unwrap_or_default() {
        let name = a.get_ref().trim_end_matches('.').to_ascii_lowercase();
        if is_dns_name(name.strip_prefix("*.").unwrap_or(&name)) {
            dist.aliases.push(name);
        } else {
            d.error(
                a.span(),
                "distribution.aliases",
                format!("`{}` is not a domain name", a.get_ref()),
                "use a name such as \"cdn.example.com\", or \"*.example.com\" for every name one label under it",
            );
            ok = false;
        }
    }
    if let Some(n) = t.size(d, "compress_min_size") {
        dist.compress_min_size = n.0;
    }
    if let Some(n) = t.size(d, "compress_max_size") {
        dist.compress_max_size = n.0;
    }
    dist.access_log = t.bool(d, "access_log").unwrap_or(dist.access_log);
    if let Some(list) = t.str_list(d, "cache_control_targets") {
        dist.cache_control_targets.clear();
        for n in list {
            let name = n.get_ref().to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if token && name != "cache-control" {
                dist.cache_control_targets.push(name);
            } else {
                d.error(
                    n.span(),
                    "distribution.cache_control_targets",
                    format!("`{}` cannot be a targeted cache-control field", n.get_ref()),
                    "name header fields such as \"CDN-Cache-Control\" (RFC 9213), not Cache-Control itself",
                );
                ok = false;
            }
        }
    }
    read_origin_transport(t, d, &mut dist.origin_protocol, &mut dist.origin_ca_file);
    // CloudFront's `http1.1` and `http3` (only) are not offered: HTTP/1.1 and HTTP/2 are
    // always served, and HTTP/3 is found through `Alt-Svc` on one of them.
    match t.choice(d, "http_version", &["http2", "http2and3"]) {
        Some("http2and3") => dist.http_version = HttpVersion::Http2And3,
        Some(_) => dist.http_version = HttpVersion::Http2,
        None => ok &= !t.has("http_version"),
    }
    match tiered_cache::read_tiered_cache(t, d, regions) {
        Some(c) => dist.tiered_cache = c,
        None => ok = false,
    }
    t.finish(d);
    ok.then_some(dist)
}
