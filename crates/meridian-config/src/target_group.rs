//! `[[load_balancer.target_group]]`: ALB's target groups, each with its own targets,
//! health check, algorithm, draining, stickiness and slow start.
//!
//! The config has one service, so a group's targets are that service's instances in the
//! balancer's region, all of them or those in the AZs the group names (`azs`).

use crate::error::Diagnostics;
use crate::health_check::{
    read_health_check, HealthCheck, StatusMatcher, GRPC_DEFAULT_CODES, GRPC_DEFAULT_PATH,
};
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
    /// ALB's `weighted_random`: at random in proportion to each target's weight (slow
    /// start and anomaly mitigation lower it); the one algorithm anomaly mitigation uses.
    WeightedRandom,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] = &[
        "round_robin",
        "least_outstanding_requests",
        "weighted_random",
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastOutstandingRequests => "least_outstanding_requests",
            Algorithm::WeightedRandom => "weighted_random",
        }
    }

    /// The algorithm a name in [`Algorithm::NAMES`] stands for.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "round_robin" => Some(Algorithm::RoundRobin),
            "least_outstanding_requests" => Some(Algorithm::LeastOutstandingRequests),
            "weighted_random" => Some(Algorithm::WeightedRandom),
            _ => None,
        }
    }
}

/// ALB's `ProtocolVersion` of a target group: how the balancer speaks to its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolVersion {
    /// HTTP/1.1 (ALB's default).
    #[default]
    Http1,
    /// HTTP/2 (h2c with prior knowledge on the plain hop).
    Http2,
    /// HTTP/2, gRPC requests only; health checks are gRPC calls.
    Grpc,
}

impl ProtocolVersion {
    pub const NAMES: &'static [&'static str] = &["http1", "http2", "grpc"];
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::Http1 => "http1",
            ProtocolVersion::Http2 => "http2",
            ProtocolVersion::Grpc => "grpc",
        }
    }
    /// Whether targets are spoken to over HTTP/2.
    pub fn is_h2(self) -> bool {
        self != ProtocolVersion::Http1
    }
}

/// One target group.
#[derive(Debug, Clone, Serialize)]
pub struct TargetGroup {
    pub name: String,
    /// Only the instances in these AZs (None: every instance of the region).
    pub azs: Option<Vec<String>>,
    pub health_check: HealthCheck,
    pub algorithm: Algorithm,
    #[serde(with = "crate::serde_duration")]
    pub deregistration_delay: Duration,
    pub stickiness: Option<Stickiness>,
    /// ALB's slow start: a target that becomes healthy gets a linearly rising share of
    /// new requests over this window (zero: off).
    #[serde(with = "crate::serde_duration")]
    pub slow_start: Duration,
    pub protocol_version: ProtocolVersion,
    /// ALB's automatic target weights (`load_balancing.algorithm.anomaly_mitigation`): a
    /// target whose error rate stands out from its peers' gets a lower weight until it
    /// recovers. Only with `weighted_random`, as ALB's.
    pub anomaly_mitigation: bool,
    /// WebSockets to an `http2` group's targets as extended CONNECT streams (RFC 8441) on
    /// their HTTP/2 connections, not one HTTP/1.1 connection each. Off by default: a target
    /// that has not enabled it resets each such stream, and an HTTP/2 server closes a
    /// connection that has reset too many (the group's other requests on it with it).
    pub websocket_streams: bool,
}

/// ALB's stickiness attributes of a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Stickiness {
    /// The balancer's own cookie names the target, for `duration`.
    LbCookie {
        #[serde(with = "crate::serde_duration")]
        duration: Duration,
    },
    /// Stick while the application's cookie `cookie_name` is present, keyed by its value.
    AppCookie {
        cookie_name: String,
        #[serde(with = "crate::serde_duration")]
        duration: Duration,
    },
}

/// The name of the group a balancer has when the config declares none.
pub const DEFAULT_TARGET_GROUP: &str = "default";

/// Reads one `[[load_balancer.target_group]]`; defaults come from `base` (the implicit
/// group `[load_balancer]` describes).
pub(crate) fn read_target_group(
    t: &Table,
    d: &mut Diagnostics,
    name: String,
    base: &TargetGroup,
) -> Option<TargetGroup> {
    let mut g = TargetGroup {
        name,
        ..base.clone()
    };
    if let Some(a) = t.choice(d, "algorithm", Algorithm::NAMES) {
        g.algorithm = Algorithm::parse(a).unwrap_or(g.algorithm);
    }
    read_anomaly_mitigation(t, d, &mut g);
    if let Some(azs) = t.str_list(d, "azs") {
        if azs.is_empty() {
            if let Some(f) = t.get("azs") {
                d.error(
                    f.span,
                    &f.key,
                    "`azs` is empty: the group would have no targets",
                    "name at least one AZ, or remove `azs` to take every instance of the region",
                );
            }
        }
        g.azs = Some(azs.into_iter().map(|a| a.into_inner()).collect());
    }
    g.deregistration_delay = t
        .duration(d, "deregistration_delay")
        .unwrap_or(g.deregistration_delay);
    if let Some(s) = t.duration(d, "slow_start") {
        if !s.is_zero() && !(30..=900).contains(&s.as_secs()) {
            if let Some(f) = t.get("slow_start") {
                d.error(
                    f.span,
                    &f.key,
                    "slow start must be from 30s to 900s (as ALB's), or 0 for off",
                    "use a window such as \"30s\", or \"0s\" to turn it off",
                );
            }
        }
        g.slow_start = s;
    }
    if let Some(s) = t.table(d, "stickiness") {
        g.stickiness = read_stickiness(&s, d);
    }
    if let Some(v) = t.choice(d, "protocol_version", ProtocolVersion::NAMES) {
        g.protocol_version = match v {
            "http2" => ProtocolVersion::Http2,
            "grpc" => ProtocolVersion::Grpc,
            _ => ProtocolVersion::Http1,
        };
    }
    read_websocket_streams(t, d, &mut g);
    let grpc = g.protocol_version == ProtocolVersion::Grpc;
    match t.table(d, "health_check") {
        Some(hc) => {
            g.health_check = read_health_check(&hc, d)?;
            check_grpc_health(&hc, d, grpc, &mut g.health_check);
        }
        // ALB's gRPC defaults: a call answered UNIMPLEMENTED proves a live gRPC server.
        None if grpc => {
            g.health_check.path = GRPC_DEFAULT_PATH.to_owned();
            g.health_check.grpc_codes = Some(StatusMatcher(vec![GRPC_DEFAULT_CODES]));
            g.health_check.body_contains = None;
        }
        None => {}
    }
    t.finish(d);
    Some(g)
}

