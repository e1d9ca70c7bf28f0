//! `[cache]`: the cache tier in the words of ElastiCache for Redis. Every region listed
//! holds one cache cluster: a primary node in the region's first AZ and, Multi-AZ, a
//! replica in its second that the keepers promote when the primary is lost. Each is a node
//! `redis-<az>` of its own; the region's primary endpoint always leads to the primary.

use crate::error::Diagnostics;
use crate::read::Table;
use crate::units::ByteSize;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct CacheTier {
    /// One cache cluster per region listed (default: every region).
    pub clusters: Vec<CacheCluster>,
    /// The port Redis listens on at every cache node's address, and the primary
    /// endpoint's port.
    pub port: u16,
    /// The memory Redis may use for data before it evicts (`maxmemory`).
    pub maxmemory: ByteSize,
    /// Which keys go when `maxmemory` is reached (`maxmemory-policy`).
    pub eviction: Eviction,
    /// How long a replica waits, with its primary unreachable, before it takes over.
    #[serde(with = "crate::serde_duration")]
    pub failover: Duration,
}

/// One region's cache cluster (ElastiCache's replication group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheCluster {
    pub region: String,
    /// The AZ of the node that starts as primary: the region's first.
    pub primary_az: String,
    /// The AZ of the replica (Multi-AZ); None for a single-node cluster.
    pub replica_az: Option<String>,
}

/// Redis's `maxmemory-policy` values that make sense for a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eviction {
    AllkeysLru,
    AllkeysLfu,
    VolatileLru,
    VolatileTtl,
    Noeviction,
}

impl Eviction {
    const NAMES: [&'static str; 5] = [
        "allkeys-lru",
        "allkeys-lfu",
        "volatile-lru",
        "volatile-ttl",
        "noeviction",
    ];

    /// The word Redis's config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::AllkeysLru => "allkeys-lru",
            Eviction::AllkeysLfu => "allkeys-lfu",
            Eviction::VolatileLru => "volatile-lru",
            Eviction::VolatileTtl => "volatile-ttl",
            Eviction::Noeviction => "noeviction",
        }
    }
}

/// What a cache node is in its cluster (the role it starts in, and the one a keeper
/// reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheRole {
    /// Takes every write; the primary endpoint leads here.
    Primary,
    /// Copies the primary; promoted when the primary is lost.
    Replica,
}

impl CacheRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheRole::Primary => "primary",
            CacheRole::Replica => "replica",
        }
    }
}

impl CacheTier {
    /// Every cache node: (region, AZ, role), each cluster's primary first.
    pub fn nodes(&self) -> Vec<(String, String, CacheRole)> {
        let mut out = Vec::new();
        for c in &self.clusters {
            out.push((c.region.clone(), c.primary_az.clone(), CacheRole::Primary));
            if let Some(az) = &c.replica_az {
                out.push((c.region.clone(), az.clone(), CacheRole::Replica));
            }
        }
        out
    }

    pub fn cluster(&self, region: &str) -> Option<&CacheCluster> {
        self.clusters.iter().find(|c| c.region == region)
    }
}

/// Node name of the cache node in `az`.
pub fn cache_node_name(az: &str) -> String {
    format!("redis-{az}")
}

/// Less than this and Redis evicts almost at once; a typo ("64KiB") more likely than intent.
const MIN_MAXMEMORY: u64 = 1 << 20;

pub(crate) fn read_cache(
    t: &Table,
    d: &mut Diagnostics,
    regions: &[crate::region::Region],
) -> Option<CacheTier> {
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    let mut ok = true;
    let listed: Vec<(String, Option<std::ops::Range<usize>>)> = match t.str_list(d, "regions") {
        Some(list) => list
            .into_iter()
            .map(|s| {
                let span = s.span();
                (s.into_inner(), Some(span))
            })
            .collect(),
        None => {
            ok &= !t.has("regions");
            regions.iter().map(|r| (r.name.clone(), None)).collect()
        }
    };
    let multi_az = t.bool(d, "multi_az").unwrap_or(true);
    let regions_key = t.get("regions").map(|f| f.key);
    let mut clusters: Vec<CacheCluster> = Vec::new();
    for (name, span) in &listed {
        // Errors point at the list item when there is one, else at the table.
        let at = span.clone().unwrap_or(t.span.clone());
        let key = regions_key.clone().unwrap_or(t.path.clone());
        let Some(region) = regions.iter().find(|r| &r.name == name) else {
            d.error(
                at,
                &key,
                format!("`{name}` names no region"),
                format!("use one of: {}", names.join(", ")),
            );
            ok = false;
            continue;
        };
        if clusters.iter().any(|c| &c.region == name) {
            d.error(
                at,
                &key,
                format!("`{name}` is listed twice"),
                "a region holds one cache cluster: list it once",
            );
            ok = false;
            continue;
        }
        let Some(primary_az) = region.azs.first().cloned() else {
            d.error(
                at,
                &key,
                format!("the region `{name}` has no AZ to hold a cache node"),
                format!("add azs = [\"{name}a\"] to the region"),
            );
            ok = false;
            continue;
        };
        let replica_az = if multi_az {
            match region.azs.get(1) {
                Some(az) => Some(az.clone()),
                None => {
                    let (span, key) = t
                        .get("multi_az")
                        .map(|f| (f.span, f.key))
                        .unwrap_or((at, key));
                    d.error(
                        span,
                        &key,
                        format!(
                            "Multi-AZ needs a second AZ in {name} for the replica, which has only {primary_az}"
                        ),
                        format!(
                            "add an AZ to the region `{name}`, leave it out of `regions`, or set multi_az = false"
                        ),
                    );
                    ok = false;
                    None
                }
            }
        } else {
            None
        };
        clusters.push(CacheCluster {
            region: name.clone(),
            primary_az,
            replica_az,
        });
    }
    let port = t.int(d, "port", 1..=65_535).unwrap_or(6379) as u16;
    let maxmemory = match t.size(d, "maxmemory") {
        Some(m) if m.0 < MIN_MAXMEMORY => {
            if let Some(f) = t.get("maxmemory") {
                d.error(
                    f.span,
                    &f.key,
                    format!("a maxmemory of {m} leaves no room for a cache"),
                    "use at least \"1MiB\", such as maxmemory = \"64MiB\"",
                );
            }
            ok = false;
            m
        }
        Some(m) => m,
        None => {
            ok &= !t.has("maxmemory");
            ByteSize(64 << 20)
        }
    };
    let eviction = match t.choice(d, "eviction", &Eviction::NAMES) {
        Some("allkeys-lfu") => Eviction::AllkeysLfu,
        Some("volatile-lru") => Eviction::VolatileLru,
        Some("volatile-ttl") => Eviction::VolatileTtl,
        Some("noeviction") => Eviction::Noeviction,
        _ => Eviction::AllkeysLru,
    };
    let failover = t.duration(d, "failover").unwrap_or(Duration::from_secs(3));
    if !(Duration::from_millis(500)..=Duration::from_secs(60)).contains(&failover) {
        if let Some(f) = t.get("failover") {
            d.error(
                f.span,
                &f.key,
                "the failover time must be between 500ms and 60s",
                "write failover = \"3s\"",
            );
        }
        ok = false;
    }
    t.finish(d);
    ok.then_some(CacheTier {
        clusters,
        port,
        maxmemory,
        eviction,
        failover,
    })
}
