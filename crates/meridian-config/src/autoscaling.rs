//! `[service.autoscaling]`: ECS service auto scaling with a target tracking policy
//! (Application Auto Scaling's words: a minimum and maximum capacity, one predefined
//! metric, its target value, and scale-out and scale-in cooldowns).
//!
//! Capacity is counted per region, as ECS counts a service's tasks: a region is one ECS
//! service here (its balancer is the service's target group), spread over its AZs.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::ops::Range;
use std::time::Duration;

/// The predefined metric a policy tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    /// ALBRequestCountPerTarget, as a rate: the region balancer's requests per second
    /// divided by the running instances.
    RequestsPerTarget,
    /// The balancer's p95 response time over the last interval (not an ECS predefined
    /// metric: the latency alarm people put on ALB's TargetResponseTime).
    P95Latency,
    /// ECSServiceAverageCPUUtilization: the instances' average CPU use, in percent of a core.
    Cpu,
}

impl ScalingMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingMetric::RequestsPerTarget => "requests_per_target",
            ScalingMetric::P95Latency => "p95_latency",
            ScalingMetric::Cpu => "cpu",
        }
    }
}

/// ECS's scalable target and its target tracking policy, for every region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoScaling {
    /// The fewest instances a region runs (MinCapacity).
    pub min: u32,
    /// The most instances a region runs (MaxCapacity).
    pub max: u32,
    pub metric: ScalingMetric,
    /// The value the policy keeps the metric at: requests per second per target, seconds
    /// of p95 latency, or percent CPU.
    pub target: f64,
    /// After a scale-out, how long before another scale-out (ECS's default: 300 s).
    #[serde(with = "crate::serde_duration")]
    pub scale_out_cooldown: Duration,
    /// After any scaling activity, how long before a scale-in (ECS's default: 300 s).
    #[serde(with = "crate::serde_duration")]
    pub scale_in_cooldown: Duration,
    /// How often the metric is read: one datapoint per interval (CloudWatch's period,
    /// 60 s by default).
    #[serde(with = "crate::serde_duration")]
    pub metric_interval: Duration,
    /// DisableScaleIn: the policy only ever adds instances.
    pub disable_scale_in: bool,
    /// Where `min` and `max` were written, for checks that need the regions.
    #[serde(skip)]
    pub(crate) spans: (Range<usize>, Range<usize>),
}

/// The most instances one region can run: what its address block holds beside the
/// balancer, databases and caches (`scaling_homes.rs`).
pub const MAX_INSTANCES_PER_REGION: u32 = 200;

/// Datapoints in a row over the target before a scale-out (the high alarm's 3 of 3).
pub const SCALE_OUT_DATAPOINTS: usize = 3;
/// Datapoints in a row under 90% of the target before a scale-in (the low alarm's 15 of
/// 15): target tracking scales in slowly, so a dip does not take capacity away.
pub const SCALE_IN_DATAPOINTS: usize = 15;

