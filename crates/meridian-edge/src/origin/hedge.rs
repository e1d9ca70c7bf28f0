//! Hedged origin requests: when a member takes much longer than usual to send a response
//! head, a safe request is also sent to the next member and the first head wins. "Usual"
//! is each member's own smoothed head latency and its variation (as TCP estimates its
//! retransmission timeout), so a slow member is hedged late and a fast one early. A budget
//! keeps hedges to about a tenth of requests, so a slow region cannot double the load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Never hedge sooner than this: below it, a hedge mostly duplicates work.
const MIN_DELAY: Duration = Duration::from_millis(50);
/// Margin over the usual latency, for scheduling noise.
const MARGIN: Duration = Duration::from_millis(20);
/// Hedges allowed per request sent, and a burst on top.
const HEDGE_SHARE: u64 = 10;
const HEDGE_BURST: u64 = 20;

/// A member's smoothed response-head latency and its mean deviation, in microseconds
/// (0 until the first answer).
#[derive(Debug, Default)]
pub struct HeadLatency {
    srtt_us: AtomicU64,
    rttvar_us: AtomicU64,
}

impl HeadLatency {
    /// One head took `sample` (RFC 6298's estimator: gains 1/8 and 1/4).
    pub fn observe(&self, sample: Duration) {
        let s = sample.as_micros().min(u128::from(u64::MAX)) as u64;
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            self.srtt_us.store(s.max(1), Ordering::Relaxed);
            self.rttvar_us.store(s / 2, Ordering::Relaxed);
            return;
        }
        let var = self.rttvar_us.load(Ordering::Relaxed);
        let dev = srtt.abs_diff(s);
        self.rttvar_us
            .store(var - var / 4 + dev / 4, Ordering::Relaxed);
        self.srtt_us
            .store((srtt - srtt / 8 + s / 8).max(1), Ordering::Relaxed);
    }

    /// When to hedge a request to this member: its usual head latency plus four deviations
    /// and a margin, within [`MIN_DELAY`] and half the response timeout. None before any
    /// head was seen (nothing to call slow yet).
    pub fn hedge_after(&self, response_timeout: Duration) -> Option<Duration> {
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            return None;
        }
        let var = self.rttvar_us.load(Ordering::Relaxed);
        let d = Duration::from_micros(srtt.saturating_add(var.saturating_mul(4))) + MARGIN;
        let max = response_timeout / 2;
        (max > MIN_DELAY).then(|| d.clamp(MIN_DELAY, max))
    }
}

/// Requests sent and hedges spent, for the budget.
#[derive(Debug, Default)]
pub struct HedgeBudget {
    requests: AtomicU64,
    hedges: AtomicU64,
}

impl HedgeBudget {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one hedge if the budget allows it.
    pub fn take(&self) -> bool {
        let allowed = self.requests.load(Ordering::Relaxed) / HEDGE_SHARE + HEDGE_BURST;
        self.hedges
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                (h < allowed).then_some(h + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_members_own_latency() {
        let l = HeadLatency::default();
        let timeout = Duration::from_secs(3);
        assert_eq!(l.hedge_after(timeout), None, "nothing seen yet");
        for _ in 0..50 {
            l.observe(Duration::from_millis(100));
        }
        let d = l.hedge_after(timeout).unwrap();
        assert!(
            d >= Duration::from_millis(110) && d <= Duration::from_millis(200),
            "{d:?}"
        );
        // A jittery member is hedged later.
        for i in 0..50 {
            l.observe(Duration::from_millis(if i % 2 == 0 { 50 } else { 150 }));
        }
        assert!(l.hedge_after(timeout).unwrap() > d);
        // Never past half the timeout, never under the floor.
        for _ in 0..50 {
            l.observe(Duration::from_secs(10));
        }
        assert_eq!(l.hedge_after(timeout), Some(Duration::from_millis(1500)));
        let fast = HeadLatency::default();
        fast.observe(Duration::from_micros(300));
        assert_eq!(fast.hedge_after(timeout), Some(MIN_DELAY));
    }

    #[test]
    fn hedges_stay_within_a_tenth_of_requests_plus_a_burst() {
        let b = HedgeBudget::default();
        let mut taken = 0;
        for _ in 0..1000 {
            b.request();
            if b.take() {
                taken += 1;
            }
        }
        assert_eq!(taken, 1000 / HEDGE_SHARE + HEDGE_BURST);
    }
}
