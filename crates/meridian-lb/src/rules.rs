//! ALB's listener rules: the first rule (by priority) whose conditions all hold decides
//! what happens to a request: forward to a target group (chosen by weight when there are
//! several), a redirect, or a fixed response. No match: the first target group.

use crate::target::TargetGroup;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use meridian_config::{Action, Conditions, ListenerRule, Redirect};
use meridian_http::Body;
use std::net::IpAddr;

/// What the rules decided for one request.
pub(crate) enum Decision {
    /// Forward to the group at this index.
    Forward(usize),
    /// The balancer answers itself (redirect, fixed response).
    Answer(Response<Body>),
}

/// A rule with its forward's groups resolved to indexes.
struct Compiled {
    rule: ListenerRule,
    /// (group index, weight) for a forward action.
    groups: Vec<(usize, u32)>,
}

pub(crate) struct Rules {
    rules: Vec<Compiled>,
    /// Whether some rule routes by path: then paths are made canonical (`decide`).
    by_path: bool,
}

impl Rules {
    /// Resolves the rules' group names; a name no group has (the config reader refuses
    /// those) drops that group from the forward.
    pub fn new(rules: &[ListenerRule], groups: &[TargetGroup]) -> Self {
        let by_path = rules.iter().any(|r| !r.conditions.path.is_empty());
        let rules = rules
            .iter()
            .map(|r| Compiled {
                groups: match &r.action {
                    Action::Forward { groups: g } => g
                        .iter()
                        .filter_map(|w| {
                            let i = groups.iter().position(|x| x.name == w.target_group)?;
                            Some((i, w.weight))
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                rule: r.clone(),
            })
            .collect();
        Rules { rules, by_path }
    }

    /// The matching rule (None: the default action) and what to do.
    ///
    /// Where a rule routes by path, the path is made canonical first
    /// (`meridian_http::path`), so `/%61dmin/` or `/x/../admin/` meet the rule written for
    /// `/admin/*`, and the request goes on with that path, as the PoP forwards it: what
    /// was routed is what the target reads. A path that has no canonical form (an encoded
    /// `/`, a bad escape) is refused with 400, as the PoP refuses it.
    pub fn decide(
        &self,
        parts: &mut Parts,
        peer: IpAddr,
        tls: bool,
        port: u16,
    ) -> (Option<&ListenerRule>, Decision) {
        // `*` (OPTIONS to the server itself) names no path.
        if self.by_path && parts.uri.path().starts_with('/') {
            let canonical = match meridian_http::path::normalize(parts.uri.path()) {
                Ok(std::borrow::Cow::Owned(p)) => Some(p),
                Ok(std::borrow::Cow::Borrowed(_)) => None,
                Err(e) => {
                    let r = meridian_http::text(StatusCode::BAD_REQUEST, e.to_string());
                    return (None, Decision::Answer(r));
                }
            };
            if let Some(p) = canonical {
                set_path(parts, &p);
            }
        }
        for c in &self.rules {
            if !matches(&c.rule.conditions, parts, peer) {
                continue;
            }
            let d = match &c.rule.action {
                Action::Forward { .. } => Decision::Forward(weighted(&c.groups)),
                Action::Redirect(r) => Decision::Answer(redirect(r, parts, tls, port)),
                Action::FixedResponse {
                    status,
                    content_type,
                    body,
                } => Decision::Answer(fixed(*status, content_type, body)),
            };
            return (Some(&c.rule), d);
        }
        (None, Decision::Forward(0))
    }
}

/// Picks a group in proportion to the weights (a zero weight is never picked).
fn weighted(groups: &[(usize, u32)]) -> usize {
    let total: u32 = groups.iter().map(|g| g.1).sum();
    if total == 0 {
        return groups.first().map(|g| g.0).unwrap_or(0);
    }
    let mut x = rand::random::<u32>() % total;
    for &(i, w) in groups {
        if x < w {
            return i;
        }
        x -= w;
    }
    groups.last().map(|g| g.0).unwrap_or(0)
}

/// The request's host name, lowercase and without a port.
fn host(parts: &Parts) -> (String, Option<u16>) {
    let raw = meridian_http::request_host(parts).unwrap_or("");
    // An IPv6 literal keeps its colons: only a colon after `]` starts a port.
    let split = match raw.rfind(']') {
        Some(end) => raw[end..].find(':').map(|i| end + i),
        None => raw.rfind(':'),
    };
    let (name, port) = match split {
        Some(i) => (&raw[..i], raw[i + 1..].parse().ok()),
        None => (raw, None),
    };
    (name.to_ascii_lowercase(), port)
}

/// `parts`'s path replaced by `path`, its query kept.
fn set_path(parts: &mut Parts, path: &str) {
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = http::uri::PathAndQuery::try_from(pq).ok();
    if let Ok(u) = http::Uri::from_parts(uri) {
        parts.uri = u;
    }
}

fn matches(c: &Conditions, parts: &Parts, peer: IpAddr) -> bool {
    let any = |pats: &[String], v: &str| pats.is_empty() || pats.iter().any(|p| glob(p, v));
    if !any(&c.host, &host(parts).0) || !any(&c.path, parts.uri.path()) {
        return false;
    }
    if !c.method.is_empty() && !c.method.iter().any(|m| m == parts.method.as_str()) {
        return false;
    }
    for h in &c.header {
        let ok = parts.headers.get_all(h.name.as_str()).iter().any(|v| {
            let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
            h.values.iter().any(|p| glob(p, &v))
        });
        if !ok {
            return false;
        }
    }
    if !c.query.is_empty() {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(&str, &str)> = q
            .split('&')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect();
        for (k, pat) in &c.query {
            if !pairs.iter().any(|(pk, pv)| pk == k && glob(pat, pv)) {
                return false;
            }
        }
    }
    c.source_ip.is_empty() || c.source_ip.iter().any(|cidr| cidr.contains(peer))
}

/// ALB's wildcards: `*` any run of characters, `?` any one.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// ALB's redirect: each part filled from the request's with `#{...}`.
fn redirect(r: &Redirect, parts: &Parts, tls: bool, listen_port: u16) -> Response<Body> {
    let (host, port) = host(parts);
    let proto = if tls { "https" } else { "http" };
    let port = port.unwrap_or(listen_port).to_string();
    let path = parts.uri.path().trim_start_matches('/');
    let query = parts.uri.query().unwrap_or("");
    let fill = |s: &str| {
        s.replace("#{protocol}", proto)
            .replace("#{host}", &host)
            .replace("#{port}", &port)
            .replace("#{path}", path)
            .replace("#{query}", query)
    };
    let protocol = fill(&r.protocol).to_ascii_lowercase();
    let port = fill(&r.port);
    let default_port =
        (protocol == "http" && port == "80") || (protocol == "https" && port == "443");
    let mut location = format!("{protocol}://{}", fill(&r.host));
    if !default_port && !port.is_empty() {
        location.push(':');
        location.push_str(&port);
    }
    location.push_str(&fill(&r.path));
    let q = fill(&r.query);
    if !q.is_empty() {
        location.push('?');
        location.push_str(&q);
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let mut res = meridian_http::text(status, "");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            res.headers_mut().insert(http::header::LOCATION, v);
            res
        }
        Err(_) => meridian_http::text(
            StatusCode::BAD_REQUEST,
            "the redirect target is not a valid URL",
        ),
    }
}

fn fixed(status: u16, content_type: &str, body: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut res = Response::new(meridian_http::full(body.to_owned()));
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    res
}
