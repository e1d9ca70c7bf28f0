//! The console's picture of the deployment, rebuilt from every node's scrape each tick.
//!
//! `State::tick` is pure bookkeeping over the scraped text: it never touches the network,
//! so the whole picture (views, series, events, alarms, cost) is tested from metric text.

use crate::alarms::{self, Alarms, Observation, Transition};
use crate::events::{Event, Kind, Severity, Timeline};
use crate::reading::{merge_buckets, quantile, Previous, Reading};
use crate::series::Store;
use meridian_config::{AlarmKind, Config, Role};
use meridian_telemetry::exposition::{self, Sample};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A scrape target: a node of the config, or the supervisor of `meridian up`.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// `lb`, `service`, `edge`, `dns`, `wan` or `supervisor`.
    pub role: &'static str,
    pub region: Option<String>,
    pub az: Option<String>,
    pub admin: SocketAddr,
}

impl Target {
    /// Every node of `config` but the console, then the supervisor.
    pub fn all(config: &Config) -> Vec<Target> {
        let mut out: Vec<Target> = config
            .nodes()
            .into_iter()
            .filter(|n| n.role != Role::Console)
            .map(|n| Target {
                name: n.name,
                role: n.role.as_str(),
                region: n.region,
                az: n.az,
                admin: n.admin,
            })
            .collect();
        out.push(Target {
            name: "supervisor".to_owned(),
            role: "supervisor",
            region: None,
            az: None,
            admin: config.supervisor_admin(),
        });
        out
    }
}

