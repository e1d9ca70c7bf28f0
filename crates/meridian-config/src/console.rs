//! `[console]`: the dashboard node, its alarms and its price table (CloudWatch's part).

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Console {
    /// Whether `up` runs a `console` node.
    pub enabled: bool,
    #[serde(with = "crate::serde_duration")]
    pub scrape_interval: Duration,
    /// How much one-second history is kept in memory.
    #[serde(with = "crate::serde_duration")]
    pub retention: Duration,
    /// Where alarm changes are POSTed as JSON.
    pub webhook: Option<String>,
    pub alarms: Vec<AlarmRule>,
    pub prices: Prices,
}

/// What an alarm watches. Each kind is evaluated per subject (a region or a PoP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// Share of responses that are 5xx, per region and per PoP, above `threshold`.
    ErrorRate,
    /// A region's load balancer is unreachable or has no healthy instance.
    RegionUnhealthy,
    /// A PoP's cache hit rate below `threshold` (only while it has traffic).
    HitRate,
    /// A PoP's node does not answer the console's scrape.
    PopUnreachable,
    /// A database standby or replica more than `threshold` seconds behind its primary
    /// (RDS's ReplicaLag): what a cross-region promotion would lose.
    ReplicationLag,
    /// A primary with no synchronous standby while its region has another database node:
    /// writes are acknowledged without a second copy, so a failover could lose them.
    NoSyncStandby,
}

impl AlarmKind {
    pub const NAMES: &'static [&'static str] = &[
        "error_rate",
        "region_unhealthy",
        "hit_rate",
        "pop_unreachable",
        "replication_lag",
        "no_sync_standby",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::ErrorRate => "error_rate",
            AlarmKind::RegionUnhealthy => "region_unhealthy",
            AlarmKind::HitRate => "hit_rate",
            AlarmKind::PopUnreachable => "pop_unreachable",
            AlarmKind::ReplicationLag => "replication_lag",
            AlarmKind::NoSyncStandby => "no_sync_standby",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "error_rate" => AlarmKind::ErrorRate,
            "region_unhealthy" => AlarmKind::RegionUnhealthy,
            "hit_rate" => AlarmKind::HitRate,
            "pop_unreachable" => AlarmKind::PopUnreachable,
            "replication_lag" => AlarmKind::ReplicationLag,
            "no_sync_standby" => AlarmKind::NoSyncStandby,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlarmRule {
    pub name: String,
    pub kind: AlarmKind,
    /// A fraction from 0 to 1 for `error_rate` and `hit_rate`, seconds of lag for
    /// `replication_lag`; unused by the others.
    pub threshold: f64,
    /// How long the condition must hold before the alarm fires.
    #[serde(rename = "for", with = "crate::serde_duration")]
    pub for_: Duration,
    /// Rates are computed over this trailing window.
    #[serde(with = "crate::serde_duration")]
    pub window: Duration,
    /// Fewer requests than this in the window never breach a rate alarm.
    pub min_requests: u64,
}

/// US dollars, in the units AWS bills.
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub data_out_per_gb: f64,
    pub requests_per_million: f64,
    pub instance_hour: f64,
    /// Per-place prices (a region or a PoP name) that replace the defaults above.
    pub places: Vec<PlacePrice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacePrice {
    pub place: String,
    pub data_out_per_gb: Option<f64>,
    pub requests_per_million: Option<f64>,
    pub instance_hour: Option<f64>,
}

/// The prices that apply to one place.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PriceOf {
    pub data_out_per_gb: f64,
    pub requests_per_million: f64,
    pub instance_hour: f64,
}

impl Prices {
    pub fn of(&self, place: &str) -> PriceOf {
        let o = self.places.iter().find(|p| p.place == place);
        PriceOf {
            data_out_per_gb: o
                .and_then(|o| o.data_out_per_gb)
                .unwrap_or(self.data_out_per_gb),
            requests_per_million: o
                .and_then(|o| o.requests_per_million)
                .unwrap_or(self.requests_per_million),
            instance_hour: o
                .and_then(|o| o.instance_hour)
                .unwrap_or(self.instance_hour),
        }
    }
}

impl Default for Prices {
    /// Roughly AWS's list prices: CloudFront data out to the internet in North America,
    /// HTTPS requests, and a 0.25 vCPU / 0.5 GB Fargate task.
    fn default() -> Self {
        Prices {
            data_out_per_gb: 0.085,
            requests_per_million: 1.0,
            instance_hour: 0.0123,
            places: Vec::new(),
        }
    }
}

pub(crate) fn default_console() -> Console {
    Console {
        enabled: true,
        scrape_interval: Duration::from_secs(1),
        retention: Duration::from_secs(3600),
        webhook: None,
        alarms: Vec::new(),
        prices: Prices::default(),
    }
}

