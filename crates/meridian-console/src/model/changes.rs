//! Changes between ticks that become timeline events: health flips, restarts, promotions,
//! failovers, retries and invalidations.

use super::views::NodeView;
use crate::events::{Event, Kind, Severity};
use crate::reading::Reading;
use crate::target::Target;
use std::collections::BTreeMap;

/// The watched gauges' values at the last tick, by target index and series key.
#[derive(Default)]
pub(super) struct Watch {
    watched: BTreeMap<(usize, String), f64>,
}

impl Watch {
    /// Health gauges, restarts, failovers and invalidations become timeline events.
    pub(super) fn changes(
        &mut self,
        sec: u64,
        targets: &[Target],
        nodes: &mut [NodeView],
        readings: &[Option<Reading>],
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let Some(r) = r else { continue };
            let node = targets[i].name.clone();
            // Health gauges: (metric, label naming the thing, what it means when it drops).
            for (metric, label, what) in [
                (
                    "meridian_lb_target_healthy",
                    "target",
                    "the load balancer stops sending it traffic",
                ),
                (
                    "meridian_dns_target_healthy",
                    "target",
                    "DNS answers leave it out",
                ),
                (
                    "meridian_edge_origin_healthy",
                    "origin",
                    "the PoP fails over to the next origin",
                ),
            ] {
                for s in r.all(metric) {
                    let Some(subject) = s.label(label) else {
                        continue;
                    };
                    let key = (i, format!("{metric}|{subject}"));
                    let before = self.watched.insert(key, s.value);
                    if let Some(b) = before {
                        if (b >= 0.5) != (s.value >= 0.5) {
                            let healthy = s.value >= 0.5;
                            events.push(Event {
                                at: sec,
                                kind: Kind::Health,
                                severity: if healthy {
                                    Severity::Info
                                } else {
                                    Severity::Warning
                                },
                                subject: subject.to_owned(),
                                message: format!(
                                    "{node}: {subject} is {}",
                                    if healthy { "healthy" } else { "unhealthy" }
                                ),
                                cause: if healthy {
                                    "health checks pass again".to_owned()
                                } else {
                                    format!("health checks failed; {what}")
                                },
                            });
                        }
                    }
                }
            }
            for s in r.all("meridian_supervisor_restarts_total") {
                let Some(n) = s.label("node") else { continue };
                let key = (i, format!("restarts|{n}"));
                let before = self.watched.insert(key, s.value);
                if let Some(v) = nodes.iter_mut().find(|v| v.name == n) {
                    v.restarts = s.value as u64;
                }
                if before.is_some_and(|b| s.value > b) {
                    events.push(Event {
                        at: sec,
                        kind: Kind::Restart,
                        severity: Severity::Warning,
                        subject: n.to_owned(),
                        message: format!("{n} restarted (restart {})", s.value as u64),
                        cause: "its process exited; the supervisor started it again".into(),
                    });
                }
            }
            if targets[i].role == "supervisor" {
                events.extend(self.rollouts(i, sec, r));
                events.extend(super::scaling::events(&mut self.watched, i, sec, r));
            }
            if let Some(e) = self.db_role_change(targets, i, sec, r) {
                events.push(e);
            }
            // A cache node that becomes primary after the first scrape was promoted.
            if let Some(p) = r.all("meridian_cache_primary").next() {
                let before = self.watched.insert((i, "cache_primary".into()), p.value);
                if before.is_some_and(|b| b < 0.5) && p.value >= 0.5 {
                    events.push(Event {
                        at: sec,
                        kind: Kind::Failover,
                        severity: Severity::Warning,
                        subject: node.clone(),
                        message: format!("{node} is now its region's cache primary"),
                        cause: "its keeper promoted it: the primary was unreachable for the failover time, or restarted empty".into(),
                    });
                }
            }
            let failed_over = r.delta("meridian_edge_origin_failovers_total", |_| true);
            if failed_over > 0.0 {
                let reasons: Vec<String> = r
                    .samples
                    .iter()
                    .zip(&r.deltas)
                    .filter(|(s, d)| s.name == "meridian_edge_origin_failovers_total" && **d > 0.0)
                    .map(|(s, d)| format!("{} x{}", s.label("reason").unwrap_or("?"), *d as u64))
                    .collect();
                events.push(Event {
                    at: sec,
                    kind: Kind::Failover,
                    severity: Severity::Warning,
                    subject: node.clone(),
                    message: format!(
                        "{node} moved {} request(s) to the next origin",
                        failed_over as u64
                    ),
                    cause: reasons.join(", "),
                });
            }
            let retried = r.delta("meridian_lb_retries_total", |_| true);
            if retried > 0.0 {
                events.push(Event {
                    at: sec,
                    kind: Kind::Failover,
                    severity: Severity::Warning,
                    subject: node.clone(),
                    message: format!(
                        "{node} retried {} request(s) on another instance",
                        retried as u64
                    ),
                    cause: "an instance refused, reset or timed out".into(),
                });
            }
            let invalidated = r.delta("meridian_edge_invalidation_paths_total", |_| true);
            if invalidated > 0.0 {
                events.push(Event {
                    at: sec,
                    kind: Kind::Invalidation,
                    severity: Severity::Info,
                    subject: node.clone(),
                    message: format!("{node} invalidated {} path(s)", invalidated as u64),
                    cause: "invalidation request".into(),
                });
            }
        }
        events
    }

    /// A database node whose PostgreSQL leaves recovery was promoted (a failover); one that
    /// enters it was demoted (it rejoined as a standby).
    fn db_role_change(
        &mut self,
        targets: &[Target],
        i: usize,
        sec: u64,
        r: &Reading,
    ) -> Option<Event> {
        let p = r.all("meridian_db_in_recovery").next()?;
        let primary = if p.value < 0.5 { 1.0 } else { 0.0 };
        let before = self.watched.insert((i, "db_primary".into()), primary)?;
        let node = &targets[i].name;
        let (severity, message, cause) = match (before >= 0.5, primary >= 0.5) {
            (false, true) => (
                Severity::Critical,
                format!("{node} is now the database primary"),
                "its keeper promoted it: the primary's lease ran out (failover)",
            ),
            (true, false) => (
                Severity::Warning,
                format!("{node} is no longer the database primary"),
                "it was demoted and follows the new primary",
            ),
            _ => return None,
        };
        Some(Event {
            at: sec,
            kind: Kind::Failover,
            severity,
            subject: node.clone(),
            message,
            cause: cause.into(),
        })
    }
}

