//! The health-check engine every Meridian part uses (load balancer, DNS, edge, `up`).
//!
//! A [`HealthBoard`] holds the health of a set of targets. [`HealthBoard::watch`] starts
//! active probing of one target; [`HealthBoard::report_failure`] lets a proxy report what
//! it saw on live traffic (passive checks). Every state change is published the moment it
//! happens to all [`HealthBoard::subscribe`]rs, and readers on the hot path get a
//! lock-free [`HealthHandle`].

mod grpc;
mod probe;
pub use grpc::HEALTH_CHECK_PATH as GRPC_HEALTH_CHECK_PATH;
mod threshold;

pub use probe::{probe, probe_from, ProbeOutcome};
pub use threshold::{Health, Tracker};

use meridian_config::HealthCheck;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// One change of a target's health, with its cause.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthEvent {
    pub target: String,
    pub from: Health,
    pub to: Health,
    pub reason: String,
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(ms as u64)
    }
}

/// A cheap, lock-free view of one target's current health.
#[derive(Clone, Debug)]
pub struct HealthHandle(Arc<AtomicU8>);

impl HealthHandle {
    pub fn get(&self) -> Health {
        Health::from_u8(self.0.load(Ordering::Relaxed))
    }
    pub fn is_healthy(&self) -> bool {
        self.get() == Health::Healthy
    }
}

struct Entry {
    tracker: Tracker,
    handle: HealthHandle,
    last: Option<ProbeOutcome>,
}

struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    events: broadcast::Sender<HealthEvent>,
    /// Bumped on every state change, so readers can tell cheaply whether anything moved.
    generation: std::sync::atomic::AtomicU64,
}

/// The health of a set of named targets.
#[derive(Clone)]
pub struct HealthBoard {
    inner: Arc<Inner>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot of one target for status pages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub health: Health,
    pub last_probe: Option<ProbeOutcome>,
}

impl HealthBoard {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        HealthBoard {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                events,
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a target (state `Unknown`) and returns its handle; idempotent.
    pub fn register(
        &self,
        target: &str,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> HealthHandle {
        self.entries()
            .entry(target.to_owned())
            .or_insert_with(|| Entry {
                tracker: Tracker::new(healthy_threshold, unhealthy_threshold),
                handle: HealthHandle(Arc::new(AtomicU8::new(Health::Unknown as u8))),
                last: None,
            })
            .handle
            .clone()
    }

    /// Starts a target over, as a new registration: state `Unknown`, thresholds counted
    /// from zero (a target registered again is decided by its next checks, not its past).
    pub fn reset(&self, target: &str, healthy_threshold: u32, unhealthy_threshold: u32) {
        if let Some(e) = self.entries().get_mut(target) {
            e.tracker = Tracker::new(healthy_threshold, unhealthy_threshold);
            e.handle.0.store(Health::Unknown as u8, Ordering::Relaxed);
            e.last = None;
        }
    }

    /// Changes a target's thresholds and keeps its state (a health check changed by a
    /// reload: a healthy target stays healthy until its checks say otherwise).
    pub fn set_thresholds(&self, target: &str, healthy_threshold: u32, unhealthy_threshold: u32) {
        if let Some(e) = self.entries().get_mut(target) {
            e.tracker
                .set_thresholds(healthy_threshold, unhealthy_threshold);
        }
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    pub fn health(&self, target: &str) -> Health {
        self.entries()
            .get(target)
            .map(|e| e.handle.get())
            .unwrap_or(Health::Unknown)
    }

    pub fn snapshot(&self) -> Vec<TargetStatus> {
        let mut out: Vec<TargetStatus> = self
            .entries()
            .iter()
            .map(|(k, e)| TargetStatus {
                target: k.clone(),
                health: e.handle.get(),
                last_probe: e.last.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    /// Feeds one active probe result through the target's thresholds.
    pub fn observe(&self, target: &str, outcome: ProbeOutcome) {
        let event = {
            let mut entries = self.entries();
            let Some(e) = entries.get_mut(target) else {
                return;
            };
            let change = e.tracker.observe(outcome.healthy);
            let reason = outcome.detail.clone();
            e.last = Some(outcome);
            change.map(|(from, to)| {
                e.handle.0.store(to as u8, Ordering::Relaxed);
                HealthEvent {
                    target: target.to_owned(),
                    from,
                    to,
                    reason,
                    at: SystemTime::now(),
                }
            })
        };
        if let Some(ev) = event {
            self.publish(ev);
        }
    }

    /// A passive check: live traffic saw the target fail (connection refused or reset).
    /// It goes unhealthy at once; active probes must then pass the healthy threshold.
    pub fn report_failure(&self, target: &str, reason: &str) {
        let event = {
            let mut entries = self.entries();
            let Some(e) = entries.get_mut(target) else {
                return;
            };
            e.tracker.force_unhealthy().map(|(from, to)| {
                e.handle.0.store(to as u8, Ordering::Relaxed);
                HealthEvent {
                    target: target.to_owned(),
                    from,
                    to,
                    reason: format!("passive: {reason}"),
                    at: SystemTime::now(),
                }
            })
        };
        if let Some(ev) = event {
            self.publish(ev);
        }
    }

    /// Changes with every health change of any target (answers cached under one
    /// generation are stale under the next).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn publish(&self, ev: HealthEvent) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(target = %ev.target, from = ?ev.from, to = ?ev.to, reason = %ev.reason, "health changed");
        // No subscribers is fine: the state is still recorded.
        let _ = self.inner.events.send(ev);
    }

    /// Starts probing `addr` every `check.interval` until the returned task is aborted.
    /// The first probe runs at once so a new target is known quickly.
    pub fn watch(&self, target: &str, addr: SocketAddr, check: HealthCheck) -> JoinHandle<()> {
        self.watch_with(target, addr, check, Watch::default())
    }

    /// [`HealthBoard::watch`], with probes leaving from `how.from` and each result handed
    /// to `how.on_probe` once the board has taken it in.
    pub fn watch_with(
        &self,
        target: &str,
        addr: SocketAddr,
        check: HealthCheck,
        how: Watch,
    ) -> JoinHandle<()> {
        self.register(target, check.healthy_threshold, check.unhealthy_threshold);
        let board = self.clone();
        let target = target.to_owned();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(check.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let outcome = probe_from(how.from, addr, &check).await;
                match &how.on_probe {
                    Some(on_probe) => {
                        board.observe(&target, outcome.clone());
                        on_probe(&outcome);
                    }
                    None => board.observe(&target, outcome),
                }
            }
        })
    }
}

/// Told every probe result of one watched target: how a user of the board learns what a
/// state change does not say (the round trip that ranks an edge's origins), from the same
/// probes rather than a second loop of its own.
pub type ProbeObserver = Arc<dyn Fn(&ProbeOutcome) + Send + Sync>;

/// How [`HealthBoard::watch_with`] probes one target, beyond what the check says.
#[derive(Clone, Default)]
pub struct Watch {
    /// Probes leave from this address, as the node's traffic does.
    pub from: Option<IpAddr>,
    /// Called after the board has taken each probe result in, so it sees the new state.
    pub on_probe: Option<ProbeObserver>,
}
