//! ALB's automatic target weights: anomaly detection and mitigation for a
//! `weighted_random` group with `anomaly_mitigation = true`.
//!
//! A target that passes its health checks but fails or slows live requests (a gray
//! failure) is found by comparing its error rate (5xx answers and failed connections) and
//! its latency (time to the response head) with its peers' in the group, and its weight is
//! halved step by step down to [`FLOOR`]; when it stops standing out, the weight doubles
//! step by step back to 1. Rules (Meridian's, where ALB documents none):
//!
//! - Detection needs at least [`MIN_SERVING`] serving targets (ALB's: anomaly detection
//!   runs on groups with at least three healthy targets); below that every target is
//!   normal and at full weight.
//! - Slow means at least [`LATENCY_FACTOR`] times its peers' mean latency and
//!   [`LATENCY_MARGIN`] above it (the margin keeps sub-millisecond noise from counting);
//!   it is slow no longer once under [`LATENCY_RECOVERED`] times their mean.
//! - Fewer than half of the serving targets are mitigated at once (the worst first), so
//!   the others never carry more than twice their share.
//! - Decisions are made every [`WINDOW`] answers of the group, not on a clock: the
//!   request path only adds to atomics, and whichever request completes a window
//!   evaluates it (no lock, no timer task).
//!
//! This file names nothing of `target.rs` (which names it): the group hands it the
//! per-target [`Stats`] and which targets serve.

use meridian_telemetry::prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Answers of the group between two evaluations.
pub const WINDOW: u64 = 50;
/// Serving targets needed for detection (ALB's three).
pub const MIN_SERVING: usize = 3;
/// The lowest weight mitigation gives: never zero, so a recovered target is seen to be.
pub const FLOOR: f64 = 0.1;
/// A target is anomalous when its smoothed error rate is at least this far above its
/// peers' mean, and at least twice it.
const OUTLIER_MARGIN: f64 = 0.10;
/// ... and normal again once it is within this of its peers' mean (hysteresis).
const RECOVERED_MARGIN: f64 = 0.05;
/// How many answers weigh as much as the history in the smoothed error rate: a window
/// of `n` answers moves it by `n / (n + EVIDENCE)`, so a mitigated target's one or two
/// answers a window move it little, and a full window moves it most of the way.
const EVIDENCE: f64 = 8.0;
/// A target is slow at this many times its peers' mean latency ...
pub const LATENCY_FACTOR: f64 = 2.0;
/// ... and this far above it, in seconds.
pub const LATENCY_MARGIN: f64 = 0.010;
/// ... and no longer slow under this many times their mean (hysteresis).
const LATENCY_RECOVERED: f64 = 1.5;

/// Why a target is anomalous: bits of [`Stats::causes`].
const ERRORS: u32 = 1;
const SLOW: u32 = 2;

/// One target's anomaly state, written by the request path with relaxed atomics.
pub struct Stats {
    requests: AtomicU32,
    errors: AtomicU32,
    /// The smoothed error rate, 0 to 1 (f64 bits).
    rate: AtomicU64,
    /// The window's answer latencies: their sum in microseconds, and how many.
    latency_us: AtomicU64,
    timed: AtomicU32,
    /// The smoothed mean latency in seconds (f64 bits); 0 before the first answer.
    latency: AtomicU64,
    /// What it stands out by now: [`ERRORS`], [`SLOW`].
    causes: AtomicU32,
    /// The mitigation weight, [`FLOOR`] to 1 (f64 bits).
    weight: AtomicU64,
    /// The detection result, 1 anomalous, 0 normal; it is the exported gauge
    /// (`lb_target_anomalous`).
    anomalous: Gauge,
}

fn load(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn store(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Ordering::Relaxed)
}

impl Stats {
    pub fn new(anomalous: Gauge) -> Self {
        anomalous.set(0);
        Stats {
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            rate: AtomicU64::new(0f64.to_bits()),
            latency_us: AtomicU64::new(0),
            timed: AtomicU32::new(0),
            latency: AtomicU64::new(0f64.to_bits()),
            causes: AtomicU32::new(0),
            weight: AtomicU64::new(1f64.to_bits()),
            anomalous,
        }
    }

