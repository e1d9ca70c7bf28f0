//! Live configuration: a PoP's distribution is swapped whole on reload (SIGHUP, `meridian
//! apply`), so new requests see the new behaviors and policies while requests in flight
//! finish on the old ones; the cache, origins and their health checks, fills in flight,
//! listeners and connections carry over.

use crate::edge::Edge;
use meridian_config::diff::{changed_fields, EDGE_RESTART_FIELDS};
use meridian_config::Config;
use std::sync::{Arc, RwLock};

/// Why a reload was refused (the PoP keeps serving its current config).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config changes {0} of the distribution, which needs a restart")]
    NeedsRestart(String),
}

/// The PoP's current [`Edge`]; each request reads it once.
#[derive(Clone)]
pub struct LiveEdge(Arc<RwLock<Edge>>);

impl LiveEdge {
    pub fn new(edge: Edge, digest: &str) -> Self {
        if let Ok(mut d) = edge.0.config_digest.write() {
            *d = digest.to_owned();
        }
        LiveEdge(Arc::new(RwLock::new(edge)))
    }

    /// The distribution for one request: an uncontended read lock and a reference count.
    pub fn now(&self) -> Edge {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `config`'s distribution from the next request on, unless it changes a part
    /// only a restart can (then nothing changes).
    pub fn reload(&self, config: &Config, digest: &str) -> Result<(), ReloadError> {
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        let blocked: Vec<String> = changed_fields(&current.0.dist, &config.distribution)
            .into_iter()
            .filter(|f| EDGE_RESTART_FIELDS.contains(&f.as_str()))
            .collect();
        if !blocked.is_empty() {
            return Err(ReloadError::NeedsRestart(blocked.join(", ")));
        }
        *current = current.reloaded(config);
        if let Ok(mut d) = current.0.config_digest.write() {
            *d = digest.to_owned();
        }
        Ok(())
    }
}

/// New configs for a running PoP, with their files' digests (the supervisor sends one
/// per SIGHUP that read a valid file).
pub type Reloads = tokio::sync::mpsc::Receiver<(Config, String)>;
