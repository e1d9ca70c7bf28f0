//! A target group and the algorithms that pick a target from it.

use meridian_config::Algorithm;
use meridian_health::HealthHandle;
use meridian_telemetry::prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One registered target: an application instance.
pub struct Target {
    pub name: String,
    pub az: String,
    pub addr: SocketAddr,
    pub health: HealthHandle,
    /// Requests sent and not yet answered in full; doubles as the exported gauge.
    pub outstanding: Gauge,
}

impl Target {
    pub fn outstanding(&self) -> i64 {
        self.outstanding.get()
    }
}

pub struct TargetGroup {
    pub targets: Vec<Target>,
    algorithm: Algorithm,
    next: AtomicUsize,
}

impl TargetGroup {
    pub fn new(targets: Vec<Target>, algorithm: Algorithm) -> Self {
        TargetGroup {
            targets,
            algorithm,
            next: AtomicUsize::new(0),
        }
    }

    pub fn healthy_count(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.health.is_healthy())
            .count()
    }

    /// Picks a target not in `tried`. Healthy targets first; when no target of the group is
    /// healthy the group fails open, as ALB does, and any untried target may be picked.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let any_healthy = self.targets.iter().any(|t| t.health.is_healthy());
        let eligible =
            |i: usize| !tried.contains(&i) && (!any_healthy || self.targets[i].health.is_healthy());
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        // Rotating start: round robin, and fair tie-breaking for least outstanding.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let order = (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i));
        match self.algorithm {
            Algorithm::RoundRobin => order.into_iter().next(),
            Algorithm::LeastOutstandingRequests => {
                order.min_by_key(|&i| self.targets[i].outstanding())
            }
        }
    }
}
