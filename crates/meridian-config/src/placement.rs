//! Where a node's listeners bind, as the process that starts it decides.
//!
//! The config says where each node is *reached* (`NodeSpec::address`, a balancer's TLS
//! address, ...): that is what peers, the DNS and clients use. Where a node *listens* is
//! its placement's business. On a real host the two are the same. Under `meridian up`
//! with the simulated WAN, a relay holds every public port of a place that has distance
//! (balancers, PoPs, DNS servers, databases) and the node listens on a port behind it; the
//! supervisor says so when it starts the node (`meridian run --behind-relay`). Nothing in
//! a node reads the simulation to find out.
//!
//! In Kubernetes the public address is a Service's fixed ClusterIP, which no interface
//! of the pod carries: the pod binds every interface on the configured ports and the
//! Service sends the ClusterIP's traffic there (`meridian run --bind-any`).

use crate::node::{NodeSpec, Role};
use std::net::SocketAddr;

/// How far behind its public port a node listens when a relay holds the public one.
pub const RELAY_PORT_OFFSET: u16 = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// Listeners bind the public addresses (a real host; `up` without the WAN).
    #[default]
    Direct,
    /// A relay on this machine holds each public port; the node binds the port
    /// [`RELAY_PORT_OFFSET`] above it, on the same address.
    BehindRelay,
    /// The public address is not on this machine (a Kubernetes Service's ClusterIP): bind
    /// the same port on every interface, admin listeners included.
    AnyInterface,
}

impl Placement {
    /// Where a listener whose public address is `public` binds.
    pub fn listen(self, public: SocketAddr) -> SocketAddr {
        match self {
            Placement::Direct => public,
            Placement::BehindRelay => {
                SocketAddr::new(public.ip(), public.port().wrapping_add(RELAY_PORT_OFFSET))
            }
            Placement::AnyInterface => any_interface(public),
        }
    }

    /// Where an admin listener (`/health`, `/metrics`) whose public address is `public`
    /// binds: no relay ever holds one, but a pod cannot bind its Service's address.
    pub fn admin(self, public: SocketAddr) -> SocketAddr {
        match self {
            Placement::AnyInterface => any_interface(public),
            Placement::Direct | Placement::BehindRelay => public,
        }
    }

    /// Where node `node`'s main listener binds. Only places with distance to their
    /// clients (balancers, PoPs, DNS servers, databases) can have a relay in front;
    /// instances, caches, the console and the WAN itself always bind their address.
    pub fn listen_of(self, node: &NodeSpec) -> SocketAddr {
        if self == Placement::AnyInterface {
            return any_interface(node.address);
        }
        match node.role {
            Role::Lb | Role::Edge | Role::Dns | Role::Db => self.listen(node.address),
            Role::Service | Role::Cache | Role::Console | Role::Wan => node.address,
        }
    }
}

/// The unspecified address of `public`'s family, on its port.
fn any_interface(public: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if public.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, public.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_interface_binds_every_listener_on_its_port_for_every_role() {
        let node = |role, address: &str, admin: &str| NodeSpec {
            name: "n".into(),
            role,
            region: None,
            az: None,
            address: address.parse().unwrap(),
            admin: admin.parse().unwrap(),
        };
        let lb = node(Role::Lb, "10.96.0.100:8080", "10.96.0.100:9900");
        let svc = node(Role::Service, "10.96.0.101:8000", "10.96.0.101:8000");
        let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
        assert_eq!(Placement::AnyInterface.listen_of(&lb), any(8080));
        assert_eq!(Placement::AnyInterface.listen_of(&svc), any(8000));
        assert_eq!(Placement::AnyInterface.admin(lb.admin), any(9900));
        assert_eq!(
            Placement::AnyInterface.listen("[fd00::5]:53".parse().unwrap()),
            "[::]:53".parse::<SocketAddr>().unwrap()
        );
        // The others leave admin listeners where the config says.
        assert_eq!(Placement::Direct.admin(lb.admin), lb.admin);
        assert_eq!(Placement::BehindRelay.admin(lb.admin), lb.admin);
        assert_eq!(Placement::Direct.listen_of(&svc), svc.address);
    }
}
