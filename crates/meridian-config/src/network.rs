//! `[network]`: where nodes listen (one loopback /16, a port per kind of listener), and
//! the network type that client locations and IP-based routing share.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::net::Ipv4Addr;

/// Where nodes listen: one loopback /16 and a port per kind of listener.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// First two octets of the node subnet (`127.10` of `127.10.0.0/16`).
    pub subnet: [u8; 2],
    pub lb_port: u16,
    /// HTTPS viewer port of each edge PoP (HTTP is on `lb_port`).
    pub https_port: u16,
    pub service_port: u16,
    pub admin_port: u16,
}

impl Network {
    pub fn addr(&self, third: u8, fourth: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], third, fourth)
    }
}

pub(crate) fn default_network() -> Network {
    Network {
        subnet: [127, 10],
        lb_port: 8080,
        https_port: 8443,
        service_port: 8000,
        admin_port: 9900,
    }
}

pub(crate) fn read_network(t: &Table, d: &mut Diagnostics) -> Option<Network> {
    let mut n = default_network();
    if let Some(s) = t.str(d, "subnet") {
        let f = t.get("subnet")?;
        match parse_loopback_16(&s) {
            Some(sub) => n.subnet = sub,
            None => d.error(
                f.span,
                &f.key,
                format!("`{s}` is not a /16 inside the loopback range 127.0.0.0/8"),
                "use a subnet such as \"127.10.0.0/16\"; every node gets its own address in it",
            ),
        }
    }
    let port = |d: &mut Diagnostics, key, default: u16| {
        t.int(d, key, 1..=65535)
            .map(|p| p as u16)
            .unwrap_or(default)
    };
    n.lb_port = port(d, "lb_port", n.lb_port);
    n.https_port = port(d, "https_port", n.https_port);
    n.service_port = port(d, "service_port", n.service_port);
    n.admin_port = port(d, "admin_port", n.admin_port);
    let ports = [
        ("lb_port", n.lb_port),
        ("https_port", n.https_port),
        ("service_port", n.service_port),
        ("admin_port", n.admin_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                let f = t.get(b)?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{b}` and `{a}` are both {pa}"),
                    "give each kind of listener its own port",
                );
            }
        }
    }
    t.finish(d);
    Some(n)
}

fn parse_loopback_16(s: &str) -> Option<[u8; 2]> {
    let (addr, len) = s.split_once('/')?;
    if len.trim() != "16" {
        return None;
    }
    let ip: std::net::Ipv4Addr = addr.trim().parse().ok()?;
    let o = ip.octets();
    (o[0] == 127 && o[2] == 0 && o[3] == 0).then_some([o[0], o[1]])
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The `n`th address of the network (1 is its first host): where a simulated client
    /// of a location sends from.
    pub fn host(&self, n: u32) -> std::net::IpAddr {
        match self.addr {
            std::net::IpAddr::V4(v) => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v).wrapping_add(n)))
            }
            std::net::IpAddr::V6(v) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v).wrapping_add(n.into()),
            )),
        }
    }

    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let prefix: u8 = p.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn bits(ip: std::net::IpAddr) -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let (a, alen) = bits(self.addr);
        let (b, blen) = bits(ip);
        if alen != blen {
            return false;
        }
        // IPv4 sits in the top 32 bits, so a prefix counts from the top either way.
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        (a & mask) == (b & mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
