//! An origin group's members as the config names them: where each one listens, how it is
//! checked, and the round trip the latency model gives it from this PoP (the prior its
//! ranking starts from).

use meridian_config::{Config, OriginGroup, OriginMember, Place};
use meridian_health::{HealthBoard, HealthHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// One origin of a group.
pub struct Member {
    /// How it is written in the config (`lb:us-east-1`, `http://10.0.0.5:80`).
    pub name: String,
    /// Where requests and health checks go: checks take the way traffic takes (through
    /// the WAN when there is one), and a balancer answers /health there only while one of
    /// its targets does.
    pub addr: SocketAddr,
    /// Requests go over TLS (a balancer with `origin_protocol = "https"`): `addr` is then
    /// the balancer's TLS port.
    pub tls: bool,
    /// Where health checks go: plain HTTP to the balancer's HTTP port on the health path
    /// (a balancer's /health says whether its targets are up, not its certificate).
    pub check_addr: SocketAddr,
    /// Its name on the health board (`<group>/<member>`).
    pub key: String,
    pub health: HealthHandle,
    /// Exponentially weighted round trip of passing health checks (half a probe, which
    /// opens a connection), in microseconds (0 until measured).
    pub rtt_us: AtomicU64,
    /// The round trip the prior gives for this PoP and member, in microseconds: what the
    /// PoP ranks by until it has measured (None without a prior, or for a plain address).
    pub prior_us: Option<u64>,
    /// How long its response heads usually take: when to hedge a request to it.
    pub head_latency: super::hedge::HeadLatency,
    /// A regional edge cache in front of the balancer that is the next member
    /// (`tier.rs`); None for a balancer or a plain origin.
    pub tier: Option<super::tier::Tier>,
}

pub struct Group {
    pub cfg: OriginGroup,
    pub members: Vec<Member>,
}

/// TLS server names of balancers' TLS addresses, for the origin pool's certificate checks.
pub(super) type TlsNames = HashMap<SocketAddr, rustls::pki_types::ServerName<'static>>;

/// Every origin group of the config, each member registered on `board`.
pub(super) fn from_config(
    cfg: &Config,
    pop: &str,
    prior: &meridian_config::Prior,
    board: &HealthBoard,
    https: bool,
) -> (Vec<Arc<Group>>, TlsNames) {
    let mut tls_names = HashMap::new();
    let groups = cfg
        .distribution
        .origin_groups
        .iter()
        .map(|g| {
            let hc = &g.health_check;
            let mut members = Vec::new();
            for m in &g.members {
                if let OriginMember::Lb(region) = m {
                    if let Some((kind, addr, name)) = super::tier::member_for(cfg, pop, region) {
                        let key = format!("{}/{name}", g.name);
                        let prior_us = prior
                            .as_ref()
                            .and_then(|p| {
                                p.round_trip(super::tier::place(cfg, pop), Place::Region(region))
                            })
                            .map(|d| d.as_micros() as u64);
                        members.push(Member {
                            health: board.register(
                                &key,
                                hc.healthy_threshold,
                                hc.unhealthy_threshold,
                            ),
                            key,
                            name,
                            addr,
                            tls: false,
                            check_addr: addr,
                            rtt_us: AtomicU64::new(0),
                            prior_us,
                            head_latency: Default::default(),
                            tier: Some(kind),
                        });
                    }
                }
                let (check_addr, prior_rtt) = match m {
                    OriginMember::Lb(region) => {
                        let rtt = prior.as_ref().and_then(|p| {
                            p.round_trip(super::tier::place(cfg, pop), Place::Region(region))
                        });
                        let Some(a) = cfg.lb_address(region) else {
                            continue;
                        };
                        (a, rtt)
                    }
                    OriginMember::Address(a) => (*a, None),
                };
                let (addr, tls) = match m {
                    OriginMember::Lb(region) if https => {
                        let Some(addr) = cfg.lb_tls_address(region) else {
                            continue;
                        };
                        if let Ok(name) =
                            rustls::pki_types::ServerName::try_from(cfg.lb_server_name(region))
                        {
                            tls_names.insert(addr, name);
                        }
                        (addr, true)
                    }
                    _ => (check_addr, false),
                };
                let name = m.to_string();
                let key = format!("{}/{name}", g.name);
                members.push(Member {
                    health: board.register(&key, hc.healthy_threshold, hc.unhealthy_threshold),
                    key,
                    name,
                    addr,
                    tls,
                    check_addr,
                    rtt_us: AtomicU64::new(0),
                    prior_us: prior_rtt.map(|d| d.as_micros() as u64),
                    head_latency: Default::default(),
                    tier: None,
                });
            }
            Arc::new(Group {
                cfg: g.clone(),
                members,
            })
        })
        .collect();
    (groups, tls_names)
}
