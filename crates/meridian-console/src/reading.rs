//! One node's scrape, with each counter's change since the node's previous scrape.

use meridian_telemetry::exposition::Sample;
use std::collections::HashMap;

/// A scrape and, for each sample, how much it grew since the last one.
pub struct Reading {
    pub samples: Vec<Sample>,
    pub deltas: Vec<f64>,
    /// Seconds since the previous scrape of this node (0 on the first).
    pub dt: f64,
}

/// What a node's previous scrape left behind to compute deltas against.
#[derive(Default)]
pub struct Previous {
    values: HashMap<String, f64>,
    at: Option<f64>,
}

fn key(s: &Sample) -> String {
    let mut k = s.name.clone();
    for (a, b) in &s.labels {
        k.push('\u{1f}');
        k.push_str(a);
        k.push('=');
        k.push_str(b);
    }
    k
}

impl Previous {
    /// Turns a scrape taken at `at` (seconds) into a reading and remembers it. The first
    /// scrape of a node has zero deltas: its whole history is not one second's traffic.
    /// A counter that went down was reset (the process restarted): its delta is its value.
    pub fn read(&mut self, samples: Vec<Sample>, at: f64) -> Reading {
        let first = self.at.is_none();
        let dt = self.at.map_or(0.0, |p| (at - p).max(0.0));
        let mut values = HashMap::with_capacity(samples.len());
        let deltas = samples
            .iter()
            .map(|s| {
                let k = key(s);
                let d = match self.values.get(&k) {
                    _ if first => 0.0,
                    Some(p) if s.value >= *p => s.value - p,
                    Some(_) => s.value,
                    // A series that appears later started from zero after the first scrape.
                    None => s.value,
                };
                values.insert(k, s.value);
                d
            })
            .collect();
        self.values = values;
        self.at = Some(at);
        Reading {
            samples,
            deltas,
            dt,
        }
    }
}

impl Reading {
    /// The summed change of every sample named `name` that `pick` accepts.
    pub fn delta(&self, name: &str, pick: impl Fn(&Sample) -> bool) -> f64 {
        self.samples
            .iter()
            .zip(&self.deltas)
            .filter(|(s, _)| s.name == name && pick(s))
            .map(|(_, d)| d)
            // An empty f64 sum is -0.0; add 0.0 so "nothing" prints as 0.
            .sum::<f64>()
            + 0.0
    }

    /// `delta` per second, None on a node's first scrape.
    pub fn rate(&self, name: &str, pick: impl Fn(&Sample) -> bool) -> Option<f64> {
        (self.dt > 0.0).then(|| self.delta(name, pick) / self.dt)
    }

    /// Every sample named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The change of a histogram's cumulative buckets, by upper bound.
    pub fn buckets(&self, histogram: &str) -> Vec<(f64, f64)> {
        self.buckets_where(histogram, |_| true)
    }

    /// `buckets` of the series of a labelled histogram family that `pick` accepts: one
    /// function's, say. Series with the same bound are added, as across nodes.
    pub fn buckets_where(
        &self,
        histogram: &str,
        pick: impl Fn(&Sample) -> bool,
    ) -> Vec<(f64, f64)> {
        let name = format!("{histogram}_bucket");
        let mut out = Vec::new();
        let each = self
            .samples
            .iter()
            .zip(&self.deltas)
            .filter(|(s, _)| s.name == name && pick(s))
            .filter_map(|(s, d)| {
                let le = match s.label("le")? {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le, *d))
            })
            .collect::<Vec<_>>();
        merge_buckets(&mut out, &each);
        out
    }
}

/// Adds cumulative bucket counts of the same bounds from several nodes.
pub fn merge_buckets(into: &mut Vec<(f64, f64)>, more: &[(f64, f64)]) {
    for (le, c) in more {
        match into.iter_mut().find(|(l, _)| l == le) {
            Some(slot) => slot.1 += c,
            None => into.push((*le, *c)),
        }
    }
}

/// The `q` quantile of cumulative buckets, interpolating linearly inside the bucket as
/// Prometheus's `histogram_quantile` does. None when the buckets counted nothing.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = b.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in b {
        if count >= rank {
            if le.is_infinite() {
                // Past the last finite bound: the best answer is that bound.
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_telemetry::exposition::parse;

    #[test]
    fn deltas_start_at_zero_and_survive_resets() {
        let mut p = Previous::default();
        let r = p.read(parse("c_total{a=\"x\"} 100\n"), 10.0);
        assert_eq!(r.delta("c_total", |_| true), 0.0);
        assert_eq!(r.rate("c_total", |_| true), None);
        let r = p.read(parse("c_total{a=\"x\"} 130\nc_total{a=\"y\"} 5\n"), 12.0);
        assert_eq!(r.delta("c_total", |s| s.label("a") == Some("x")), 30.0);
        assert_eq!(r.delta("c_total", |_| true), 35.0);
        assert_eq!(r.rate("c_total", |_| true), Some(17.5));
        // The process restarted: the counter starts again from zero.
        let r = p.read(parse("c_total{a=\"x\"} 4\nc_total{a=\"y\"} 5\n"), 13.0);
        assert_eq!(r.delta("c_total", |_| true), 4.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 100 observations: 50 under 10 ms, 40 from 10 to 50 ms, 10 from 50 to 100 ms.
        let b = [
            (0.01, 50.0),
            (0.05, 90.0),
            (0.1, 100.0),
            (f64::INFINITY, 100.0),
        ];
        let p50 = quantile(0.5, &b).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p95 = quantile(0.95, &b).unwrap();
        assert!((p95 - 0.075).abs() < 1e-9, "{p95}");
        let p70 = quantile(0.7, &b).unwrap();
        assert!((p70 - 0.03).abs() < 1e-9, "{p70}");
        assert_eq!(quantile(0.5, &[(0.01, 0.0), (f64::INFINITY, 0.0)]), None);
        // Everything above the last finite bound: the bound is reported.
        assert_eq!(
            quantile(0.99, &[(0.01, 0.0), (f64::INFINITY, 3.0)]),
            Some(0.01)
        );
        let mut m = vec![(0.01, 1.0), (f64::INFINITY, 2.0)];
        merge_buckets(&mut m, &[(0.01, 3.0), (f64::INFINITY, 3.0)]);
        assert_eq!(m, vec![(0.01, 4.0), (f64::INFINITY, 5.0)]);
    }
}
