//! `[distribution]`: what the edge PoPs serve and how, in CloudFront's terms (behaviors,
//! cache, origin request and response headers policies, origin groups, custom errors), so a
//! CloudFront user recognizes every knob.

use crate::error::Diagnostics;
use crate::model::HealthCheck;
use crate::read::Table;
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
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
    /// How the edge talks to `lb:<region>` members: HTTPS verifies the balancer's
    /// certificate against `origin_ca_file`, else the deployment CA `up` makes.
    pub origin_protocol: crate::OriginProtocol,
    pub origin_ca_file: Option<PathBuf>,
}

/// One certificate: the chain and key files, and the server names it is for (`*.` for a
/// wildcard). The first certificate also answers clients that send no or an unknown name.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFiles {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A set of origins the edge fails over between.
#[derive(Debug, Clone, Serialize)]
pub struct OriginGroup {
    pub name: String,
    pub members: Vec<OriginMember>,
    pub selection: OriginSelection,
    /// Origin statuses that send a safe request on to the next member.
    pub failover_statuses: Vec<u16>,
    #[serde(with = "crate::serde_duration")]
    pub connect_timeout: Duration,
    /// No response head within this time counts as a failure (a frozen origin).
    #[serde(with = "crate::serde_duration")]
    pub response_timeout: Duration,
    pub health_check: HealthCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "target")]
pub enum OriginMember {
    /// A region's load balancer (`lb:<region>`).
    Lb(String),
    /// Any HTTP server (`http://host:port`).
    Address(SocketAddr),
}

impl std::fmt::Display for OriginMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginMember::Lb(r) => write!(f, "lb:{r}"),
            OriginMember::Address(a) => write!(f, "http://{a}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginSelection {
    /// The healthy member with the lowest measured round trip from this PoP.
    Latency,
    /// The first healthy member in the order written (CloudFront's primary/secondary).
    Ordered,
}

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
    pub query_strings: KeyFilter,
    pub cookies: KeyFilter,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    #[serde(with = "crate::serde_duration")]
    pub max_age: Duration,
}

/// Headers the edge adds to viewer responses.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseHeadersPolicy {
    pub name: String,
    pub strict_transport_security: Option<String>,
    pub content_security_policy: Option<String>,
    pub frame_options: Option<String>,
    pub content_type_options: bool,
    pub referrer_policy: Option<String>,
    pub cors: Option<Cors>,
    pub custom_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewerProtocolPolicy {
    AllowAll,
    RedirectToHttps,
    HttpsOnly,
}

