//! `[distribution.tiered_cache]`: CloudFront's regional edge caches and Origin Shield.
//!
//! With it on, every region gets a regional edge cache (an `edge` node named
//! `edge-rec-<region>`, placed in the region, with no viewers of its own) and the PoPs send
//! their misses to a region's cache before its balancer, so the misses of many PoPs for one
//! object collapse into one origin request. Off by default: it adds a node per region and a
//! hop to every miss, which the default deployment's tests and numbers were not made with.

use crate::error::Diagnostics;
use crate::read::Table;
use crate::region::Region;
use crate::units::ByteSize;
use serde::Serialize;

/// The cache tier between the PoPs and the regions' balancers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TieredCache {
    /// A regional edge cache in every region, in front of its balancer.
    pub enabled: bool,
    /// CloudFront's Origin Shield: the region whose regional cache alone talks to the
    /// origins; the other regional caches send their misses to it.
    pub origin_shield_region: Option<String>,
    /// Each regional cache's memory tier (as a PoP's `memory_cache`).
    pub memory_cache: ByteSize,
    /// Each regional cache's disk tier (as a PoP's `disk_cache`): larger than a PoP's by
    /// default, since a regional cache holds what many PoPs ask for.
    pub disk_cache: ByteSize,
}

impl Default for TieredCache {
    fn default() -> Self {
        TieredCache {
            enabled: false,
            origin_shield_region: None,
            memory_cache: ByteSize(512 << 20),
            disk_cache: ByteSize(4 << 30),
        }
    }
}

/// Reads `[distribution.tiered_cache]` (the default when absent); None after an error.
pub(crate) fn read_tiered_cache(
    t: &Table,
    d: &mut Diagnostics,
    regions: &[Region],
) -> Option<TieredCache> {
    let mut out = TieredCache::default();
    let Some(s) = t.table(d, "tiered_cache") else {
        return Some(out);
    };
    let mut ok = true;
    out.enabled = s.bool(d, "enabled").unwrap_or(true);
    if let Some(m) = s.size(d, "memory_cache") {
        out.memory_cache = m;
    }
    if let Some(m) = s.size(d, "disk_cache") {
        out.disk_cache = m;
    }
    if let (Some(name), Some(f)) = (
        s.str(d, "origin_shield_region"),
        s.get("origin_shield_region"),
    ) {
        if regions.iter().any(|r| r.name == name) {
            out.origin_shield_region = Some(name);
        } else {
            let known: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
            d.error(
                f.span.clone(),
                &f.key,
                format!("`{name}` is not a region of this deployment"),
                format!(
                    "name one of the [[region]]s ({}), or remove origin_shield_region",
                    known.join(", ")
                ),
            );
            ok = false;
        }
        if !out.enabled && ok {
            d.error(
                f.span,
                &f.key,
                "an Origin Shield needs the regional edge caches, which are off",
                "set enabled = true in [distribution.tiered_cache], or remove origin_shield_region",
            );
            ok = false;
        }
    }
    s.finish(d);
    ok.then_some(out)
}
