//! Route 53's routing policies, by name.

use serde::Serialize;

/// Route 53's routing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Simple,
    Weighted,
    Latency,
    Failover,
    Geolocation,
    Geoproximity,
    Multivalue,
    IpBased,
}

impl Policy {
    pub const NAMES: &'static [&'static str] = &[
        "simple",
        "weighted",
        "latency",
        "failover",
        "geolocation",
        "geoproximity",
        "multivalue",
        "ip_based",
    ];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simple" => Policy::Simple,
            "weighted" => Policy::Weighted,
            "latency" => Policy::Latency,
            "failover" => Policy::Failover,
            "geolocation" => Policy::Geolocation,
            "geoproximity" => Policy::Geoproximity,
            "multivalue" => Policy::Multivalue,
            "ip_based" => Policy::IpBased,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        Policy::NAMES[self as usize]
    }
}
