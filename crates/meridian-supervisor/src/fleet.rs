//! What rollouts need of the running supervisor, as a leaf module: the slots (one per node
//! process), the [`Fleet`] trait that `up.rs` implements, and the progress report of the
//! rollout. `instances.rs` and `rollout.rs` use only this file, so `up.rs` can use them
//! without an import circle.

use meridian_config::{Config, HealthCheck, NodeSpec};
use meridian_telemetry::prometheus_client::metrics::{family::Family, gauge::Gauge};
use meridian_telemetry::Labels;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};

/// One supervised node and what is known about its current process.
pub(crate) struct Slot {
    pub(crate) spec: NodeSpec,
    pub(crate) pid: Mutex<Option<u32>>,
    pub(crate) restarts: AtomicU32,
    /// The version a service instance runs (`instances.rs`); empty for other roles.
    pub(crate) version: Mutex<String>,
    /// Whether the node should run: false for a service instance's replacement home
    /// until a rollout starts it, and for an instance a rollout has stopped.
    pub(crate) active: AtomicBool,
    /// Set by `POST /restart` (`restart.rs`): the next exit is a restart asked for,
    /// started again at once and not counted as a crash.
    pub(crate) restart_asked: AtomicBool,
}

/// The running supervisor, as rollouts see it.
pub(crate) trait Fleet: Send + Sync + 'static {
    fn config(&self) -> &Config;
    fn state_dir(&self) -> &Path;
    /// The config file the nodes read (`meridian run --config`).
    fn config_path(&self) -> &Path;
    /// The text of the config the nodes run: the start's, then each apply's
    /// (`apply.rs`), whose lock makes applies take turns.
    fn applied(&self) -> &tokio::sync::Mutex<String>;
    /// Every node, and every service instance's replacement home.
    fn slots(&self) -> &[Arc<Slot>];
    /// Runs `slot`'s process from now on, restarting it as any node's, until it is
    /// inactive or the deployment stops.
    fn supervise(self: Arc<Self>, slot: Arc<Slot>);
    /// What `up` probes to call a node healthy.
    fn readiness(&self, spec: &NodeSpec) -> (SocketAddr, HealthCheck);
    /// Rewrites endpoints.json.
    fn publish(&self);
    /// One line of the event log (`events.log`).
    fn event(&self, text: &str);
    fn rollout(&self) -> &Progress;
    /// Autoscaling's state, and the lock a rollout holds against it.
    fn scaling(&self) -> &crate::autoscale_state::Scaling;
}

/// The rollout running or last run, as `GET /rollout` shows it, and every rollout as a
/// series of `meridian_supervisor_rollout` (1 for its current state, labelled with the
/// versions, the state and the reason), which the console turns into timeline events.
#[derive(Default)]
pub(crate) struct Progress(
    pub(crate) Mutex<Option<Report>>,
    pub(crate) Family<Labels, Gauge>,
);

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) version: String,
    pub(crate) previous: String,
    /// How traffic moves (`rollout_strategy.rs`): `rolling`, `canary`, `linear` or
    /// `blue-green`.
    pub(crate) strategy: &'static str,
    /// `running`, `succeeded`, `rolled_back` (the circuit breaker tripped and every
    /// instance is back on `previous`) or `failed` (it stopped where it was).
    pub(crate) state: &'static str,
    /// Why it did not succeed, in one line.
    pub(crate) reason: Option<String>,
    /// Every step, in order.
    pub(crate) steps: Vec<String>,
    pub(crate) regions: Vec<RegionProgress>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RegionProgress {
    pub(crate) region: String,
    /// Instances on the version being rolled out, of `total`.
    pub(crate) done: usize,
    pub(crate) total: usize,
}

impl Progress {
    pub(crate) fn update(&self, f: impl FnOnce(&mut Report)) {
        if let Some(r) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(r)
        }
    }

    /// Moves the rollout's series from `from` (a state) to its report's state.
    pub(crate) fn publish_state(&self, from: Option<&str>) {
        let Some(r) = self.report() else { return };
        // A label value is one line without quotes or backslashes.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if matches!(c, '"' | '\\' | '\n') {
                        '\''
                    } else {
                        c
                    }
                })
                .take(300)
                .collect()
        };
        let labels = |state: &str, reason: &str| -> Labels {
            vec![
                ("version", r.version.clone()),
                ("previous", r.previous.clone()),
                ("state", state.to_owned()),
                ("reason", clean(reason)),
            ]
        };
        if let Some(from) = from {
            self.1.get_or_create(&labels(from, "")).set(0);
        }
        self.1
            .get_or_create(&labels(r.state, r.reason.as_deref().unwrap_or_default()))
            .set(1);
    }

    pub(crate) fn report(&self) -> Option<Report> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Sends `sig` to a node's process.
pub(crate) fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with the pid of a child this supervisor started and has not reaped yet.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}
