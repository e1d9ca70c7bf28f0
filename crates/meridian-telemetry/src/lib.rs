//! Metrics and logs common to every node.
//!
//! Each node owns one [`Metrics`] registry, registers its families at start-up, and serves
//! [`Metrics::encode`] on `/metrics`. Names follow Prometheus style: `meridian_` prefix,
//! base units (seconds, bytes), `_total` on counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};

pub use prometheus_client;

pub mod exposition;

/// The label set of a metric family: names fixed in the code, values known only at run
/// time (a target, a region, a status class). One type, so every family encodes alike.
pub type Labels = Vec<(&'static str, String)>;

/// Buckets for request latency in seconds, from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// A node's metric registry; cheap to clone and share between tasks.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a metric family under `meridian_<name>`.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // The exposition adds its own full stop to help text.
        reg.register(
            format!("meridian_{name}"),
            help.trim_end_matches('.'),
            metric.clone(),
        );
        metric
    }

    /// The Prometheus text exposition of every registered family.
    pub fn encode(&self) -> String {
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Sets up `tracing` output for a node or a command; `RUST_LOG` overrides the level.
pub fn init_logs(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn exposes_registered_families_with_prefix() {
        let m = Metrics::new();
        let c = m.register("things", "Things seen.", Counter::<u64>::default());
        c.inc_by(3);
        let h = m.register("wait_seconds", "Wait.", latency_histogram());
        h.observe(0.002);
        let text = m.encode();
        assert!(text.contains("meridian_things_total 3"), "{text}");
        assert!(
            text.contains("# HELP meridian_things Things seen.\n"),
            "{text}"
        );
        assert!(
            text.contains("meridian_wait_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
