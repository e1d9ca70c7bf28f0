//! Origin groups: the origins a behavior fills from, and how the edge fails over
//! between them.

use crate::error::Diagnostics;
use crate::health_check::{read_health_check, HealthCheck};
use crate::read::Table;
use crate::region::Region;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// A safe request whose member is slow to answer (beyond its usual head latency) is
    /// also sent to the next member, and the first answer wins: a frozen region costs
    /// viewers a fraction of the response timeout. At most a tenth of requests hedge.
    pub hedging: bool,
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

pub(super) fn default_origin_group(regions: &[Region]) -> OriginGroup {
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
        hedging: true,
    }
}

pub(super) fn read_origin_group(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
    regions: &[Region],
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
        g.health_check = read_health_check(&hc, d)?;
    }
    g.hedging = s.bool(d, "hedging").unwrap_or(g.hedging);
    s.finish(d);
    Some(g)
}
