//! The part of a balancer's configuration a reload swaps whole: the balancer-wide
//! settings and the compiled listener rules. A request reads it once, so it runs on one
//! version from its first rule to its last retry, while the next request may see the new.
//!
//! Kept apart from `live.rs` (which drives a reload through the balancer) so that
//! `proxy.rs` can hold a [`Settings`] without naming the file that names it.

use crate::rules::Rules;
use crate::target::TargetGroup;
use std::sync::{Arc, RwLock};

/// One version of the swappable settings.
pub(crate) struct Settings {
    pub config: meridian_config::LoadBalancer,
    pub rules: Rules,
}

impl Settings {
    /// `config`'s settings, its rules resolved against `groups` (the same list, in the
    /// same order, for the balancer's life: a reload never changes which groups exist).
    pub fn new(config: meridian_config::LoadBalancer, groups: &[TargetGroup]) -> Self {
        let rules = Rules::new(&config.rules, groups);
        Settings { config, rules }
    }
}

/// The current [`Settings`] and the digest of the config file they came from (what
/// `/health` reports so `meridian apply` can tell the node took a new file).
pub(crate) struct Current {
    settings: RwLock<Arc<Settings>>,
    digest: RwLock<String>,
}

impl Current {
    pub fn new(settings: Settings, digest: &str) -> Self {
        Current {
            settings: RwLock::new(Arc::new(settings)),
            digest: RwLock::new(digest.to_owned()),
        }
    }

    /// The settings now: a read lock held for one reference count.
    pub fn get(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set(&self, settings: Settings, digest: &str) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        *self.digest.write().unwrap_or_else(|p| p.into_inner()) = digest.to_owned();
    }

    pub fn set_digest(&self, digest: &str) {
        *self.digest.write().unwrap_or_else(|p| p.into_inner()) = digest.to_owned();
    }

    pub fn digest(&self) -> String {
        self.digest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
