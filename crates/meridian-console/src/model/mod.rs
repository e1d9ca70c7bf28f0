//! The console's picture of the deployment, rebuilt from every node's scrape each tick.
//!
//! `State::tick` is pure bookkeeping over the scraped text: it never touches the network,
//! so the whole picture (views, series, events, alarms, cost) is tested from metric text.

mod changes;
mod cost;
mod functions;
mod global;
mod observe;
mod places;
pub mod protection;
mod scaling;
mod scrape;
mod security;
mod security_views;
mod versions;
mod views;

pub use crate::target::Target;
pub use cost::CostLine;
pub use security::STOP_AFTER;
pub use security_views::{
    AuthFailureView, IdempotencyView, ProtectionRuleView, ReasonView, RulePopView, SecurityPopView,
    SecurityView, TopKeyView,
};
pub use versions::VersionView;
pub use views::{
    AzView, DnsView, ErrorKindRate, FunctionView, Global, NodeView, OriginView, PopView,
    RegionView, Route, RuleView, Status,
};

use crate::alarms::{self, Alarms, Transition};
use crate::events::{Event, Kind, Severity, Timeline};
use crate::reading::{Previous, Reading};
use crate::series::Store;
use changes::Watch;
use cost::Cost;
use meridian_config::Config;
use meridian_telemetry::exposition;
use protection::Report;
use scrape::Scrape;
use security::Blocking;
use serde::Serialize;
use std::collections::HashMap;

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
    /// The regional edge caches, when the distribution has the tier.
    pub regional_caches: Vec<PopView>,
    pub dns: Vec<DnsView>,
    /// Edge functions, by name (empty when the distribution has none).
    pub functions: Vec<FunctionView>,
    pub nodes: Vec<NodeView>,
    pub routing: Vec<Route>,
    pub alarms: Vec<alarms::AlarmStatus>,
    pub alarm_rules: Vec<RuleView>,
    pub events: Vec<Event>,
    pub cost: Vec<CostLine>,
    pub series_count: usize,
    pub series_bytes: usize,
}

pub struct State {
    config: Config,
    targets: Vec<Target>,
    previous: Vec<Previous>,
    nodes: Vec<NodeView>,
    /// Gauges whose changes are events.
    watch: Watch,
    pub store: Store,
    events: Timeline,
    alarms: Alarms,
    cost: Cost,
    routing: Vec<Route>,
    overview: Overview,
    /// The PoPs' latest `/protection` reports, by node name.
    reports: HashMap<String, Result<Report, String>>,
    blocking: Blocking,
    security: security_views::SecurityView,
}

/// At most this many series: far more than a large config derives, a bound all the same.
const MAX_SERIES: usize = 20_000;

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
            watch: Watch::default(),
            store: Store::new(capacity, MAX_SERIES),
            events: Timeline::new(1000),
            alarms,
            cost: Cost::default(),
            routing: Vec::new(),
            reports: HashMap::new(),
            blocking: Blocking::default(),
            security: Default::default(),
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

    /// The security panel as of the last tick.
    pub fn security(&self) -> &security_views::SecurityView {
        &self.security
    }

    /// The PoPs' `/protection` answers for the next tick, by node name: the body, or why
    /// there is none. A PoP left out keeps no report (its top keys are not shown).
    pub fn set_protection(&mut self, replies: Vec<(String, Result<String, String>)>) {
        self.reports = replies
            .into_iter()
            .map(|(node, r)| (node, r.and_then(|body| protection::parse(&body))))
            .collect();
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
        for e in self
            .watch
            .changes(sec, &self.targets, &mut self.nodes, &readings)
        {
            self.events.push(e);
        }
        let scrape = Scrape {
            targets: &self.targets,
            nodes: &self.nodes,
            readings: &readings,
        };
        let regions = places::regions(&self.config, &scrape, &mut self.store, sec);
        let pops = places::pops(&self.config, &scrape, &mut self.store, sec);
        let regional_caches = places::regional_caches(&self.config, &scrape, &mut self.store, sec);
        let dns = places::dns(&scrape, &mut self.store, sec);
        let functions = functions::functions(&self.config, &scrape, &mut self.store, sec);
        let (security, security_events) = security::security(
            &self.config,
            &scrape,
            &self.reports,
            &mut self.blocking,
            &mut self.store,
            sec,
        );
        self.security = security;
        for e in security_events {
            self.events.push(e);
        }
        let global = global::global(&scrape, &mut self.store, sec, &regions, &pops, &dns);
        self.cost
            .account(&self.config, &self.store, sec, &regions, &pops);
        let transitions = observe::evaluate(
            &mut self.alarms,
            &self.store,
            &self.nodes,
            sec,
            &regions,
            &pops,
        );
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
        let cost = self.cost.lines(&self.config, &self.store, sec);
        let o = &mut self.overview;
        o.now = sec;
        o.ticks += 1;
        o.global = global;
        o.regions = regions;
        o.pops = pops;
        o.regional_caches = regional_caches;
        o.dns = dns;
        o.functions = functions;
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
    /// The last `secs` seconds of series `name`, oldest first.
    pub fn series(&self, name: &str, secs: usize) -> Option<Vec<Option<f64>>> {
        Some(self.store.get(name)?.window(self.overview.now, secs))
    }
}

#[cfg(test)]
mod db_tier_tests;
#[cfg(test)]
mod function_tests;
#[cfg(test)]
mod tests;
