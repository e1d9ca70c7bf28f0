//! Rise/fall thresholds: how many results in a row change a target's state.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Health {
    /// Not probed yet.
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl Health {
    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }
}

/// Counts consecutive results. A target leaves `Unknown` on its first result (so a fresh
/// deployment serves without waiting out a full threshold); after that it takes
/// `rise` successes in a row to become healthy and `fall` failures in a row to become
/// unhealthy, as ALB's healthy and unhealthy thresholds do.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: Health,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Tracker {
    pub fn new(rise: u32, fall: u32) -> Self {
        Tracker {
            state: Health::Unknown,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    /// Records one result; returns `(from, to)` when the state changes.
    pub fn observe(&mut self, ok: bool) -> Option<(Health, Health)> {
        let from = self.state;
        let to = match (from, ok) {
            (Health::Unknown, true) => Health::Healthy,
            (Health::Unknown, false) => Health::Unhealthy,
            (Health::Healthy, true) | (Health::Unhealthy, false) => {
                self.streak = 0;
                return None;
            }
            (Health::Healthy, false) => {
                self.streak += 1;
                if self.streak < self.fall {
                    return None;
                }
                Health::Unhealthy
            }
            (Health::Unhealthy, true) => {
                self.streak += 1;
                if self.streak < self.rise {
                    return None;
                }
                Health::Healthy
            }
        };
        self.state = to;
        self.streak = 0;
        Some((from, to))
    }

    /// New thresholds, the state and the streak so far kept: a reloaded health check
    /// decides from where the target is, not from `Unknown`.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Marks the target unhealthy now, whatever the streak (a passive failure).
    pub fn force_unhealthy(&mut self) -> Option<(Health, Health)> {
        let from = self.state;
        self.streak = 0;
        if from == Health::Unhealthy {
            return None;
        }
        self.state = Health::Unhealthy;
        Some((from, Health::Unhealthy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_thresholds_keep_the_state() {
        let mut t = Tracker::new(2, 2);
        t.observe(true);
        t.set_thresholds(1, 3);
        assert_eq!(t.state(), Health::Healthy, "still healthy");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None, "three failures now, not two");
        assert_eq!(t.observe(false), Some((Health::Healthy, Health::Unhealthy)));
        assert_eq!(
            t.observe(true),
            Some((Health::Unhealthy, Health::Healthy)),
            "one success now"
        );
    }

    #[test]
    fn first_result_decides_unknown() {
        let mut t = Tracker::new(3, 3);
        assert_eq!(t.observe(true), Some((Health::Unknown, Health::Healthy)));
        let mut t = Tracker::new(3, 3);
        assert_eq!(t.observe(false), Some((Health::Unknown, Health::Unhealthy)));
    }

    #[test]
    fn falls_after_exactly_fall_failures_in_a_row() {
        let mut t = Tracker::new(2, 3);
        t.observe(true);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a success resets the streak");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some((Health::Healthy, Health::Unhealthy)));
    }

    #[test]
    fn rises_after_exactly_rise_successes_in_a_row() {
        let mut t = Tracker::new(2, 1);
        t.observe(false);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None, "a failure resets the streak");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some((Health::Unhealthy, Health::Healthy)));
        assert_eq!(t.state(), Health::Healthy);
    }

    #[test]
    fn passive_failure_needs_full_rise_to_recover() {
        let mut t = Tracker::new(2, 5);
        t.observe(true);
        assert_eq!(
            t.force_unhealthy(),
            Some((Health::Healthy, Health::Unhealthy))
        );
        assert_eq!(t.force_unhealthy(), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some((Health::Unhealthy, Health::Healthy)));
    }
}
