//! What each alarm rule sees this tick: one observation per subject (region, PoP,
//! database node), handed to the alarm engine, which owns the state machine.

use super::views::{NodeView, PopView, RegionView, Status};
use crate::alarms::{Alarms, Observation, Transition};
use crate::series::Store;
use meridian_config::AlarmKind;

pub(super) fn evaluate(
    alarms: &mut Alarms,
    store: &Store,
    nodes: &[NodeView],
    sec: u64,
    regions: &[RegionView],
    pops: &[PopView],
) -> Vec<Transition> {
    let mut out = Vec::new();
    let db_nodes: Vec<_> = regions
        .iter()
        .filter_map(|r| r.db.as_ref())
        .flat_map(|d| d.nodes.iter().cloned())
        .collect();
    for (i, rule) in alarms.rules().to_vec().iter().enumerate() {
        let w = rule.window.as_secs();
        let mut seen = Vec::new();
        match rule.kind {
            AlarmKind::ReplicationLag => {
                seen = crate::db_tier::lag_observations(&db_nodes, rule.threshold);
            }
            AlarmKind::NoSyncStandby => seen = crate::db_tier::sync_observations(&db_nodes),
            AlarmKind::RegionUnhealthy => {
                for r in regions {
                    let breached = r.status == Status::Unhealthy;
                    let detail = if !r.lb_up {
                        format!("{} does not answer", r.lb)
                    } else {
                        format!("{} of {} instances healthy", r.healthy, r.total)
                    };
                    seen.push(Observation {
                        subject: r.name.clone(),
                        value: Some(breached as u8 as f64),
                        breached,
                        detail,
                    });
                }
            }
            AlarmKind::PopUnreachable => {
                for p in pops {
                    let why = nodes
                        .iter()
                        .find(|n| n.name == p.node)
                        .and_then(|n| n.error.clone());
                    seen.push(Observation {
                        subject: format!("pop:{}", p.name),
                        value: Some(!p.up as u8 as f64),
                        breached: !p.up,
                        detail: why.unwrap_or_else(|| format!("{} answers", p.node)),
                    });
                }
            }
            AlarmKind::ErrorRate => {
                let subjects = regions
                    .iter()
                    .map(|r| (r.name.clone(), format!("region.{}", r.name)))
                    .chain(
                        pops.iter()
                            .map(|p| (format!("pop:{}", p.name), format!("pop.{}", p.name))),
                    );
                for (subject, prefix) in subjects.collect::<Vec<_>>() {
                    let n = store.sum_window(&format!("{prefix}.requests"), sec, w);
                    let e = store.sum_window(&format!("{prefix}.5xx"), sec, w);
                    let value = (n > 0.0).then(|| e / n);
                    let breached =
                        n >= rule.min_requests as f64 && value.is_some_and(|v| v > rule.threshold);
                    seen.push(Observation {
                        subject,
                        value,
                        breached,
                        detail: format!("{} of {} requests were 5xx in {w}s", e as u64, n as u64),
                    });
                }
            }
            AlarmKind::HitRate => {
                for p in pops {
                    let prefix = format!("pop.{}", p.name);
                    let n = store.sum_window(&format!("{prefix}.lookups"), sec, w);
                    let h = store.sum_window(&format!("{prefix}.hits"), sec, w);
                    let value = (n > 0.0).then(|| h / n);
                    let breached =
                        n >= rule.min_requests as f64 && value.is_some_and(|v| v < rule.threshold);
                    seen.push(Observation {
                        subject: format!("pop:{}", p.name),
                        value,
                        breached,
                        detail: format!(
                            "{} of {} cacheable requests were hits in {w}s",
                            h as u64, n as u64
                        ),
                    });
                }
            }
        }
        out.extend(alarms.observe(i, sec, seen));
    }
    out
}