#[derive(Debug, Clone, Serialize)]
pub struct Behavior {
    pub path_pattern: String,
    pub origin_group: String,
    pub allowed_methods: Vec<String>,
    pub cached_methods: Vec<String>,
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    pub compress: bool,
    pub cache_policy: String,
    pub origin_request_policy: Option<String>,
    pub response_headers_policy: Option<String>,
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

const METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"];

/// Whether `path` matches a CloudFront path pattern: `*` any run of characters, `?`
/// exactly one, case-sensitive, and a leading `/` optional.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let p = pattern.strip_prefix('/').unwrap_or(pattern).as_bytes();
    let s = path.strip_prefix('/').unwrap_or(path).as_bytes();
    // Iterative glob with backtracking to the last star.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
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

fn default_cache_policy() -> CachePolicy {
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

fn default_origin_group(regions: &[crate::Region]) -> OriginGroup {
    OriginGroup {
        name: "default".to_owned(),
        members: regions
            .iter()
            .map(|r| OriginMember::Lb(r.name.clone()))
            .collect(),
        selection: OriginSelection::Latency,
        failover_statuses: vec![500, 502, 503, 504],
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(5),
        health_check: HealthCheck::default(),
    }
}

fn default_behavior(group: &str, policy: &str) -> Behavior {
    Behavior {
        path_pattern: "*".to_owned(),
        origin_group: group.to_owned(),
        allowed_methods: METHODS.iter().map(|m| m.to_string()).collect(),
        cached_methods: vec!["GET".into(), "HEAD".into()],
        viewer_protocol_policy: ViewerProtocolPolicy::AllowAll,
        compress: true,
        cache_policy: policy.to_owned(),
        origin_request_policy: None,
        response_headers_policy: None,
    }
}

/// The distribution used when the config has no `[distribution]`: every region behind
/// one latency-selected origin group, cached by CloudFront's defaults.
pub(crate) fn default_distribution(regions: &[crate::Region]) -> Distribution {
    Distribution {
        origin_groups: vec![default_origin_group(regions)],
        cache_policies: vec![default_cache_policy()],
        origin_request_policies: Vec::new(),
        response_headers_policies: Vec::new(),
        behaviors: Vec::new(),
        default_behavior: default_behavior("default", "default"),
        custom_error_responses: Vec::new(),
        certificates: Vec::new(),
        aliases: Vec::new(),
        compress_min_size: 1000,
        compress_max_size: 10_000_000,
        access_log: true,
        origin_protocol: crate::OriginProtocol::Http,
        origin_ca_file: None,
    }
}

/// The names given to one kind of thing, and where each reference to them is.
struct Refs {
    names: HashSet<String>,
}

impl Refs {
    fn check(
        &self,
        d: &mut Diagnostics,
        t: &Table,
        key: &'static str,
        what: &str,
        value: &Option<String>,
    ) {
        let (Some(v), Some(f)) = (value, t.get(key)) else {
            return;
        };
        if !self.names.contains(v) {
            let mut known: Vec<&str> = self.names.iter().map(String::as_str).collect();
            known.sort();
            d.error(
                f.span,
                &f.key,
                format!("there is no {what} named `{v}`"),
                if known.is_empty() {
                    format!("define one with [[distribution.{key}]] and name = \"{v}\"")
                } else {
                    format!("use one of: {}", known.join(", "))
                },
            );
        }
    }
}

pub(crate) fn read_distribution(
    t: &Table,
    d: &mut Diagnostics,
    regions: &[crate::Region],
) -> Option<Distribution> {
    let mut dist = default_distribution(regions);
    let mut ok = true;
    let groups = crate::load::read_named(t, d, "origin_group", |s, d, name| {
        read_origin_group(s, d, name, regions)
    });
    match groups {
        Some(g) if !g.is_empty() => dist.origin_groups = g,
        Some(_) => {}
        None => ok = false,
    }
    match crate::load::read_named(t, d, "cache_policy", read_cache_policy) {
        Some(p) => {
            // A user's own "default" policy replaces the built-in one.
            if p.iter().any(|p| p.name == "default") {
                dist.cache_policies.clear();
            }
            dist.cache_policies.extend(p);
        }
        None => ok = false,
    }
    match crate::load::read_named(t, d, "origin_request_policy", |s, d, name| {
        let p = OriginRequestPolicy {
            name,
            headers: read_filter(s, d, "headers", "header_names").unwrap_or(KeyFilter::All),
            query_strings: read_filter(s, d, "query_strings", "query_string_names")
                .unwrap_or(KeyFilter::All),
            cookies: read_filter(s, d, "cookies", "cookie_names").unwrap_or(KeyFilter::All),
        };
        s.finish(d);
        Some(p)
    }) {
        Some(p) => dist.origin_request_policies = p,
        None => ok = false,
    }
    match crate::load::read_named(t, d, "response_headers_policy", read_response_headers) {
        Some(p) => dist.response_headers_policies = p,
        None => ok = false,
    }
    let group_refs = Refs {
        names: dist.origin_groups.iter().map(|g| g.name.clone()).collect(),
    };
    let cache_refs = Refs {
        names: dist.cache_policies.iter().map(|p| p.name.clone()).collect(),
    };
    let orp_refs = Refs {
        names: dist
            .origin_request_policies
            .iter()
            .map(|p| p.name.clone())
            .collect(),
    };
    let rhp_refs = Refs {
        names: dist
            .response_headers_policies
            .iter()
            .map(|p| p.name.clone())
            .collect(),
    };
    let first_group = dist.origin_groups[0].name.clone();
    let read_behavior = |s: &Table, d: &mut Diagnostics, default: bool| -> Option<Behavior> {
        let mut b = default_behavior(&first_group, "default");
        if default {
            if s.has("path_pattern") {
                if let Some(f) = s.get("path_pattern") {
                    d.error(
                        f.span,
                        &f.key,
                        "the default behavior matches every path and takes no path_pattern",
                        "remove it, or move this behavior to [[distribution.behavior]]",
                    );
                }
            }
        } else {
            match s.req_str(d, "path_pattern", "add path_pattern = \"/images/*\"") {
                Some(p) if p.is_empty() || p.len() > 255 => {
                    if let Some(f) = s.get("path_pattern") {
                        d.error(
                            f.span,
                            &f.key,
                            "a path pattern must have 1 to 255 characters",
                            "write a pattern such as \"/api/*\"",
                        );
                    }
                }
                Some(p) => b.path_pattern = p,
                None => return None,
            }
        }
        let group = s.str(d, "origin_group");
        group_refs.check(d, s, "origin_group", "origin group", &group);
        b.origin_group = group.unwrap_or(b.origin_group);
        let policy = s.str(d, "cache_policy");
        cache_refs.check(d, s, "cache_policy", "cache policy", &policy);
        b.cache_policy = policy.unwrap_or(b.cache_policy);
        b.origin_request_policy = s.str(d, "origin_request_policy");
        orp_refs.check(
            d,
            s,
            "origin_request_policy",
            "origin request policy",
            &b.origin_request_policy,
        );
        b.response_headers_policy = s.str(d, "response_headers_policy");
        rhp_refs.check(
            d,
            s,
            "response_headers_policy",
            "response headers policy",
            &b.response_headers_policy,
        );
        if let Some(m) = read_methods(s, d, "allowed_methods", METHODS) {
            b.allowed_methods = m;
        }
        if let Some(m) = read_methods(s, d, "cached_methods", &["GET", "HEAD", "OPTIONS"]) {
            b.cached_methods = m;
        }
        if let Some(v) = s.choice(
            d,
            "viewer_protocol_policy",
            &["allow-all", "redirect-to-https", "https-only"],
        ) {
            b.viewer_protocol_policy = match v {
                "redirect-to-https" => ViewerProtocolPolicy::RedirectToHttps,
                "https-only" => ViewerProtocolPolicy::HttpsOnly,
                _ => ViewerProtocolPolicy::AllowAll,
            };
        }
        b.compress = s.bool(d, "compress").unwrap_or(true);
        s.finish(d);
        Some(b)
    };
    for s in t.tables(d, "behavior") {
        match read_behavior(&s, d, false) {
            Some(b) => dist.behaviors.push(b),
            None => ok = false,
        }
    }
    if let Some(s) = t.table(d, "default_behavior") {
        match read_behavior(&s, d, true) {
            Some(b) => dist.default_behavior = b,
            None => ok = false,
        }
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
        if crate::is_dns_name(name.strip_prefix("*.").unwrap_or(&name)) {
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
    crate::security::read_origin_transport(
        t,
        d,
        &mut dist.origin_protocol,
        &mut dist.origin_ca_file,
    );
    t.finish(d);
    ok.then_some(dist)
}

fn read_origin_group(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
    regions: &[crate::Region],
) -> Option<OriginGroup> {
    let mut g = default_origin_group(regions);
    g.name = name;
    let mut members = Vec::new();
    match s.str_list(d, "members") {
        Some(list) if !list.is_empty() => {
            for m in list {
                let text = m.get_ref();
                let member = if let Some(r) = text.strip_prefix("lb:") {
                    if regions.iter().any(|x| x.name == r) {
                        Some(OriginMember::Lb(r.to_owned()))
                    } else {
                        let names: Vec<&str> = regions.iter().map(|x| x.name.as_str()).collect();
                        d.error(
                            m.span(),
                            &format!("{}.members", s.path),
                            format!("`{text}` names no region"),
                            format!("use lb:<region> with one of: {}", names.join(", ")),
                        );
                        None
                    }
                } else if let Some(addr) = text
                    .strip_prefix("http://")
                    .and_then(|a| a.trim_end_matches('/').parse::<SocketAddr>().ok())
                {
                    Some(OriginMember::Address(addr))
                } else {
                    d.error(
                        m.span(),
                        &format!("{}.members", s.path),
                        format!("`{text}` is not an origin"),
                        "write \"lb:<region>\" for a region's load balancer or \"http://IP:PORT\"",
                    );
                    None
                };
                members.extend(member);
            }
        }
        Some(_) | None => {
            if let Some(f) = s.get("members") {
                d.error(
                    f.span,
                    &f.key,
                    "an origin group needs at least one member",
                    "list them, for example members = [\"lb:us-east-1\", \"lb:eu-west-1\"]",
                );
            } else {
                s.missing(
                    d,
                    "members",
                    "list the origins, for example members = [\"lb:us-east-1\", \"lb:eu-west-1\"]",
                );
            }
            return None;
        }
    }
    g.members = members;
    if let Some(v) = s.choice(d, "selection", &["latency", "ordered"]) {
        g.selection = if v == "ordered" {
            OriginSelection::Ordered
        } else {
            OriginSelection::Latency
        };
    }
    if let Some(f) = s.get("failover_statuses") {
        match f.value {
            crate::raw::RawValue::Array(items) => {
                let mut codes = Vec::new();
                for i in items {
                    match i.get_ref() {
                        crate::raw::RawValue::Int(c) if (400..=599).contains(c) => {
                            codes.push(*c as u16)
                        }
                        _ => d.error(
                            i.span(),
                            &f.key,
                            "failover statuses must be 4xx or 5xx status codes",
                            "write numbers such as [500, 502, 503, 504]",
                        ),
                    }
                }
                g.failover_statuses = codes;
            }
            other => f.wrong_type(d, "an array of status codes", other),
        }
    }
    g.connect_timeout = s
        .duration(d, "connect_timeout")
        .unwrap_or(g.connect_timeout);
    g.response_timeout = s
        .duration(d, "response_timeout")
        .unwrap_or(g.response_timeout);
    if let Some(hc) = s.table(d, "health_check") {
        g.health_check = crate::load::read_health_check(&hc, d)?;
    }
    s.finish(d);
    Some(g)
}

fn read_cache_policy(s: &Table, d: &mut Diagnostics, name: String) -> Option<CachePolicy> {
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
    let names: Vec<String> = s
        .str_list(d, names_key)
        .map(|v| v.into_iter().map(|h| h.into_inner()).collect())
        .unwrap_or_default();
    let behavior = s.choice(d, key, &["none", "all", "allow_list", "all_except"])?;
    let needs_names = matches!(behavior, "allow_list" | "all_except");
    if needs_names && names.is_empty() {
        s.missing(
            d,
            names_key,
            &format!("list the names, for example {names_key} = [\"id\"]"),
        );
    }
    Some(match behavior {
        "none" => KeyFilter::None,
        "all" => KeyFilter::All,
        "allow_list" => KeyFilter::AllowList(names),
        _ => KeyFilter::AllExcept(names),
    })
}

fn read_methods(
    s: &Table,
    d: &mut Diagnostics,
    key: &'static str,
    allowed: &[&str],
) -> Option<Vec<String>> {
    let list = s.str_list(d, key)?;
    let mut out = Vec::new();
    for m in list {
        let up = m.get_ref().to_ascii_uppercase();
        if allowed.contains(&up.as_str()) {
            out.push(up);
        } else {
            d.error(
                m.span(),
                &format!("{}.{key}", s.path),
                format!("`{}` is not a method allowed here", m.get_ref()),
                format!("use methods from: {}", allowed.join(", ")),
            );
        }
    }
    if !out.iter().any(|m| m == "GET") || !out.iter().any(|m| m == "HEAD") {
        let f = s.get(key)?;
        d.error(
            f.span,
            &f.key,
            format!("`{key}` must include GET and HEAD"),
            "CloudFront's sets are [GET, HEAD], [GET, HEAD, OPTIONS] or all seven methods",
        );
    }
    Some(out)
}

fn read_response_headers(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<ResponseHeadersPolicy> {
    let mut custom_headers = Vec::new();
    if let Some(h) = s.table(d, "custom_headers") {
        // Keys are header names: read every entry as a string.
        for key in h.keys() {
            if let Some(v) = h.str(d, key) {
                if http_header_name_ok(key) {
                    custom_headers.push((key.to_owned(), v));
                } else if let Some(f) = h.get(key) {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{key}` is not a valid header name"),
                        "use letters, digits and hyphens",
                    );
                }
            }
        }
    }
    let cors = match s.table(d, "cors") {
        Some(c) => {
            let list = |c: &Table, d: &mut Diagnostics, k: &'static str| -> Vec<String> {
                c.str_list(d, k)
                    .map(|v| v.into_iter().map(|x| x.into_inner()).collect())
                    .unwrap_or_default()
            };
            let cors = Cors {
                allow_origins: list(&c, d, "allow_origins"),
                allow_methods: list(&c, d, "allow_methods"),
                allow_headers: list(&c, d, "allow_headers"),
                expose_headers: list(&c, d, "expose_headers"),
                allow_credentials: c.bool(d, "allow_credentials").unwrap_or(false),
                max_age: c.duration(d, "max_age").unwrap_or(Duration::from_secs(600)),
            };
            if cors.allow_origins.is_empty() {
                c.missing(
                    d,
                    "allow_origins",
                    "add allow_origins = [\"*\"] or a list of origins",
                );
            }
            c.finish(d);
            Some(cors)
        }
        None => None,
    };
    let p = ResponseHeadersPolicy {
        name,
        strict_transport_security: s.str(d, "strict_transport_security"),
        content_security_policy: s.str(d, "content_security_policy"),
        frame_options: s.str(d, "frame_options"),
        content_type_options: s.bool(d, "content_type_options").unwrap_or(false),
        referrer_policy: s.str(d, "referrer_policy"),
        cors,
        custom_headers,
        remove_headers: s
            .str_list(d, "remove_headers")
            .map(|v| v.into_iter().map(|x| x.into_inner()).collect())
            .unwrap_or_default(),
    };
    if let (Some(v), Some(f)) = (&p.frame_options, s.get("frame_options")) {
        if !matches!(v.as_str(), "DENY" | "SAMEORIGIN") {
            d.error(
                f.span,
                &f.key,
                format!("`{v}` is not an X-Frame-Options value"),
                "use \"DENY\" or \"SAMEORIGIN\"",
            );
        }
    }
    s.finish(d);
    Some(p)
}

fn http_header_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn cloudfront_path_patterns() {
        assert!(path_matches("/api/*", "/api/quotes/AAPL"));
        assert!(path_matches("api/*", "/api/quotes"));
        assert!(!path_matches("/api/*", "/API/quotes"), "case-sensitive");
        assert!(path_matches("*.jpg", "/images/a.jpg"));
        assert!(!path_matches("*.jpg", "/images/a.jpeg"));
        assert!(path_matches("/static/app.?s", "/static/app.js"));
        assert!(!path_matches("/static/app.?s", "/static/app.css"));
        assert!(path_matches("*", "/anything"));
        assert!(path_matches("/graphql", "/graphql"));
        assert!(!path_matches("/graphql", "/graphql/x"));
        assert!(path_matches("/a*b*c", "/a-x-b-y-c"));
        assert!(!path_matches("/a*b*c", "/a-x-b-y"));
    }
}
