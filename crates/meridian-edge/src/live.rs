//! Live configuration: a PoP's distribution is swapped whole on reload (SIGHUP, `meridian
//! apply`), so new requests see the new behaviors and policies while requests in flight
//! finish on the old ones; the cache, origins and their health checks, fills in flight,
//! listeners and connections carry over.

use crate::edge::Edge;
use meridian_config::diff::{changed_fields, function_associations, EDGE_RESTART_FIELDS};
use meridian_config::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Why a reload was refused (the PoP keeps serving its current config).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config changes {0} of the distribution, which needs a restart")]
    NeedsRestart(String),
}

/// The PoP's current [`Edge`], and a generation bumped by each reload: a connection keeps
/// the Edge it started with and, per request, only loads the generation to know it is
/// still current (one atomic load on the hit path).
#[derive(Clone)]
pub struct LiveEdge(Arc<Live>);

struct Live {
    current: RwLock<Edge>,
    generation: AtomicU64,
}

impl LiveEdge {
    pub fn new(edge: Edge, digest: &str) -> Self {
        if let Ok(mut d) = edge.0.config_digest.write() {
            *d = digest.to_owned();
        }
        LiveEdge(Arc::new(Live {
            current: RwLock::new(edge),
            generation: AtomicU64::new(0),
        }))
    }

    /// The distribution now: a read lock and a reference count.
    pub fn now(&self) -> Edge {
        self.snapshot().1
    }

    /// The generation and the Edge of that generation, read together.
    pub(crate) fn snapshot(&self) -> (u64, Edge) {
        let current = self.0.current.read().unwrap_or_else(|p| p.into_inner());
        (self.0.generation.load(Ordering::Acquire), current.clone())
    }

    /// Bumped by every reload.
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Serves `config`'s distribution from the next request on, unless it changes a part
    /// only a restart can (then nothing changes).
    pub fn reload(&self, config: &Config, digest: &str) -> Result<(), ReloadError> {
        let mut current = self.0.current.write().unwrap_or_else(|p| p.into_inner());
        let mut blocked: Vec<String> = changed_fields(&current.0.dist, &config.distribution)
            .into_iter()
            .filter(|f| EDGE_RESTART_FIELDS.contains(&f.as_str()))
            .collect();
        if function_associations(&current.0.dist) != function_associations(&config.distribution) {
            blocked.push("function associations".to_owned());
        }
        if !blocked.is_empty() {
            return Err(ReloadError::NeedsRestart(blocked.join(", ")));
        }
        *current = current.reloaded(config);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut d) = current.0.config_digest.write() {
            *d = digest.to_owned();
        }
        Ok(())
    }
}

/// New configs for a running PoP, with their files' digests (the supervisor sends one
/// per SIGHUP that read a valid file).
pub type Reloads = tokio::sync::mpsc::Receiver<(Config, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[deployment]
name = "live"
zone = "live.example"

[network]
subnet = "127.98.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[[edge]]
name = "ashburn"
location = { lat = 39.04, lon = -77.49 }

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]

[[distribution.cache_policy]]
name = "api"
default_ttl = "300s"

[distribution.default_behavior]
origin_group = "regions"
"#;

    fn api_ttl(edge: &Edge) -> std::time::Duration {
        let policies = &edge.0.dist.cache_policies;
        policies
            .iter()
            .find(|p| p.name == "api")
            .unwrap()
            .default_ttl
    }

    fn live() -> LiveEdge {
        let cfg = Config::parse(CONFIG, "live.toml").unwrap();
        let store = crate::store::Store::new(1 << 20, None, 0, None).unwrap();
        let edge = Edge::new(
            "ashburn",
            &cfg,
            &None,
            None,
            store,
            crate::log::AccessLog::open(None),
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        LiveEdge::new(edge, "d0")
    }

    #[test]
    fn a_reload_swaps_the_distribution_and_keeps_the_cache_and_origins() {
        let live = live();
        let (seen, old) = live.snapshot();
        let cfg = Config::parse(&CONFIG.replace("300s", "60s"), "live.toml").unwrap();
        live.reload(&cfg, "d1").unwrap();
        assert_ne!(
            live.generation(),
            seen,
            "connections see that a reload happened"
        );
        let new = live.now();
        assert_eq!(api_ttl(&new), std::time::Duration::from_secs(60));
        assert_eq!(
            api_ttl(&old),
            std::time::Duration::from_secs(300),
            "a request that took the old distribution keeps it"
        );
        assert!(Arc::ptr_eq(old.store(), new.store()), "the cache is kept");
        assert!(
            Arc::ptr_eq(old.origins(), new.origins()),
            "origins and checks are kept"
        );
        assert_eq!(old.config_digest(), "d1", "one digest for the node");
    }

    #[test]
    fn a_reload_that_needs_a_restart_changes_nothing() {
        let live = live();
        let seen = live.generation();
        let cfg = Config::parse(
            &CONFIG.replace("300s", "60s").replace(
                "members = [\"lb:us-east-1\"]",
                "members = [\"lb:us-east-1\"]\nresponse_timeout = \"2s\"",
            ),
            "live.toml",
        )
        .unwrap();
        let e = live.reload(&cfg, "d1").unwrap_err();
        assert!(e.to_string().contains("origin_groups"), "{e}");
        let now = live.now();
        assert_eq!(api_ttl(&now), std::time::Duration::from_secs(300));
        assert_eq!(now.config_digest(), "d0");
        assert_eq!(live.generation(), seen);
    }
}
