//! The security panel: every protection rule's allowed, blocked and counted requests per
//! PoP and in all, the keys rate limits refuse most, authentication failures by reason and
//! idempotent requests, from the PoPs' metrics and `/protection` reports; and an event when
//! a rule starts (or stops) blocking at a PoP.
//!
//! Counts and rates come from the metrics (counters, so rates are each PoP's change since
//! its previous scrape, as everywhere else in the console); a PoP whose metrics carry no
//! sample of a rule contributes the counts of its `/protection` report instead. Top keys,
//! limits and windows exist only in the reports.

use super::protection::{display_key, Report, GEO_RULE};
use super::scrape::Scrape;
use super::security_views::{
    AuthFailureView, IdempotencyView, ProtectionRuleView, ReasonView, RulePopView, SecurityPopView,
    SecurityView, TopKeyView,
};
use crate::events::{Event, Kind, Severity};
use crate::reading::Reading;
use crate::series::Store;
use meridian_config::{Config, GeoRestrictionType};
use meridian_telemetry::exposition::Sample;
use std::collections::{BTreeMap, HashMap};

pub(super) const PROTECTION: &str = "meridian_edge_protection_requests_total";
pub(super) const AUTH_FAILURES: &str = "meridian_edge_auth_failures_total";
pub(super) const IDEMPOTENT: &str = "meridian_edge_idempotent_requests_total";

/// Seconds a rule must block nothing at a PoP before it counts as stopped: one quiet
/// scrape between two blocked requests is no news.
pub const STOP_AFTER: u64 = 10;
/// Seconds `recent_blocked_rps` averages over.
pub const RECENT: usize = 10;
/// At most this many top keys.
pub const TOP_KEYS: usize = 20;

const IDEMPOTENT_ORDER: [&str; 4] = ["leader", "replay", "mismatch", "in_flight"];

/// Whether each rule is blocking at each PoP, between ticks.
#[derive(Default)]
pub(super) struct Blocking {
    /// (pop, rule) → the last second its blocked count rose, while it is blocking.
    since: HashMap<(String, String), u64>,
}

/// One PoP as this tick sees it.
struct Pop<'a> {
    name: String,
    reading: Option<&'a Reading>,
    report: Option<&'a Report>,
}

/// A rule's row being built.
#[derive(Default)]
struct Row {
    view: ProtectionRuleView,
    /// Order of appearance: config first.
    order: usize,
}

pub(super) fn security(
    config: &Config,
    scrape: &Scrape,
    reports: &HashMap<String, Result<Report, String>>,
    blocking: &mut Blocking,
    store: &mut Store,
    sec: u64,
) -> (SecurityView, Vec<Event>) {
    let mut view = SecurityView {
        now: sec,
        ..Default::default()
    };
    let mut pops = Vec::new();
    for p in &config.edges {
        let node = format!("edge-{}", p.name);
        let reading = scrape.reading_of(&node);
        let report = reports.get(&node);
        view.pops.push(SecurityPopView {
            pop: p.name.clone(),
            node,
            up: reading.is_some(),
            report: matches!(report, Some(Ok(_))),
            report_error: report.and_then(|r| r.as_ref().err().cloned()),
            blocked_rps: reading.and_then(|r| r.rate(PROTECTION, blocked)),
        });
        pops.push(Pop {
            name: p.name.clone(),
            reading,
            report: report.and_then(|r| r.as_ref().ok()),
        });
    }
    let rows = rules(config, &pops);
    let mut events = Vec::new();
    for row in &rows {
        transitions(row, &pops, blocking, sec, &mut events);
    }
    view.rules = rows
        .into_iter()
        .map(|mut r| {
            for p in &mut r.view.pops {
                p.blocking = blocking
                    .since
                    .contains_key(&(p.pop.clone(), r.view.name.clone()));
            }
            r.view.blocking = r.view.pops.iter().any(|p| p.blocking);
            let name = format!("security.rule.{}.blocked_rps", r.view.name);
            if let Some(x) = r.view.blocked_rps {
                store.push(&name, sec, x);
            }
            let recent: Vec<f64> = store
                .get(&name)
                .map(|s| s.window(sec, RECENT).into_iter().flatten().collect())
                .unwrap_or_default();
            r.view.recent_blocked_rps =
                (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64);
            r.view
        })
        .collect();
    // A (pop, rule) no longer reported cannot stop blocking by itself: forget it.
    blocking.since.retain(|(pop, rule), _| {
        view.rules
            .iter()
            .any(|r| &r.name == rule && r.pops.iter().any(|p| &p.pop == pop))
    });
    view.blocked_rps = sum_rates(view.pops.iter().map(|p| p.blocked_rps));
    if let Some(x) = view.blocked_rps {
        store.push("security.blocked_rps", sec, x);
    }
    view.top_keys = top_keys(&pops);
    (view.auth_failures, view.auth_failures_by_reason) = auth_failures(&pops);
    view.idempotency = idempotency(&pops);
    let p = &config.distribution.protection;
    view.configured = !p.is_empty()
        || !p.jwt_authorizers.is_empty()
        || !p.key_groups.is_empty()
        || !view.rules.is_empty()
        || !view.auth_failures.is_empty()
        || !view.idempotency.is_empty();
    (view, events)
}

