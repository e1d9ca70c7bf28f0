//! Routing policies: which answers a record set gives this client now.
//!
//! Semantics follow Route 53: health only matters where Route 53 evaluates it, weight-0
//! answers are used only when no weighted answer with weight is healthy, geolocation
//! falls back from country to continent to default, multivalue gives up to eight healthy
//! answers, and when every candidate is unhealthy the set fails open (configurable).

//! Each policy has its file; this one handles health (fail open or closed) for all of
//! them, dispatches, and finishes the common decision.

mod decision;
mod failover;
mod geolocation;
mod geoproximity;
mod ip_based;
mod latency;
mod multivalue;
mod simple;
mod weighted;

pub use decision::{Candidate, Decision};
pub use latency::RoundTrips;

use crate::client::ClientInfo;
use crate::zone::{RtAnswer, RtSet, Zone};
use decision::{finish, rdata_of, Query};
use hickory_proto::rr::RData;
use meridian_config::Policy;
use std::ops::ControlFlow;

pub fn decide(
    explain: bool,
    zone: &Zone,
    set: &RtSet,
    client: &ClientInfo,
    healthy: &dyn Fn(&str) -> bool,
    rtt: &RoundTrips,
) -> Decision {
    let health_of = |a: &RtAnswer| a.health.as_deref().map(healthy).unwrap_or(true);
    let health: Vec<bool> = set.answers.iter().map(health_of).collect();
    let mut alive = health.clone();
    let mut rule_prefix = String::new();
    // Simple records are not health checked by Route 53; every other policy is.
    if set.policy != Policy::Simple && !alive.iter().any(|h| *h) && !set.answers.is_empty() {
        if zone.fail_closed {
            return finish(
                explain,
                set,
                client,
                &health,
                None,
                Vec::new(),
                "every candidate is unhealthy; failing closed (no answer)".into(),
            );
        }
        if !zone.when_all_unhealthy.is_empty() {
            let rdata: Vec<RData> = zone
                .when_all_unhealthy
                .iter()
                .filter(|r| r.record_type() == set.rtype)
                .cloned()
                .collect();
            return finish(
                explain,
                set,
                client,
                &health,
                None,
                rdata,
                "every candidate is unhealthy; answering with the static fallback".into(),
            );
        }
        alive = vec![true; set.answers.len()];
        rule_prefix =
            "every candidate is unhealthy, so all are treated as healthy (fail open); ".into();
    }
    let live: Vec<usize> = (0..set.answers.len()).filter(|&i| alive[i]).collect();
    let mut metrics: Vec<Option<f64>> = vec![None; set.answers.len()];
    let q = Query {
        explain,
        zone,
        set,
        client,
        health: &health,
        live: &live,
        rule_prefix: &rule_prefix,
    };
    let outcome = match set.policy {
        Policy::Simple => simple::decide(&q),
        Policy::Multivalue => multivalue::decide(&q),
        Policy::Weighted => weighted::decide(&q, &mut metrics),
        Policy::Failover => failover::decide(&q),
        Policy::Latency => latency::decide(&q, &mut metrics, rtt),
        Policy::Geoproximity => geoproximity::decide(&q, &mut metrics),
        Policy::Geolocation => geolocation::decide(&q),
        Policy::IpBased => ip_based::decide(&q),
    };
    let (chosen, rule) = match outcome {
        ControlFlow::Break(decided) => return decided,
        ControlFlow::Continue(chosen) => chosen,
    };
    let mut d = finish(
        explain,
        set,
        client,
        &health,
        Some(&metrics),
        rdata_of(set, chosen.iter().copied()),
        format!("{rule_prefix}{rule}"),
    );
    if explain {
        d.chosen = chosen.iter().map(|&i| set.answers[i].id.clone()).collect();
    }
    d
}
