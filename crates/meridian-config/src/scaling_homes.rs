//! Where autoscaling starts the instances it adds.
//!
//! A region's configured instances are `svc-<az>-<n>` for n up to its `instances_per_az`,
//! on `127.<net>.<region>.11` onwards (`topology.rs`). The k-th instance above them (k from
//! 0) goes to the region's AZ number k mod the AZ count, is named `svc-<az>-<n>` with the
//! next n of that AZ, and listens on the service port of the next address of the region's
//! block that no node of the topology uses. Each has a replacement home as any instance
//! (`replacement.rs`), so a rollout replaces added instances too. Kept apart from
//! `topology.rs`: the configured nodes do not move.

use crate::load::Config;
use crate::node::{NodeSpec, Role};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

impl Config {
    /// The homes of the instances autoscaling may add to `region` (empty without
    /// `[service.autoscaling]`), in the order they are added.
    pub fn scaling_homes(&self, region: &str) -> Vec<NodeSpec> {
        let (Some(a), Some((ri, r))) = (
            self.service.autoscaling.as_ref(),
            self.regions
                .iter()
                .enumerate()
                .find(|(_, r)| r.name == region),
        ) else {
            return Vec::new();
        };
        let per_az = self.instances_per_az(r);
        let configured = r.azs.len() as u32 * per_az;
        let used: HashSet<IpAddr> = self
            .nodes()
            .iter()
            .flat_map(|n| [n.address.ip(), n.admin.ip()])
            .collect();
        let third = (ri + 1) as u8;
        let mut free = (11 + configured.min(243) as u8..=254)
            .map(|last| IpAddr::from(self.network.addr(third, last)))
            .filter(|ip| !used.contains(ip));
        let mut homes = Vec::new();
        for k in 0..a.max.saturating_sub(configured) {
            let Some(ip) = free.next() else { break };
            let az = &r.azs[k as usize % r.azs.len()];
            let n = per_az + 1 + k / r.azs.len() as u32;
            let address = SocketAddr::new(ip, self.network.service_port);
            homes.push(NodeSpec {
                name: format!("svc-{az}-{n}"),
                role: Role::Service,
                region: Some(r.name.clone()),
                az: Some(az.clone()),
                address,
                admin: address,
            });
        }
        homes
    }

    /// Every home an instance of `region` can have, configured and added, in the order
    /// autoscaling fills them: by instance number, then by AZ, so that the running ones
    /// are always spread over the AZs (the last ones are the first to go).
    pub fn service_homes(&self, region: &str) -> Vec<NodeSpec> {
        let Some(r) = self.regions.iter().find(|r| r.name == region) else {
            return Vec::new();
        };
        let key = |n: &NodeSpec| {
            let az = n.az.as_deref().unwrap_or_default();
            let number = n
                .name
                .strip_prefix(&format!("svc-{az}-"))
                .and_then(|k| k.parse::<u32>().ok())
                .unwrap_or(u32::MAX);
            (number, r.azs.iter().position(|a| a == az))
        };
        let mut all = self.targets_of(region);
        all.extend(self.scaling_homes(region));
        all.sort_by_key(key);
        all
    }

    /// The added instance named `name`, if autoscaling can add one by that name.
    pub fn scaling_home(&self, name: &str) -> Option<NodeSpec> {
        self.regions
            .iter()
            .flat_map(|r| self.scaling_homes(&r.name))
            .find(|n| n.name == name)
    }
}
