//! Regional edge caches (and Origin Shield) as origin-group members: with
//! `[distribution.tiered_cache]` on, a PoP's group gets, before each balancer member
//! `lb:<region>`, a member `rec:<region>` for that region's regional cache; a regional
//! cache's group gets `shield:<region>` before the shield region's balancer. A tier member
//! is ranked where its balancer is and tried just before it, so a cache that is down or
//! refuses costs one attempt and the same request falls back to the balancer behind it.

use meridian_config::{Config, Place};
use std::net::SocketAddr;

/// Marks a request one edge sends another (a PoP to a regional cache, a regional cache to
/// the shield); its value names the sender. Trusted only with a valid edge signature, so
/// viewers cannot use it to skip the viewer phases.
pub const TIER_HEADER: &str = "meridian-tier";

/// What a PoP checks a regional cache on: the cache answers it itself (being up is what
/// the check asks; the cache fails over between regions on its own).
pub const HEALTH_PATH: &str = "/.meridian/tier/health";

/// Which cache of the tier a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// A region's regional edge cache, in front of that region's balancer.
    Regional,
    /// The Origin Shield region's cache, which the other regional caches go through.
    Shield,
}

/// Where this edge is, for the prior: a PoP's own place, or a regional cache's region.
pub(super) fn place<'a>(cfg: &'a Config, pop: &'a str) -> Place<'a> {
    match cfg.regional_cache_region(pop) {
        Some(r) => Place::Region(r),
        None => Place::Pop(pop),
    }
}

/// The tier member edge `pop` puts before balancer `region`'s, if any: which cache it is,
/// where it listens and its name in the group (`rec:<region>`, `shield:<region>`).
pub(super) fn member_for(
    cfg: &Config,
    pop: &str,
    region: &str,
) -> Option<(Tier, SocketAddr, String)> {
    let t = &cfg.distribution.tiered_cache;
    if !t.enabled {
        return None;
    }
    let kind = match cfg.regional_cache_region(pop) {
        // A PoP: every region's cache in front of its balancer.
        None => Tier::Regional,
        // A regional cache goes to its origins itself, except through the shield when
        // there is one and it is not the shield.
        Some(me) => match &t.origin_shield_region {
            Some(s) if s == region && s != me => Tier::Shield,
            _ => return None,
        },
    };
    let addr = cfg.regional_cache_address(region)?;
    let name = match kind {
        Tier::Regional => format!("rec:{region}"),
        Tier::Shield => format!("shield:{region}"),
    };
    Some((kind, addr, name))
}

/// The health check of a tier member: the group's timing and thresholds, on the path the
/// cache answers itself.
pub(super) fn check(hc: &meridian_config::HealthCheck) -> meridian_config::HealthCheck {
    meridian_config::HealthCheck {
        protocol: meridian_config::CheckProtocol::Http,
        path: HEALTH_PATH.to_owned(),
        matcher: meridian_config::StatusMatcher(vec![(200, 200)]),
        body_contains: None,
        grpc_codes: None,
        ..hc.clone()
    }
}
