//! A region's cache cluster (Redis) as the console shows it, read from its keepers'
//! metrics: which node is primary now, its memory against maxmemory, its hit rate, and
//! each replica's link.

use crate::reading::Reading;
use crate::target::Target;
use serde::Serialize;

/// A region's cache cluster as its keepers report it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CacheView {
    /// The node that is primary now (None while none is).
    pub primary: Option<String>,
    pub nodes: Vec<CacheNodeView>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CacheNodeView {
    pub name: String,
    pub az: Option<String>,
    /// Redis answers its keeper.
    pub up: bool,
    pub primary: bool,
    /// Replica: its link to the primary is up.
    pub link_up: bool,
    pub lag_bytes: Option<f64>,
    pub used_memory: Option<f64>,
    pub maxmemory: Option<f64>,
    /// Lookups that found their key, since Redis started.
    pub hit_rate: Option<f64>,
}

/// The region's cache nodes from their keepers' metrics.
pub(crate) fn cache_of(
    targets: &[Target],
    region: &str,
    readings: &[Option<Reading>],
) -> Option<CacheView> {
    let mut view = CacheView::default();
    for (t, r) in targets.iter().zip(readings) {
        if t.role != "cache" || t.region.as_deref() != Some(region) {
            continue;
        }
        let value = |name: &str| r.as_ref()?.all(name).next().map(|s| s.value);
        let on = |name: &str| value(name).is_some_and(|v| v >= 0.5);
        let n = CacheNodeView {
            name: t.name.clone(),
            az: t.az.clone(),
            up: on("meridian_cache_up"),
            primary: on("meridian_cache_primary"),
            link_up: on("meridian_cache_replication_link_up"),
            lag_bytes: value("meridian_cache_replication_lag_bytes"),
            used_memory: value("meridian_cache_used_memory_bytes"),
            maxmemory: value("meridian_cache_maxmemory_bytes"),
            hit_rate: value("meridian_cache_hit_ratio"),
        };
        if n.primary && n.up {
            view.primary = Some(n.name.clone());
        }
        view.nodes.push(n);
    }
    (!view.nodes.is_empty()).then_some(view)
}
