//! `[simulation]`: the simulated world's latency model and WAN relays.

use crate::common::read_latencies;
use crate::error::Diagnostics;
use crate::read::Table;
use crate::units::ByteSize;
use serde::Serialize;
use std::time::Duration;

/// The simulated world: the latency model, and whether `up` puts WAN relays between places.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// Run a `wan` node whose relays delay traffic between places by the modelled latency.
    pub wan: bool,
    /// Hand PoPs and DNS nodes the latency model as a prior: what they rank regions by
    /// until they have measured them. Off, they rank by measurements and configured values
    /// only (what a deployment on real hosts should do once it has measurements).
    pub prior: bool,
    /// Route inflation over the great circle.
    pub inflation: f64,
    /// Fixed cost added to every round trip (last mile, switching).
    #[serde(with = "crate::serde_duration")]
    pub access: Duration,
    /// Random extra delay per packet burst, up to this much (order is kept).
    #[serde(with = "crate::serde_duration")]
    pub jitter: Duration,
    /// Per-connection bandwidth limit in bytes per second (None: unlimited).
    pub bandwidth: Option<ByteSize>,
    /// Measured or agreed round trips between two named places that replace the model.
    pub latency: Vec<PlaceLatency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaceLatency {
    pub from: String,
    pub to: String,
    #[serde(with = "crate::serde_duration")]
    pub rtt: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            wan: false,
            inflation: 1.5,
            access: Duration::from_millis(2),
            prior: true,
            jitter: Duration::ZERO,
            bandwidth: None,
            latency: Vec::new(),
        }
    }
}

pub(crate) fn read_simulation(t: &Table, d: &mut Diagnostics) -> Option<Simulation> {
    let mut s = Simulation::default();
    s.wan = t.bool(d, "wan").unwrap_or(s.wan);
    s.prior = t.bool(d, "prior").unwrap_or(s.prior);
    if let Some(x) = t.float(d, "inflation") {
        if (1.0..=5.0).contains(&x) {
            s.inflation = x;
        } else if let Some(f) = t.get("inflation") {
            d.error(
                f.span,
                &f.key,
                format!("`inflation` is {x}; routes are at least as long as the great circle and rarely 5 times it"),
                "use a factor from 1.0 to 5.0 (1.5 is typical)",
            );
        }
    }
    s.access = t.duration(d, "access").unwrap_or(s.access);
    s.jitter = t.duration(d, "jitter").unwrap_or(s.jitter);
    s.bandwidth = t.size(d, "bandwidth").filter(|b| b.0 > 0);
    let place = "name a region, pop:<name> or client:<name>";
    for (from, to, rtt) in read_latencies(t, d, ("from", place), ("to", place)) {
        s.latency.push(PlaceLatency { from, to, rtt });
    }
    t.finish(d);
    Some(s)
}
