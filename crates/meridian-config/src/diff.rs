//! What `meridian apply` would change in a running deployment: the difference between two
//! configs, per node, each change marked as taken by a reload (in place, no connection
//! lost) or needing a restart. Pure, so the plan can be shown before anything changes and
//! tested without running anything.

use crate::load::Config;
use crate::load_balancer::LoadBalancer;
use crate::node::Role;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Parts of `[distribution]` a PoP cannot take by reload: running components were built
/// from them (origin pools and their checks, compiled functions and their stores,
/// protection counters, listener certificates, the access log file).
pub const EDGE_RESTART_FIELDS: &[&str] = &[
    "origin_groups",
    "functions",
    "key_value_stores",
    "protection",
    "certificates",
    "access_log",
    "origin_protocol",
    "origin_ca_file",
    "tiered_cache",
    "http_version",
];

/// Parts of `[dns]` a DNS node takes by reload: the zone's record sets.
pub const DNS_RELOAD_FIELDS: &[&str] = &["records", "default_ttl", "when_all_unhealthy"];

/// Parts of `[load_balancer]` a balancer takes only by restart: its TLS listener, its
/// access log file (opened at start), and whether it refuses unsigned requests (a key it
/// must hold from start). The rest (rules, retries, timeouts, draining, and the target
/// groups' settings but [`TARGET_GROUP_RESTART_FIELDS`]) it takes by reload.
pub const LB_RESTART_FIELDS: &[&str] = &["tls_port", "access_log", "require_edge_signature"];

/// Parts of a target group a balancer takes only by restart: which group it is (`name`),
/// which targets it holds (`azs`), how it talks to them (`protocol_version`: another pool
/// and another kind of check) and anomaly mitigation (counters built with the group).
pub const TARGET_GROUP_RESTART_FIELDS: &[&str] =
    &["name", "azs", "protocol_version", "anomaly_mitigation"];

/// What of `new` a balancer running `old` cannot take in place, in plan words (empty: it
/// takes all of it by reload). Target groups added, removed, renamed or reordered change
/// the indexes its rules and twins hold, so they need a restart.
pub fn lb_restart_reasons(old: &LoadBalancer, new: &LoadBalancer) -> Vec<String> {
    let mut out: Vec<String> = changed_fields(old, new)
        .into_iter()
        .filter(|f| LB_RESTART_FIELDS.contains(&f.as_str()))
        .collect();
    let (a, b) = (old.effective_target_groups(), new.effective_target_groups());
    if !same_groups(old, new) {
        out.push("the list of target groups".to_owned());
        return out;
    }
    for (x, y) in a.iter().zip(&b) {
        for f in changed_fields(x, y) {
            if TARGET_GROUP_RESTART_FIELDS.contains(&f.as_str()) {
                out.push(format!("target group \"{}\" {f}", x.name));
            }
        }
    }
    out
}

/// Whether two balancer configs have the same target groups, by name and order.
fn same_groups(old: &LoadBalancer, new: &LoadBalancer) -> bool {
    let names = |l: &LoadBalancer| -> Vec<String> {
        l.effective_target_groups()
            .into_iter()
            .map(|g| g.name)
            .collect()
    };
    names(old) == names(new)
}

/// How a node takes a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// In place (SIGHUP): new requests see it, requests in flight finish on the old.
    Reload,
    /// The process must be started again with the new config.
    Restart,
}

/// What happens to a thing, as terraform marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Add,
    Remove,
    Change,
}

/// One change on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub sign: Sign,
    /// What changes, in the config's words (`cache policy "api" default_ttl 300s → 60s`).
    pub what: String,
    pub action: Action,
}

/// Every change one node takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// The node's name; `supervisor` for settings only `meridian up` reads.
    pub node: String,
    pub role: Option<Role>,
    pub changes: Vec<Change>,
}

impl NodePlan {
    /// Whether the node must restart to take its changes.
    pub fn needs_restart(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Restart)
    }
}

/// The changes of a new config against the running one, node by node in the running
/// config's order; nodes with nothing to change are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub nodes: Vec<NodePlan>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes that take their changes by reload only.
    pub fn reloads(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(|n| !n.needs_restart())
    }

    /// Nodes that must restart.
    pub fn restarts(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(|n| n.needs_restart())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            for c in &n.changes {
                let mark = match (c.action, c.sign) {
                    (Action::Restart, _) => '!',
                    (_, Sign::Add) => '+',
                    (_, Sign::Remove) => '-',
                    (_, Sign::Change) => '~',
                };
                let how = match c.action {
                    Action::Reload => "reload",
                    Action::Restart => "restart",
                };
                writeln!(f, "{mark} {}: {} ({how})", n.node, c.what)?;
            }
        }
        let reloads = self.reloads().count();
        let restarts = self.restarts().count();
        write!(
            f,
            "Plan: {reloads} node(s) to reload in place, {restarts} to restart."
        )
    }
}

