//! The PoP's request metrics: registered once, counted per request.

use super::outcome::Outcome;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::sync::OnceLock;
use std::time::Duration;

use meridian_telemetry::Labels;

pub(crate) struct EdgeMetrics {
    requests: Family<Labels, Counter>,
    /// `requests{cache_status, status_class, protocol}` counters by outcome, status class
    /// and protocol, looked up once: the hit path does not hash labels.
    by_outcome: [[[OnceLock<Counter>; 6]; PROTOCOLS.len()]; Outcome::ALL.len()],
    duration: Histogram,
    bytes_to_viewers: Counter,
    pub bytes_from_origins: Counter,
    pub collapsed: Counter,
    pub invalidations: Counter,
    pub origin_fetches: Counter,
}

impl EdgeMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        EdgeMetrics {
            requests: metrics.register(
                "edge_requests",
                "Viewer requests, by PoP, cache status, status class and protocol (h1, h2, h3)",
                Family::default(),
            ),
            by_outcome: Default::default(),
            duration: metrics.register(
                "edge_request_duration_seconds",
                "Time from viewer request to response head",
                meridian_telemetry::latency_histogram(),
            ),
            bytes_to_viewers: metrics.register(
                "edge_bytes_to_viewers",
                "Body bytes sent to viewers",
                Counter::default(),
            ),
            bytes_from_origins: metrics.register(
                "edge_bytes_from_origins",
                "Body bytes received from origins",
                Counter::default(),
            ),
            collapsed: metrics.register(
                "edge_collapsed_requests",
                "Cache misses that waited for another request's origin fetch instead of making their own",
                Counter::default(),
            ),
            invalidations: metrics.register(
                "edge_invalidation_paths",
                "Invalidation paths applied",
                Counter::default(),
            ),
            origin_fetches: metrics.register(
                "edge_origin_fetches",
                "Requests this PoP sent to origins (after failover, one per viewer-visible fetch)",
                Counter::default(),
            ),
        }
    }

    /// Counts one answered request, made over HTTP `version`.
    pub fn record(
        &self,
        pop: &str,
        outcome: Outcome,
        status: u16,
        version: http::Version,
        bytes: u64,
        elapsed: Duration,
    ) {
        self.duration.observe(elapsed.as_secs_f64());
        self.bytes_to_viewers.inc_by(bytes);
        let class = usize::from(status / 100).min(5);
        let protocol = protocol_index(version);
        self.by_outcome[outcome as usize][protocol][class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&vec![
                        ("pop", pop.to_owned()),
                        ("cache_status", outcome.label().to_owned()),
                        ("status_class", format!("{class}xx")),
                        ("protocol", PROTOCOLS[protocol].to_owned()),
                    ])
                    .clone()
            })
            .inc();
    }
}

/// The `protocol` label's values: HTTP/1.x, HTTP/2, HTTP/3.
const PROTOCOLS: [&str; 3] = ["h1", "h2", "h3"];

fn protocol_index(v: http::Version) -> usize {
    match v {
        http::Version::HTTP_2 => 1,
        http::Version::HTTP_3 => 2,
        _ => 0,
    }
}

/// The PoP's WebSocket series (`upgrade.rs` counts them).
pub(crate) struct WsMetrics {
    pub open: Gauge,
    pub total: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

impl WsMetrics {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        WsMetrics {
            open: metrics.register(
                "edge_websocket_connections",
                "WebSocket tunnels open now",
                Gauge::default(),
            ),
            total: metrics.register(
                // Exposed with `_total`; a name of its own, since the gauge has the plain one.
                "edge_websocket_connections_opened",
                "WebSocket tunnels opened",
                Counter::default(),
            ),
            bytes_in: metrics.register(
                "edge_websocket_bytes_in",
                "Bytes from viewers to origins through WebSocket tunnels",
                Counter::default(),
            ),
            bytes_out: metrics.register(
                "edge_websocket_bytes_out",
                "Bytes from origins to viewers through WebSocket tunnels",
                Counter::default(),
            ),
        }
    }
}
