//! `[[load_balancer.rule]]`: ALB's listener rules. Each rule has conditions (all must
//! hold; the values of one condition are alternatives) and one action: `forward` to one or
//! more weighted target groups, `redirect`, or `fixed_response`. Rules are evaluated by
//! `priority`, lowest first (as written when no priority is given); when none matches,
//! the request goes to the first target group (ALB's default action).

use crate::error::Diagnostics;
use crate::network::Cidr;
use crate::raw::RawValue;
use crate::read::Table;
use serde::Serialize;
use std::ops::Range;

/// One listener rule.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerRule {
    /// The rule's name in metrics (`lb_rule_matches{rule}`); `rule-<priority>` by default.
    pub name: String,
    pub priority: u32,
    pub conditions: Conditions,
    pub action: Action,
}

/// A rule's conditions; an empty list is no condition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Conditions {
    /// Host header patterns (`*` and `?`), matched without case.
    pub host: Vec<String>,
    /// Path patterns (`*` and `?`), matched against the path without the query.
    pub path: Vec<String>,
    pub method: Vec<String>,
    /// Each header must be present with one of its values (patterns, without case).
    pub header: Vec<HeaderCondition>,
    /// Each query key must be present with this value (a pattern).
    pub query: Vec<(String, String)>,
    pub source_ip: Vec<Cidr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderCondition {
    pub name: String,
    pub values: Vec<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    Forward {
        groups: Vec<WeightedGroup>,
    },
    Redirect(Redirect),
    FixedResponse {
        status: u16,
        content_type: String,
        body: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedGroup {
    pub target_group: String,
    pub weight: u32,
}

/// ALB's redirect action: each part may reuse the request's with `#{protocol}`,
/// `#{host}`, `#{port}`, `#{path}` (without its leading slash) and `#{query}`.
#[derive(Debug, Clone, Serialize)]
pub struct Redirect {
    pub status: u16,
    pub protocol: String,
    pub host: String,
    pub port: String,
    pub path: String,
    pub query: String,
}

/// A group a rule forwards to, and where it was written (checked once groups are known).
pub(crate) type GroupRef = (String, Range<usize>, String);

/// Reads one rule; `index` is its place in the file. Target group names it uses are
/// pushed to `refs`, to be checked against the declared groups.
pub(crate) fn read_rule(
    t: &Table,
    d: &mut Diagnostics,
    index: usize,
    refs: &mut Vec<GroupRef>,
) -> Option<ListenerRule> {
    let priority = t
        .int(d, "priority", 1..=50_000)
        .map(|p| p as u32)
        .unwrap_or((index as u32 + 1) * 10);
    let name = t
        .str(d, "name")
        .unwrap_or_else(|| format!("rule-{priority}"));
    let mut c = Conditions::default();
    let mut ok = true;
    let mut list = |key: &'static str, d: &mut Diagnostics| -> Vec<String> {
        match values(t, d, key) {
            Some(v) => v,
            None => {
                ok &= !t.has(key);
                Vec::new()
            }
        }
    };
    c.host = list("host", d)
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    c.path = list("path", d);
    c.method = list("method", d)
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let ips = list("source_ip", d);
    for (ip, item) in ips.iter().zip(items(t, "source_ip")) {
        match Cidr::parse(ip) {
            Some(cidr) => c.source_ip.push(cidr),
            None => {
                d.error(
                    item,
                    &format!("{}.source_ip", t.path),
                    format!("`{ip}` is not a CIDR block"),
                    "write an address with a prefix length, such as \"10.0.0.0/8\" or \"192.0.2.7/32\"",
                );
                ok = false;
            }
        }
    }
    for h in t.tables(d, "header") {
        let name = h.req_str(
            d,
            "name",
            "add the header's name, such as `name = \"X-Canary\"`",
        );
        let vals = values(&h, d, "values");
        if vals.is_none() && !h.has("values") {
            h.missing(
                d,
                "values",
                "add `values = [\"...\"]`: the header must have one of them",
            );
        }
        h.finish(d);
        match (name, vals) {
            (Some(name), Some(values)) => c.header.push(HeaderCondition {
                name: name.to_ascii_lowercase(),
                values: values.into_iter().map(|v| v.to_ascii_lowercase()).collect(),
            }),
            _ => ok = false,
        }
    }
    if let Some(q) = t.table(d, "query") {
        for key in q.keys() {
            match q.str(d, key) {
                Some(v) => c.query.push((key.to_owned(), v)),
                None => ok = false,
            }
        }
        if q.keys().is_empty() {
            d.error(
                q.span.clone(),
                &q.path,
                "`query` names no key",
                "write it as `query = { version = \"v2\" }`, or remove it",
            );
            ok = false;
        }
    }
    let action = read_action(t, d, refs);
    t.finish(d);
    Some(ListenerRule {
        name,
        priority,
        conditions: c,
        action: action.filter(|_| ok)?,
    })
}

/// A condition's values: one string or a non-empty list of them.
fn values(t: &Table, d: &mut Diagnostics, key: &'static str) -> Option<Vec<String>> {
    let f = t.get(key)?;
    let out = match f.value {
        RawValue::Str(s) => vec![s.clone()],
        _ => t
            .str_list(d, key)?
            .into_iter()
            .map(|s| s.into_inner())
            .collect(),
    };
    if out.is_empty() || out.iter().any(|v| v.is_empty()) {
        d.error(
            f.span,
            &f.key,
            format!("`{}` has an empty value: it could never match", f.key),
            "give at least one non-empty value, or remove the condition",
        );
        return None;
    }
    Some(out)
}

/// Spans of a list's elements (or of the single value).
fn items(t: &Table, key: &'static str) -> Vec<Range<usize>> {
    match t.get(key) {
        Some(f) => match f.value {
            RawValue::Array(items) => items.iter().map(|i| i.span()).collect(),
            _ => vec![f.span],
        },
        None => Vec::new(),
    }
}

const ACTIONS: &[&str] = &["forward", "redirect", "fixed_response"];
/// ALB's actions Meridian does not have, so a rule naming one gets a precise error.
const UNSUPPORTED: &[&str] = &["authenticate_oidc", "authenticate_cognito", "action"];

fn read_action(t: &Table, d: &mut Diagnostics, refs: &mut Vec<GroupRef>) -> Option<Action> {
    for key in UNSUPPORTED {
        if let Some(f) = t.get(key) {
            d.error(
                f.span,
                &f.key,
                format!("`{key}` is not an action Meridian's balancer has"),
                format!("use one of: {}", ACTIONS.join(", ")),
            );
            return None;
        }
    }
    let given: Vec<&str> = ACTIONS.iter().copied().filter(|a| t.has(a)).collect();
    if given.len() != 1 {
        let problem = if given.is_empty() {
            format!("[{}] has no action", t.path)
        } else {
            format!(
                "[{}] has {} actions ({})",
                t.path,
                given.len(),
                given.join(", ")
            )
        };
        d.error(
            t.span.clone(),
            &t.path,
            problem,
            "give each rule exactly one of: forward = \"group\", redirect = { ... }, fixed_response = { ... }",
        );
        return None;
    }
    match given[0] {
        "forward" => read_forward(t, d, refs),
        "redirect" => read_redirect(&t.table(d, "redirect")?, d),
        _ => {
            let f = t.table(d, "fixed_response")?;
            let status = f.int(d, "status", 200..=599).unwrap_or(200) as u16;
            let content_type = f
                .str(d, "content_type")
                .unwrap_or_else(|| "text/plain".to_owned());
            let body = f.str(d, "body").unwrap_or_default();
            if body.len() > 1024 {
                if let Some(b) = f.get("body") {
                    d.error(
                        b.span,
                        &b.key,
                        "a fixed response body is at most 1024 bytes (as ALB's)",
                        "shorten the body",
                    );
                }
            }
            f.finish(d);
            Some(Action::FixedResponse {
                status,
                content_type,
                body,
            })
        }
    }
}

fn read_forward(t: &Table, d: &mut Diagnostics, refs: &mut Vec<GroupRef>) -> Option<Action> {
    let f = t.get("forward")?;
    if let RawValue::Str(name) = f.value {
        refs.push((name.clone(), f.span.clone(), f.key.clone()));
        return Some(Action::Forward {
            groups: vec![WeightedGroup {
                target_group: name.clone(),
                weight: 1,
            }],
        });
    }
    if matches!(f.value, RawValue::Array(a) if a.is_empty()) {
        d.error(
            f.span,
            &f.key,
            "`forward` names no target group",
            "write `forward = \"name\"` or `forward = [{ target_group = \"blue\", weight = 95 }, ...]`",
        );
        return None;
    }
    let mut groups = Vec::new();
    for g in t.tables(d, "forward") {
        let name = g.req_str(d, "target_group", "add `target_group = \"name\"`");
        let weight = g.int(d, "weight", 0..=999).map(|w| w as u32);
        if let (Some(n), Some(field)) = (&name, g.get("target_group")) {
            refs.push((n.clone(), field.span, field.key));
        }
        g.finish(d);
        groups.push(WeightedGroup {
            target_group: name?,
            weight: if g.has("weight") { weight? } else { 1 },
        });
    }
    if groups.is_empty() {
        return None;
    }
    if groups.iter().all(|g| g.weight == 0) {
        d.error(
            f.span,
            &f.key,
            "every target group of this forward has weight 0: no request could be sent",
            "give at least one group a weight above 0",
        );
        return None;
    }
    Some(Action::Forward { groups })
}

fn read_redirect(t: &Table, d: &mut Diagnostics) -> Option<Action> {
    let status = match t.int(d, "status", 301..=302) {
        Some(s) => s as u16,
        None if t.has("status") => return None,
        None => 301,
    };
    let part = |d: &mut Diagnostics, key: &'static str, default: &str| {
        t.str(d, key).unwrap_or_else(|| default.to_owned())
    };
    let r = Redirect {
        status,
        protocol: part(d, "protocol", "#{protocol}"),
        host: part(d, "host", "#{host}"),
        port: part(d, "port", "#{port}"),
        path: part(d, "path", "/#{path}"),
        query: part(d, "query", "#{query}"),
    };
    if !r.path.starts_with('/') {
        if let Some(f) = t.get("path") {
            d.error(
                f.span,
                &f.key,
                "a redirect's path must start with `/`",
                "write it as \"/#{path}\" or \"/new/place\"",
            );
        }
    }
    if !matches!(
        r.protocol.as_str(),
        "http" | "https" | "HTTP" | "HTTPS" | "#{protocol}"
    ) {
        if let Some(f) = t.get("protocol") {
            d.error(
                f.span,
                &f.key,
                format!("`{}` is not a redirect protocol", r.protocol),
                "use \"http\", \"https\" or \"#{protocol}\"",
            );
        }
    }
    t.finish(d);
    Some(Action::Redirect(r))
}
