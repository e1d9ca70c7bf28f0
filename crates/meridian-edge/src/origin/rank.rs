//! The order to try a group's members in: healthy before unhealthy, and by measured round
//! trip (never below the prior's) when the group selects by latency.

use super::group::{Group, Member};
use super::tier::Tier;
use meridian_config::OriginSelection;
use std::sync::atomic::Ordering;

impl Member {
    /// The round trip used to rank members, in whole milliseconds so that noise below a
    /// millisecond does not reorder them: the measured one, but never less than the
    /// prior's when there is a prior. A path is at least as long as its distance;
    /// measurements can only show it slower (congestion, a struggling region). So members
    /// that all measure near zero (every origin on one machine without WAN relays) keep the
    /// prior's order instead of flapping on noise. Without a prior, a member not yet
    /// measured ranks after the measured ones.
    pub fn rank_key(&self) -> (u64, u64) {
        let (us, prior) = self.ranked_rtt_us();
        (us / 1000, prior)
    }

    /// The round trip ranking uses, in microseconds (u64::MAX when there is neither a
    /// measurement nor a prior), and the prior's (0 without one) to break ties. What the
    /// PoP reports to the DNS as its round trip to a region, so the DNS sees the same
    /// number the PoP ranks by.
    pub fn ranked_rtt_us(&self) -> (u64, u64) {
        let measured = self.rtt_us.load(Ordering::Relaxed);
        match self.prior_us {
            Some(prior) => (measured.max(prior), prior),
            None if measured == 0 => (u64::MAX, 0),
            None => (measured, 0),
        }
    }
}

impl Group {
    /// Members in the order to try them: healthy ones by the group's selection, then the
    /// unhealthy ones (fail open, as CloudFront's origin failover does when all are down).
    /// A tier member (`tier.rs`) is ranked by the balancer behind it and tried just before
    /// it, and counts as healthy only while that balancer does too; an Origin Shield member
    /// goes first whatever its distance, since only the shield should reach the origins.
    pub fn ranked(&self) -> Vec<usize> {
        let n = self.members.len();
        let fronts = |i: usize| self.members[i].tier.is_some() && i + 1 < n;
        let mut leads: Vec<usize> = (0..n).filter(|&i| i == 0 || !fronts(i - 1)).collect();
        match self.cfg.selection {
            OriginSelection::Ordered => {}
            OriginSelection::Latency => {
                leads.sort_by_key(|&i| self.members[if fronts(i) { i + 1 } else { i }].rank_key());
            }
        }
        leads.sort_by_key(|&i| self.members[i].tier != Some(Tier::Shield));
        let mut order = Vec::with_capacity(n);
        for i in leads {
            order.push(i);
            if fronts(i) {
                order.push(i + 1);
            }
        }
        let healthy = |i: usize| {
            self.members[i].health.is_healthy()
                && (!fronts(i) || self.members[i + 1].health.is_healthy())
        };
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| healthy(i));
        healthy.extend(unhealthy);
        healthy
    }
}

impl Member {
    /// Folds one health check's round trip (µs) into the member's estimate: an
    /// exponentially weighted mean, so one slow probe moves the ranking a little, not all
    /// the way. Returns the new estimate.
    pub fn observe_rtt(&self, sample_us: u64) -> u64 {
        let old = self.rtt_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample_us
        } else {
            (old * 7 + sample_us) / 8
        };
        self.rtt_us.store(new, Ordering::Relaxed);
        new
    }
}
