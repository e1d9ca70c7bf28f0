//! What autoscaling shows and shares, as a leaf module: each region's desired and running
//! counts and last scaling activity (`GET /autoscaling`, endpoints.json, the metrics), and
//! the lock that keeps a rollout and a scaling activity from running at once.

use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge,
};
use meridian_telemetry::{Labels, Metrics};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// Autoscaling of every region, as the supervisor holds it.
#[derive(Default)]
pub(crate) struct Scaling {
    /// Held by a rollout for all its run and by a scaling activity while it starts or
    /// stops instances: the two never change the same region's instances at once.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// Set when the deployment stops: no new activity starts.
    pub(crate) stopped: AtomicBool,
    regions: Mutex<BTreeMap<String, RegionScaling>>,
    desired: Family<Labels, Gauge>,
    running: Family<Labels, Gauge>,
    events: Family<Labels, Counter>,
}

/// One region's scalable target, as `GET /autoscaling` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RegionScaling {
    pub(crate) region: String,
    pub(crate) metric: &'static str,
    pub(crate) target: f64,
    /// The metric's last datapoint (None before the second read).
    pub(crate) value: Option<f64>,
    /// ECS's desiredCount: what the policy last asked for.
    pub(crate) desired: u32,
    /// Instances registered at the region's balancer and serving.
    pub(crate) running: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) last_event: Option<ScalingEvent>,
}

/// A scaling activity: what changed and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScalingEvent {
    /// Unix time in seconds.
    pub(crate) at: u64,
    /// `out` or `in`.
    pub(crate) direction: &'static str,
    pub(crate) from: u32,
    pub(crate) to: u32,
    /// `succeeded`, `failed` or `running`.
    pub(crate) state: &'static str,
    pub(crate) cause: String,
}

impl Scaling {
    /// Registers the series with the supervisor's metrics.
    pub(crate) fn register(&self, metrics: &Metrics) {
        metrics.register(
            "supervisor_desired_instances",
            "Instances the region's autoscaling policy asks for (ECS's desired count)",
            self.desired.clone(),
        );
        metrics.register(
            "supervisor_running_instances",
            "Instances registered at the region's balancer and serving",
            self.running.clone(),
        );
        metrics.register(
            "supervisor_scaling_events",
            "Scaling activities, by region and direction (out, in)",
            self.events.clone(),
        );
    }

    /// Changes region `region`'s view and its gauges.
    pub(crate) fn update(&self, region: &str, f: impl FnOnce(&mut RegionScaling)) {
        let mut all = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        let r = all
            .entry(region.to_owned())
            .or_insert_with(|| RegionScaling {
                region: region.to_owned(),
                ..RegionScaling::default()
            });
        f(r);
        let labels: Labels = vec![("region", region.to_owned())];
        self.desired
            .get_or_create(&labels)
            .set(i64::from(r.desired));
        self.running
            .get_or_create(&labels)
            .set(i64::from(r.running));
    }

    /// Counts a scaling activity that began.
    pub(crate) fn count(&self, region: &str, direction: &'static str) {
        self.events
            .get_or_create(&vec![
                ("region", region.to_owned()),
                ("direction", direction.to_owned()),
            ])
            .inc();
    }

    /// Every region's desired and running counts, for endpoints.json.
    pub(crate) fn capacities(&self) -> Vec<meridian_config::state::RegionCapacity> {
        self.regions()
            .into_iter()
            .map(|r| meridian_config::state::RegionCapacity {
                region: r.region,
                desired: r.desired,
                running: r.running,
            })
            .collect()
    }

    /// Every region's view, by name.
    pub(crate) fn regions(&self) -> Vec<RegionScaling> {
        self.regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
