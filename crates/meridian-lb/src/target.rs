//! A target group and the algorithms that pick a target from it.

use crate::anomaly::{Detector, Stats};
use crate::targets::Targets;
use meridian_config::Algorithm;
use meridian_health::{HealthBoard, HealthHandle};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Labels;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// One registered target: an application instance.
pub struct Target {
    pub name: String,
    pub az: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: each request's URI is built from it.
    pub(crate) authority: http::uri::Authority,
    pub health: HealthHandle,
    /// Requests sent and not yet answered in full; doubles as the exported gauge.
    pub outstanding: Gauge,
    /// When the target's slow start began (None: full weight).
    pub(crate) ramp_from: Mutex<Option<Instant>>,
    /// The target's current share weight, 0 to 1 (`lb_target_weight`): slow start's
    /// ramp times anomaly mitigation's factor.
    pub(crate) weight: Gauge<f64, AtomicU64>,
    /// Its error rate against its peers' (`anomaly.rs`); counted only in groups with
    /// anomaly mitigation on.
    pub(crate) anomaly: Stats,
    /// [`TargetState`] as a number: registered targets take requests, draining ones
    /// finish theirs, unused ones are out of the group.
    state: AtomicU8,
    /// Its active health checks while it is in the group.
    pub(crate) probe: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Its `lb_requests` counters by status, looked up once each: finding one in the
    /// family takes a label set, which allocates, on every request.
    requests: Mutex<Vec<(u16, Counter)>>,
}

/// Where a target is in its registration (ALB's target states besides health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Registered = 0,
    /// Deregistered: no new requests; in-flight ones and WebSockets get the
    /// deregistration delay.
    Draining = 1,
    /// Out of the group (drained); kept so that indexes stay put.
    Unused = 2,
}

