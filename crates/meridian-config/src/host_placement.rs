//! Where `[[host]]` puts each node (`host.rs` reads the hosts): the host a node runs on,
//! the addresses it gets there, and the checks that refuse a placement that cannot run.

use crate::error::Diagnostics;
use crate::host::Host;
use crate::load::Config;
use crate::node::{NodeSpec, Role};
use std::net::SocketAddr;

impl Config {
    /// The host node `name` runs on: the one naming it, else the first whose roles take it.
    pub fn host_of(&self, node: &NodeSpec) -> Option<&Host> {
        self.hosts
            .iter()
            .find(|h| h.nodes.contains(&node.name))
            .or_else(|| self.hosts.iter().find(|h| h.takes(node)))
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Where the agent of host `name` serves its admin endpoint.
    pub fn agent_admin(&self, host: &Host) -> SocketAddr {
        SocketAddr::new(host.address, host.agent_port)
    }

    /// Moves every node of the one-machine layout onto its host (nodes on no host keep
    /// their loopback address; `check_placement` refuses such a config).
    pub(crate) fn place_on_hosts(&self, nodes: &mut [NodeSpec]) {
        let mut on_host: Vec<(u16, u16)> = vec![(0, 0); self.hosts.len()];
        for n in nodes.iter_mut() {
            let Some(h) = self.host_of(n) else { continue };
            let Some(i) = self.hosts.iter().position(|x| x.name == h.name) else {
                continue;
            };
            let (k, services) = &mut on_host[i];
            let admin = self.network.admin_port.wrapping_add(*k);
            let (address, admin) = match n.role {
                Role::Service => {
                    let p = self.network.service_port.wrapping_add(2 * *services);
                    *services += 1;
                    (p, p)
                }
                // The console serves everything on its admin address.
                _ if n.admin == n.address => (admin, admin),
                _ => (n.address.port(), admin),
            };
            n.address = SocketAddr::new(h.address, address);
            n.admin = SocketAddr::new(h.address, admin);
            *k += 1;
        }
    }
}

impl Config {
    /// Refuses a placement that cannot run, each problem at the `[[host]]` it concerns.
    pub(crate) fn check_placement(&self, d: &mut Diagnostics) {
        let cfg = self;
        let Some(first) = cfg.hosts.first() else {
            return;
        };
        let here = |h: &Host| format!("host.{}", h.name);
        if cfg.simulation.wan {
            d.error(
                first.span.clone(),
                &here(first),
                "the simulated WAN runs on one machine; it cannot run with [[host]] placement",
                "set `[simulation] wan = false`: on real hosts the network is real",
            );
        }
        if cfg.database.is_some() || cfg.cache.is_some() {
            d.error(
            first.span.clone(),
            &here(first),
            "the data tier ([database], [cache]) is not placed on hosts yet",
            "remove [database] and [cache] from a config with [[host]], or run it on one machine",
        );
        }
        if cfg.service.autoscaling.is_some() {
            d.error(
                first.span.clone(),
                &here(first),
                "autoscaling adds instances on this machine's addresses; it is not placed on hosts yet",
                "remove [service.autoscaling] from a config with [[host]]",
            );
        }
        for (key, source) in [
            ("admin_token", &cfg.secrets.admin_token),
            ("edge_signing_key", &cfg.secrets.edge_signing_key),
        ] {
            if *source == crate::security::SecretSource::StateDir {
                d.error(
                first.span.clone(),
                &here(first),
                format!("every host needs the same `{key}`, and a state dir is one machine's"),
                format!("name it in the config: `[secrets] {key} = {{ file = \"/etc/meridian/{key}\" }}`, the same file on every host"),
            );
            }
        }
        let nodes = cfg.nodes();
        let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let mut named_where: Vec<(&str, &str)> = Vec::new();
        for h in &cfg.hosts {
            for (name, span) in h.nodes.iter().zip(&h.node_spans) {
                if !known.contains(&name.as_str()) {
                    d.error(
                        span.clone(),
                        &format!("{}.nodes", here(h)),
                        format!("there is no node `{name}`"),
                        format!("name one of: {}", known.join(", ")),
                    );
                } else if let Some((_, other)) = named_where.iter().find(|(n, _)| n == name) {
                    d.error(
                        span.clone(),
                        &format!("{}.nodes", here(h)),
                        format!("node `{name}` is already placed on host `{other}`"),
                        "name each node on one host",
                    );
                } else {
                    named_where.push((name, &h.name));
                }
            }
            for (key, value) in [("region", &h.region), ("az", &h.az)] {
                let Some(v) = value else { continue };
                let exists = cfg.regions.iter().any(|r| {
                    if key == "region" {
                        &r.name == v
                    } else {
                        r.azs.contains(v)
                    }
                });
                if !exists {
                    d.error(
                        h.span.clone(),
                        &format!("{}.{key}", here(h)),
                        format!(
                            "host `{}` names {key} `{v}`, which the config does not have",
                            h.name
                        ),
                        format!("use a {key} of a [[region]]"),
                    );
                }
            }
        }
        // The WAN and the data tier are refused above as a whole, not node by node.
        let placeable = |n: &&NodeSpec| !matches!(n.role, Role::Wan | Role::Db | Role::Cache);
        for n in nodes.iter().filter(placeable) {
            if cfg.host_of(n).is_none() {
                d.error(
                    first.span.clone(),
                    &here(first),
                    format!("node `{}` ({}) is on no host", n.name, n.role.as_str()),
                    format!(
                        "add \"{}\" to a host's `nodes`, or `roles = [\"{}\"]` to a host{}",
                        n.name,
                        n.role.as_str(),
                        n.region
                            .as_deref()
                            .map(|r| format!(" of region {r}"))
                            .unwrap_or_default()
                    ),
                );
            }
        }
        // Two listeners on one address and port: the second node could not start.
        let mut taken: Vec<(SocketAddr, String)> = cfg
            .hosts
            .iter()
            .map(|h| (cfg.agent_admin(h), format!("the agent of {}", h.name)))
            .collect();
        for n in &nodes {
            let Some(h) = cfg.host_of(n) else { continue };
            let listeners = [Some(n.address), Some(n.admin), cfg.tls_address(n)];
            for addr in listeners.into_iter().flatten() {
                match taken
                    .iter()
                    .find(|(a, owner)| *a == addr && *owner != n.name)
                {
                    Some((_, owner)) => d.error(
                        h.span.clone(),
                        &here(h),
                        format!(
                            "{} and node `{}` would both listen on {addr}",
                            owner, n.name
                        ),
                        "place one of them on another host",
                    ),
                    None => taken.push((addr, n.name.clone())),
                }
            }
        }
    }
}