fn blocked(s: &Sample) -> bool {
    s.label("action") == Some("blocked")
}

/// Sums rates as `global` does: a PoP without a rate yet (first scrape) adds nothing.
fn sum_rates(rates: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    rates
        .flatten()
        .fold(None, |acc, x| Some(acc.unwrap_or(0.0) + x))
}

fn rules(config: &Config, pops: &[Pop]) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let p = &config.distribution.protection;
    let rule = |name: &str, kind: &str, action: &str| ProtectionRuleView {
        name: name.to_owned(),
        kind: kind.to_owned(),
        action: action.to_owned(),
        configured: true,
        ..Default::default()
    };
    let mut configured: Vec<ProtectionRuleView> = p
        .rules
        .iter()
        .map(|r| rule(&r.name, "rule", r.action.as_str()))
        .collect();
    configured.extend(p.rate_based_rules.iter().map(|r| ProtectionRuleView {
        limit: Some(r.limit),
        window_seconds: Some(r.window.as_secs_f64()),
        ..rule(&r.name, "rate", r.action.as_str())
    }));
    if p.geo_restriction.restriction_type != GeoRestrictionType::None {
        configured.push(rule(GEO_RULE, "geo", "block"));
    }
    for view in configured {
        let order = rows.len();
        rows.entry(view.name.clone()).or_insert(Row { view, order });
    }
    let first = rows.len();
    for pop in pops {
        // What this PoP knows of each rule: (kind, action, counts by action, from metrics).
        let mut seen: BTreeMap<&str, RulePopView> = BTreeMap::new();
        let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
        if let Some(r) = pop.reading {
            for s in r.all(PROTECTION) {
                let Some(rule) = s.label("rule") else {
                    continue;
                };
                let c = seen.entry(rule).or_insert_with(|| RulePopView {
                    pop: pop.name.clone(),
                    ..Default::default()
                });
                match s.label("action") {
                    Some("allowed") => c.allowed += s.value,
                    Some("blocked") => c.blocked += s.value,
                    Some("counted") => c.counted += s.value,
                    _ => {}
                }
                if let Some(k) = s.label("kind") {
                    kinds.insert(rule, k);
                }
            }
            for (rule, c) in seen.iter_mut() {
                c.blocked_rps =
                    r.rate(PROTECTION, |s| s.label("rule") == Some(*rule) && blocked(s));
            }
        }
        for rep in pop.report.map(|r| r.rules.as_slice()).unwrap_or_default() {
            let order = first + rows.len();
            let row = rows.entry(rep.name.clone()).or_insert_with(|| Row {
                view: ProtectionRuleView {
                    name: rep.name.clone(),
                    kind: rep.kind.clone(),
                    ..Default::default()
                },
                order,
            });
            let v = &mut row.view;
            if v.action.is_empty() {
                v.action = rep.action.clone();
            }
            v.limit = v.limit.or(rep.limit);
            v.window_seconds = v.window_seconds.or(rep.window_seconds);
            seen.entry(rep.name.as_str())
                .or_insert_with(|| RulePopView {
                    pop: pop.name.clone(),
                    allowed: rep.allowed,
                    blocked: rep.blocked,
                    counted: rep.counted,
                    ..Default::default()
                });
        }
        for (rule, c) in seen {
            let order = first + rows.len();
            let row = rows.entry(rule.to_owned()).or_insert_with(|| Row {
                view: ProtectionRuleView {
                    name: rule.to_owned(),
                    kind: kinds.get(rule).copied().unwrap_or("rule").to_owned(),
                    ..Default::default()
                },
                order,
            });
            let v = &mut row.view;
            v.allowed += c.allowed;
            v.blocked += c.blocked;
            v.counted += c.counted;
            if let Some(x) = c.blocked_rps {
                *v.blocked_rps.get_or_insert(0.0) += x;
            }
            v.pops.push(c);
        }
    }
    let mut out: Vec<Row> = rows.into_values().collect();
    // Config order first; the rest by name (their order numbers follow PoP order).
    out.sort_by(|a, b| {
        let key = |r: &Row| (r.order >= first, if r.order < first { r.order } else { 0 });
        key(a)
            .cmp(&key(b))
            .then_with(|| a.view.name.cmp(&b.view.name))
    });
    out
}

