//! The order to try a group's members in: healthy before unhealthy, and by measured round
//! trip (never below the model's) when the group selects by latency.

use super::group::{Group, Member};
use meridian_config::OriginSelection;
use std::sync::atomic::Ordering;

impl Member {
    /// The round trip used to rank members: the measured one, but never less than the
    /// model's. A path is at least as long as its distance; measurements can only show it
    /// slower (congestion, a struggling region). So members that all measure near zero
    /// (every origin on one machine without WAN relays) keep the model's order instead of
    /// flapping on noise, and with the WAN the measurement decides. Whole milliseconds.
    pub fn rank_key(&self) -> (u64, u64) {
        let measured = self.rtt_us.load(Ordering::Relaxed);
        (measured.max(self.modelled_us) / 1000, self.modelled_us)
    }
}

impl Group {
    /// Members in the order to try them: healthy ones by the group's selection, then the
    /// unhealthy ones (fail open, as CloudFront's origin failover does when all are down).
    pub fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        match self.cfg.selection {
            OriginSelection::Ordered => {}
            OriginSelection::Latency => {
                order.sort_by_key(|&i| self.members[i].rank_key());
            }
        }
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| self.members[i].health.is_healthy());
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