pub(crate) fn read_console(t: &Table, d: &mut Diagnostics, places: &[String]) -> Option<Console> {
    let mut c = default_console();
    c.enabled = t.bool(d, "enabled").unwrap_or(c.enabled);
    if let Some(i) = t.duration(d, "scrape_interval") {
        if i >= Duration::from_millis(100) && i <= Duration::from_secs(60) {
            c.scrape_interval = i;
        } else if let Some(f) = t.get("scrape_interval") {
            d.error(
                f.span,
                &f.key,
                "`scrape_interval` must be from 100ms to 60s",
                "use \"1s\", the console's one-second resolution",
            );
        }
    }
    if let Some(r) = t.duration(d, "retention") {
        if r >= Duration::from_secs(60) && r <= Duration::from_secs(86_400) {
            c.retention = r;
        } else if let Some(f) = t.get("retention") {
            d.error(
                f.span,
                &f.key,
                "`retention` must be from 1m to 24h (it is held in memory)",
                "use \"1h\"",
            );
        }
    }
    if let Some(w) = t.str(d, "webhook") {
        if w.starts_with("http://") && w.len() > 7 {
            c.webhook = Some(w);
        } else if let Some(f) = t.get("webhook") {
            d.error(
                f.span,
                &f.key,
                format!("`{w}` is not an http:// URL"),
                "use an address like \"http://127.0.0.1:9000/alarms\"",
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for a in t.tables(d, "alarm") {
        if let Some(rule) = read_alarm(&a, d) {
            if !names.insert(rule.name.clone()) {
                if let Some(f) = a.get("name") {
                    d.error(
                        f.span,
                        &f.key,
                        format!("there are two alarms named `{}`", rule.name),
                        "give each [[console.alarm]] its own name",
                    );
                }
            }
            c.alarms.push(rule);
        }
    }
    if let Some(p) = t.table(d, "prices") {
        c.prices = read_prices(&p, d, places);
    }
    t.finish(d);
    Some(c)
}

fn fraction(t: &Table, d: &mut Diagnostics, key: &'static str) -> Option<f64> {
    let x = t.float(d, key)?;
    if (0.0..=1.0).contains(&x) {
        return Some(x);
    }
    if let Some(f) = t.get(key) {
        d.error(
            f.span,
            &f.key,
            format!("`{key}` is {x}, but it is a fraction"),
            "use a value from 0 to 1 (0.05 is 5%)",
        );
    }
    None
}

/// RDS's console suggests alarming on ReplicaLag well inside the RPO; the seed promises
/// under a minute.
const DEFAULT_LAG_SECONDS: f64 = 30.0;

fn seconds(t: &Table, d: &mut Diagnostics, key: &'static str) -> Option<f64> {
    let x = t.float(d, key)?;
    if x.is_finite() && x >= 0.0 {
        return Some(x);
    }
    if let Some(f) = t.get(key) {
        d.error(
            f.span,
            &f.key,
            format!("`{key}` is {x}, but it is seconds of replication lag"),
            "use a number of seconds such as 30",
        );
    }
    None
}

fn read_alarm(t: &Table, d: &mut Diagnostics) -> Option<AlarmRule> {
    let name = t.req_str(d, "name", "add `name = \"...\"`");
    if !t.has("kind") {
        t.missing(
            d,
            "kind",
            &format!(
                "add `kind = \"...\"`, one of: {}",
                AlarmKind::NAMES.join(", ")
            ),
        );
    }
    let kind = t
        .choice(d, "kind", AlarmKind::NAMES)
        .and_then(AlarmKind::parse);
    let threshold = if kind == Some(AlarmKind::ReplicationLag) {
        seconds(t, d, "threshold").or(Some(DEFAULT_LAG_SECONDS))
    } else {
        fraction(t, d, "threshold")
    };
    if matches!(kind, Some(AlarmKind::ErrorRate | AlarmKind::HitRate)) && !t.has("threshold") {
        t.missing(
            d,
            "threshold",
            "add `threshold = 0.05` (a fraction of requests)",
        );
    }
    let for_ = t.duration(d, "for").unwrap_or(Duration::ZERO);
    let window = t.duration(d, "window").unwrap_or(Duration::from_secs(10));
    let min_requests = t.int(d, "min_requests", 0..=i64::MAX).unwrap_or(10) as u64;
    t.finish(d);
    Some(AlarmRule {
        name: name?,
        kind: kind?,
        threshold: threshold.unwrap_or(0.0),
        for_,
        window: window.max(Duration::from_secs(1)),
        min_requests,
    })
}

fn read_prices(t: &Table, d: &mut Diagnostics, places: &[String]) -> Prices {
    let mut p = Prices::default();
    let money = |t: &Table, d: &mut Diagnostics, key: &'static str| {
        let x = t.float(d, key)?;
        if x >= 0.0 {
            return Some(x);
        }
        if let Some(f) = t.get(key) {
            d.error(
                f.span,
                &f.key,
                "a price cannot be negative",
                "use 0 or more",
            );
        }
        None
    };
    p.data_out_per_gb = money(t, d, "data_out_per_gb").unwrap_or(p.data_out_per_gb);
    p.requests_per_million = money(t, d, "requests_per_million").unwrap_or(p.requests_per_million);
    p.instance_hour = money(t, d, "instance_hour").unwrap_or(p.instance_hour);
    for o in t.tables(d, "place") {
        let place = o.req_str(d, "place", "add `place = \"<region or PoP name>\"`");
        if let (Some(name), Some(f)) = (&place, o.get("place")) {
            if !places.contains(name) {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{name}` is neither a region nor a PoP"),
                    format!("use one of: {}", places.join(", ")),
                );
            }
        }
        let entry = PlacePrice {
            place: place.unwrap_or_default(),
            data_out_per_gb: money(&o, d, "data_out_per_gb"),
            requests_per_million: money(&o, d, "requests_per_million"),
            instance_hour: money(&o, d, "instance_hour"),
        };
        o.finish(d);
        p.places.push(entry);
    }
    t.finish(d);
    p
}
