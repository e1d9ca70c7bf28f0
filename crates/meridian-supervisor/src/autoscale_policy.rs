//! Target tracking, as Application Auto Scaling does it for an ECS service: a pure
//! function of the datapoints and the time (given, not read), so it is tested without
//! waiting.
//!
//! desired = ceil(running × metric / target), within [min, max]. A scale-out needs
//! `SCALE_OUT_DATAPOINTS` datapoints in a row over the target and waits out
//! `scale_out_cooldown` after the last scale-out; a scale-in needs `SCALE_IN_DATAPOINTS`
//! in a row under 90% of it, goes only as low as the highest of those datapoints asks, and
//! waits `scale_in_cooldown` after any activity (a scale-in never delays a scale-out).

use meridian_config::{AutoScaling, SCALE_IN_DATAPOINTS, SCALE_OUT_DATAPOINTS};
use std::collections::VecDeque;
use std::time::Duration;

/// What the policy asks for after a datapoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Hold,
    Out { to: u32, cause: String },
    In { to: u32, cause: String },
}

/// The instances `running` should become for the metric to be at `target`.
pub(crate) fn desired(running: u32, value: f64, target: f64, min: u32, max: u32) -> u32 {
    if running == 0 || !(value.is_finite() && target > 0.0) {
        return min.max(running.min(max));
    }
    // A hair under an integer is that integer: 2 × 25 / 25 must not become 3.
    let exact = f64::from(running) * value / target;
    let n = (exact - 1e-9).ceil().max(0.0);
    (n.min(f64::from(u32::MAX)) as u32).clamp(min, max)
}

/// A region's policy with its recent datapoints and last activities.
pub(crate) struct Tracker {
    policy: AutoScaling,
    /// (metric, the desired count it asked for), newest last.
    points: VecDeque<(f64, u32)>,
    last_out: Option<Duration>,
    last_activity: Option<Duration>,
}

impl Tracker {
    pub(crate) fn new(policy: AutoScaling) -> Self {
        Tracker {
            policy,
            points: VecDeque::new(),
            last_out: None,
            last_activity: None,
        }
    }

    /// One datapoint `value` read at `now` (any fixed origin) with `running` instances.
    pub(crate) fn observe(&mut self, now: Duration, running: u32, value: f64) -> Decision {
        let p = &self.policy;
        let want = desired(running, value, p.target, p.min, p.max);
        self.points.push_back((value, want));
        while self.points.len() > SCALE_IN_DATAPOINTS.max(SCALE_OUT_DATAPOINTS) {
            self.points.pop_front();
        }
        let since = |t: Option<Duration>| t.map(|t| now.saturating_sub(t));
        let name = p.metric.as_str();
        // Outside the bounds (an instance lost for good): back within them at once.
        if running < p.min {
            return Decision::Out {
                to: p.min,
                cause: format!("{running} running, under min {}", p.min),
            };
        }
        let recent = |n: usize| self.points.iter().rev().take(n);
        if self.points.len() >= SCALE_OUT_DATAPOINTS
            && recent(SCALE_OUT_DATAPOINTS).all(|(v, _)| *v > p.target)
            && want > running
            && since(self.last_out).is_none_or(|s| s >= p.scale_out_cooldown)
        {
            return Decision::Out {
                to: want,
                cause: format!(
                    "{name} {} over target {} for {SCALE_OUT_DATAPOINTS} datapoints",
                    show(value),
                    show(p.target)
                ),
            };
        }
        if !p.disable_scale_in
            && self.points.len() >= SCALE_IN_DATAPOINTS
            && recent(SCALE_IN_DATAPOINTS).all(|(v, _)| *v < 0.9 * p.target)
            && since(self.last_activity).is_none_or(|s| s >= p.scale_in_cooldown)
        {
            let to = recent(SCALE_IN_DATAPOINTS)
                .map(|(_, d)| *d)
                .max()
                .unwrap_or(running);
            if to < running {
                return Decision::In {
                    to,
                    cause: format!(
                        "{name} under 90% of target {} for {SCALE_IN_DATAPOINTS} datapoints (now {})",
                        show(p.target),
                        show(value)
                    ),
                };
            }
        }
        Decision::Hold
    }

    /// A scaling activity began at `now`: cooldowns start, and the datapoints read with
    /// the old capacity no longer count.
    pub(crate) fn record(&mut self, now: Duration, out: bool) {
        self.last_activity = Some(now);
        if out {
            self.last_out = Some(now);
        }
        self.points.clear();
    }

