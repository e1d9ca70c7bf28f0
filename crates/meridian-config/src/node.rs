//! A node of a deployment: one process with one job and its addresses. A leaf module, so
//! every section (hosts, placement, state) can name nodes without reaching the config.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The job of a node process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A region's load balancer (the ALB).
    Lb,
    /// One application instance in one AZ.
    Service,
    /// An authoritative DNS server for the zone.
    Dns,
    /// A CDN point of presence.
    Edge,
    /// The simulated WAN: relays that delay traffic between places.
    Wan,
    /// The dashboards and alarms: scrapes every other node.
    Console,
    /// A PostgreSQL instance and the keeper beside it.
    Db,
    /// A Redis cache node and the keeper beside it.
    Cache,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::Service => "service",
            Role::Dns => "dns",
            Role::Edge => "edge",
            Role::Wan => "wan",
            Role::Console => "console",
            Role::Db => "db",
            Role::Cache => "cache",
        }
    }
}

/// One node of the deployment: a process with an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    pub region: Option<String>,
    pub az: Option<String>,
    /// Where traffic reaches the node: its public address. Where it listens is the
    /// placement's decision (`placement.rs`): the same on a real host, a port behind the
    /// WAN relay under `meridian up` with the simulated WAN.
    pub address: SocketAddr,
    /// Where `/metrics` and `/health` of the node itself are served.
    pub admin: SocketAddr,
}
