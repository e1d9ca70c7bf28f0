//! `[service.deployment]`: how `meridian rollout` replaces instances, in ECS's terms
//! (a service's deployment configuration and its deployment circuit breaker).

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

/// ECS's `deploymentConfiguration`, per AZ of a region (Meridian's unit of a rollout step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentConfiguration {
    /// The fewest instances (percent of the AZ's count, rounded up) that must stay healthy
    /// and registered while old ones are replaced. ECS's default: 100.
    pub minimum_healthy_percent: u32,
    /// The most instances (percent, rounded down) that may run at once, old and new
    /// together. ECS's default: 200.
    pub maximum_percent: u32,
    /// The deployment circuit breaker: on a failure, put every instance back on the old
    /// version. Off: the rollout stops where it failed.
    pub circuit_breaker: bool,
    /// How long a new instance has to pass its health checks before it counts as failed.
    #[serde(with = "crate::serde_duration")]
    pub health_check_timeout: Duration,
    /// The share of a region's balancer responses that may be 5xx while the rollout runs
    /// there (0.05 = 5%); above it the circuit breaker trips.
    pub max_5xx_rate: f64,
    /// How long new instances serve beside the old ones, watched by the circuit breaker,
    /// before old ones are stopped (ECS's bake time). 0: stop them as soon as the new
    /// ones are healthy.
    #[serde(with = "crate::serde_duration")]
    pub bake_time: Duration,
}

impl Default for DeploymentConfiguration {
    fn default() -> Self {
        DeploymentConfiguration {
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            circuit_breaker: true,
            health_check_timeout: Duration::from_secs(30),
            max_5xx_rate: 0.05,
            bake_time: Duration::ZERO,
        }
    }
}

pub(crate) fn read_deployment(t: &Table, d: &mut Diagnostics) -> DeploymentConfiguration {
    let mut c = DeploymentConfiguration::default();
    let min = t.int(d, "minimum_healthy_percent", 0..=100);
    let max = t.int(d, "maximum_percent", 100..=400);
    // A bound already reported as wrong is not judged again with the other one.
    let both_read = min.is_some() == t.has("minimum_healthy_percent")
        && max.is_some() == t.has("maximum_percent");
    if let Some(v) = min {
        c.minimum_healthy_percent = v as u32;
    }
    if let Some(v) = max {
        c.maximum_percent = v as u32;
    }
    if let Some(v) = t.bool(d, "circuit_breaker") {
        c.circuit_breaker = v;
    }
    if let Some(v) = t.duration(d, "health_check_timeout") {
        c.health_check_timeout = v;
    }
    if let Some(v) = t.duration(d, "bake_time") {
        c.bake_time = v;
    }
    if let Some(f) = t.get("max_5xx_rate") {
        match t.float(d, "max_5xx_rate") {
            Some(x) if (0.0..=1.0).contains(&x) => c.max_5xx_rate = x,
            Some(x) => d.error(
                f.span,
                &f.key,
                format!("`max_5xx_rate` is {x}, outside 0 to 1"),
                "write a share such as 0.05 (5% of responses)",
            ),
            None => {}
        }
    }
    // Both at their limits leaves no room to start a new instance nor to stop an old one.
    if both_read && c.minimum_healthy_percent == 100 && c.maximum_percent == 100 {
        if let Some(f) = t
            .get("maximum_percent")
            .or_else(|| t.get("minimum_healthy_percent"))
        {
            d.error(
                f.span,
                &f.key,
                "minimum_healthy_percent = 100 with maximum_percent = 100 lets a rollout neither start a new instance nor stop an old one",
                "raise maximum_percent (200 starts every replacement first) or lower minimum_healthy_percent",
            );
        }
    }
    t.finish(d);
    c
}

/// Whether `v` can name a service version: 1 to 64 letters, digits, `.`, `_` or `-` (it
/// travels in a header, a file name and a command line).
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
