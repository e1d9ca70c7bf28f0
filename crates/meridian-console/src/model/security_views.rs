//! What the security panel shows (`GET /api/security`): AWS WAF's and CloudFront's
//! security view, added up over every PoP. Plain data, filled in each tick.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct SecurityView {
    /// Unix seconds of the tick this is from.
    pub now: u64,
    /// The config protects something, or a PoP reports protection counters.
    pub configured: bool,
    /// Requests blocked per second over every rule and PoP (None before two scrapes).
    pub blocked_rps: Option<f64>,
    /// Each PoP, and whether its `/protection` report was read this tick.
    pub pops: Vec<SecurityPopView>,
    /// Custom rules, then rate-based rules, then geo restriction, then rules only a PoP
    /// knows (one on a newer config), by name.
    pub rules: Vec<ProtectionRuleView>,
    /// The keys rate-based rules saw most, merged over PoPs, most refused first.
    pub top_keys: Vec<TopKeyView>,
    /// JWT and signed-URL failures by method, authorizer or key group, and reason, most
    /// first.
    pub auth_failures: Vec<AuthFailureView>,
    /// The same failures by reason alone, most first.
    pub auth_failures_by_reason: Vec<ReasonView>,
    /// Idempotent requests by result (`leader`, `replay`, `mismatch`, `in_flight`).
    pub idempotency: Vec<IdempotencyView>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct SecurityPopView {
    pub pop: String,
    pub node: String,
    /// Its metrics were read this tick.
    pub up: bool,
    /// Its `/protection` report was read this tick.
    pub report: bool,
    /// Why the report could not be read (None when it was, or was not asked for).
    pub report_error: Option<String>,
    pub blocked_rps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ProtectionRuleView {
    pub name: String,
    /// `rule`, `rate` or `geo`.
    pub kind: String,
    /// What a match does: `allow`, `block` or `count` (empty when nobody said).
    pub action: String,
    /// The console's config has this rule.
    pub configured: bool,
    /// Rate-based rules: requests per window per key.
    pub limit: Option<u64>,
    pub window_seconds: Option<f64>,
    /// Requests since each PoP started, summed over PoPs.
    pub allowed: f64,
    pub blocked: f64,
    pub counted: f64,
    /// Blocked per second over the last scrape interval, summed over PoPs.
    pub blocked_rps: Option<f64>,
    /// The mean of `blocked_rps` over the last `RECENT` seconds of its series.
    pub recent_blocked_rps: Option<f64>,
    /// Blocking now at some PoP (it started and has not stopped).
    pub blocking: bool,
    /// Each PoP that reports the rule.
    pub pops: Vec<RulePopView>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct RulePopView {
    pub pop: String,
    pub allowed: f64,
    pub blocked: f64,
    pub counted: f64,
    pub blocked_rps: Option<f64>,
    pub blocking: bool,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct TopKeyView {
    pub rule: String,
    /// Composite keys' parts joined by " + ".
    pub key: String,
    /// Requests in the rule's current window, summed over PoPs.
    pub count: f64,
    /// Of those, refused (blocked or counted over the limit).
    pub refused: f64,
    /// The PoPs that see the key.
    pub pops: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct AuthFailureView {
    /// `jwt` or `signed_url`.
    pub method: String,
    /// The authorizer or key group.
    pub name: String,
    pub reason: String,
    /// Failures since each PoP started, summed over PoPs.
    pub total: f64,
    pub per_second: Option<f64>,
    /// `total` by PoP.
    pub pops: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ReasonView {
    pub reason: String,
    pub total: f64,
    pub per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct IdempotencyView {
    pub result: String,
    pub total: f64,
    pub per_second: Option<f64>,
}
