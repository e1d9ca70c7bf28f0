//! What the page shows of each place (regions, PoPs, DNS servers, nodes) and of the
//! whole deployment: plain data, filled in each tick.

use meridian_config::AlarmKind;
use serde::Serialize;

/// Which region and PoP a client location is sent to, as the DNS answers it now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Route {
    pub location: String,
    pub source: String,
    /// The region `api.<zone>` resolves to.
    pub api_region: Option<String>,
    /// The PoP `cdn.<zone>` resolves to.
    pub cdn_pop: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NodeView {
    pub name: String,
    pub role: &'static str,
    pub region: Option<String>,
    pub az: Option<String>,
    pub admin: String,
    pub up: bool,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// Unix seconds of the last answered scrape.
    pub last_seen: Option<u64>,
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct AzView {
    pub name: String,
    pub healthy: u32,
    pub total: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RegionView {
    pub name: String,
    pub primary: bool,
    pub status: Status,
    pub lb: String,
    pub lb_up: bool,
    pub azs: Vec<AzView>,
    pub healthy: u32,
    pub total: u32,
    pub rps: Option<f64>,
    pub err4xx_rps: Option<f64>,
    pub err5xx_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Whether the DNS servers answer with this region (None before they are scraped).
    pub in_dns: Option<bool>,
    /// The region's cache cluster (Redis), when the deployment runs one there.
    pub cache: Option<crate::cache_tier::CacheView>,
    /// The region's database nodes (PostgreSQL), when the deployment runs any there.
    pub db: Option<crate::db_tier::DbView>,
    /// Autoscaling's desired and running instance counts (None when it is off).
    pub desired: Option<u32>,
    pub running: Option<u32>,
    /// During a canary or blue/green rollout, the old and the new version side by side
    /// (`versions.rs`); empty otherwise.
    pub versions: Vec<super::versions::VersionView>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct OriginView {
    pub origin: String,
    pub healthy: bool,
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PopView {
    pub name: String,
    pub node: String,
    pub status: Status,
    pub up: bool,
    pub rps: Option<f64>,
    pub hit_rate: Option<f64>,
    pub err5xx_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub bytes_out_rate: Option<f64>,
    pub bytes_origin_rate: Option<f64>,
    pub origins: Vec<OriginView>,
    /// The healthy origin with the shortest round trip: where this PoP's misses go.
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DnsView {
    pub name: String,
    pub up: bool,
    pub qps: Option<f64>,
    pub targets_healthy: u32,
    pub targets_total: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Global {
    pub edge_rps: Option<f64>,
    pub region_rps: Option<f64>,
    pub err4xx_rps: Option<f64>,
    pub err5xx_rps: Option<f64>,
    /// 5xx share of every answered request (edges and regions).
    pub error_rate: Option<f64>,
    pub hit_rate: Option<f64>,
    pub edge_p50_ms: Option<f64>,
    pub edge_p95_ms: Option<f64>,
    pub region_p50_ms: Option<f64>,
    pub region_p95_ms: Option<f64>,
    pub bytes_out_rate: Option<f64>,
    pub bytes_origin_rate: Option<f64>,
    pub dns_qps: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub name: String,
    pub kind: AlarmKind,
    pub description: String,
}

/// Seconds as the page shows them: milliseconds.
pub(super) fn ms(s: Option<f64>) -> Option<f64> {
    s.map(|v| v * 1000.0)
}

/// One edge function, summed over every PoP that answered this tick.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct FunctionView {
    pub name: String,
    /// Where it runs: the config's associations, and any event type a PoP reports.
    pub event_types: Vec<String>,
    pub invocations_rps: Option<f64>,
    pub errors_rps: Option<f64>,
    /// Only kinds that happened this tick, most frequent first.
    pub errors_by_kind: Vec<ErrorKindRate>,
    pub top_error_kind: Option<String>,
    /// CPU time as a percentage of the budget, p99 over this tick's invocations.
    pub p99_utilization: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ErrorKindRate {
    pub kind: String,
    pub per_second: f64,
}
