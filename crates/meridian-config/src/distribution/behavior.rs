//! Cache behaviors: which requests a behavior takes (CloudFront path patterns, methods)
//! and the policies and origin group it names.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::collections::HashSet;

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
    /// Edge functions run for this behavior, at most one per event type.
    pub function_associations: Vec<super::function::FunctionAssociation>,
    /// Requests must carry a JWT this authorizer accepts (401 otherwise).
    pub jwt_authorizer: Option<String>,
    /// Requests must carry a CloudFront signed URL or signed cookies made with a key of one
    /// of these groups (403 otherwise).
    pub trusted_key_groups: Vec<String>,
    /// With a window, a POST, PUT, PATCH or DELETE carrying `Idempotency-Key` reaches the
    /// origin once: duplicates wait for the first and get its response for this long.
    #[serde(with = "crate::serde_duration::option")]
    pub idempotency_window: Option<std::time::Duration>,
    /// CloudFront's `GrpcConfig.Enabled`: `application/grpc` POSTs are passed to the origin
    /// over HTTP/2 as they stream, trailers and all, never cached. Needs POST allowed.
    pub grpc: bool,
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

pub(super) fn default_behavior(group: &str, policy: &str) -> Behavior {
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
        function_associations: Vec::new(),
        jwt_authorizer: None,
        trusted_key_groups: Vec::new(),
        idempotency_window: None,
        grpc: false,
    }
}

/// The names given to one kind of thing, and where each reference to them is.
pub(super) struct Refs {
    pub(super) names: HashSet<String>,
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

/// What behaviors may refer to: the names defined elsewhere in `[distribution]`.
pub(super) struct Known {
    pub(super) groups: Refs,
    pub(super) cache_policies: Refs,
    pub(super) origin_request_policies: Refs,
    pub(super) response_headers_policies: Refs,
    /// The origin group of a behavior that names none.
    pub(super) first_group: String,
    pub(super) functions: Vec<super::function::EdgeFunction>,
    pub(super) protection: super::protection::Protection,
}

/// Reads `[[distribution.behavior]]` or, with `default`, `[distribution.default_behavior]`.
pub(super) fn read_behavior(
    s: &Table,
    d: &mut Diagnostics,
    default: bool,
    known: &Known,
) -> Option<Behavior> {
    let mut b = default_behavior(&known.first_group, "default");
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
    known
        .groups
        .check(d, s, "origin_group", "origin group", &group);
    b.origin_group = group.unwrap_or(b.origin_group);
    let policy = s.str(d, "cache_policy");
    known
        .cache_policies
        .check(d, s, "cache_policy", "cache policy", &policy);
    b.cache_policy = policy.unwrap_or(b.cache_policy);
    b.origin_request_policy = s.str(d, "origin_request_policy");
    known.origin_request_policies.check(
        d,
        s,
        "origin_request_policy",
        "origin request policy",
        &b.origin_request_policy,
    );
    b.response_headers_policy = s.str(d, "response_headers_policy");
    known.response_headers_policies.check(
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
    b.function_associations = super::function::read_associations(s, d, &known.functions);
    b.jwt_authorizer = s.str(d, "jwt_authorizer");
    b.trusted_key_groups = s
        .str_list(d, "trusted_key_groups")
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.into_inner())
        .collect();
    super::protection::check_behavior_refs(
        s,
        d,
        &known.protection,
        &b.jwt_authorizer,
        &b.trusted_key_groups,
    );
    b.idempotency_window = s.duration(d, "idempotency_window");
    b.grpc = s.bool(d, "grpc").unwrap_or(false);
    if b.grpc && !b.allowed_methods.iter().any(|m| m == "POST") {
        if let Some(f) = s.get("grpc") {
            d.error(
                f.span,
                &f.key,
                "gRPC needs POST, which this behavior's `allowed_methods` does not allow",
                "allow every method (CloudFront's GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE) or set grpc = false",
            );
        }
    }
    s.finish(d);
    Some(b)
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