    /// Counts one answer (an error: a 5xx or a failed connection), and how long its head
    /// took when one came (a failed connection has none worth comparing).
    pub fn record(&self, error: bool, latency: Option<std::time::Duration>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = latency {
            self.latency_us.fetch_add(
                l.as_micros().min(u128::from(u32::MAX)) as u64,
                Ordering::Relaxed,
            );
            self.timed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The factor mitigation applies to the target's weight.
    pub fn weight(&self) -> f64 {
        load(&self.weight)
    }

    /// ALB's anomaly detection result.
    pub fn anomalous(&self) -> bool {
        self.anomalous.get() != 0
    }

    /// ALB's `MitigationInEffect`: the weight is lowered (or still coming back).
    pub fn mitigated(&self) -> bool {
        self.weight() < 1.0
    }

    /// The smoothed error rate the decision is made on.
    pub fn error_rate(&self) -> f64 {
        load(&self.rate)
    }

    /// The smoothed mean latency (seconds) the decision is made on.
    pub fn latency(&self) -> f64 {
        load(&self.latency)
    }

    /// What the target stands out by: `errors`, `latency`, both, or nothing.
    pub fn causes(&self) -> Vec<&'static str> {
        let c = self.causes.load(Ordering::Relaxed);
        let mut out = Vec::new();
        if c & ERRORS != 0 {
            out.push("errors");
        }
        if c & SLOW != 0 {
            out.push("latency");
        }
        out
    }

    /// Back to normal, full weight, no history: the target stopped serving (failed its
    /// health check, or was deregistered) and starts afresh when it returns.
    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        store(&self.rate, 0.0);
        self.latency_us.store(0, Ordering::Relaxed);
        self.timed.store(0, Ordering::Relaxed);
        store(&self.latency, 0.0);
        store(&self.weight, 1.0);
        self.set_causes(0);
    }

    fn set_causes(&self, causes: u32) {
        self.causes.store(causes, Ordering::Relaxed);
        self.anomalous.set(i64::from(causes != 0));
    }

    /// Folds the window's counts into the smoothed rate, in proportion to the evidence:
    /// a window without answers (a mitigated target may get none) changes nothing, so
    /// mitigation is lifted on answers that succeed, not on silence.
    fn fold(&self) -> f64 {
        let n = f64::from(self.requests.swap(0, Ordering::Relaxed));
        let e = f64::from(self.errors.swap(0, Ordering::Relaxed)).min(n);
        let old = load(&self.rate);
        let rate = match n > 0.0 {
            true => old + (e / n - old) * n / (n + EVIDENCE),
            false => old,
        };
        store(&self.rate, rate);
        rate
    }

    /// [`Self::fold`] for the mean latency: (seconds, whether any answer was timed yet).
    fn fold_latency(&self) -> (f64, bool) {
        let n = f64::from(self.timed.swap(0, Ordering::Relaxed));
        let sum = self.latency_us.swap(0, Ordering::Relaxed) as f64 / 1e6;
        let old = load(&self.latency);
        let mean = match (n > 0.0, old > 0.0) {
            (false, _) => old,
            // The first answers set it: there is no history to weigh them against.
            (true, false) => sum / n,
            (true, true) => old + (sum / n - old) * n / (n + EVIDENCE),
        };
        store(&self.latency, mean);
        (mean, mean > 0.0)
    }
}

/// Counts a group's answers into windows.
pub struct Detector {
    answered: AtomicU64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            answered: AtomicU64::new(0),
        }
    }
}