    /// Forgets the datapoints (while a rollout changes the instances).
    pub(crate) fn reset(&mut self) {
        self.points.clear();
    }
}

fn show(v: f64) -> String {
    format!("{:.3}", v)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::{desired, Decision, Tracker};
    use meridian_config::{AutoScaling, Config, SCALE_IN_DATAPOINTS};
    use std::time::Duration;

    fn policy() -> AutoScaling {
        let text = "[deployment]\nname = \"s\"\nzone = \"s.example\"\n[[region]]\nname = \"r\"\nprimary = true\nlocation = { lat = 0, lon = 0 }\nazs = [\"r-a\", \"r-b\"]\n[service.autoscaling]\nmin = 2\nmax = 6\nmetric = \"requests_per_target\"\ntarget = 25\nscale_out_cooldown = \"10s\"\nscale_in_cooldown = \"20s\"\nmetric_interval = \"1s\"\n";
        Config::parse(text, "t.toml")
            .unwrap()
            .service
            .autoscaling
            .unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn desired_is_the_ceiling_within_bounds() {
        assert_eq!(desired(2, 25.0, 25.0, 1, 10), 2);
        assert_eq!(desired(2, 50.0, 25.0, 1, 10), 4);
        assert_eq!(desired(2, 26.0, 25.0, 1, 10), 3);
        assert_eq!(desired(4, 0.0, 25.0, 2, 10), 2);
        assert_eq!(desired(4, 1000.0, 25.0, 2, 6), 6);
        assert_eq!(desired(0, 50.0, 25.0, 2, 6), 2);
        assert_eq!(desired(3, f64::NAN, 25.0, 2, 6), 3);
    }

    #[test]
    fn a_doubled_load_scales_out_after_three_datapoints_then_cools_down() {
        let mut t = Tracker::new(policy());
        assert_eq!(t.observe(secs(1), 2, 20.0), Decision::Hold);
        assert_eq!(t.observe(secs(2), 2, 40.0), Decision::Hold);
        assert_eq!(t.observe(secs(3), 2, 40.0), Decision::Hold);
        let Decision::Out { to, .. } = t.observe(secs(4), 2, 40.0) else {
            panic!("no scale-out")
        };
        assert_eq!(to, 4);
        t.record(secs(4), true);
        // Still over with the new capacity, but within the scale-out cooldown.
        for s in 5..14 {
            assert_eq!(t.observe(secs(s), 4, 40.0), Decision::Hold, "at {s}s");
        }
        let Decision::Out { to, .. } = t.observe(secs(14), 4, 40.0) else {
            panic!("no second scale-out after the cooldown")
        };
        assert_eq!(to, 6);
    }

    #[test]
    fn scale_in_waits_for_fifteen_low_datapoints_and_its_cooldown() {
        let mut t = Tracker::new(policy());
        t.record(secs(0), true);
        // Low from 1 s on: 15 datapoints by 15 s, but the cooldown runs to 20 s.
        let mut first_in = None;
        for s in 1..40 {
            if let Decision::In { to, .. } = t.observe(secs(s), 4, 5.0) {
                first_in = Some((s, to));
                break;
            }
        }
        assert_eq!(first_in, Some((20, 2)));
        // One datapoint over 90% of the target in the window keeps every instance.
        let mut t = Tracker::new(policy());
        for s in 0..SCALE_IN_DATAPOINTS as u64 {
            let v = if s == 7 { 23.0 } else { 5.0 };
            assert_eq!(t.observe(secs(100 + s), 4, v), Decision::Hold);
        }
    }

    #[test]
    fn scale_in_goes_only_as_low_as_the_busiest_datapoint_asks() {
        let mut t = Tracker::new(policy());
        let mut last = Decision::Hold;
        for s in 0..SCALE_IN_DATAPOINTS as u64 {
            // 6 instances at 12/s each: 72/s needs ceil(6*12/25) = 3.
            let v = if s == 3 { 12.0 } else { 2.0 };
            last = t.observe(secs(s), 6, v);
        }
        assert!(matches!(last, Decision::In { to: 3, .. }), "{last:?}");
    }

    #[test]
    fn disabled_scale_in_only_adds() {
        let mut p = policy();
        p.disable_scale_in = true;
        let mut t = Tracker::new(p);
        for s in 0..30 {
            assert_eq!(t.observe(secs(s), 4, 0.0), Decision::Hold);
        }
        assert!(matches!(
            t.observe(secs(31), 1, 0.0),
            Decision::Out { to: 2, .. }
        ));
    }
}