/// Which region and PoP a client location is sent to, as the DNS answers it now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Route {
    pub location: String,
    pub source: String,
    /// The region `api.<zone>` resolves to.
    pub api_region: Option<String>,
    /// The PoP `cdn.<zone>` resolves to.
    pub cdn_pop: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NodeView {
    pub name: String,
    pub role: &'static str,
    pub region: Option<String>,
    pub az: Option<String>,
    pub admin: String,
    pub up: bool,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// Unix seconds of the last answered scrape.
    pub last_seen: Option<u64>,
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct AzView {
    pub name: String,
    pub healthy: u32,
    pub total: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RegionView {
    pub name: String,
    pub primary: bool,
    pub status: Status,
    pub lb: String,
    pub lb_up: bool,
    pub azs: Vec<AzView>,
    pub healthy: u32,
    pub total: u32,
    pub rps: Option<f64>,
    pub err4xx_rps: Option<f64>,
    pub err5xx_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Whether the DNS servers answer with this region (None before they are scraped).
    pub in_dns: Option<bool>,
    /// The region's cache cluster (Redis), when the deployment runs one there.
    pub cache: Option<crate::cache_tier::CacheView>,
    /// The region's database nodes (PostgreSQL), when the deployment runs any there.
    pub db: Option<crate::db_tier::DbView>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct OriginView {
    pub origin: String,
    pub healthy: bool,
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PopView {
    pub name: String,
    pub node: String,
    pub status: Status,
    pub up: bool,
    pub rps: Option<f64>,
    pub hit_rate: Option<f64>,
    pub err5xx_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub bytes_out_rate: Option<f64>,
    pub bytes_origin_rate: Option<f64>,
    pub origins: Vec<OriginView>,
    /// The healthy origin with the shortest round trip: where this PoP's misses go.
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DnsView {
    pub name: String,
    pub up: bool,
    pub qps: Option<f64>,
    pub targets_healthy: u32,
    pub targets_total: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Global {
    pub edge_rps: Option<f64>,
    pub region_rps: Option<f64>,
    pub err4xx_rps: Option<f64>,
    pub err5xx_rps: Option<f64>,
    /// 5xx share of every answered request (edges and regions).
    pub error_rate: Option<f64>,
    pub hit_rate: Option<f64>,
    pub edge_p50_ms: Option<f64>,
    pub edge_p95_ms: Option<f64>,
    pub region_p50_ms: Option<f64>,
    pub region_p95_ms: Option<f64>,
    pub bytes_out_rate: Option<f64>,
    pub bytes_origin_rate: Option<f64>,
    pub dns_qps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CostLine {
    pub place: String,
    /// `region` or `pop`.
    pub kind: &'static str,
    pub requests: f64,
    pub gb_out: f64,
    pub instance_hours: f64,
    /// Dollars since the console started.
    pub total: f64,
    /// Dollars per hour at the last minute's rate.
    pub per_hour: f64,
    /// `per_hour` over a 730-hour month.
    pub per_month: f64,
}

/// Everything the page shows, as of the last tick.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Overview {
    pub deployment: String,
    pub zone: String,
    pub now: u64,
    pub started: u64,
    pub ticks: u64,
    pub global: Global,
    pub regions: Vec<RegionView>,
    pub pops: Vec<PopView>,
    pub dns: Vec<DnsView>,
    pub nodes: Vec<NodeView>,
    pub routing: Vec<Route>,
    pub alarms: Vec<alarms::AlarmStatus>,
    pub alarm_rules: Vec<RuleView>,
    pub events: Vec<Event>,
    pub cost: Vec<CostLine>,
    pub series_count: usize,
    pub series_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub name: String,
    pub kind: AlarmKind,
    pub description: String,
}

#[derive(Default, Clone, Copy)]
struct CostAcc {
    requests: f64,
    bytes_out: f64,
    instance_seconds: f64,
}

pub struct State {
    config: Config,
    targets: Vec<Target>,
    previous: Vec<Previous>,
    nodes: Vec<NodeView>,
    /// Gauges whose changes are events, by node and series key, from the last tick.
    watched: BTreeMap<(usize, String), f64>,
    pub store: Store,
    events: Timeline,
    alarms: Alarms,
    cost: BTreeMap<String, CostAcc>,
    routing: Vec<Route>,
    overview: Overview,
}

/// At most this many series: far more than a large config derives, a bound all the same.
const MAX_SERIES: usize = 20_000;

fn ms(s: Option<f64>) -> Option<f64> {
    s.map(|v| v * 1000.0)
}

fn class_of(status: &str) -> Option<char> {
    status.chars().next()
}

impl State {
    pub fn new(config: Config, now: u64) -> Self {
        let targets = Target::all(&config);
        let nodes = targets
            .iter()
            .filter(|t| t.role != "supervisor")
            .map(|t| NodeView {
                name: t.name.clone(),
                role: t.role,
                region: t.region.clone(),
                az: t.az.clone(),
                admin: t.admin.to_string(),
                ..Default::default()
            })
            .collect();
        let capacity = config.console.retention.as_secs().max(60) as usize;
        let alarms = Alarms::new(config.console.alarms.clone());
        State {
            previous: targets.iter().map(|_| Previous::default()).collect(),
            targets,
            nodes,
            watched: BTreeMap::new(),
            store: Store::new(capacity, MAX_SERIES),
            events: Timeline::new(1000),
            alarms,
            cost: BTreeMap::new(),
            routing: Vec::new(),
            overview: Overview {
                deployment: config.deployment.name.clone(),
                zone: config.deployment.zone.clone(),
                started: now,
                now,
                ..Default::default()
            },
            config,
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn overview(&self) -> &Overview {
        &self.overview
    }

    pub fn set_routing(&mut self, routes: Vec<Route>) {
        self.routing = routes;
        self.overview.routing = self.routing.clone();
    }

    /// One tick: `scrapes[i]` is target `i`'s `/metrics` text or why it could not be read,
    /// taken at `now` (Unix seconds, fractional). Returns the alarms that changed.
    pub fn tick(&mut self, now: f64, scrapes: Vec<Result<String, String>>) -> Vec<Transition> {
        let sec = now as u64;
        let mut readings: Vec<Option<Reading>> = Vec::with_capacity(self.targets.len());
        for (i, scrape) in scrapes.into_iter().enumerate().take(self.targets.len()) {
            let target = &self.targets[i];
            match scrape {
                Ok(text) => {
                    readings.push(Some(self.previous[i].read(exposition::parse(&text), now)));
                    if let Some(n) = self.nodes.iter_mut().find(|n| n.name == target.name) {
                        if !n.up && n.last_seen.is_some() {
                            self.events.push(Event {
                                at: sec,
                                kind: Kind::Node,
                                severity: Severity::Info,
                                subject: n.name.clone(),
                                message: format!("{} answers again", n.name),
                                cause: "scrape succeeded".into(),
                            });
                        }
                        n.up = true;
                        n.error = None;
                        n.last_seen = Some(sec);
                    }
                }
                Err(why) => {
                    readings.push(None);
                    if let Some(n) = self.nodes.iter_mut().find(|n| n.name == target.name) {
                        if n.up {
                            self.events.push(Event {
                                at: sec,
                                kind: Kind::Node,
                                severity: Severity::Critical,
                                subject: n.name.clone(),
                                message: format!("{} stopped answering", n.name),
                                cause: why.clone(),
                            });
                        }
                        n.up = false;
                        n.error = Some(why);
                    }
                }
            }
        }
        readings.resize_with(self.targets.len(), || None);
        for (i, t) in self.targets.iter().enumerate() {
            self.store.push(
                &format!("node.{}.up", t.name),
                sec,
                readings[i].is_some() as u8 as f64,
            );
        }
        self.watch_changes(sec, &readings);
        let regions = self.regions(sec, &readings);
        let pops = self.pops(sec, &readings);
        let dns = self.dns(sec, &readings);
        let global = self.global(sec, &readings, &regions, &pops, &dns);
        self.account_cost(sec, &regions, &pops);
        let transitions = self.evaluate_alarms(sec, &regions, &pops);
        for t in &transitions {
            let firing = t.state == "ALARM";
            self.events.push(Event {
                at: sec,
                kind: Kind::Alarm,
                severity: if firing {
                    Severity::Critical
                } else {
                    Severity::Info
                },
                subject: t.subject.clone(),
                message: format!(
                    "alarm {} {} for {}",
                    t.alarm,
                    if firing { "fired" } else { "cleared" },
                    t.subject
                ),
                cause: t.detail.clone(),
            });
        }
        let cost = self.cost_lines(sec);
        let o = &mut self.overview;
        o.now = sec;
        o.ticks += 1;
        o.global = global;
        o.regions = regions;
        o.pops = pops;
        o.dns = dns;
        o.nodes = self.nodes.clone();
        o.alarms = self.alarms.statuses();
        o.alarm_rules = self
            .alarms
            .rules()
            .iter()
            .map(|r| RuleView {
                name: r.name.clone(),
                kind: r.kind,
                description: alarms::describe(r),
            })
            .collect();
        o.events = self.events.newest(200);
        o.cost = cost;
        o.series_count = self.store.len();
        o.series_bytes = self.store.bytes();
        transitions
    }

    fn reading_of<'a>(&self, readings: &'a [Option<Reading>], name: &str) -> Option<&'a Reading> {
        let i = self.targets.iter().position(|t| t.name == name)?;
        readings.get(i)?.as_ref()
    }

    fn is_up(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.name == name && n.up)
    }

    /// Health gauges, restarts, failovers and invalidations become timeline events.
    fn watch_changes(&mut self, sec: u64, readings: &[Option<Reading>]) {
        let mut events = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let Some(r) = r else { continue };
            let node = self.targets[i].name.clone();
            // Health gauges: (metric, label naming the thing, what it means when it drops).
            for (metric, label, what) in [
                (
                    "meridian_lb_target_healthy",
                    "target",
                    "the load balancer stops sending it traffic",
                ),
                (
                    "meridian_dns_target_healthy",
                    "target",
                    "DNS answers leave it out",
                ),
                (
                    "meridian_edge_origin_healthy",
                    "origin",
                    "the PoP fails over to the next origin",
                ),
            ] {
                for s in r.all(metric) {
                    let Some(subject) = s.label(label) else {
                        continue;
                    };
                    let key = (i, format!("{metric}|{subject}"));
                    let before = self.watched.insert(key, s.value);
                    if let Some(b) = before {
                        if (b >= 0.5) != (s.value >= 0.5) {
                            let healthy = s.value >= 0.5;
                            events.push(Event {
                                at: sec,
                                kind: Kind::Health,
                                severity: if healthy {
                                    Severity::Info
                                } else {
                                    Severity::Warning
                                },
                                subject: subject.to_owned(),
                                message: format!(
                                    "{node}: {subject} is {}",
                                    if healthy { "healthy" } else { "unhealthy" }
                                ),
                                cause: if healthy {
                                    "health checks pass again".to_owned()
                                } else {
                                    format!("health checks failed; {what}")
                                },
                            });
                        }
                    }
                }
            }
            for s in r.all("meridian_supervisor_restarts_total") {
                let Some(n) = s.label("node") else { continue };
                let key = (i, format!("restarts|{n}"));
                let before = self.watched.insert(key, s.value);
                if let Some(v) = self.nodes.iter_mut().find(|v| v.name == n) {
                    v.restarts = s.value as u64;
                }
                if before.is_some_and(|b| s.value > b) {
                    events.push(Event {
                        at: sec,
                        kind: Kind::Restart,
                        severity: Severity::Warning,
                        subject: n.to_owned(),
                        message: format!("{n} restarted (restart {})", s.value as u64),
                        cause: "its process exited; the supervisor started it again".into(),
                    });
                }
            }
            if let Some(e) = self.db_role_change(i, sec, r) {
                events.push(e);
            }
            // A cache node that becomes primary after the first scrape was promoted.
            if let Some(p) = r.all("meridian_cache_primary").next() {
                let before = self.watched.insert((i, "cache_primary".into()), p.value);
                if before.is_some_and(|b| b < 0.5) && p.value >= 0.5 {
                    events.push(Event {
                        at: sec,
                        kind: Kind::Failover,
                        severity: Severity::Warning,
                        subject: node.clone(),
                        message: format!("{node} is now its region's cache primary"),
                        cause: "its keeper promoted it: the primary was unreachable for the failover time, or restarted empty".into(),
                    });
                }
            }
            let failed_over = r.delta("meridian_edge_origin_failovers_total", |_| true);
            if failed_over > 0.0 {
                let reasons: Vec<String> = r
                    .samples
                    .iter()
                    .zip(&r.deltas)
                    .filter(|(s, d)| s.name == "meridian_edge_origin_failovers_total" && **d > 0.0)
                    .map(|(s, d)| format!("{} x{}", s.label("reason").unwrap_or("?"), *d as u64))
                    .collect();
                events.push(Event {
                    at: sec,
                    kind: Kind::Failover,
                    severity: Severity::Warning,
                    subject: node.clone(),
                    message: format!(
                        "{node} moved {} request(s) to the next origin",
                        failed_over as u64
                    ),
                    cause: reasons.join(", "),
                });
            }
            let retried = r.delta("meridian_lb_retries_total", |_| true);
            if retried > 0.0 {
                events.push(Event {
                    at: sec,
                    kind: Kind::Failover,
                    severity: Severity::Warning,
                    subject: node.clone(),
                    message: format!(
                        "{node} retried {} request(s) on another instance",
                        retried as u64
                    ),
                    cause: "an instance refused, reset or timed out".into(),
                });
            }
            let invalidated = r.delta("meridian_edge_invalidation_paths_total", |_| true);
            if invalidated > 0.0 {
                events.push(Event {
                    at: sec,
                    kind: Kind::Invalidation,
                    severity: Severity::Info,
                    subject: node.clone(),
                    message: format!("{node} invalidated {} path(s)", invalidated as u64),
                    cause: "invalidation request".into(),
                });
            }
        }
        for e in events {
            self.events.push(e);
        }
    }

    /// A database node whose PostgreSQL leaves recovery was promoted (a failover); one that
    /// enters it was demoted (it rejoined as a standby).
    fn db_role_change(&mut self, i: usize, sec: u64, r: &Reading) -> Option<Event> {
        let p = r.all("meridian_db_in_recovery").next()?;
        let primary = if p.value < 0.5 { 1.0 } else { 0.0 };
        let before = self.watched.insert((i, "db_primary".into()), primary)?;
        let node = &self.targets[i].name;
        let (severity, message, cause) = match (before >= 0.5, primary >= 0.5) {
            (false, true) => (
                Severity::Critical,
                format!("{node} is now the database primary"),
                "its keeper promoted it: the primary's lease ran out (failover)",
            ),
            (true, false) => (
                Severity::Warning,
                format!("{node} is no longer the database primary"),
                "it was demoted and follows the new primary",
            ),
            _ => return None,
        };
        Some(Event {
            at: sec,
            kind: Kind::Failover,
            severity,
            subject: node.clone(),
            message,
            cause: cause.into(),
        })
    }

    fn regions(&mut self, sec: u64, readings: &[Option<Reading>]) -> Vec<RegionView> {
        let mut out = Vec::new();
        let db_nodes = crate::db_tier::db_nodes(&self.targets, readings);
        for n in db_nodes.iter().filter(|n| n.up) {
            let p = format!("db.{}", n.name);
            if let Some(x) = n.lag_seconds {
                self.store.push(&format!("{p}.lag_seconds"), sec, x);
            }
            if let Some(x) = n.commits_per_second {
                self.store.push(&format!("{p}.commits_per_second"), sec, x);
            }
        }
        let dns_readings: Vec<&Reading> = self
            .targets
            .iter()
            .zip(readings)
            .filter(|(t, _)| t.role == "dns")
            .filter_map(|(_, r)| r.as_ref())
            .collect();
        for region in &self.config.regions {
            let lb = format!("lb-{}", region.name);
            let mut v = RegionView {
                name: region.name.clone(),
                primary: region.primary,
                lb: lb.clone(),
                lb_up: self.is_up(&lb),
                ..Default::default()
            };
            v.azs = region
                .azs
                .iter()
                .map(|az| AzView {
                    name: az.clone(),
                    healthy: 0,
                    total: self
                        .targets
                        .iter()
                        .filter(|t| t.role == "service" && t.az.as_deref() == Some(az))
                        .count() as u32,
                })
                .collect();
            if let Some(r) = self.reading_of(readings, &lb) {
                // Healthy: the balancer's checks pass and the console reaches it too. The
                // console's scrape notices a hung instance within one tick, before the
                // balancer's unhealthy threshold has run out.
                for s in r.all("meridian_lb_target_healthy") {
                    let reachable = s.label("target").is_none_or(|t| self.is_up(t));
                    if s.value < 0.5 || !reachable {
                        continue;
                    }
                    if let Some(az) = v
                        .azs
                        .iter_mut()
                        .find(|a| Some(a.name.as_str()) == s.label("az"))
                    {
                        az.healthy += 1;
                    }
                }
                let status_is =
                    |c: char| move |s: &Sample| s.label("status").and_then(class_of) == Some(c);
                v.rps = r.rate("meridian_lb_requests_total", |_| true);
                v.err4xx_rps = r.rate("meridian_lb_requests_total", status_is('4'));
                v.err5xx_rps = r.rate("meridian_lb_requests_total", status_is('5'));
                let b = r.buckets("meridian_lb_request_duration_seconds");
                v.p50_ms = ms(quantile(0.5, &b));
                v.p95_ms = ms(quantile(0.95, &b));
                let requests = r.delta("meridian_lb_requests_total", |_| true);
                let e5 = r.delta("meridian_lb_requests_total", status_is('5'));
                let bytes = r.delta("meridian_lb_response_bytes_total", |_| true);
                let p = format!("region.{}", region.name);
                self.store.push(&format!("{p}.requests"), sec, requests);
                self.store.push(&format!("{p}.5xx"), sec, e5);
                self.store.push(&format!("{p}.bytes_out"), sec, bytes);
                if let Some(x) = v.rps {
                    self.store.push(&format!("{p}.rps"), sec, x);
                }
                if let Some(x) = v.p95_ms {
                    self.store.push(&format!("{p}.p95_ms"), sec, x);
                }
            }
            v.healthy = v.azs.iter().map(|a| a.healthy).sum();
            v.total = v.azs.iter().map(|a| a.total).sum();
            let running = self
                .nodes
                .iter()
                .filter(|n| {
                    n.role == "service" && n.region.as_deref() == Some(&region.name) && n.up
                })
                .count();
            self.store.push(
                &format!("region.{}.instances", region.name),
                sec,
                running as f64,
            );
            self.store.push(
                &format!("region.{}.healthy", region.name),
                sec,
                v.healthy as f64,
            );
            v.status = if !v.lb_up || v.healthy == 0 {
                Status::Unhealthy
            } else if v.healthy < v.total {
                Status::Degraded
            } else {
                Status::Healthy
            };
            let key = format!("lb:{}", region.name);
            let views: Vec<bool> = dns_readings
                .iter()
                .filter_map(|r| {
                    r.all("meridian_dns_target_healthy")
                        .find(|s| s.label("target") == Some(key.as_str()))
                        .map(|s| s.value >= 0.5)
                })
                .collect();
            v.in_dns = (!views.is_empty()).then(|| views.iter().any(|h| *h));
            v.cache = crate::cache_tier::cache_of(&self.targets, &region.name, readings);
            v.db = crate::db_tier::db_of(&db_nodes, &region.name);
            if let Some(rate) = v
                .cache
                .as_ref()
                .and_then(|c| c.nodes.iter().find(|n| n.primary))
                .and_then(|n| n.hit_rate)
            {
                self.store
                    .push(&format!("region.{}.cache_hit_rate", region.name), sec, rate);
            }
            out.push(v);
        }
        out
    }

    fn pops(&mut self, sec: u64, readings: &[Option<Reading>]) -> Vec<PopView> {
        let mut out = Vec::new();
        for pop in &self.config.edges {
            let node = format!("edge-{}", pop.name);
            let mut v = PopView {
                name: pop.name.clone(),
                node: node.clone(),
                up: self.is_up(&node),
                ..Default::default()
            };
            if let Some(r) = self.reading_of(readings, &node) {
                let req = "meridian_edge_requests_total";
                let is_hit = |s: &Sample| {
                    matches!(
                        s.label("cache_status"),
                        Some("hit" | "refresh_hit" | "stale_while_revalidate" | "stale_if_error")
                    )
                };
                let cacheable = |s: &Sample| is_hit(s) || s.label("cache_status") == Some("miss");
                let e5 = |s: &Sample| s.label("status_class") == Some("5xx");
                let hits = r.delta(req, is_hit);
                let lookups = r.delta(req, cacheable);
                v.rps = r.rate(req, |_| true);
                v.err5xx_rps = r.rate(req, e5);
                v.hit_rate = (lookups > 0.0).then(|| hits / lookups);
                v.bytes_out_rate = r.rate("meridian_edge_bytes_to_viewers_total", |_| true);
                v.bytes_origin_rate = r.rate("meridian_edge_bytes_from_origins_total", |_| true);
                let b = r.buckets("meridian_edge_request_duration_seconds");
                v.p50_ms = ms(quantile(0.5, &b));
                v.p95_ms = ms(quantile(0.95, &b));
                for s in r.all("meridian_edge_origin_healthy") {
                    let Some(origin) = s.label("origin") else {
                        continue;
                    };
                    let rtt = r
                        .all("meridian_edge_origin_rtt_seconds")
                        .find(|x| x.label("origin") == Some(origin))
                        .map(|x| x.value * 1000.0);
                    v.origins.push(OriginView {
                        origin: origin.to_owned(),
                        healthy: s.value >= 0.5,
                        rtt_ms: rtt,
                    });
                }
                v.origins.sort_by(|a, b| a.origin.cmp(&b.origin));
                v.preferred = v
                    .origins
                    .iter()
                    .filter(|o| o.healthy)
                    .min_by(|a, b| {
                        a.rtt_ms
                            .unwrap_or(f64::MAX)
                            .total_cmp(&b.rtt_ms.unwrap_or(f64::MAX))
                    })
                    .map(|o| o.origin.trim_start_matches("lb:").to_owned());
                let p = format!("pop.{}", pop.name);
                self.store
                    .push(&format!("{p}.requests"), sec, r.delta(req, |_| true));
                self.store.push(&format!("{p}.hits"), sec, hits);
                self.store.push(&format!("{p}.lookups"), sec, lookups);
                self.store.push(&format!("{p}.5xx"), sec, r.delta(req, e5));
                self.store.push(
                    &format!("{p}.bytes_out"),
                    sec,
                    r.delta("meridian_edge_bytes_to_viewers_total", |_| true),
                );
                if let Some(x) = v.rps {
                    self.store.push(&format!("{p}.rps"), sec, x);
                }
                for o in &v.origins {
                    if let Some(rtt) = o.rtt_ms {
                        self.store.push(&format!("{p}.rtt.{}", o.origin), sec, rtt);
                    }
                }
            }
            v.status = if !v.up {
                Status::Unhealthy
            } else if v.origins.iter().all(|o| o.healthy) {
                Status::Healthy
            } else if v.origins.iter().any(|o| o.healthy) {
                Status::Degraded
            } else {
                Status::Unhealthy
            };
            out.push(v);
        }
        out
    }

    fn dns(&mut self, sec: u64, readings: &[Option<Reading>]) -> Vec<DnsView> {
        let mut out = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if t.role != "dns" {
                continue;
            }
            let mut v = DnsView {
                name: t.name.clone(),
                up: readings[i].is_some(),
                ..Default::default()
            };
            if let Some(r) = &readings[i] {
                v.qps = r.rate("meridian_dns_queries_total", |_| true);
                for s in r.all("meridian_dns_target_healthy") {
                    v.targets_total += 1;
                    v.targets_healthy += (s.value >= 0.5) as u32;
                }
                if let Some(q) = v.qps {
                    self.store.push(&format!("dns.{}.qps", t.name), sec, q);
                }
            }
            out.push(v);
        }
        out
    }

    fn global(
        &mut self,
        sec: u64,
        readings: &[Option<Reading>],
        regions: &[RegionView],
        pops: &[PopView],
        dns: &[DnsView],
    ) -> Global {
        let sum = |xs: &mut dyn Iterator<Item = Option<f64>>| -> Option<f64> {
            xs.fold(None, |acc, x| match (acc, x) {
                (None, x) => x,
                (a, None) => a,
                (Some(a), Some(b)) => Some(a + b),
            })
        };
        let mut g = Global {
            edge_rps: sum(&mut pops.iter().map(|p| p.rps)),
            region_rps: sum(&mut regions.iter().map(|r| r.rps)),
            err5xx_rps: sum(&mut pops
                .iter()
                .map(|p| p.err5xx_rps)
                .chain(regions.iter().map(|r| r.err5xx_rps))),
            bytes_out_rate: sum(&mut pops.iter().map(|p| p.bytes_out_rate)),
            bytes_origin_rate: sum(&mut pops.iter().map(|p| p.bytes_origin_rate)),
            dns_qps: sum(&mut dns.iter().map(|d| d.qps)),
            ..Default::default()
        };
        let mut edge_b = Vec::new();
        let mut region_b = Vec::new();
        let (mut hits, mut lookups, mut e4) = (0.0, 0.0, None::<f64>);
        for (t, r) in self.targets.iter().zip(readings) {
            let Some(r) = r else { continue };
            match t.role {
                "edge" => {
                    merge_buckets(
                        &mut edge_b,
                        &r.buckets("meridian_edge_request_duration_seconds"),
                    );
                    hits += self.store_last(
                        &format!("pop.{}.hits", t.name.trim_start_matches("edge-")),
                        sec,
                    );
                    lookups += self.store_last(
                        &format!("pop.{}.lookups", t.name.trim_start_matches("edge-")),
                        sec,
                    );
                    if let Some(x) = r.rate("meridian_edge_requests_total", |s| {
                        s.label("status_class") == Some("4xx")
                    }) {
                        *e4.get_or_insert(0.0) += x;
                    }
                }
                "lb" => {
                    merge_buckets(
                        &mut region_b,
                        &r.buckets("meridian_lb_request_duration_seconds"),
                    );
                }
                _ => {}
            }
        }
        g.err4xx_rps = sum(&mut std::iter::once(e4).chain(regions.iter().map(|r| r.err4xx_rps)));
        g.hit_rate = (lookups > 0.0).then(|| hits / lookups);
        g.edge_p50_ms = ms(quantile(0.5, &edge_b));
        g.edge_p95_ms = ms(quantile(0.95, &edge_b));
        g.region_p50_ms = ms(quantile(0.5, &region_b));
        g.region_p95_ms = ms(quantile(0.95, &region_b));
        let total = g.edge_rps.unwrap_or(0.0) + g.region_rps.unwrap_or(0.0);
        if total > 0.0 {
            g.error_rate = Some(g.err5xx_rps.unwrap_or(0.0) / total);
        }
        for (name, v) in [
            ("edge_rps", g.edge_rps),
            ("region_rps", g.region_rps),
            ("err4xx_rps", g.err4xx_rps),
            ("err5xx_rps", g.err5xx_rps),
            ("error_rate", g.error_rate),
            ("hit_rate", g.hit_rate),
            ("edge_p50_ms", g.edge_p50_ms),
            ("edge_p95_ms", g.edge_p95_ms),
            ("region_p50_ms", g.region_p50_ms),
            ("region_p95_ms", g.region_p95_ms),
            ("bytes_out_rate", g.bytes_out_rate),
            ("bytes_origin_rate", g.bytes_origin_rate),
            ("dns_qps", g.dns_qps),
        ] {
            if let Some(v) = v {
                self.store.push(&format!("global.{name}"), sec, v);
            }
        }
        g
    }

    fn store_last(&self, name: &str, sec: u64) -> f64 {
        self.store.get(name).map_or(0.0, |r| r.sum(sec, 1))
    }

    fn window_sum(&self, name: &str, sec: u64, secs: u64) -> f64 {
        self.store
            .get(name)
            .map_or(0.0, |r| r.sum(sec, secs.max(1) as usize))
    }

    fn evaluate_alarms(
        &mut self,
        sec: u64,
        regions: &[RegionView],
        pops: &[PopView],
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let db_nodes: Vec<_> = regions
            .iter()
            .filter_map(|r| r.db.as_ref())
            .flat_map(|d| d.nodes.iter().cloned())
            .collect();
        for (i, rule) in self.alarms.rules().to_vec().iter().enumerate() {
            let w = rule.window.as_secs();
            let mut seen = Vec::new();
            match rule.kind {
                AlarmKind::ReplicationLag => {
                    seen = crate::db_tier::lag_observations(&db_nodes, rule.threshold);
                }
                AlarmKind::NoSyncStandby => seen = crate::db_tier::sync_observations(&db_nodes),
                AlarmKind::RegionUnhealthy => {
                    for r in regions {
                        let breached = r.status == Status::Unhealthy;
                        let detail = if !r.lb_up {
                            format!("{} does not answer", r.lb)
                        } else {
                            format!("{} of {} instances healthy", r.healthy, r.total)
                        };
                        seen.push(Observation {
                            subject: r.name.clone(),
                            value: Some(breached as u8 as f64),
                            breached,
                            detail,
                        });
                    }
                }
                AlarmKind::PopUnreachable => {
                    for p in pops {
                        let why = self
                            .nodes
                            .iter()
                            .find(|n| n.name == p.node)
                            .and_then(|n| n.error.clone());
                        seen.push(Observation {
                            subject: format!("pop:{}", p.name),
                            value: Some(!p.up as u8 as f64),
                            breached: !p.up,
                            detail: why.unwrap_or_else(|| format!("{} answers", p.node)),
                        });
                    }
                }
                AlarmKind::ErrorRate => {
                    let subjects = regions
                        .iter()
                        .map(|r| (r.name.clone(), format!("region.{}", r.name)))
                        .chain(
                            pops.iter()
                                .map(|p| (format!("pop:{}", p.name), format!("pop.{}", p.name))),
                        );
                    for (subject, prefix) in subjects.collect::<Vec<_>>() {
                        let n = self.window_sum(&format!("{prefix}.requests"), sec, w);
                        let e = self.window_sum(&format!("{prefix}.5xx"), sec, w);
                        let value = (n > 0.0).then(|| e / n);
                        let breached = n >= rule.min_requests as f64
                            && value.is_some_and(|v| v > rule.threshold);
                        seen.push(Observation {
                            subject,
                            value,
                            breached,
                            detail: format!(
                                "{} of {} requests were 5xx in {w}s",
                                e as u64, n as u64
                            ),
                        });
                    }
                }
                AlarmKind::HitRate => {
                    for p in pops {
                        let prefix = format!("pop.{}", p.name);
                        let n = self.window_sum(&format!("{prefix}.lookups"), sec, w);
                        let h = self.window_sum(&format!("{prefix}.hits"), sec, w);
                        let value = (n > 0.0).then(|| h / n);
                        let breached = n >= rule.min_requests as f64
                            && value.is_some_and(|v| v < rule.threshold);
                        seen.push(Observation {
                            subject: format!("pop:{}", p.name),
                            value,
                            breached,
                            detail: format!(
                                "{} of {} cacheable requests were hits in {w}s",
                                h as u64, n as u64
                            ),
                        });
                    }
                }
            }
            out.extend(self.alarms.observe(i, sec, seen));
        }
        out
    }

    fn account_cost(&mut self, sec: u64, regions: &[RegionView], pops: &[PopView]) {
        let dt = self.config.console.scrape_interval.as_secs_f64();
        for r in regions {
            let p = format!("region.{}", r.name);
            let acc = CostAcc {
                requests: self.store_last(&format!("{p}.requests"), sec),
                bytes_out: self.store_last(&format!("{p}.bytes_out"), sec),
                instance_seconds: self.store_last(&format!("{p}.instances"), sec) * dt,
            };
            let e = self.cost.entry(r.name.clone()).or_default();
            e.requests += acc.requests;
            e.bytes_out += acc.bytes_out;
            e.instance_seconds += acc.instance_seconds;
        }
        for pop in pops {
            let p = format!("pop.{}", pop.name);
            let requests = self.store_last(&format!("{p}.requests"), sec);
            let bytes = self.store_last(&format!("{p}.bytes_out"), sec);
            let e = self.cost.entry(pop.name.clone()).or_default();
            e.requests += requests;
            e.bytes_out += bytes;
        }
    }

    fn cost_lines(&self, sec: u64) -> Vec<CostLine> {
        const GB: f64 = 1e9;
        let places = self
            .config
            .regions
            .iter()
            .map(|r| (r.name.clone(), "region"))
            .chain(self.config.edges.iter().map(|p| (p.name.clone(), "pop")));
        let minute = 60;
        places
            .map(|(name, kind)| {
                let price = self.config.console.prices.of(&name);
                let acc = self.cost.get(&name).copied().unwrap_or_default();
                let money = |requests: f64, bytes: f64, hours: f64| {
                    requests / 1e6 * price.requests_per_million
                        + bytes / GB * price.data_out_per_gb
                        + hours * price.instance_hour
                };
                let prefix = if kind == "region" { "region" } else { "pop" };
                let p = format!("{prefix}.{name}");
                let r = self.window_sum(&format!("{p}.requests"), sec, minute);
                let b = self.window_sum(&format!("{p}.bytes_out"), sec, minute);
                let instances = self
                    .store
                    .get(&format!("{p}.instances"))
                    .and_then(|s| s.window(sec, 1)[0])
                    .unwrap_or(0.0);
                let per_hour = money(r * 60.0, b * 60.0, instances);
                CostLine {
                    place: name,
                    kind,
                    requests: acc.requests,
                    gb_out: acc.bytes_out / GB,
                    instance_hours: acc.instance_seconds / 3600.0,
                    total: money(acc.requests, acc.bytes_out, acc.instance_seconds / 3600.0),
                    per_hour,
                    per_month: per_hour * 730.0,
                }
            })
            .collect()
    }

    /// The last `secs` seconds of series `name`, oldest first.
    pub fn series(&self, name: &str, secs: usize) -> Option<Vec<Option<f64>>> {
        Some(self.store.get(name)?.window(self.overview.now, secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::State as AlarmState;

    const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"

[network]
subnet = "127.88.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]

[[region]]
name = "west"
location = { lat = 53.3, lon = -6.3 }
azs = ["west-a"]

[service]
instances_per_az = 2

[[edge]]
name = "paris"
location = { lat = 48.9, lon = 2.4 }

[console]
[[console.alarm]]
name = "region-down"
kind = "region_unhealthy"
for = "0s"

[[console.alarm]]
name = "errors"
kind = "error_rate"
threshold = 0.1
window = "5s"
min_requests = 10
for = "2s"

[[console.alarm]]
name = "pop-gone"
kind = "pop_unreachable"

[console.prices]
data_out_per_gb = 1.0
requests_per_million = 1000000.0
instance_hour = 3600.0
"#;

    /// Metric text for every target, with per-target overrides.
    struct World {
        state: State,
        text: BTreeMap<String, Result<String, String>>,
    }

    impl World {
        fn new() -> World {
            let config = Config::parse(CONFIG, "test.toml").expect("valid test config");
            let state = State::new(config, 1000);
            let mut text = BTreeMap::new();
            for t in state.targets() {
                text.insert(t.name.clone(), Ok(String::new()));
            }
            World { state, text }
        }

        fn set(&mut self, node: &str, metrics: &str) {
            self.text.insert(node.to_owned(), Ok(metrics.to_owned()));
        }

        fn down(&mut self, node: &str) {
            self.text
                .insert(node.to_owned(), Err("connection refused".to_owned()));
        }

        fn tick(&mut self, t: f64) -> Vec<Transition> {
            let scrapes = self
                .state
                .targets()
                .iter()
                .map(|t| self.text[&t.name].clone())
                .collect();
            self.state.tick(t, scrapes)
        }
    }

    fn lb(healthy: [u8; 2], az: &str, requests: u64, errors: u64, bytes: u64) -> String {
        format!(
            "meridian_lb_target_healthy{{target=\"svc-{az}-1\",az=\"{az}\"}} {}\n\
             meridian_lb_target_healthy{{target=\"svc-{az}-2\",az=\"{az}\"}} {}\n\
             meridian_lb_requests_total{{target=\"svc-{az}-1\",status=\"200\"}} {requests}\n\
             meridian_lb_requests_total{{target=\"none\",status=\"503\"}} {errors}\n\
             meridian_lb_response_bytes_total {bytes}\n\
             meridian_lb_request_duration_seconds_bucket{{le=\"0.01\"}} {requests}\n\
             meridian_lb_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            healthy[0],
            healthy[1],
            requests + errors
        )
    }

    fn edge(hits: u64, misses: u64, failovers: u64) -> String {
        format!(
            "meridian_edge_requests_total{{pop=\"paris\",cache_status=\"hit\",status_class=\"2xx\"}} {hits}\n\
             meridian_edge_requests_total{{pop=\"paris\",cache_status=\"miss\",status_class=\"2xx\"}} {misses}\n\
             meridian_edge_requests_total{{pop=\"paris\",cache_status=\"pass\",status_class=\"2xx\"}} 7\n\
             meridian_edge_origin_healthy{{origin=\"lb:east\",group=\"regions\"}} 1\n\
             meridian_edge_origin_healthy{{origin=\"lb:west\",group=\"regions\"}} 1\n\
             meridian_edge_origin_rtt_seconds{{origin=\"lb:east\",group=\"regions\"}} 0.080\n\
             meridian_edge_origin_rtt_seconds{{origin=\"lb:west\",group=\"regions\"}} 0.020\n\
             meridian_edge_origin_failovers_total{{reason=\"timeout\"}} {failovers}\n\
             meridian_edge_bytes_to_viewers_total {}\n",
            (hits + misses) * 1000
        )
    }

    #[test]
    fn regions_pops_rates_and_routing_preference_from_metric_text() {
        let mut w = World::new();
        w.set("lb-east", &lb([1, 1], "east-a", 100, 0, 0));
        w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
        w.set("edge-paris", &edge(0, 0, 0));
        w.tick(1000.0);
        let o = w.state.overview();
        assert_eq!(o.regions[0].status, Status::Healthy);
        assert_eq!(o.regions[0].rps, None, "no rate from a first scrape");
        // Two seconds later: 200 more requests, 10 of them 5xx; 30 hits, 10 misses.
        w.set("lb-east", &lb([1, 1], "east-a", 290, 10, 4000));
        w.set("edge-paris", &edge(30, 10, 0));
        w.tick(1002.0);
        let o = w.state.overview();
        let east = &o.regions[0];
        assert_eq!(east.rps, Some(100.0));
        assert_eq!(east.err5xx_rps, Some(5.0));
        assert_eq!((east.healthy, east.total), (2, 2));
        assert!(
            east.p50_ms.is_some_and(|p| p > 0.0 && p <= 10.0),
            "{east:?}"
        );
        let paris = &o.pops[0];
        assert_eq!(paris.hit_rate, Some(0.75), "pass is not cacheable");
        assert_eq!(
            paris.preferred.as_deref(),
            Some("west"),
            "shortest healthy RTT"
        );
        assert_eq!(paris.bytes_out_rate, Some(20_000.0));
        assert_eq!(o.global.hit_rate, Some(0.75));
        // 5xx per second over every request per second: 5 of (100 region + 20 edge).
        let er = o.global.error_rate.unwrap();
        assert!((er - 5.0 / 120.0).abs() < 1e-9, "{er}");
        // Series exist for the charts.
        assert!(w.state.series("global.edge_rps", 5).is_some());
        assert_eq!(
            w.state.series("region.east.requests", 3).unwrap(),
            vec![Some(0.0), None, Some(200.0)],
            "1001 was not scraped: a gap, not a zero"
        );
    }

    #[test]
    fn an_unhealthy_region_fires_its_alarm_and_the_timeline_says_why() {
        let mut w = World::new();
        w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
        w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
        w.set("edge-paris", &edge(0, 0, 0));
        assert!(w.tick(1000.0).is_empty());
        // One instance fails its checks: degraded, no alarm.
        w.set("lb-west", &lb([1, 0], "west-a", 0, 0, 0));
        assert!(w.tick(1001.0).is_empty());
        assert_eq!(w.state.overview().regions[1].status, Status::Degraded);
        // Both: unhealthy, and the alarm (for = 0s) fires at once.
        w.set("lb-west", &lb([0, 0], "west-a", 0, 0, 0));
        let t = w.tick(1002.0);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            (t[0].alarm.as_str(), t[0].subject.as_str(), t[0].state),
            ("region-down", "west", "ALARM")
        );
        let o = w.state.overview();
        assert_eq!(o.regions[1].status, Status::Unhealthy);
        assert!(o
            .alarms
            .iter()
            .any(|a| a.rule == "region-down" && a.state == AlarmState::Alarm));
        assert!(o
            .events
            .iter()
            .any(|e| e.kind == Kind::Health && e.message.contains("svc-west-a-1 is unhealthy")));
        // An instance the console cannot reach is not healthy, whatever its balancer says.
        w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
        w.down("svc-west-a-1");
        w.down("svc-west-a-2");
        assert!(w.tick(1003.0).is_empty(), "still firing, no new transition");
        assert_eq!(w.state.overview().regions[1].status, Status::Unhealthy);
        // Back: the alarm clears.
        w.set("svc-west-a-1", "");
        w.set("svc-west-a-2", "");
        let t = w.tick(1004.0);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].state, "OK");
        assert_eq!(w.state.overview().regions[1].status, Status::Healthy);
        // A balancer that does not answer makes its region unhealthy too.
        w.down("lb-east");
        let t = w.tick(1005.0);
        assert_eq!(t[0].subject, "east");
        let o = w.state.overview();
        assert!(!o.regions[0].lb_up);
        assert!(o.nodes.iter().any(|n| n.name == "lb-east"
            && !n.up
            && n.error.as_deref() == Some("connection refused")));
        assert!(o
            .events
            .iter()
            .any(|e| e.message == "lb-east stopped answering"));
    }

    #[test]
    fn error_rate_needs_volume_and_duration_and_pops_can_vanish() {
        let mut w = World::new();
        w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
        w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
        w.set("edge-paris", &edge(0, 0, 0));
        w.tick(1000.0);
        // 5 of 5 requests fail: above the threshold but below min_requests.
        w.set("lb-east", &lb([1, 1], "east-a", 0, 5, 0));
        assert!(w.tick(1001.0).is_empty());
        // 20 of 25 in the window: breached, but it must hold for 2 s.
        w.set("lb-east", &lb([1, 1], "east-a", 5, 20, 0));
        assert!(w.tick(1002.0).is_empty());
        assert!(w.tick(1003.0).is_empty());
        let t = w.tick(1004.0);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].alarm.as_str(), t[0].state), ("errors", "ALARM"));
        assert!(t[0].detail.contains("20 of 25"), "{}", t[0].detail);
        // The PoP stops answering: unreachable alarm, shown as such, not dropped.
        w.set("edge-paris", &edge(0, 0, 3));
        w.tick(1005.0);
        assert!(w
            .state
            .overview()
            .events
            .iter()
            .any(|e| e.kind == Kind::Failover && e.cause.contains("timeout x3")));
        w.down("edge-paris");
        let t = w.tick(1006.0);
        assert!(
            t.iter()
                .any(|t| t.alarm == "pop-gone" && t.subject == "pop:paris"),
            "{t:?}"
        );
        let o = w.state.overview();
        assert_eq!(o.pops.len(), 1);
        assert_eq!(o.pops[0].status, Status::Unhealthy);
        assert!(!o.pops[0].up);
    }

    #[test]
    fn restarts_and_invalidations_are_events() {
        let mut w = World::new();
        let sup = |n: u64| {
            format!("meridian_supervisor_restarts_total{{node=\"svc-east-a-1\",role=\"service\",region=\"east\"}} {n}\n")
        };
        w.set("supervisor", &sup(0));
        w.set("edge-paris", "meridian_edge_invalidation_paths_total 0\n");
        w.tick(1000.0);
        w.set("supervisor", &sup(1));
        w.set("edge-paris", "meridian_edge_invalidation_paths_total 2\n");
        w.tick(1001.0);
        let o = w.state.overview();
        assert!(
            o.events
                .iter()
                .any(|e| e.kind == Kind::Restart && e.subject == "svc-east-a-1"),
            "{:?}",
            o.events
        );
        assert!(o.events.iter().any(
            |e| e.kind == Kind::Invalidation && e.message == "edge-paris invalidated 2 path(s)"
        ));
        let node = o.nodes.iter().find(|n| n.name == "svc-east-a-1").unwrap();
        assert_eq!(node.restarts, 1);
        // The supervisor is a source, not a node of the deployment.
        assert!(o.nodes.iter().all(|n| n.name != "supervisor"));
    }

    #[test]
    fn cost_uses_measured_traffic_and_the_price_table() {
        let mut w = World::new();
        w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
        w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
        w.tick(1000.0);
        // 2 requests and 1 GB out in one second; the two east instances run.
        w.set("lb-east", &lb([1, 1], "east-a", 2, 0, 1_000_000_000));
        w.tick(1001.0);
        let east = w.state.overview().cost[0].clone();
        assert_eq!(east.place, "east");
        assert_eq!(east.requests, 2.0);
        assert!((east.gb_out - 1.0).abs() < 1e-9);
        // Two ticks of two instances at one second each: 4 instance-seconds.
        assert!(
            (east.instance_hours - 4.0 / 3600.0).abs() < 1e-9,
            "{east:?}"
        );
        // $1 per request, $1 per GB, $1 per instance-second.
        assert!((east.total - (2.0 + 1.0 + 4.0)).abs() < 1e-6, "{east:?}");
        // Per hour at the last minute's rate: 2 req + 1 GB in the minute, 2 instances.
        assert!(
            (east.per_hour - ((2.0 + 1.0) * 60.0 + 2.0 * 3600.0)).abs() < 1e-6,
            "{east:?}"
        );
    }
}
