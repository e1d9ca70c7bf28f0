//! The timeline: health changes, failovers, restarts, invalidations and alarms.

use serde::Serialize;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Health,
    Failover,
    Restart,
    Invalidation,
    Node,
    Alarm,
    /// A protection rule started or stopped blocking at a PoP.
    Security,
    /// A rollout (`meridian rollout`) started, finished, or was rolled back, and why.
    Deployment,
    /// Autoscaling added or removed a region's instances.
    Scaling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix time in seconds.
    pub at: u64,
    pub kind: Kind,
    pub severity: Severity,
    /// The node, region or PoP it is about.
    pub subject: String,
    pub message: String,
    pub cause: String,
}

/// The newest events, at most `capacity` of them.
pub struct Timeline {
    capacity: usize,
    events: VecDeque<Event>,
    /// Events recorded since start, including those pushed out.
    pub total: u64,
}

impl Timeline {
    pub fn new(capacity: usize) -> Self {
        Timeline {
            capacity: capacity.max(1),
            events: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, e: Event) {
        let level = match e.severity {
            Severity::Info => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        };
        if level == tracing::Level::INFO {
            tracing::info!(kind = ?e.kind, subject = %e.subject, cause = %e.cause, "{}", e.message);
        } else {
            tracing::warn!(kind = ?e.kind, subject = %e.subject, cause = %e.cause, "{}", e.message);
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(e);
        self.total += 1;
    }

    /// The newest `n` events, newest first.
    pub fn newest(&self, n: usize) -> Vec<Event> {
        self.events.iter().rev().take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let mut t = Timeline::new(2);
        for i in 0..3 {
            t.push(Event {
                at: i,
                kind: Kind::Node,
                severity: Severity::Info,
                subject: format!("n{i}"),
                message: String::new(),
                cause: String::new(),
            });
        }
        let n = t.newest(10);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].subject, "n2");
        assert_eq!(n[1].subject, "n1");
        assert_eq!(t.total, 3);
    }
}