pub(crate) fn read_autoscaling(t: &Table, d: &mut Diagnostics) -> Option<AutoScaling> {
    let min = t.int(d, "min", 1..=200);
    let max = t.int(d, "max", 1..=200);
    let metric = match t.choice(d, "metric", &["requests_per_target", "p95_latency", "cpu"]) {
        Some("p95_latency") => Some(ScalingMetric::P95Latency),
        Some("cpu") => Some(ScalingMetric::Cpu),
        Some(_) => Some(ScalingMetric::RequestsPerTarget),
        None if t.has("metric") => None,
        None => {
            t.missing(
                d,
                "metric",
                "add `metric = \"requests_per_target\"` (or \"p95_latency\", \"cpu\")",
            );
            None
        }
    };
    let target = match (metric, t.get("target")) {
        (_, None) => {
            t.missing(
                d,
                "target",
                "add `target = 50` (requests per second per instance), `target = \"200ms\"` (p95_latency) or `target = 60` (cpu percent)",
            );
            None
        }
        (Some(ScalingMetric::P95Latency), Some(f)) => match t.duration(d, "target") {
            Some(v) if v.is_zero() => {
                d.error(
                    f.span,
                    &f.key,
                    "`target` is 0: no p95 latency is under it",
                    "write the latency to keep, such as \"200ms\"",
                );
                None
            }
            v => v.map(|v| v.as_secs_f64()),
        },
        (m, Some(f)) => match t.float(d, "target") {
            Some(x) if x > 0.0 && (m != Some(ScalingMetric::Cpu) || x <= 100.0) => Some(x),
            Some(x) => {
                d.error(
                    f.span,
                    &f.key,
                    format!("`target` is {x}, which no policy can track"),
                    "use a number above 0 (and at most 100 for cpu, a percent)",
                );
                None
            }
            None => None,
        },
    };
    let cooldown = |d: &mut Diagnostics, key| t.duration(d, key);
    let scale_out_cooldown = cooldown(d, "scale_out_cooldown").unwrap_or(Duration::from_secs(300));
    let scale_in_cooldown = cooldown(d, "scale_in_cooldown").unwrap_or(Duration::from_secs(300));
    let metric_interval = match (t.get("metric_interval"), t.duration(d, "metric_interval")) {
        (Some(f), Some(v)) if v < Duration::from_millis(100) => {
            d.error(
                f.span,
                &f.key,
                "`metric_interval` is under 100ms: the balancer's counters would not move between reads",
                "use \"1s\" or more (CloudWatch's standard resolution is \"60s\")",
            );
            None
        }
        (_, v) => v,
    }
    .unwrap_or(Duration::from_secs(60));
    let disable_scale_in = t.bool(d, "disable_scale_in").unwrap_or(false);
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            if let Some(f) = t.get("max") {
                d.error(
                    f.span,
                    &f.key,
                    format!("`max` is {hi}, below `min` ({lo})"),
                    "make max at least min",
                );
            }
        }
    }
    if min.is_none() && !t.has("min") {
        t.missing(d, "min", "add `min = 2` (the fewest instances per region)");
    }
    if max.is_none() && !t.has("max") {
        t.missing(d, "max", "add `max = 6` (the most instances per region)");
    }
    let span = |key| t.get(key).map(|f| f.span).unwrap_or(t.span.clone());
    let spans = (span("min"), span("max"));
    t.finish(d);
    Some(AutoScaling {
        min: min? as u32,
        max: max? as u32,
        metric: metric?,
        target: target?,
        scale_out_cooldown,
        scale_in_cooldown,
        metric_interval,
        disable_scale_in,
        spans,
    })
}

/// Every region's configured count (`regions`: name, count) must lie within [min, max],
/// and `max` within what a region's addresses hold.
pub(crate) fn check_capacity(d: &mut Diagnostics, a: &AutoScaling, regions: &[(&str, u32)]) {
    for &(name, n) in regions {
        if n < a.min {
            d.error(
                a.spans.0.clone(),
                "service.autoscaling.min",
                format!(
                    "`min` is {}, above the {n} instances region `{}` is configured with",
                    a.min, name
                ),
                format!("lower min to {n} or less, or raise instances_per_az"),
            );
        }
        if n > a.max {
            d.error(
                a.spans.1.clone(),
                "service.autoscaling.max",
                format!(
                    "`max` is {}, below the {n} instances region `{}` is configured with",
                    a.max, name
                ),
                format!("raise max to {n} or more, or lower instances_per_az"),
            );
        }
        if a.max > MAX_INSTANCES_PER_REGION {
            d.error(
                a.spans.1.clone(),
                "service.autoscaling.max",
                format!(
                    "`max` is {}; a region's instances have addresses for at most {}",
                    a.max, MAX_INSTANCES_PER_REGION
                ),
                format!("lower max to {}", MAX_INSTANCES_PER_REGION),
            );
        }
    }
}
