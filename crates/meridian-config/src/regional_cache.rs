//! Where the regional edge caches of `[distribution.tiered_cache]` run: one `edge` node per
//! region, `edge-rec-<region>`, on the region's own block of addresses (`127.x.<region>.5`
//! on one machine), so the WAN puts it in its region and a PoP pays the PoP-to-region way
//! to reach it, as it would to the balancer beside it.
//!
//! A regional cache is the edge role with another place, not a role of its own: it runs
//! the same phases, cache and collapsing as a PoP, so everything that runs, restarts or
//! invalidates edge nodes covers it unchanged. It is not a `[[edge]]` PoP, so the DNS
//! never sends viewers to it (`pop_of` does not name it).

use crate::edge::Pop;
use crate::load::Config;
use crate::node::{NodeSpec, Role};
use std::net::SocketAddr;

/// The last octet of a regional cache's address in its region's block (balancers use 1,
/// instances 11 and up, databases 60s, Redis 70s).
const REC_HOST: u8 = 5;

/// The PoP-like name of a region's regional edge cache (`rec-<region>`); its node is
/// `edge-rec-<region>`.
pub fn regional_cache_name(region: &str) -> String {
    format!("rec-{region}")
}

impl Config {
    /// The region whose regional cache `pop` names (`rec-<region>`), when the tier is on.
    pub fn regional_cache_region(&self, pop: &str) -> Option<&str> {
        if !self.distribution.tiered_cache.enabled {
            return None;
        }
        let region = pop.strip_prefix("rec-")?;
        self.regions
            .iter()
            .find(|r| r.name == region)
            .map(|r| r.name.as_str())
    }

    /// The regional caches' nodes, one per region, in region order (none when the tier is
    /// off).
    pub(crate) fn regional_cache_nodes(&self) -> Vec<NodeSpec> {
        if !self.distribution.tiered_cache.enabled {
            return Vec::new();
        }
        let net = &self.network;
        self.regions
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                let ip = net.addr((ri + 1) as u8, REC_HOST);
                NodeSpec {
                    name: format!("edge-{}", regional_cache_name(&r.name)),
                    role: Role::Edge,
                    region: Some(r.name.clone()),
                    az: None,
                    address: SocketAddr::new(ip.into(), net.lb_port),
                    admin: SocketAddr::new(ip.into(), net.admin_port),
                }
            })
            .collect()
    }

    /// Where a region's regional cache is reached (its viewer port), when the tier is on.
    pub fn regional_cache_address(&self, region: &str) -> Option<SocketAddr> {
        let name = format!("edge-{}", regional_cache_name(region));
        if !self.hosts.is_empty() {
            return self.node(&name).map(|n| n.address);
        }
        self.regional_cache_nodes()
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.address)
    }

    /// What an edge node serves as: its `[[edge]]` PoP, or a regional cache (placed at its
    /// region, sized by `[distribution.tiered_cache]`).
    pub fn edge_site(&self, node: &NodeSpec) -> Option<Pop> {
        self.edge_site_named(node.name.strip_prefix("edge-")?)
    }

    /// [`Config::edge_site`] by the site's name (`london`, `rec-us-east-1`).
    pub fn edge_site_named(&self, name: &str) -> Option<Pop> {
        if let Some(p) = self.edges.iter().find(|p| p.name == name) {
            return Some(p.clone());
        }
        let region = self.regional_cache_region(name)?;
        let r = self.regions.iter().find(|r| r.name == region)?;
        let t = &self.distribution.tiered_cache;
        Some(Pop {
            name: name.to_owned(),
            location: r.location,
            memory_cache: t.memory_cache,
            disk_cache: t.disk_cache,
            disk_encryption: t.disk_cache.0 > 0,
        })
    }
}