/// Rollouts, from the supervisor's `meridian_supervisor_rollout` series.
impl Watch {
    /// A rollout state that turned 1 since the last tick is an event (none on the first
    /// scrape: those happened before the console looked).
    fn rollouts(&mut self, i: usize, sec: u64, r: &Reading) -> Vec<Event> {
        let looked_before = self
            .watched
            .insert((i, "rollouts".to_owned()), 1.0)
            .is_some();
        let mut events = Vec::new();
        for s in r.all("meridian_supervisor_rollout") {
            let (Some(version), Some(state)) = (s.label("version"), s.label("state")) else {
                continue;
            };
            let previous = s.label("previous").unwrap_or("?");
            let before = self
                .watched
                .insert((i, format!("rollout|{version}|{state}")), s.value);
            if !looked_before || s.value < 0.5 || before.is_some_and(|b| b >= 0.5) {
                continue;
            }
            let (severity, message) = match state {
                "running" => (
                    Severity::Info,
                    format!("rollout from version {previous} to {version} started"),
                ),
                "succeeded" => (
                    Severity::Info,
                    format!("every instance runs version {version}"),
                ),
                "rolled_back" => (
                    Severity::Warning,
                    format!("rollout to version {version} rolled back to {previous}"),
                ),
                _ => (
                    Severity::Critical,
                    format!("rollout to version {version} stopped part way"),
                ),
            };
            events.push(Event {
                at: sec,
                kind: Kind::Deployment,
                severity,
                subject: "service".to_owned(),
                message,
                cause: s.label("reason").unwrap_or_default().to_owned(),
            });
        }
        events
    }
}
