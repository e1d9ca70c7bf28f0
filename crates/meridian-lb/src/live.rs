//! Live configuration: a running balancer takes a new `[load_balancer]` in place (SIGHUP,
//! `meridian apply`). Listener rules and the balancer-wide settings are swapped whole
//! (`settings.rs`), each target group's settings likewise (algorithm, stickiness, slow
//! start, deregistration delay, health check); connections stay open, requests in flight
//! finish on the settings they started with, and every target keeps its health. What
//! the balancer was built from (which groups and targets exist, anomaly mitigation, TLS,
//! the access log) needs a restart: such a file is refused whole and nothing changes.

use crate::proxy::LoadBalancer;
use crate::settings::Settings;
use crate::target::TargetGroup;
use meridian_config::diff::lb_restart_reasons;

/// Why a reload was refused (the balancer keeps serving its current config).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config changes {0} of the load balancer, which needs a restart")]
    NeedsRestart(String),
}

/// New configs for a running balancer, with their files' digests (the supervisor sends
/// one per SIGHUP that read a valid file).
pub type Reloads = tokio::sync::mpsc::Receiver<(meridian_config::Config, String)>;

impl LoadBalancer {
    /// The digest of the config file the balancer serves (`/health`'s `config`).
    pub fn config_digest(&self) -> String {
        self.current().digest()
    }

    pub(crate) fn set_config_digest(&self, digest: &str) {
        self.current().set_digest(digest);
    }

    /// Serves the balancer's part of `config` from the next request on, unless it changes
    /// what only a restart can (then nothing changes): its `[load_balancer]`, and the
    /// targets the config gives its region.
    pub fn reload_config(
        &self,
        config: &meridian_config::Config,
        region: &str,
        digest: &str,
    ) -> Result<(), ReloadError> {
        let key = |t: &meridian_config::NodeSpec| (t.name.clone(), t.address, t.az.clone());
        let (was, now) = (self.configured_targets(), config.targets_of(region));
        if was.len() != now.len() || was.iter().zip(&now).any(|(a, b)| key(a) != key(b)) {
            return Err(ReloadError::NeedsRestart("the targets".to_owned()));
        }
        self.reload(&config.load_balancer, digest)
    }

    /// Takes `config` in place, unless it changes what only a restart can.
    pub fn reload(
        &self,
        config: &meridian_config::LoadBalancer,
        digest: &str,
    ) -> Result<(), ReloadError> {
        let old = self.current().get();
        let blocked = lb_restart_reasons(&old.config, config);
        if !blocked.is_empty() {
            return Err(ReloadError::NeedsRestart(blocked.join(", ")));
        }
        // Same names in the same order (checked above): group i stays group i.
        for (i, (group, new)) in self
            .groups()
            .iter()
            .zip(config.effective_target_groups())
            .enumerate()
        {
            if let Some(twin) = self.twins().get(i) {
                let mut own = new.clone();
                own.name = twin.name.clone();
                retune(twin, own);
            }
            retune(group, new);
        }
        self.websockets()
            .set_timing(config.idle_timeout, config.deregistration_delay);
        self.current()
            .set(Settings::new(config.clone(), self.groups()), digest);
        tracing::info!(lb = %self.name(), config = %digest, "load balancer reloaded its settings");
        Ok(())
    }
}

/// Gives `group` its new settings; a changed health check restarts the group's probes
/// from each target's current state (a healthy target stays healthy until the new check
/// fails it as many times as the new unhealthy threshold says).
fn retune(group: &TargetGroup, new: meridian_config::TargetGroup) {
    let old = group.config();
    let changed = serde_json::to_value(&old.health_check).ok()
        != serde_json::to_value(&new.health_check).ok();
    let check = new.health_check.clone();
    group.set_config(new);
    if !changed {
        return;
    }
    for t in &group.targets {
        let mut probe = t.probe.lock().unwrap_or_else(|p| p.into_inner());
        // A target out of the group (drained) has no checks to restart.
        let Some(old_probe) = probe.take() else {
            continue;
        };
        old_probe.abort();
        group
            .board
            .set_thresholds(&t.name, check.healthy_threshold, check.unhealthy_threshold);
        *probe = Some(group.board.watch(&t.name, t.addr, check.clone()));
    }
}