/// `websocket_streams` needs a group that speaks HTTP/2 to its targets for every request.
fn read_websocket_streams(t: &Table, d: &mut Diagnostics, g: &mut TargetGroup) {
    let Some(on) = t.bool(d, "websocket_streams") else {
        return;
    };
    g.websocket_streams = on;
    if on && g.protocol_version != ProtocolVersion::Http2 {
        if let Some(f) = t.get("websocket_streams") {
            d.error(
                f.span,
                &f.key,
                format!(
                    "WebSockets go as HTTP/2 streams only to a group that speaks HTTP/2 (this group's protocol_version is `{}`)",
                    g.protocol_version.as_str()
                ),
                "set `protocol_version = \"http2\"` on the group, or remove `websocket_streams`",
            );
        }
    }
}

/// `anomaly_mitigation` needs `weighted_random`, as ALB's (the other algorithms have no
/// weights to lower).
fn read_anomaly_mitigation(t: &Table, d: &mut Diagnostics, g: &mut TargetGroup) {
    let Some(on) = t.bool(d, "anomaly_mitigation") else {
        return;
    };
    g.anomaly_mitigation = on;
    if on && g.algorithm != Algorithm::WeightedRandom {
        if let Some(f) = t.get("anomaly_mitigation") {
            d.error(
                f.span,
                &f.key,
                format!(
                    "anomaly mitigation works only with algorithm = \"weighted_random\" (this group's is `{}`), as ALB's",
                    g.algorithm.as_str()
                ),
                "set `algorithm = \"weighted_random\"` on the group, or remove `anomaly_mitigation`",
            );
        }
    }
}

/// A gRPC group's check matches gRPC codes (default 12 on ALB's default path); any other
/// group's matches HTTP statuses, so `grpc_code` there, or `matcher` or `body_contains`
/// in a gRPC group, is a mistake.
fn check_grpc_health(t: &Table, d: &mut Diagnostics, grpc: bool, hc: &mut HealthCheck) {
    if !grpc {
        if let Some(f) = t.get("grpc_code") {
            d.error(
                f.span,
                &f.key,
                "`grpc_code` applies only to a target group with protocol_version = \"grpc\"",
                "set protocol_version = \"grpc\" on the group, or use `matcher` for HTTP statuses",
            );
        }
        return;
    }
    for key in ["matcher", "body_contains"] {
        if let Some(f) = t.get(key) {
            d.error(
                f.span,
                &f.key,
                format!(
                    "a gRPC target group's health check is a gRPC call: `{key}` does not apply"
                ),
                "match gRPC status codes with `grpc_code`, such as \"0\" or \"0-99\"",
            );
        }
    }
    if !t.has("path") {
        hc.path = GRPC_DEFAULT_PATH.to_owned();
    }
    if hc.grpc_codes.is_none() {
        hc.grpc_codes = Some(StatusMatcher(vec![GRPC_DEFAULT_CODES]));
    }
}

fn read_stickiness(t: &Table, d: &mut Diagnostics) -> Option<Stickiness> {
    let kind = t.choice(d, "type", &["lb_cookie", "app_cookie"]);
    let duration = t
        .duration(d, "duration")
        .unwrap_or(Duration::from_secs(86400));
    if let Some(f) = t.get("duration") {
        // ALB's range: 1 second to 7 days.
        if duration < Duration::from_secs(1) || duration > Duration::from_secs(7 * 86400) {
            d.error(
                f.span,
                &f.key,
                "the stickiness duration must be from 1s to 7 days",
                "use a duration such as \"1h\"",
            );
        }
    }
    let cookie = t.str(d, "cookie_name");
    let out = match kind {
        Some("lb_cookie") => Some(Stickiness::LbCookie { duration }),
        Some(_) => match cookie {
            Some(c) if is_cookie_name(&c) => Some(Stickiness::AppCookie {
                cookie_name: c,
                duration,
            }),
            Some(c) => {
                if let Some(f) = t.get("cookie_name") {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{c}` is not a usable cookie name"),
                        "use letters, digits, `-` and `_`, not starting with AWSALB",
                    );
                }
                None
            }
            None => {
                t.missing(
                    d,
                    "cookie_name",
                    "add the application's cookie, such as `cookie_name = \"SESSION\"`",
                );
                None
            }
        },
        None => {
            if !t.has("type") {
                t.missing(
                    d,
                    "type",
                    "add `type = \"lb_cookie\"` or `type = \"app_cookie\"`",
                );
            }
            None
        }
    };
    t.finish(d);
    out
}

fn is_cookie_name(c: &str) -> bool {
    !c.is_empty()
        && !c.starts_with("AWSALB")
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
