//! `[load_balancer]`: each region's ALB.

use crate::common::read_named;
use crate::error::Diagnostics;
use crate::health_check::{read_health_check, HealthCheck};
use crate::listener_rule::{read_rule, ListenerRule};
use crate::read::Table;
use crate::target_group::{
    read_target_group, Algorithm, ProtocolVersion, TargetGroup, DEFAULT_TARGET_GROUP,
};
use crate::units::ByteSize;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub algorithm: Algorithm,
    pub health_check: HealthCheck,
    #[serde(with = "crate::serde_duration")]
    pub target_timeout: Duration,
    #[serde(with = "crate::serde_duration")]
    pub deregistration_delay: Duration,
    pub max_retries: u32,
    pub max_request_body: ByteSize,
    /// ALB's idle timeout: a client's request body, or a target's response body, that
    /// sends nothing for this long is given up on (408 for a body not yet forwarded).
    #[serde(with = "crate::serde_duration")]
    pub idle_timeout: Duration,
    /// Origin access control: refuse requests the edge did not sign (or signed more than
    /// a few minutes ago), so the region cannot be reached around the CDN.
    pub require_edge_signature: bool,
    /// Paths a GET or HEAD may take unsigned all the same: the health checks of the DNS and
    /// of monitoring, which sign nothing (Route 53's checks reach an ALB the same way).
    pub unsigned_paths: Vec<String>,
    /// The port the balancer serves TLS on; None: `lb_port` + 363 (8443 by default).
    pub tls_port: Option<u16>,
    /// Declared target groups; empty: one implicit `default` group (see
    /// [`LoadBalancer::effective_target_groups`]).
    pub target_groups: Vec<TargetGroup>,
    /// Listener rules, sorted by priority.
    pub rules: Vec<ListenerRule>,
    /// ALB's access log, one line per request. Off by default, as ALB's: it costs the
    /// balancer about a fifth of its requests per second (bench/lb.sh).
    pub access_log: bool,
    /// Request fields only the edge may set: the headers the distribution's JWT authorizers
    /// forward verified claims in. Without `require_edge_signature` a balancer still passes
    /// them on only with a valid edge signature, so a client that goes around the CDN
    /// cannot claim to be a user. Taken from the distribution, not a setting of its own.
    #[serde(skip)]
    pub claim_headers: Vec<String>,
}

impl LoadBalancer {
    /// The target groups in force: those declared, or one implicit `default` group made
    /// of the balancer's own algorithm, health check and draining (today's behaviour).
    pub fn effective_target_groups(&self) -> Vec<TargetGroup> {
        if !self.target_groups.is_empty() {
            return self.target_groups.clone();
        }
        vec![TargetGroup {
            name: DEFAULT_TARGET_GROUP.to_owned(),
            azs: None,
            health_check: self.health_check.clone(),
            algorithm: self.algorithm,
            deregistration_delay: self.deregistration_delay,
            stickiness: None,
            slow_start: Duration::ZERO,
            protocol_version: ProtocolVersion::Http1,
            anomaly_mitigation: false,
            websocket_streams: false,
        }]
    }
}

/// How far above the balancer's HTTP port its TLS port is by default (8080 → 8443).
pub const LB_TLS_PORT_OFFSET: u16 = 363;

pub(crate) fn default_lb() -> LoadBalancer {
    LoadBalancer {
        algorithm: Algorithm::RoundRobin,
        health_check: HealthCheck::default(),
        target_timeout: Duration::from_secs(30),
        deregistration_delay: Duration::from_secs(5),
        max_retries: 2,
        max_request_body: ByteSize(10 << 20),
        idle_timeout: Duration::from_secs(60),
        require_edge_signature: false,
        unsigned_paths: vec!["/health".to_owned()],
        tls_port: None,
        target_groups: Vec::new(),
        rules: Vec::new(),
        access_log: false,
        claim_headers: Vec::new(),
    }
}