/// Started: a PoP's blocked count rose this tick after not rising. Stopped: it has not
/// risen for `STOP_AFTER` seconds. A PoP that did not answer keeps its state.
fn transitions(
    row: &Row,
    pops: &[Pop],
    blocking: &mut Blocking,
    sec: u64,
    events: &mut Vec<Event>,
) {
    let rule = &row.view.name;
    for pop in pops {
        let Some(r) = pop.reading else { continue };
        let reported = row.view.pops.iter().any(|p| p.pop == pop.name);
        if !reported {
            continue;
        }
        let rose = r.delta(PROTECTION, |s| {
            s.label("rule") == Some(rule.as_str()) && blocked(s)
        });
        let key = (pop.name.clone(), rule.clone());
        match blocking.since.get_mut(&key) {
            Some(last) if rose > 0.0 => *last = sec,
            None if rose > 0.0 => {
                blocking.since.insert(key, sec);
                let secs = r.dt.round().max(1.0);
                events.push(Event {
                    at: sec,
                    kind: Kind::Security,
                    severity: Severity::Warning,
                    subject: pop.name.clone(),
                    message: format!(
                        "rule `{rule}` started blocking at PoP {} ({} blocked in the last {} s)",
                        pop.name, rose, secs
                    ),
                    cause: format!(
                        "{} rule `{rule}`: its blocked count rose after not rising",
                        row.view.kind
                    ),
                });
            }
            Some(last) if sec.saturating_sub(*last) >= STOP_AFTER => {
                let quiet = sec - *last;
                blocking.since.remove(&key);
                events.push(Event {
                    at: sec,
                    kind: Kind::Security,
                    severity: Severity::Info,
                    subject: pop.name.clone(),
                    message: format!(
                        "rule `{rule}` stopped blocking at PoP {} (nothing blocked for {quiet} s)",
                        pop.name
                    ),
                    cause: format!(
                        "{} rule `{rule}`: its blocked count stopped rising",
                        row.view.kind
                    ),
                });
            }
            _ => {}
        }
    }
}

fn top_keys(pops: &[Pop]) -> Vec<TopKeyView> {
    let mut keys: BTreeMap<(String, String), TopKeyView> = BTreeMap::new();
    for pop in pops {
        let Some(rep) = pop.report else { continue };
        for rule in &rep.rules {
            for k in &rule.top_keys {
                let t = keys
                    .entry((rule.name.clone(), k.key.clone()))
                    .or_insert_with(|| TopKeyView {
                        rule: rule.name.clone(),
                        key: display_key(&k.key),
                        ..Default::default()
                    });
                t.count += k.count;
                t.refused += k.refused;
                if !t.pops.contains(&pop.name) {
                    t.pops.push(pop.name.clone());
                }
            }
        }
    }
    let mut out: Vec<TopKeyView> = keys.into_values().collect();
    out.sort_by(|a, b| {
        b.refused
            .total_cmp(&a.refused)
            .then(b.count.total_cmp(&a.count))
            .then_with(|| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)))
    });
    out.truncate(TOP_KEYS);
    out
}

fn auth_failures(pops: &[Pop]) -> (Vec<AuthFailureView>, Vec<ReasonView>) {
    let mut rows: BTreeMap<(String, String, String), AuthFailureView> = BTreeMap::new();
    let mut reasons: BTreeMap<String, ReasonView> = BTreeMap::new();
    for pop in pops {
        let Some(r) = pop.reading else { continue };
        for (s, d) in r.samples.iter().zip(&r.deltas) {
            if s.name != AUTH_FAILURES {
                continue;
            }
            let label = |k: &str| s.label(k).unwrap_or_default().to_owned();
            let (method, name, reason) = (label("method"), label("name"), label("reason"));
            let rate = (r.dt > 0.0).then(|| d / r.dt);
            let row = rows
                .entry((method.clone(), name.clone(), reason.clone()))
                .or_insert_with(|| AuthFailureView {
                    method,
                    name,
                    reason: reason.clone(),
                    ..Default::default()
                });
            row.total += s.value;
            row.per_second = sum_rates([row.per_second, rate].into_iter());
            *row.pops.entry(pop.name.clone()).or_insert(0.0) += s.value;
            let by = reasons.entry(reason.clone()).or_insert_with(|| ReasonView {
                reason,
                ..Default::default()
            });
            by.total += s.value;
            by.per_second = sum_rates([by.per_second, rate].into_iter());
        }
    }
    let mut rows: Vec<_> = rows.into_values().collect();
    rows.sort_by(|a, b| b.total.total_cmp(&a.total));
    let mut reasons: Vec<_> = reasons.into_values().collect();
    reasons.sort_by(|a, b| b.total.total_cmp(&a.total));
    (rows, reasons)
}

fn idempotency(pops: &[Pop]) -> Vec<IdempotencyView> {
    let mut out: Vec<IdempotencyView> = Vec::new();
    for pop in pops {
        let Some(r) = pop.reading else { continue };
        for (s, d) in r.samples.iter().zip(&r.deltas) {
            let Some(result) = s.label("result").filter(|_| s.name == IDEMPOTENT) else {
                continue;
            };
            let rate = (r.dt > 0.0).then(|| d / r.dt);
            let i = match out.iter().position(|v| v.result == result) {
                Some(i) => i,
                None => {
                    out.push(IdempotencyView {
                        result: result.to_owned(),
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            out[i].total += s.value;
            out[i].per_second = sum_rates([out[i].per_second, rate].into_iter());
        }
    }
    let rank = |r: &str| {
        IDEMPOTENT_ORDER
            .iter()
            .position(|o| *o == r)
            .unwrap_or(usize::MAX)
    };
    out.sort_by(|a, b| {
        rank(&a.result)
            .cmp(&rank(&b.result))
            .then(a.result.cmp(&b.result))
    });
    out
}
