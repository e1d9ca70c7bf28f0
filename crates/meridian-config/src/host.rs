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
use crate::node::{NodeSpec, Role};
use crate::read::Table;
use serde::Serialize;
use std::net::IpAddr;
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
    pub(crate) span: Range<usize>,
    #[serde(skip)]
    pub(crate) node_spans: Vec<Range<usize>>,
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
    pub(crate) fn takes(&self, node: &NodeSpec) -> bool {
        let in_region = |want: &Option<String>, have: &Option<String>| match (want, have) {
            (Some(w), Some(h)) => w == h,
            _ => true,
        };
        self.roles.contains(&node.role)
            && in_region(&self.region, &node.region)
            && in_region(&self.az, &node.az)
    }
}
