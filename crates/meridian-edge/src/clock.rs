//! The time the edge's cache reasons with: when a response was asked for and received,
//! and "now" when a stored object's age and freshness (TTL, stale-while-revalidate,
//! stale-if-error) are judged. Production reads the system clock; tests hand the PoP a
//! [`ManualClock`] and move it forward, so expiry is tested without waiting for it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time for the cache's freshness math.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock: what every PoP runs with.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is told to move: a test advances it past a TTL
/// instead of sleeping through one.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        assert_eq!(c.now(), start);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now(), start + Duration::from_millis(1500));
    }

    #[test]
    fn the_system_clock_follows_the_system() {
        let before = SystemTime::now();
        let read = SystemClock.now();
        assert!(read >= before && read <= SystemTime::now());
    }
}
