//! Where a rollout starts an instance's replacement.
//!
//! Each service instance of the topology (`svc-<az>-<n>`, on `127.<net>.<region>.11+slot`)
//! has a second home for its replacement: the node `svc-<az>-<n>-b`, on the same loopback
//! address and the service port + 1. The address is the instance's own (nothing else binds
//! it), so the second home can never collide with another node, and a rollout alternates:
//! a first one moves every instance to its `-b` home, the next one back. Kept apart from
//! `topology.rs`: the placement of the configured nodes does not change.

use crate::load::Config;
use crate::node::{NodeSpec, Role};
use std::net::SocketAddr;

/// The suffix of a replacement's name.
pub const REPLACEMENT_SUFFIX: &str = "-b";

impl Config {
    /// The second home of service instance `spec` (None for any other role, or when the
    /// service port is the last one).
    pub fn replacement_of(&self, spec: &NodeSpec) -> Option<NodeSpec> {
        if spec.role != Role::Service || spec.name.ends_with(REPLACEMENT_SUFFIX) {
            return None;
        }
        let port = spec.address.port().checked_add(1)?;
        let address = SocketAddr::new(spec.address.ip(), port);
        Some(NodeSpec {
            name: format!("{}{REPLACEMENT_SUFFIX}", spec.name),
            address,
            admin: address,
            ..spec.clone()
        })
    }

    /// Node `name`: a node of the topology, an instance autoscaling adds
    /// (`scaling_homes.rs`), or the replacement home of either (what `meridian run --node
    /// svc-<az>-<n>-b` runs).
    pub fn node_or_replacement(&self, name: &str) -> Option<NodeSpec> {
        let home = |name: &str| self.node(name).or_else(|| self.scaling_home(name));
        home(name).or_else(|| {
            let original = home(name.strip_suffix(REPLACEMENT_SUFFIX)?)?;
            self.replacement_of(&original)
        })
    }
}
