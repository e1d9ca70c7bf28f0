//! `[[host]]`: the machines a deployment runs on, and which nodes each one runs.
//!
//! Without a host every node is on this machine, each on its own loopback address
//! (`topology.rs`). With hosts, a node runs on the host that names it in `nodes`, or else
//! on the first host whose `roles` include its role (in the host's region and AZ when the
//! host names them; PoPs, DNS servers and the console have no region and match on role
//! alone). On a host a node binds the host's address: the first node there gets the
//! configured ports, and each further one moves its admin port up by one; instances take
//! every second port from `service_port` (a rollout's replacement takes the one between).
//! `check_placement` refuses what cannot run: a node on no host, two listeners on one
//! address and port, and what is not placed on hosts yet.

use crate::error::Diagnostics;
use crate::load::Config;
use crate::read::Table;
use crate::topology::{NodeSpec, Role};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

/// The agent's admin port on a host when `agent_port` is not given.
pub const DEFAULT_AGENT_PORT: u16 = 9800;

/// One machine of the deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    /// The address every node placed here binds, and peers reach them at.
    pub address: IpAddr,
    pub region: Option<String>,
    pub az: Option<String>,
    /// Nodes placed here by name.
    pub nodes: Vec<String>,
    /// Roles whose nodes (of `region` and `az`, when set) run here.
    pub roles: Vec<Role>,
    /// Where `meridian agent --host <name>` serves its own admin endpoint.
    pub agent_port: u16,
    #[serde(skip)]
    span: Range<usize>,
    #[serde(skip)]
    node_spans: Vec<Range<usize>>,
}

/// Roles a host can run. The WAN is a one-machine simulation; the data tier is not placed
/// on hosts yet.
const PLACEABLE: &[(&str, Role)] = &[
    ("lb", Role::Lb),
    ("service", Role::Service),
    ("edge", Role::Edge),
    ("dns", Role::Dns),
    ("console", Role::Console),
];

pub(crate) fn read_host(t: &Table, d: &mut Diagnostics, name: String) -> Option<Host> {
    let address = t
        .req_str(
            d,
            "address",
            "add `address = \"10.0.0.5\"`, the host's own address",
        )
        .and_then(|a| match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let f = t.get("address")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{a}` is not an IP address"),
                    "write the address nodes bind on this host, such as \"10.0.0.5\"",
                );
                None
            }
        });
    let region = t.str(d, "region");
    let az = t.str(d, "az");
    let named = t.str_list(d, "nodes").unwrap_or_default();
    let mut roles = Vec::new();
    for r in t.str_list(d, "roles").unwrap_or_default() {
        match PLACEABLE.iter().find(|(n, _)| *n == r.get_ref().as_str()) {
            Some((_, role)) => roles.push(*role),
            None => d.error(
                r.span(),
                &format!("{}.roles", t.path),
                format!("`{}` is not a role a host can run", r.get_ref()),
                format!(
                    "use one of: {} (the data tier and the WAN are not placed on hosts)",
                    PLACEABLE
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    let agent_port = t
        .int(d, "agent_port", 1..=65535)
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_AGENT_PORT);
    t.finish(d);
    Some(Host {
        name,
        address: address?,
        region,
        az,
        nodes: named.iter().map(|n| n.get_ref().clone()).collect(),
        node_spans: named.iter().map(|n| n.span()).collect(),
        roles,
        agent_port,
        span: t.span.clone(),
    })
}

impl Host {
    /// Whether this host runs `node` by its roles (not by name).
    fn takes(&self, node: &NodeSpec) -> bool {
        let in_region = |want: &Option<String>, have: &Option<String>| match (want, have) {
            (Some(w), Some(h)) => w == h,
            _ => true,
        };
        self.roles.contains(&node.role)
            && in_region(&self.region, &node.region)
            && in_region(&self.az, &node.az)
    }
}

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
            let port = match n.role {
                Role::Service => {
                    let p = self.network.service_port.wrapping_add(2 * *services);
                    *services += 1;
                    p
                }
                _ => n.address.port(),
            };
            let same = n.admin == n.address;
            n.address = SocketAddr::new(h.address, port);
            n.admin = if same {
                n.address
            } else {
                SocketAddr::new(h.address, self.network.admin_port.wrapping_add(*k))
            };
            *k += 1;
        }
    }
}

/// Refuses a placement that cannot run, each problem at the `[[host]]` it concerns.
pub(crate) fn check_placement(cfg: &Config, d: &mut Diagnostics) {
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
    if cfg.distribution.origin_protocol == crate::security::OriginProtocol::Https {
        d.error(
            first.span.clone(),
            &here(first),
            "TLS from PoPs to balancers needs one deployment CA on every host, which hosts cannot share yet",
            "set `[distribution] origin_protocol = \"http\"` for a deployment on hosts",
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
    for n in &nodes {
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