pub(crate) fn read_lb(t: &Table, d: &mut Diagnostics) -> Option<LoadBalancer> {
    let mut lb = default_lb();
    if let Some(a) = t.str(d, "algorithm") {
        match Algorithm::parse(&a) {
            Some(alg) => lb.algorithm = alg,
            None => {
                let other = a.as_str();
                let f = t.get("algorithm")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a load balancing algorithm"),
                    format!("use one of: {}", Algorithm::NAMES.join(", ")),
                );
            }
        }
    }
    lb.target_timeout = t.duration(d, "target_timeout").unwrap_or(lb.target_timeout);
    lb.deregistration_delay = t
        .duration(d, "deregistration_delay")
        .unwrap_or(lb.deregistration_delay);
    lb.max_retries = t.int(d, "max_retries", 0..=10).unwrap_or(2) as u32;
    lb.max_request_body = t.size(d, "max_request_body").unwrap_or(lb.max_request_body);
    lb.idle_timeout = t.duration(d, "idle_timeout").unwrap_or(lb.idle_timeout);
    lb.require_edge_signature = t
        .bool(d, "require_edge_signature")
        .unwrap_or(lb.require_edge_signature);
    if let Some(paths) = t.str_list(d, "unsigned_paths") {
        let mut ok = Vec::new();
        for p in paths {
            if p.get_ref().starts_with('/') {
                ok.push(p.into_inner());
            } else if let Some(f) = t.get("unsigned_paths") {
                d.error(
                    p.span(),
                    &f.key,
                    format!("`{}` is not a path", p.get_ref()),
                    "write each as an absolute path such as \"/health\"".to_owned(),
                );
            }
        }
        lb.unsigned_paths = ok;
    }
    lb.tls_port = t.int(d, "tls_port", 1..=65535).map(|p| p as u16);
    lb.access_log = t.bool(d, "access_log").unwrap_or(lb.access_log);
    if let Some(hc) = t.table(d, "health_check") {
        lb.health_check = read_health_check(&hc, d)?;
    }
    let base = lb.effective_target_groups().remove(0);
    lb.target_groups = read_named(t, d, "target_group", |g, d, name| {
        read_target_group(g, d, name, &base)
    })?;
    read_rules(t, d, &mut lb)?;
    t.finish(d);
    Some(lb)
}

/// Reads the listener rules and checks what spans rules and groups: each group a rule
/// forwards to exists, and no two rules share a priority.
fn read_rules(t: &Table, d: &mut Diagnostics, lb: &mut LoadBalancer) -> Option<()> {
    let mut refs = Vec::new();
    let mut rules = Vec::new();
    let mut ok = true;
    for (i, r) in t.tables(d, "rule").iter().enumerate() {
        let span = r.get("priority").map(|f| f.span).unwrap_or(r.span.clone());
        match read_rule(r, d, i, &mut refs) {
            Some(rule) => rules.push((rule, span, r.path.clone())),
            None => ok = false,
        }
    }
    let groups: Vec<String> = lb
        .effective_target_groups()
        .into_iter()
        .map(|g| g.name)
        .collect();
    for (name, span, key) in refs {
        if !groups.contains(&name) {
            d.error(
                span,
                &key,
                format!("no target group is named `{name}`"),
                format!(
                    "add a [[load_balancer.target_group]] named `{name}`, or use one of: {}",
                    groups.join(", ")
                ),
            );
        }
    }
    rules.sort_by_key(|(r, _, _)| r.priority);
    for w in rules.windows(2) {
        if w[0].0.priority == w[1].0.priority {
            d.error(
                w[1].1.clone(),
                &format!("{}.priority", w[1].2),
                format!("two rules have priority {}", w[1].0.priority),
                "give each rule its own priority",
            );
        }
    }
    lb.rules = rules.into_iter().map(|(r, _, _)| r).collect();
    ok.then_some(())
}
