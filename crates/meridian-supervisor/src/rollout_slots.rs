//! What both kinds of rollout (`rollout.rs`, rolling; `rollout_canary.rs`, traffic
//! shifting) say and ask about instances: a leaf, so neither names the other's file.

use crate::fleet::{Fleet, Slot};
use crate::instances;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One line of progress: an event (events.log) and a step of the report.
pub(crate) fn note(shared: &Arc<dyn Fleet>, text: String) {
    shared.event(&format!("rollout: {text}"));
    shared.rollout().update(|r| r.steps.push(text));
}

/// An instance's place: the slot running the old version and the home its replacement
/// starts in.
pub(crate) struct Position {
    pub(crate) old: Arc<Slot>,
    pub(crate) new: Arc<Slot>,
}

pub(crate) fn version_of(s: &Slot) -> String {
    s.version.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn active(s: &Slot) -> bool {
    s.active.load(Ordering::Acquire)
}

/// The instances of `az` (in `region`) that do not run `version`.
pub(crate) fn positions(
    shared: &Arc<dyn Fleet>,
    region: &str,
    az: &str,
    version: &str,
) -> Vec<Position> {
    let cfg = &shared.config();
    cfg.service_homes(region)
        .into_iter()
        .filter(|n| n.az.as_deref() == Some(az))
        .filter_map(|n| {
            let a = instances::slot(shared, &n.name)?;
            let b = instances::slot(shared, &cfg.replacement_of(&n)?.name)?;
            let (old, new) = if active(&a) { (a, b) } else { (b, a) };
            (active(&old) && version_of(&old) != version).then_some(Position { old, new })
        })
        .collect()
}

/// Instances of `region` that run now, in either home: autoscaling may have added some.
pub(crate) fn running_in(shared: &Arc<dyn Fleet>, region: &str) -> usize {
    let cfg = shared.config();
    cfg.service_homes(region)
        .iter()
        .filter(|n| {
            let home = instances::slot(shared, &n.name);
            let other = cfg
                .replacement_of(n)
                .and_then(|r| instances::slot(shared, &r.name));
            home.iter().chain(&other).any(|s| active(s))
        })
        .count()
}

/// The regions in the order a rollout takes them (the primary first), with the progress
/// report's bar per region set to none done of what runs now.
pub(crate) fn regions_in_order(shared: &Arc<dyn Fleet>) -> Vec<meridian_config::Region> {
    let mut regions: Vec<meridian_config::Region> = shared.config().regions.clone();
    regions.sort_by_key(|r| !r.primary);
    shared.rollout().update(|r| {
        r.regions = regions
            .iter()
            .map(|g| crate::fleet::RegionProgress {
                region: g.name.clone(),
                done: 0,
                total: running_in(shared, &g.name),
            })
            .collect()
    });
    regions
}