/// The top-level keys of two serialized values that differ (a value that does not
/// serialize to an object counts as one key, `""`).
pub fn changed_fields<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (old, new) = (to_value(old), to_value(new));
    match (&old, &new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        _ if old != new => vec![String::new()],
        _ => Vec::new(),
    }
}

/// The `function/event type` pairs the behaviors associate. A PoP compiles each pair once
/// at start, so a behavior change that makes a new pair (or drops one) needs a restart.
pub fn function_associations<T: Serialize>(dist: &T) -> Vec<String> {
    let v = to_value(dist);
    let behaviors = v["behaviors"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&v["default_behavior"]));
    let mut pairs: Vec<String> = behaviors
        .flat_map(|b| {
            b["function_associations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|a| format!("{}/{}", show(&a["function"]), show(&a["event_type"])))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// A short, stable digest of a config file's text (FNV-1a, 64 bits, hex): what a node
/// reports so `apply` can tell it serves the new file. Not a security measure.
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Nodes `new` adds, removes, or gives another role or address than `old`: a running
/// supervisor cannot take those by restarting nodes one at a time (its own table of
/// nodes would be wrong), so `apply` refuses them.
pub fn moved_nodes(old: &Config, new: &Config) -> Vec<String> {
    let key = |c: &Config| -> Vec<(String, Role, std::net::SocketAddr, std::net::SocketAddr)> {
        c.nodes()
            .into_iter()
            .map(|n| (n.name, n.role, n.address, n.admin))
            .collect()
    };
    let (a, b) = (key(old), key(new));
    let mut moved: Vec<String> = a
        .iter()
        .filter(|n| !b.contains(n))
        .chain(b.iter().filter(|n| !a.contains(n)))
        .map(|n| n.0.clone())
        .collect();
    moved.sort();
    moved.dedup();
    moved
}

/// The plan that takes a deployment running `old` to `new`.
pub fn plan(old: &Config, new: &Config) -> Plan {
    let nodes = old.nodes();
    let mut plan = Plan::default();
    let mut add = |role: Option<Role>, sign: Sign, what: String, action: Action| {
        let names: Vec<(String, Option<Role>)> = match role {
            Some(r) => nodes
                .iter()
                .filter(|n| n.role == r)
                .map(|n| (n.name.clone(), Some(r)))
                .collect(),
            None => vec![("supervisor".to_owned(), None)],
        };
        for (name, role) in names {
            let change = Change {
                sign,
                what: what.clone(),
                action,
            };
            match plan.nodes.iter_mut().find(|p| p.node == name) {
                Some(p) => p.changes.push(change),
                None => plan.nodes.push(NodePlan {
                    node: name,
                    role,
                    changes: vec![change],
                }),
            }
        }
    };
    let (a, b) = (to_value(old), to_value(new));
    for section in changed_fields(&a, &b) {
        if section == "origin" {
            continue; // where the file came from, not what it says
        }
        let (sa, sb) = (field(&a, &section), field(&b, &section));
        match section.as_str() {
            "distribution" | "dns" => {
                let role = if section == "dns" {
                    Role::Dns
                } else {
                    Role::Edge
                };
                let new_pairs = function_associations(&sa) != function_associations(&sb);
                for part in changed_fields(&sa, &sb) {
                    let action = match (role, part.as_str()) {
                        (Role::Edge, p) if EDGE_RESTART_FIELDS.contains(&p) => Action::Restart,
                        (Role::Edge, "behaviors" | "default_behavior") if new_pairs => {
                            Action::Restart
                        }
                        (Role::Dns, p) if !DNS_RELOAD_FIELDS.contains(&p) => Action::Restart,
                        _ => Action::Reload,
                    };
                    let mut lines = Vec::new();
                    diff_values(
                        &label(&section, &part),
                        &field(&sa, &part),
                        &field(&sb, &part),
                        &mut lines,
                    );
                    for (sign, what) in lines {
                        add(Some(role), sign, what, action);
                    }
                }
            }
            "load_balancer" => {
                let same = same_groups(&old.load_balancer, &new.load_balancer);
                let mut add_lb = |sign, what, action| add(Some(Role::Lb), sign, what, action);
                for part in changed_fields(&sa, &sb) {
                    let (pa, pb) = (field(&sa, &part), field(&sb, &part));
                    if part == "target_groups" && same {
                        lb_group_lines(&pa, &pb, &mut add_lb);
                        continue;
                    }
                    let restart =
                        LB_RESTART_FIELDS.contains(&part.as_str()) || part == "target_groups";
                    let action = match restart {
                        true => Action::Restart,
                        false => Action::Reload,
                    };
                    let mut lines = Vec::new();
                    diff_values(&format!("load_balancer {part}"), &pa, &pb, &mut lines);
                    for (sign, what) in lines {
                        add_lb(sign, what, action);
                    }
                }
            }
            other => {
                let mut lines = Vec::new();
                diff_values(other, &sa, &sb, &mut lines);
                for role in roles_of(other) {
                    for (sign, what) in &lines {
                        add(role, *sign, what.clone(), Action::Restart);
                    }
                }
            }
        }
    }
    plan
}

/// Plan lines for target groups whose list is unchanged, field by field, each marked by
/// whether a balancer takes it in place.
fn lb_group_lines(old: &Value, new: &Value, add: &mut dyn FnMut(Sign, String, Action)) {
    let (a, b) = (old.as_array(), new.as_array());
    for (x, y) in a.into_iter().flatten().zip(b.into_iter().flatten()) {
        let name = show(&x["name"]);
        for f in changed_fields(x, y) {
            let action = match TARGET_GROUP_RESTART_FIELDS.contains(&f.as_str()) {
                true => Action::Restart,
                false => Action::Reload,
            };
            let mut lines = Vec::new();
            let path = format!("load_balancer target_groups \"{name}\" {f}");
            diff_values(&path, &field(x, &f), &field(y, &f), &mut lines);
            for (sign, what) in lines {
                add(sign, what, action);
            }
        }
    }
}

/// Who reads a section other than `[distribution]` and `[dns]` (None: the supervisor).
fn roles_of(section: &str) -> Vec<Option<Role>> {
    use Role::*;
    let all = [Lb, Service, Dns, Edge, Wan, Console, Db, Cache];
    let roles: &[Role] = match section {
        "service" => &[Service, Lb],
        "load_balancer" => &[Lb],
        "edges" => &[Edge, Dns, Wan],
        "client_locations" => &[Edge, Dns, Wan, Console],
        "simulation" => &[Wan, Edge, Dns],
        "console" => &[Console],
        "database" => &[Db, Service],
        "cache" => &[Cache, Service],
        "supervisor" => return vec![None],
        _ => &all,
    };
    roles.iter().copied().map(Some).collect()
}

/// How a part of a section is called in a plan line.
fn label(section: &str, part: &str) -> String {
    match part {
        "cache_policies" => "cache policy".into(),
        "origin_request_policies" => "origin request policy".into(),
        "response_headers_policies" => "response headers policy".into(),
        "origin_groups" => "origin group".into(),
        "behaviors" => "behavior".into(),
        "functions" => "function".into(),
        "key_value_stores" => "key value store".into(),
        "records" => "dns record set".into(),
        _ => format!("{section}.{part}"),
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn field(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or(Value::Null)
}

/// How a value reads in a plan line: strings bare, long values cut.
fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

/// What tells the items of a list apart: their name (policies, groups), their path
/// pattern (behaviors), a record set's name and type, else their position.
fn item_key(v: &Value, i: usize) -> String {
    if let (Some(Value::String(n)), Some(k)) = (v.get("name"), v.get("kind")) {
        return format!("{n} {}", show(k));
    }
    for k in ["name", "path_pattern"] {
        if let Some(Value::String(s)) = v.get(k) {
            return format!("\"{s}\"");
        }
    }
    format!("#{}", i + 1)
}

/// Lines for every leaf that differs between `old` and `new` under `path`; list items are
/// matched by [`item_key`], so a new item is one `+` line, not a change per field.
fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<(Sign, String)>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (x, y) = (
                    a.get(k).cloned().unwrap_or(Value::Null),
                    b.get(k).cloned().unwrap_or(Value::Null),
                );
                diff_values(&format!("{path} {k}"), &x, &y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(Value::is_object) => {
            let keyed = |l: &Vec<Value>| -> Vec<(String, Value)> {
                l.iter()
                    .enumerate()
                    .map(|(i, v)| (item_key(v, i), v.clone()))
                    .collect()
            };
            let (ka, kb) = (keyed(a), keyed(b));
            for (k, v) in &ka {
                match kb.iter().find(|(k2, _)| k2 == k) {
                    Some((_, w)) => diff_values(&format!("{path} {k}"), v, w, out),
                    None => out.push((Sign::Remove, format!("{path} {k}"))),
                }
            }
            for (k, _) in kb.iter().filter(|(k, _)| !ka.iter().any(|(k2, _)| k2 == k)) {
                out.push((Sign::Add, format!("{path} {k}")));
            }
        }
        _ => out.push((
            Sign::Change,
            format!("{path} {} → {}", show(old), show(new)),
        )),
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
