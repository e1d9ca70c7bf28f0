//! The datapoints a target tracking policy reads, one per metric interval: from the
//! region balancer's `/metrics` (its request counter and latency histogram, as ALB's
//! RequestCountPerTarget and TargetResponseTime come from the balancer) or from the
//! instances' processes (`/proc/<pid>/stat`, ECS's CPU utilization of the service).

use meridian_config::ScalingMetric;
use std::collections::HashMap;
use std::time::Instant;

/// Counters at the last read; a datapoint is what moved since.
pub(crate) struct Reader {
    metric: ScalingMetric,
    last: Option<(Instant, Counters)>,
}

#[derive(Clone, Default)]
struct Counters {
    requests: f64,
    /// (upper bound, cumulative count) of the latency histogram, by bound.
    buckets: Vec<(f64, f64)>,
    /// CPU clock ticks used, by instance pid.
    ticks: HashMap<u32, u64>,
}

impl Reader {
    pub(crate) fn new(metric: ScalingMetric) -> Self {
        Reader { metric, last: None }
    }

    /// Takes a reading (the balancer's exposition text and the running instances' pids);
    /// the datapoint since the last one, None on the first.
    pub(crate) fn datapoint(&mut self, lb_text: &str, pids: &[u32]) -> Option<f64> {
        let now = Instant::now();
        let running = pids.len().max(1) as f64;
        let c = Counters {
            requests: crate::rollout_lb::count_responses(lb_text).0 as f64,
            buckets: if self.metric == ScalingMetric::P95Latency {
                buckets(lb_text)
            } else {
                Vec::new()
            },
            ticks: if self.metric == ScalingMetric::Cpu {
                pids.iter()
                    .filter_map(|p| Some((*p, cpu_ticks(*p)?)))
                    .collect()
            } else {
                HashMap::new()
            },
        };
        let (at, before) = self.last.replace((now, c.clone()))?;
        let secs = now.duration_since(at).as_secs_f64().max(1e-3);
        Some(match self.metric {
            ScalingMetric::RequestsPerTarget => {
                (c.requests - before.requests).max(0.0) / secs / running
            }
            ScalingMetric::P95Latency => p95(&before.buckets, &c.buckets),
            ScalingMetric::Cpu => {
                // Only processes seen both times: a restarted one starts again from zero.
                let used: u64 = c
                    .ticks
                    .iter()
                    .filter_map(|(p, t)| Some(t.saturating_sub(*before.ticks.get(p)?)))
                    .sum();
                used as f64 / clock_ticks() / secs / running * 100.0
            }
        })
    }
}

/// The cumulative buckets of `meridian_lb_request_duration_seconds`, summed over label
/// sets, by upper bound (`+Inf` last).
fn buckets(text: &str) -> Vec<(f64, f64)> {
    let mut by: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("meridian_lb_request_duration_seconds_bucket{") else {
            continue;
        };
        let Some(le) = rest
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| match s {
                "+Inf" => Some(f64::INFINITY),
                s => s.parse::<f64>().ok(),
            })
        else {
            continue;
        };
        let Some(n) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match by.iter_mut().find(|(b, _)| *b == le) {
            Some(e) => e.1 += n,
            None => by.push((le, n)),
        }
    }
    by.sort_by(|a, b| a.0.total_cmp(&b.0));
    by
}

/// The p95 of the requests between two readings, in seconds: the upper bound of the
/// bucket the 95th percentile falls in (the largest finite one for the overflow bucket);
/// 0 when nothing was answered.
fn p95(before: &[(f64, f64)], now: &[(f64, f64)]) -> f64 {
    let delta = |le: f64, n: f64| {
        n - before
            .iter()
            .find(|(b, _)| *b == le)
            .map(|(_, m)| *m)
            .unwrap_or(0.0)
    };
    let total = now.last().map(|(le, n)| delta(*le, *n)).unwrap_or(0.0);
    if total <= 0.0 {
        return 0.0;
    }
    let largest_finite = now
        .iter()
        .map(|(b, _)| *b)
        .filter(|b| b.is_finite())
        .fold(0.0, f64::max);
    now.iter()
        .find(|(le, n)| delta(*le, *n) >= 0.95 * total)
        .map(|(le, _)| if le.is_finite() { *le } else { largest_finite })
        .unwrap_or(largest_finite)
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat.rsplit_once(')')?.1;
    let mut f = after.split_whitespace().skip(11);
    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::{buckets, cpu_ticks, p95};

    #[test]
    fn p95_is_the_bucket_the_95th_request_falls_in() {
        let text = |a: u64, b: u64, inf: u64| {
            format!(
                "meridian_lb_request_duration_seconds_bucket{{le=\"0.01\"}} {a}\nmeridian_lb_request_duration_seconds_bucket{{le=\"0.1\"}} {b}\nmeridian_lb_request_duration_seconds_bucket{{le=\"+Inf\"}} {inf}\nmeridian_lb_request_duration_seconds_count 9\n"
            )
        };
        let before = buckets(&text(100, 100, 100));
        // 100 new requests: 90 under 10 ms, 10 between 10 and 100 ms.
        assert_eq!(p95(&before, &buckets(&text(190, 200, 200))), 0.1);
        assert_eq!(p95(&before, &buckets(&text(199, 200, 200))), 0.01);
        assert_eq!(p95(&before, &buckets(&text(100, 100, 200))), 0.1);
        assert_eq!(p95(&before, &buckets(&text(100, 100, 100))), 0.0);
    }

    #[test]
    fn reads_its_own_cpu_ticks() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
