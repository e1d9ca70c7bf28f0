//! Edge functions as the page shows them: each function's invocations, errors and compute
//! utilization added up over every PoP, since a function runs wherever a behavior uses it.

use super::scrape::Scrape;
use super::views::{ErrorKindRate, FunctionView};
use crate::reading::{merge_buckets, quantile};
use crate::series::Store;
use meridian_config::Config;
use meridian_telemetry::exposition::Sample;
use std::collections::BTreeMap;

const INVOCATIONS: &str = "meridian_edge_function_invocations_total";
const ERRORS: &str = "meridian_edge_function_errors_total";
const UTILIZATION: &str = "meridian_edge_function_compute_utilization";

/// The order a request meets the event types in, so every function lists them alike.
const EVENT_ORDER: [&str; 4] = [
    "viewer-request",
    "origin-request",
    "origin-response",
    "viewer-response",
];

/// Every function the config has or a PoP reports, by name, from this tick's readings
/// (rates like the PoP view's: each PoP's change since its previous scrape).
pub(super) fn functions(
    config: &Config,
    scrape: &Scrape,
    store: &mut Store,
    sec: u64,
) -> Vec<FunctionView> {
    let edges: Vec<_> = scrape
        .targets
        .iter()
        .zip(scrape.readings)
        .filter(|(t, _)| t.role == "edge")
        .filter_map(|(_, r)| r.as_ref())
        .collect();
    // Configured functions show before their first invocation; a PoP still running an
    // older config may report one the console's config no longer has: it shows too.
    let dist = &config.distribution;
    let mut events: BTreeMap<String, Vec<String>> = dist
        .functions
        .iter()
        .map(|f| (f.name.clone(), Vec::new()))
        .collect();
    for a in dist
        .behaviors
        .iter()
        .chain(std::iter::once(&dist.default_behavior))
        .flat_map(|b| &b.function_associations)
    {
        add(&mut events, &a.function, a.event_type.as_str());
    }
    for r in &edges {
        for s in r.all(INVOCATIONS) {
            if let (Some(f), Some(e)) = (s.label("function"), s.label("event_type")) {
                add(&mut events, f, e);
            }
        }
        for s in r.all(ERRORS).chain(r.all(&format!("{UTILIZATION}_count"))) {
            if let Some(f) = s.label("function") {
                events.entry(f.to_owned()).or_default();
            }
        }
    }
    let mut out = Vec::with_capacity(events.len());
    for (name, mut event_types) in events {
        event_types.sort_by_key(|e| EVENT_ORDER.iter().position(|o| o == e));
        let is_this = |s: &Sample| s.label("function") == Some(name.as_str());
        let mut v = FunctionView {
            name: name.clone(),
            event_types,
            ..Default::default()
        };
        let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
        let mut buckets = Vec::new();
        for r in &edges {
            add_rate(&mut v.invocations_rps, r.rate(INVOCATIONS, is_this));
            add_rate(&mut v.errors_rps, r.rate(ERRORS, is_this));
            let mut seen: Vec<&str> = r
                .all(ERRORS)
                .filter(|s| is_this(s))
                .filter_map(|s| s.label("kind"))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            for kind in seen {
                let rate = r.rate(ERRORS, |s| is_this(s) && s.label("kind") == Some(kind));
                if let Some(rate) = rate {
                    *kinds.entry(kind.to_owned()).or_insert(0.0) += rate;
                }
            }
            merge_buckets(&mut buckets, &r.buckets_where(UTILIZATION, is_this));
        }
        v.errors_by_kind = kinds
            .into_iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(kind, per_second)| ErrorKindRate { kind, per_second })
            .collect();
        v.errors_by_kind
            .sort_by(|a, b| b.per_second.total_cmp(&a.per_second));
        v.top_error_kind = v.errors_by_kind.first().map(|k| k.kind.clone());
        v.p99_utilization = quantile(0.99, &buckets);
        // Series only for configured functions: their number is the config's, not whatever
        // label values a PoP reports.
        if dist.functions.iter().any(|f| f.name == name) {
            let p = format!("function.{name}");
            for (what, x) in [
                ("invocations_rps", v.invocations_rps),
                ("errors_rps", v.errors_rps),
                ("p99_utilization", v.p99_utilization),
            ] {
                if let Some(x) = x {
                    store.push(&format!("{p}.{what}"), sec, x);
                }
            }
        }
        out.push(v);
    }
    out
}

fn add(events: &mut BTreeMap<String, Vec<String>>, function: &str, event: &str) {
    let e = events.entry(function.to_owned()).or_default();
    if !e.iter().any(|x| x == event) {
        e.push(event.to_owned());
    }
}

/// Sums rates as `global` does: a PoP without a rate yet (first scrape) adds nothing.
fn add_rate(acc: &mut Option<f64>, x: Option<f64>) {
    if let Some(x) = x {
        *acc.get_or_insert(0.0) += x;
    }
}
