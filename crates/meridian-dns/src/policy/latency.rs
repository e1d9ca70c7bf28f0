//! Latency: the answer with the lowest round trip from the client's location, measured
//! before configured before modelled; the primary region when the location is unknown.

use super::decision::{finish, min_by, rdata_of, Chosen, Decision, Query};
use std::ops::ControlFlow::{self, Break, Continue};

pub(super) fn decide(
    q: &Query,
    metrics: &mut [Option<f64>],
    measured_rtt: &dyn Fn(&str, &str) -> Option<f64>,
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
        // Measured beats configured beats modelled.
        let given = a.region.as_deref().and_then(|r| {
            measured_rtt(&loc.name, r).or_else(|| {
                zone.latency_overrides
                    .get(&(loc.name.clone(), r.to_owned()))
                    .copied()
            })
        });
        metrics[i] = given.or_else(|| a.location.map(|l| here.rtt_ms(&l)));
    }
    let best = min_by(live, metrics);
    Continue((
        best.into_iter().collect(),
        format!("latency: lowest round trip from {}", loc.name),
    ))
}
