//! Latency: the answer with the lowest round trip from the client's location, measured
//! before configured before the prior; the primary region when the location is unknown.

use super::decision::{finish, min_by, rdata_of, Chosen, Decision, Query};
use meridian_config::{Place, RoundTripPrior};
use std::ops::ControlFlow::{self, Break, Continue};

/// Where round trips from client locations to regions come from, best first.
pub struct RoundTrips<'a> {
    /// Measured by Meridian (the PoPs' probes, fed to the DNS): (client location, region)
    /// to milliseconds.
    pub measured: &'a dyn Fn(&str, &str) -> Option<f64>,
    /// What is believed before anything is measured or configured (none: no guess).
    pub prior: Option<&'a dyn RoundTripPrior>,
}

pub(super) fn decide(
    q: &Query,
    metrics: &mut [Option<f64>],
    rtt: &RoundTrips,
) -> ControlFlow<Decision, Chosen> {
    let Query {
        explain,
        zone,
        set,
        client,
        health,
        live,
        rule_prefix,
        ..
    } = *q;
    let Some((loc, here)) = client
        .location
        .as_ref()
        .and_then(|l| Some((l, l.location?)))
    else {
        let pick = live
            .iter()
            .copied()
            .find(|&i| set.answers[i].region.as_deref() == Some(zone.primary_region.as_str()))
            .or_else(|| live.first().copied());
        return Break(finish(explain, set, client, health, None, rdata_of(set, pick.into_iter()), format!("{rule_prefix}latency: the client's location is unknown, so the primary region answers"))
            .with_ids(set, pick.into_iter().collect()));
    };
    for &i in live {
        let a = &set.answers[i];
        let measured = a
            .region
            .as_deref()
            .and_then(|r| (rtt.measured)(&loc.name, r));
        let configured = a.region.as_deref().and_then(|r| {
            zone.latency_overrides
                .get(&(loc.name.clone(), r.to_owned()))
                .copied()
        });
        let to = match (a.region.as_deref(), a.location) {
            (Some(r), _) => Some(Place::Region(r)),
            (None, Some(l)) => Some(Place::At(l)),
            (None, None) => None,
        };
        // The prior is looked up only when nothing better is known.
        let prior = || {
            let (p, to) = rtt.prior.zip(to)?;
            p.round_trip(Place::Client(&loc.name), to)
                .or_else(|| p.round_trip(Place::At(here), to))
                .map(|d| d.as_secs_f64() * 1e3)
        };
        // Measured beats configured beats the prior.
        metrics[i] = measured.or(configured).or_else(prior);
    }
    let best = min_by(live, metrics);
    Continue((
        best.into_iter().collect(),
        format!("latency: lowest round trip from {}", loc.name),
    ))
}