impl Detector {
    /// Counts one answer; true for the one that completes a window (its caller runs
    /// [`evaluate`]).
    pub fn tick(&self) -> bool {
        (self.answered.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(WINDOW)
    }
}

/// One evaluation over a group's targets: `(stats, serving)` for each.
pub fn evaluate(targets: &[(&Stats, bool)]) {
    let mut rates = Vec::with_capacity(targets.len());
    let mut latencies = Vec::with_capacity(targets.len());
    for (s, serving) in targets {
        match serving {
            true => {
                rates.push(s.fold());
                latencies.push(s.fold_latency());
            }
            false => s.reset(),
        }
    }
    let serving: Vec<&Stats> = targets.iter().filter(|t| t.1).map(|t| t.0).collect();
    let n = serving.len();
    if n < MIN_SERVING {
        for s in serving {
            s.set_causes(0);
            store(&s.weight, 1.0);
        }
        return;
    }
    let total: f64 = rates.iter().sum();
    // Detection: each target against the mean of the others; how far it stands out
    // (error-rate excess, plus a tenth of its latency's excess ratio) ranks the worst.
    let mut outliers: Vec<(usize, f64)> = Vec::new();
    for (i, s) in serving.iter().enumerate() {
        let was = s.causes.load(Ordering::Relaxed);
        let rate = rates[i];
        let peers = (total - rate) / (n - 1) as f64;
        let errors = match was & ERRORS != 0 {
            true => rate >= peers + RECOVERED_MARGIN,
            false => rate >= peers + OUTLIER_MARGIN && rate >= 2.0 * peers,
        };
        let (latency, timed) = latencies[i];
        let others: Vec<f64> = (0..n)
            .filter(|&j| j != i && latencies[j].1)
            .map(|j| latencies[j].0)
            .collect();
        let peers_latency = others.iter().sum::<f64>() / others.len().max(1) as f64;
        let slow = timed
            && !others.is_empty()
            && match was & SLOW != 0 {
                true => latency >= peers_latency * LATENCY_RECOVERED,
                false => {
                    latency >= peers_latency * LATENCY_FACTOR
                        && latency >= peers_latency + LATENCY_MARGIN
                }
            };
        let causes = (u32::from(errors) * ERRORS) | (u32::from(slow) * SLOW);
        s.set_causes(causes);
        if causes != 0 {
            let excess = (latency / peers_latency.max(1e-6) - 1.0).max(0.0);
            outliers.push((i, (rate - peers).max(0.0) + excess / 10.0));
        }
    }
    // Mitigation: the worst outliers, fewer than half of the serving targets.
    outliers.sort_by(|a, b| b.1.total_cmp(&a.1));
    outliers.truncate((n - 1) / 2);
    for (i, s) in serving.iter().enumerate() {
        let w = s.weight();
        let w = match outliers.iter().any(|o| o.0 == i) {
            true => (w / 2.0).max(FLOOR),
            false => (w * 2.0).min(1.0),
        };
        store(&s.weight, w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(k: usize) -> Vec<Stats> {
        (0..k).map(|_| Stats::new(Gauge::default())).collect()
    }

    /// Feeds one window: each target `per` answers, `errors[i]` of them errors.
    fn window(s: &[Stats], per: u32, errors: &[u32], serving: usize) {
        for (i, t) in s.iter().enumerate() {
            for k in 0..per {
                t.record(k < errors[i], Some(std::time::Duration::from_millis(5)));
            }
        }
        let list: Vec<(&Stats, bool)> = s
            .iter()
            .enumerate()
            .map(|(i, t)| (t, i < serving))
            .collect();
        evaluate(&list);
    }

    #[test]
    fn an_outlier_is_lowered_to_the_floor_and_comes_back() {
        let s = stats(3);
        for _ in 0..8 {
            window(&s, 16, &[8, 0, 0], 3);
        }
        assert!(
            s[0].anomalous() && s[0].weight() == FLOOR,
            "{}",
            s[0].weight()
        );
        assert!(!s[1].anomalous() && s[1].weight() == 1.0);
        // At the floor it gets about a tenth of its share.
        for _ in 0..30 {
            window(&s, 2, &[0, 0, 0], 3);
        }
        for _ in 0..5 {
            window(&s, 16, &[0, 0, 0], 3);
        }
        assert!(
            !s[0].anomalous() && s[0].weight() == 1.0,
            "{}",
            s[0].weight()
        );
    }

    /// Feeds one window where target `i` answers in `ms[i]` milliseconds, no errors.
    fn timed_window(s: &[Stats], per: u32, ms: &[u64]) {
        for (i, t) in s.iter().enumerate() {
            for _ in 0..per {
                t.record(false, Some(std::time::Duration::from_millis(ms[i])));
            }
        }
        let list: Vec<(&Stats, bool)> = s.iter().map(|t| (t, true)).collect();
        evaluate(&list);
    }

    #[test]
    fn a_slow_target_is_lowered_and_comes_back_when_it_is_fast_again() {
        let s = stats(3);
        for _ in 0..8 {
            timed_window(&s, 16, &[120, 20, 22]);
        }
        assert!(s[0].anomalous(), "{}", s[0].latency());
        assert_eq!(s[0].causes(), ["latency"]);
        assert_eq!(s[0].weight(), FLOOR);
        assert!(!s[1].anomalous() && s[1].weight() == 1.0);
        for _ in 0..12 {
            timed_window(&s, 16, &[21, 20, 22]);
        }
        assert!(!s[0].anomalous(), "{}", s[0].latency());
        assert_eq!(s[0].weight(), 1.0);
    }

    #[test]
    fn twice_as_slow_within_the_margin_is_no_anomaly() {
        // 4 ms against 1 ms is four times slower, but only 3 ms more: noise, not a fault.
        let s = stats(3);
        for _ in 0..8 {
            timed_window(&s, 16, &[4, 1, 1]);
        }
        assert!(s.iter().all(|t| !t.anomalous() && t.weight() == 1.0));
    }

    #[test]
    fn errors_everywhere_are_no_anomaly() {
        let s = stats(3);
        for _ in 0..8 {
            window(&s, 16, &[8, 8, 8], 3);
        }
        assert!(s.iter().all(|t| !t.anomalous() && t.weight() == 1.0));
    }

    #[test]
    fn two_serving_targets_are_never_mitigated() {
        let s = stats(3);
        for _ in 0..8 {
            window(&s, 16, &[8, 0, 0], 2);
        }
        assert!(s.iter().all(|t| !t.anomalous() && t.weight() == 1.0));
    }

    #[test]
    fn fewer_than_half_are_mitigated() {
        let s = stats(4);
        for _ in 0..8 {
            window(&s, 16, &[12, 8, 0, 0], 4);
        }
        let low: Vec<bool> = s.iter().map(|t| t.mitigated()).collect();
        assert_eq!(low, [true, false, false, false]);
    }
}
