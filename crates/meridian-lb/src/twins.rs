//! Green twins of target groups, for canary and blue/green deployments (ALB's weighted
//! forward action between a service's "blue" group and a "green" one, as CodeDeploy
//! drives it).
//!
//! Each configured group may get one twin at run time (`POST /target-groups/twin`): an
//! empty group named `<group>-green` with the same health check, algorithm and settings,
//! whose targets are registered with `POST /targets/register?...&twin=true`. A runtime
//! weight, keyed by the group's name (`POST /target-groups/weights`), sends that share of
//! what the rules (or the default action) forward to the group to its twin instead, so a
//! rule's weighted forward `w` becomes `w·(100-p)/100` to blue and `w·p/100` to green.
//! Changing a weight is one atomic store read per request: connections stay open, requests
//! in flight finish where they went.
//!
//! Twins live beside the configured groups, not among them, so the list of groups (and
//! the indexes the rules hold into it) never changes while the balancer runs. What the
//! balancer does with them is in `twins_lb.rs` (this file names nothing of `proxy.rs`,
//! which holds a [`Twins`]).

use crate::target::TargetGroup;
use meridian_health::HealthBoard;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// What a twin's name adds to its group's.
pub const TWIN_SUFFIX: &str = "-green";

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("no target group is named {0}")]
    NoGroup(String),
    #[error("target group {0} has no twin; make one with POST /target-groups/twin?group={0}")]
    NoTwin(String),
    #[error("a weight is a percent from 0 to 100, not {0}")]
    Percent(String),
}

/// The twins, one place per configured group (same index), and each group's share (0 to
/// 100) sent to its twin.
pub(crate) struct Twins {
    slots: Box<[OnceLock<TargetGroup>]>,
    percent: Box<[AtomicU32]>,
    /// Requests forwarded to each group so far: the split is counted, not drawn, so that
    /// every 100 requests to a group send exactly `p` to its twin.
    seen: Box<[AtomicU64]>,
    making: Mutex<()>,
}

impl Twins {
    pub(crate) fn new(groups: usize) -> Self {
        Twins {
            slots: (0..groups).map(|_| OnceLock::new()).collect(),
            percent: (0..groups).map(|_| AtomicU32::new(0)).collect(),
            seen: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            making: Mutex::new(()),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<&TargetGroup> {
        self.slots.get(i).and_then(|s| s.get())
    }

    /// The twin of group `i` if this request (to group `i`) is one of its share. A twin
    /// with no healthy target takes nothing (its group does): a weight left behind by a
    /// rollout that stopped half way, or a green version failing, never turns into 503s
    /// while blue can serve.
    pub(crate) fn pick(&self, i: usize) -> Option<&TargetGroup> {
        let p = self.percent(i);
        if p == 0 {
            return None;
        }
        let twin = self.get(i)?;
        let n = self.seen[i].fetch_add(1, Ordering::Relaxed);
        (to_twin(n, p) && twin.healthy_count() > 0).then_some(twin)
    }

    /// The twin of `base` (group `i`), made if there is none yet.
    pub(crate) fn make(&self, i: usize, base: &TargetGroup) -> &TargetGroup {
        let _one = self.making.lock().unwrap_or_else(|p| p.into_inner());
        self.slots[i].get_or_init(|| {
            let mut config = (*base.config()).clone();
            config.name = format!("{}{TWIN_SUFFIX}", config.name);
            tracing::info!(twin = %config.name, "target group twin made");
            TargetGroup::new(config, Vec::new(), HealthBoard::new())
        })
    }

    pub(crate) fn set_percent(&self, i: usize, percent: u32) {
        if let Some(p) = self.percent.get(i) {
            p.store(percent.min(100), Ordering::Release);
        }
    }

    pub(crate) fn percent(&self, i: usize) -> u32 {
        self.percent
            .get(i)
            .map(|p| p.load(Ordering::Acquire))
            .unwrap_or(0)
    }
}

/// Whether the `n`th request (from 0) to a group whose twin has `percent` goes to the
/// twin: spread evenly, exactly `percent` of every 100 consecutive requests.
pub fn to_twin(n: u64, percent: u32) -> bool {
    let p = u64::from(percent.min(100));
    (n + 1) * p / 100 > n * p / 100
}

/// A rule's forward weight `weight` for a group whose twin takes `percent`: what blue and
/// green get in effect (what `GET /target-groups` shows).
pub fn split(weight: u32, percent: u32) -> (f64, f64) {
    let green = f64::from(weight) * f64::from(percent.min(100)) / 100.0;
    (f64::from(weight) - green, green)
}

/// Parses a percent from a query value.
pub fn parse_percent(v: &str) -> Result<u32, TwinError> {
    match v.trim().parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(TwinError::Percent(v.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_percent, split, to_twin};

    #[test]
    fn every_hundred_requests_send_exactly_the_percent() {
        for p in [0u32, 1, 5, 10, 33, 50, 99, 100] {
            for start in [0u64, 7, 1000] {
                let green = (start..start + 100).filter(|&n| to_twin(n, p)).count();
                assert_eq!(green as u32, p, "percent {p} from {start}");
            }
        }
        // Spread, not bunched: 5% is one in every 20.
        let firsts: Vec<u64> = (0..100).filter(|&n| to_twin(n, 5)).collect();
        assert_eq!(firsts, vec![19, 39, 59, 79, 99]);
        assert!(!to_twin(3, 0) && to_twin(3, 100) && to_twin(3, 250));
    }

    #[test]
    fn a_rule_weight_splits_in_proportion() {
        assert_eq!(split(100, 5), (95.0, 5.0));
        assert_eq!(split(30, 50), (15.0, 15.0));
        assert_eq!(split(10, 0), (10.0, 0.0));
        assert_eq!(split(10, 100), (0.0, 10.0));
    }

    #[test]
    fn percents_are_checked() {
        assert_eq!(parse_percent("5").unwrap(), 5);
        assert_eq!(parse_percent("100").unwrap(), 100);
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("x").is_err());
    }
}
