//! Geoproximity: the nearest answer to the client, each distance scaled by the answer's
//! bias (Route 53's: a positive bias draws clients in).

use super::decision::{finish, min_by, rdata_of, Chosen, Decision, Query};
use std::ops::ControlFlow::{self, Break, Continue};

pub(super) fn decide(q: &Query, metrics: &mut [Option<f64>]) -> ControlFlow<Decision, Chosen> {
    let Query {
        explain,
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
        return Break(finish(explain, set, client, health, None, rdata_of(set, live.first().copied().into_iter()), format!("{rule_prefix}geoproximity: the client's location is unknown, so the first healthy answer"))
            .with_ids(set, live.first().copied().into_iter().collect()));
    };
    for &i in live {
        let a = &set.answers[i];
        // Route 53's bias: a positive bias shrinks the distance, drawing clients in.
        metrics[i] = a
            .location
            .map(|l| here.distance_km(&l) * (1.0 - f64::from(a.bias) / 100.0));
    }
    let best = min_by(live, metrics);
    Continue((
        best.into_iter().collect(),
        format!("geoproximity: nearest (biased) to {}", loc.name),
    ))
}