impl Target {
    pub fn new(
        name: String,
        az: String,
        addr: SocketAddr,
        health: HealthHandle,
        outstanding: Gauge,
        weight: Gauge<f64, AtomicU64>,
        anomalous: Gauge,
    ) -> Self {
        weight.set(1.0);
        let authority = http::uri::Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| http::uri::Authority::from_static("0.0.0.0:0"));
        Target {
            name,
            az,
            addr,
            authority,
            health,
            outstanding,
            ramp_from: Mutex::new(None),
            weight,
            anomaly: Stats::new(anomalous),
            state: AtomicU8::new(TargetState::Registered as u8),
            probe: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Counts one answer with `status` from this target of `group` in `family`
    /// (`lb_requests`).
    pub(crate) fn count_answer(&self, family: &Family<Labels, Counter>, group: &str, status: u16) {
        let mut known = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        let c = family
            .get_or_create(&vec![
                ("target", self.name.clone()),
                ("status", status.to_string()),
                ("target_group", group.to_owned()),
            ])
            .clone();
        c.inc();
        known.push((status, c));
    }

    pub fn state(&self) -> TargetState {
        match self.state.load(Ordering::Acquire) {
            0 => TargetState::Registered,
            1 => TargetState::Draining,
            _ => TargetState::Unused,
        }
    }

    pub(crate) fn set_state(&self, s: TargetState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Whether new requests may go to it.
    pub fn in_service(&self) -> bool {
        self.state() == TargetState::Registered
    }

    /// Registered and passing its health checks.
    fn serving(&self) -> bool {
        self.in_service() && self.health.is_healthy()
    }

    pub fn outstanding(&self) -> i64 {
        self.outstanding.get()
    }

    /// The slow start weight now: linear from 0 to 1 over `window`.
    fn ramp(&self, window: Duration, now: Instant) -> f64 {
        let from = *self.ramp_from.lock().unwrap_or_else(|p| p.into_inner());
        match from {
            Some(t) if !window.is_zero() => {
                (now.saturating_duration_since(t).as_secs_f64() / window.as_secs_f64()).min(1.0)
            }
            _ => 1.0,
        }
    }
}

/// ALB's target group: its targets, their health (checked with the group's own health
/// check, so each group has its own board) and how a target is picked.
pub struct TargetGroup {
    pub name: String,
    pub targets: Targets<Target>,
    pub board: HealthBoard,
    /// Its settings: swapped whole by a reload (`live.rs`), so a reader sees the old or
    /// the new settings, never half of each.
    settings: RwLock<Arc<meridian_config::TargetGroup>>,
    next: AtomicUsize,
    /// Anomaly mitigation's answer count (None: off, and nothing is counted).
    detector: Option<Detector>,
    /// Its `lb_target_group_request_duration_seconds`, looked up on its first request.
    duration: OnceLock<Histogram>,
}

impl TargetGroup {
    pub fn new(
        config: meridian_config::TargetGroup,
        targets: Vec<Target>,
        board: HealthBoard,
    ) -> Self {
        TargetGroup {
            name: config.name.clone(),
            targets: Targets::new(targets),
            board,
            detector: config.anomaly_mitigation.then(Detector::default),
            settings: RwLock::new(Arc::new(config)),
            next: AtomicUsize::new(0),
            duration: OnceLock::new(),
        }
    }

    /// The group's request duration histogram in `family`.
    pub(crate) fn duration(
        &self,
        family: &Family<Labels, Histogram, fn() -> Histogram>,
    ) -> &Histogram {
        self.duration.get_or_init(|| {
            family
                .get_or_create(&vec![("target_group", self.name.clone())])
                .clone()
        })
    }

    /// The group's settings now (a reload may swap them between two calls).
    pub fn config(&self) -> Arc<meridian_config::TargetGroup> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes new settings in place (`live.rs` decides which may change: not the name,
    /// AZs, protocol or anomaly mitigation, which the group was built from).
    pub(crate) fn set_config(&self, config: meridian_config::TargetGroup) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub fn healthy_count(&self) -> usize {
        self.targets.iter().filter(|t| t.serving()).count()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }

    /// A target became healthy: with slow start on, and another target of the group
    /// already serving, it starts at weight 0 and rises (ALB does not slow-start the first
    /// healthy target of a group: there is no one else to take the traffic).
    pub(crate) fn became_healthy(&self, i: usize) {
        if self.config().slow_start.is_zero() {
            return;
        }
        let others = self
            .targets
            .iter()
            .enumerate()
            .any(|(j, t)| j != i && t.serving());
        if let Some(t) = self.targets.get(i) {
            *t.ramp_from.lock().unwrap_or_else(|p| p.into_inner()) = others.then(Instant::now);
            t.weight.set(if others { 0.0 } else { 1.0 });
        }
    }

    /// Refreshes the exported weights of targets in slow start; ends finished ramps.
    pub(crate) fn refresh_weights(&self) {
        let now = Instant::now();
        let slow_start = self.config().slow_start;
        for t in &self.targets {
            let w = t.ramp(slow_start, now);
            t.weight.set(w * t.anomaly.weight());
            if w >= 1.0 {
                *t.ramp_from.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
    }

    /// Whether anomaly mitigation is on for the group.
    pub fn anomaly_mitigation(&self) -> bool {
        self.detector.is_some()
    }

    /// Target `i` answered (`error`: a 5xx, or the connection failed; `latency`: how long
    /// its response head took, when one came). With anomaly
    /// mitigation on it is counted, and every [`crate::anomaly::WINDOW`] answers the
    /// group's weights are decided again; off, this is one branch.
    pub(crate) fn answered(&self, i: usize, error: bool, latency: Option<std::time::Duration>) {
        let Some(detector) = &self.detector else {
            return;
        };
        if let Some(t) = self.targets.get(i) {
            t.anomaly.record(error, latency);
        }
        if detector.tick() {
            let list: Vec<(&Stats, bool)> = self
                .targets
                .iter()
                .map(|t| (&t.anomaly, t.serving()))
                .collect();
            crate::anomaly::evaluate(&list);
            self.refresh_weights();
        }
    }

    /// Picks a target not in `tried`, `sticky` first when it is healthy. Healthy targets
    /// first; when no target of the group is healthy the group fails open, as ALB does,
    /// and any untried target may be picked.
    pub fn pick(&self, tried: &[usize], sticky: Option<usize>) -> Option<usize> {
        self.pick_with(&self.config(), tried, sticky)
    }

    /// [`TargetGroup::pick`] under `config`, the group's settings the request read once.
    pub(crate) fn pick_with(
        &self,
        config: &meridian_config::TargetGroup,
        tried: &[usize],
        sticky: Option<usize>,
    ) -> Option<usize> {
        if let Some(i) = sticky.filter(|i| !tried.contains(i)) {
            if self.targets.get(i).is_some_and(|t| t.serving()) {
                return Some(i);
            }
        }
        let any_healthy = self.targets.iter().any(|t| t.serving());
        let eligible = |i: usize| {
            let t = &self.targets[i];
            !tried.contains(&i) && t.in_service() && (!any_healthy || t.health.is_healthy())
        };
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let slow_start = config.slow_start;
        if config.algorithm == Algorithm::WeightedRandom {
            return self.pick_weighted(&eligible, slow_start);
        }
        if !slow_start.is_zero() {
            if let Some(i) = self.pick_ramping(&eligible, slow_start) {
                return Some(i);
            }
        }
        // Rotating start: round robin, and fair tie-breaking for least outstanding.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let order = (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i));
        match config.algorithm {
            Algorithm::RoundRobin | Algorithm::WeightedRandom => order.into_iter().next(),
            Algorithm::LeastOutstandingRequests => {
                order.min_by_key(|&i| self.targets[i].outstanding())
            }
        }
    }

    /// ALB's `weighted_random`: at random in proportion to each eligible target's weight
    /// (slow start's ramp times anomaly mitigation's factor), in two passes over the
    /// targets so that a pick allocates nothing; weights all zero: the first eligible.
    fn pick_weighted(
        &self,
        eligible: &dyn Fn(usize) -> bool,
        slow_start: Duration,
    ) -> Option<usize> {
        let now = Instant::now();
        let ramping = !slow_start.is_zero();
        let weight = |i: usize| {
            let t = &self.targets[i];
            let ramp = if ramping {
                t.ramp(slow_start, now)
            } else {
                1.0
            };
            ramp * t.anomaly.weight()
        };
        let n = self.targets.len();
        let total: f64 = (0..n).filter(|&i| eligible(i)).map(weight).sum();
        if total <= 0.0 {
            return (0..n).find(|&i| eligible(i));
        }
        let mut x = rand::random::<f64>() * total;
        let mut last = None;
        for i in (0..n).filter(|&i| eligible(i)) {
            let w = weight(i);
            if x < w {
                return Some(i);
            }
            x -= w;
            last = Some(i);
        }
        last
    }

    /// While a target is in slow start, picks by weight (random, in proportion), so its
    /// share of new requests rises linearly; None when no eligible target is ramping.
    fn pick_ramping(
        &self,
        eligible: &dyn Fn(usize) -> bool,
        slow_start: Duration,
    ) -> Option<usize> {
        let now = Instant::now();
        let weights: Vec<(usize, f64)> = (0..self.targets.len())
            .filter(|&i| eligible(i))
            .map(|i| (i, self.targets[i].ramp(slow_start, now)))
            .collect();
        if weights.iter().all(|(_, w)| *w >= 1.0) {
            return None;
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = rand::random::<f64>() * total;
        for (i, w) in &weights {
            if x < *w {
                return Some(*i);
            }
            x -= w;
        }
        weights.last().map(|(i, _)| *i)
    }
}
