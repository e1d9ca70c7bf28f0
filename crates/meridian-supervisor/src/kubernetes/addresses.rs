//! The fixed ClusterIPs: one per node, from the cluster's service range.
//!
//! Kubernetes lets a Service ask for a `clusterIP` of its own inside the range the API
//! server was started with (`--service-cluster-ip-range`, `10.96.0.0/12` by kubeadm's
//! default). Since 1.26 the range's lower band (the first 256 addresses of a /12) is kept
//! for such static requests and dynamic allocation prefers the rest, so addresses taken
//! from there do not collide with Services made later. The first ones are the cluster's
//! own (the API server at .1, the cluster DNS at .10), so the default start is .100.

use super::error::ExportError;
use std::net::Ipv4Addr;

/// The service range and the first address the export may take from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    network: u32,
    prefix: u8,
    start: u32,
}

impl ServiceRange {
    /// `cidr` (an IPv4 network such as `10.96.0.0/12`), starting at `start`, or at the
    /// 100th address of the range when `start` is `None`.
    pub fn new(cidr: &str, start: Option<Ipv4Addr>) -> Result<ServiceRange, ExportError> {
        let bad = |why: &str| {
            ExportError::Range(format!(
                "--service-cidr `{cidr}`: {why}\n  fix: give the cluster's service range, such as 10.96.0.0/12 (kube-apiserver --service-cluster-ip-range)"
            ))
        };
        let (addr, prefix) = cidr.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let addr: Ipv4Addr = addr
            .trim()
            .parse()
            .map_err(|_| bad("not an IPv4 network"))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| (8..=28).contains(p))
            .ok_or_else(|| bad("the prefix must be between /8 and /28"))?;
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr) & mask;
        let start = match start {
            None => network + 100.min(Self::size_of(prefix) / 2),
            Some(ip) => {
                let s = u32::from(ip);
                if s & mask != network || s == network {
                    return Err(ExportError::Range(format!(
                        "--service-ip-start {ip} is not a host of the service range {cidr}\n  fix: give an address inside {}/{prefix}",
                        Ipv4Addr::from(network)
                    )));
                }
                s
            }
        };
        Ok(ServiceRange {
            network,
            prefix,
            start,
        })
    }

    fn size_of(prefix: u8) -> u32 {
        1u32 << (32 - prefix)
    }

    /// The range as `a.b.c.d/p`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// `count` consecutive addresses from the start, or an error when the range ends first
    /// (its last address is the broadcast one, never a Service's).
    pub fn take(&self, count: usize) -> Result<Vec<Ipv4Addr>, ExportError> {
        let last = self.network + Self::size_of(self.prefix) - 2;
        let available = (last + 1).saturating_sub(self.start) as usize;
        if count > available {
            return Err(ExportError::Range(format!(
                "the deployment has {count} nodes but {} from {} holds only {available} addresses\n  fix: give a larger --service-cidr or an earlier --service-ip-start",
                self.cidr(),
                Ipv4Addr::from(self.start)
            )));
        }
        Ok((0..count as u32)
            .map(|i| Ipv4Addr::from(self.start + i))
            .collect())
    }
}

impl Default for ServiceRange {
    /// kubeadm's default range, from its 100th address.
    fn default() -> Self {
        ServiceRange::new("10.96.0.0/12", None).expect("the default range is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_starts_at_the_hundredth_address_of_kubeadms_range() {
        let r = ServiceRange::default();
        assert_eq!(r.cidr(), "10.96.0.0/12");
        let ips = r.take(3).unwrap();
        assert_eq!(
            ips,
            ["10.96.0.100", "10.96.0.101", "10.96.0.102"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
    }

    #[test]
    fn a_range_too_small_or_a_start_outside_it_is_refused() {
        let r = ServiceRange::new("10.0.0.0/28", Some("10.0.0.10".parse().unwrap())).unwrap();
        assert_eq!(r.take(5).unwrap().len(), 5);
        assert!(r.take(6).is_err(), ".10 to .14 are hosts, .15 is broadcast");
        assert!(ServiceRange::new("10.0.0.0/24", Some("10.0.1.5".parse().unwrap())).is_err());
        assert!(ServiceRange::new("10.0.0.0", None).is_err());
        assert!(ServiceRange::new("fd00::/108", None).is_err());
    }
}
