//! `[dns]`: the authoritative servers, their record sets and health checks.

mod answer;
mod policy;
mod record;
mod value;

pub(crate) use answer::empty_answer;
pub use answer::{AliasTarget, Answer, FailoverRole, GeoMatch};
pub use policy::Policy;
pub use record::RecordSet;
pub use value::RecordKind;

use crate::common::read_latencies;
use crate::edge::Pop;
use crate::error::Diagnostics;
use crate::health_check::{read_health_check, HealthCheck};
use crate::read::Table;
use crate::region::Region;
use record::read_record_set;
use serde::Serialize;
use std::time::Duration;

/// The global DNS: authoritative servers for the deployment's zone.
#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    /// How many DNS nodes `up` runs (each answers the whole zone).
    pub servers: u32,
    /// UDP and TCP port of every DNS node.
    pub port: u16,
    /// Threads answering UDP on each node (default: one per core).
    pub udp_threads: u32,
    #[serde(with = "crate::serde_duration")]
    pub default_ttl: Duration,
    /// What a record set answers when every candidate is unhealthy.
    pub when_all_unhealthy: AllUnhealthy,
    pub records: Vec<RecordSet>,
    /// How answer targets are checked (`[dns.health_check]`): Route 53's fast checks.
    pub health_check: HealthCheck,
    /// Measured or agreed round trips that replace the modelled ones.
    pub latency_overrides: Vec<LatencyOverride>,
    /// A BIND zone file with static records served beside the record sets above
    /// (relative paths are relative to the config file).
    pub zone_file: Option<std::path::PathBuf>,
    /// A MaxMind DB (GeoIP2/GeoLite2 Country or City) that places clients outside the
    /// configured client locations.
    pub geoip_database: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthy {
    /// Answer as if all were healthy, as Route 53 does.
    FailOpen,
    /// Answer with no records (NODATA).
    FailClosed,
    /// Answer with these fixed values.
    Static(Vec<String>),
}

/// A round trip that replaces the modelled one between a client location and a region.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyOverride {
    pub client: String,
    pub region: String,
    #[serde(with = "crate::serde_duration")]
    pub rtt: Duration,
}

pub(crate) fn read_dns(t: &Table, d: &mut Diagnostics) -> Option<Dns> {
    let mut dns = default_dns();
    dns.servers = t.int(d, "servers", 0..=16).unwrap_or(2) as u32;
    dns.port = t
        .int(d, "port", 1..=65535)
        .map(|p| p as u16)
        .unwrap_or(dns.port);
    dns.default_ttl = t.duration(d, "default_ttl").unwrap_or(dns.default_ttl);
    dns.udp_threads = t
        .int(d, "udp_threads", 1..=64)
        .map(|n| n as u32)
        .unwrap_or(dns.udp_threads);
    if let Some(mode) = t.str(d, "when_all_unhealthy") {
        dns.when_all_unhealthy = match mode.as_str() {
            "fail_open" => AllUnhealthy::FailOpen,
            "fail_closed" => AllUnhealthy::FailClosed,
            "static" => AllUnhealthy::Static(
                t.str_list(d, "static_answer")
                    .map(|v| v.into_iter().map(|s| s.into_inner()).collect())
                    .unwrap_or_default(),
            ),
            other => {
                let f = t.get("when_all_unhealthy")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a way to answer when all targets are unhealthy"),
                    "use \"fail_open\" (like Route 53), \"fail_closed\" or \"static\" with static_answer = [...]",
                );
                AllUnhealthy::FailOpen
            }
        };
        if dns.when_all_unhealthy == AllUnhealthy::Static(Vec::new()) {
            t.missing(d, "static_answer", "add static_answer = [\"192.0.2.10\"]");
        }
    }
    dns.zone_file = t.str(d, "zone_file").map(std::path::PathBuf::from);
    dns.geoip_database = t.str(d, "geoip_database").map(std::path::PathBuf::from);
    if let Some(hc) = t.table(d, "health_check") {
        dns.health_check = read_health_check(&hc, d)?;
    }
    for s in t.tables(d, "record") {
        if let Some(r) = read_record_set(&s, d, dns.default_ttl) {
            dns.records.push(r);
        }
    }
    for (client, region, rtt) in read_latencies(
        t,
        d,
        ("client", "name the client location"),
        ("region", "name the region"),
    ) {
        dns.latency_overrides.push(LatencyOverride {
            client,
            region,
            rtt,
        });
    }
    t.finish(d);
    Some(dns)
}

/// Route 53's fast checks: every second, a short timeout, two in a row to flip.
fn default_dns_check() -> HealthCheck {
    HealthCheck {
        timeout: Duration::from_millis(300),
        ..HealthCheck::default()
    }
}

pub(crate) fn default_dns() -> Dns {
    Dns {
        servers: 2,
        port: 8053,
        udp_threads: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        default_ttl: Duration::from_secs(30),
        when_all_unhealthy: AllUnhealthy::FailOpen,
        records: Vec::new(),
        health_check: default_dns_check(),
        latency_overrides: Vec::new(),
        zone_file: None,
        geoip_database: None,
    }
}

/// Aliases must name a region or PoP of this deployment.
pub(crate) fn check_aliases(d: &mut Diagnostics, dns: &Dns, regions: &[Region], edges: &[Pop]) {
    for a in dns.records.iter().flat_map(|r| &r.answers) {
        let (Some(alias), Some((span, key))) = (&a.alias, &a.alias_at) else {
            continue;
        };
        let (known, what, names): (bool, &str, Vec<&str>) = match alias {
            AliasTarget::Lb(r) => (
                regions.iter().any(|x| &x.name == r),
                "region",
                regions.iter().map(|x| x.name.as_str()).collect(),
            ),
            AliasTarget::Pop(p) => (
                edges.iter().any(|x| &x.name == p),
                "[[edge]] PoP",
                edges.iter().map(|x| x.name.as_str()).collect(),
            ),
            // Only generated, from `[database]` itself.
            AliasTarget::DbWriter(_) | AliasTarget::DbReader(_) => continue,
        };
        if !known {
            let name = match alias {
                AliasTarget::Lb(n)
                | AliasTarget::Pop(n)
                | AliasTarget::DbWriter(n)
                | AliasTarget::DbReader(n) => n,
            };
            d.error(
                span.clone(),
                key,
                format!("the alias names no {what} `{name}`"),
                format!("use one of: {}", names.join(", ")),
            );
        }
    }
}
