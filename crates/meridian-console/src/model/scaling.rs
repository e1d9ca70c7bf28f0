//! Autoscaling as the console shows it, from the supervisor's series: each region's
//! desired and running instance counts (`meridian_supervisor_desired_instances`,
//! `meridian_supervisor_running_instances`), and a timeline event for each scaling
//! activity (`meridian_supervisor_scaling_events_total` going up).

use super::scrape::Scrape;
use crate::events::{Event, Kind, Severity};
use crate::reading::Reading;
use std::collections::BTreeMap;

/// (desired, running) of `region`; None when the supervisor is not scraped or autoscaling
/// is off.
pub(super) fn capacity(scrape: &Scrape, region: &str) -> (Option<u32>, Option<u32>) {
    let Some(r) = scrape.reading_of("supervisor") else {
        return (None, None);
    };
    let gauge = |name: &str| {
        r.all(name)
            .find(|s| s.label("region") == Some(region))
            .map(|s| s.value.max(0.0) as u32)
    };
    (
        gauge("meridian_supervisor_desired_instances"),
        gauge("meridian_supervisor_running_instances"),
    )
}

/// A scaling counter that went up since the last tick is an event (none on the first
/// scrape: those happened before the console looked). `watched` holds the last values of
/// target `i`'s series.
pub(super) fn events(
    watched: &mut BTreeMap<(usize, String), f64>,
    i: usize,
    sec: u64,
    r: &Reading,
) -> Vec<Event> {
    let mut out = Vec::new();
    for s in r.all("meridian_supervisor_scaling_events_total") {
        let (Some(region), Some(direction)) = (s.label("region"), s.label("direction")) else {
            continue;
        };
        let before = watched.insert((i, format!("scaling|{region}|{direction}")), s.value);
        if !before.is_some_and(|b| s.value > b) {
            continue;
        }
        let desired = r
            .all("meridian_supervisor_desired_instances")
            .find(|d| d.label("region") == Some(region))
            .map(|d| format!(" to {}", d.value as u64))
            .unwrap_or_default();
        out.push(Event {
            at: sec,
            kind: Kind::Scaling,
            severity: Severity::Info,
            subject: region.to_owned(),
            message: format!("{region} scaled {direction}{desired} instances"),
            cause: "target tracking (GET /autoscaling on the supervisor says why)".into(),
        });
    }
    out
}
