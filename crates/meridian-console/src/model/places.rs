//! The views of each place from its own node's reading: regions (balancer, instances,
//! cache and database tiers), PoPs and DNS servers. Each also records its series.

use super::scrape::Scrape;
use super::views::{ms, AzView, DnsView, OriginView, PopView, RegionView, Status};
use crate::reading::{quantile, Reading};
use crate::series::Store;
use meridian_config::Config;
use meridian_telemetry::exposition::Sample;

pub(super) fn regions(
    config: &Config,
    scrape: &Scrape,
    store: &mut Store,
    sec: u64,
) -> Vec<RegionView> {
    let readings = scrape.readings;
    let mut out = Vec::new();
    let db_nodes = crate::db_tier::db_nodes(scrape.targets, readings);
    for n in db_nodes.iter().filter(|n| n.up) {
        let p = format!("db.{}", n.name);
        if let Some(x) = n.lag_seconds {
            store.push(&format!("{p}.lag_seconds"), sec, x);
        }
        if let Some(x) = n.commits_per_second {
            store.push(&format!("{p}.commits_per_second"), sec, x);
        }
    }
    let dns_readings: Vec<&Reading> = scrape
        .targets
        .iter()
        .zip(readings)
        .filter(|(t, _)| t.role == "dns")
        .filter_map(|(_, r)| r.as_ref())
        .collect();
    let rollout = super::versions::running_rollout(scrape.reading_of("supervisor"));
    for region in &config.regions {
        let lb = format!("lb-{}", region.name);
        let mut v = RegionView {
            name: region.name.clone(),
            primary: region.primary,
            lb: lb.clone(),
            lb_up: scrape.is_up(&lb),
            ..Default::default()
        };
        v.azs = region
            .azs
            .iter()
            .map(|az| AzView {
                name: az.clone(),
                healthy: 0,
                total: scrape
                    .targets
                    .iter()
                    .filter(|t| t.role == "service" && t.az.as_deref() == Some(az))
                    .count() as u32,
            })
            .collect();
        if let Some(r) = scrape.reading_of(&lb) {
            // Healthy: the balancer's checks pass and the console reaches it too. The
            // console's scrape notices a hung instance within one tick, before the
            // balancer's unhealthy threshold has run out.
            for s in r.all("meridian_lb_target_healthy") {
                let reachable = s.label("target").is_none_or(|t| scrape.is_up(t));
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
            store.push(&format!("{p}.requests"), sec, requests);
            store.push(&format!("{p}.5xx"), sec, e5);
            store.push(&format!("{p}.bytes_out"), sec, bytes);
            if let Some(x) = v.rps {
                store.push(&format!("{p}.rps"), sec, x);
            }
            if let Some(x) = v.p95_ms {
                store.push(&format!("{p}.p95_ms"), sec, x);
            }
            v.versions = super::versions::sides(&region.name, r, rollout.as_ref(), store, sec);
        }
        // Instances autoscaling added are healthy targets the config does not list.
        for az in &mut v.azs {
            az.total = az.total.max(az.healthy);
        }
        v.healthy = v.azs.iter().map(|a| a.healthy).sum();
        v.total = v.azs.iter().map(|a| a.total).sum();
        let running = scrape
            .nodes
            .iter()
            .filter(|n| n.role == "service" && n.region.as_deref() == Some(&region.name) && n.up)
            .count();
        store.push(
            &format!("region.{}.instances", region.name),
            sec,
            running as f64,
        );
        store.push(
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
        v.cache = crate::cache_tier::cache_of(scrape.targets, &region.name, readings);
        v.db = crate::db_tier::db_of(&db_nodes, &region.name);
        (v.desired, v.running) = super::scaling::capacity(scrape, &region.name);
        if let Some(rate) = v
            .cache
            .as_ref()
            .and_then(|c| c.nodes.iter().find(|n| n.primary))
            .and_then(|n| n.hit_rate)
        {
            store.push(&format!("region.{}.cache_hit_rate", region.name), sec, rate);
        }
        out.push(v);
    }
    out
}

pub(super) fn pops(config: &Config, scrape: &Scrape, store: &mut Store, sec: u64) -> Vec<PopView> {
    let names: Vec<String> = config.edges.iter().map(|p| p.name.clone()).collect();
    edge_views(&names, scrape, store, sec)
}

/// The regional edge caches (`[distribution.tiered_cache]`), seen as PoPs are: their hit
/// rate is what the tier saves the origins. Kept apart from the PoPs so viewer totals do
/// not count a request twice.
pub(super) fn regional_caches(
    config: &Config,
    scrape: &Scrape,
    store: &mut Store,
    sec: u64,
) -> Vec<PopView> {
    if !config.distribution.tiered_cache.enabled {
        return Vec::new();
    }
    let names: Vec<String> = config
        .regions
        .iter()
        .map(|r| meridian_config::regional_cache_name(&r.name))
        .collect();
    edge_views(&names, scrape, store, sec)
}

/// One view per edge node named `edge-<name>`.
fn edge_views(names: &[String], scrape: &Scrape, store: &mut Store, sec: u64) -> Vec<PopView> {
    let mut out = Vec::new();
    for name in names {
        let node = format!("edge-{name}");
        let mut v = PopView {
            name: name.clone(),
            node: node.clone(),
            up: scrape.is_up(&node),
            ..Default::default()
        };
        if let Some(r) = scrape.reading_of(&node) {
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
            let p = format!("pop.{name}");
            store.push(&format!("{p}.requests"), sec, r.delta(req, |_| true));
            store.push(&format!("{p}.hits"), sec, hits);
            store.push(&format!("{p}.lookups"), sec, lookups);
            store.push(&format!("{p}.5xx"), sec, r.delta(req, e5));
            store.push(
                &format!("{p}.bytes_out"),
                sec,
                r.delta("meridian_edge_bytes_to_viewers_total", |_| true),
            );
            if let Some(x) = v.rps {
                store.push(&format!("{p}.rps"), sec, x);
            }
            for o in &v.origins {
                if let Some(rtt) = o.rtt_ms {
                    store.push(&format!("{p}.rtt.{}", o.origin), sec, rtt);
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

pub(super) fn dns(scrape: &Scrape, store: &mut Store, sec: u64) -> Vec<DnsView> {
    let readings = scrape.readings;
    let mut out = Vec::new();
    for (i, t) in scrape.targets.iter().enumerate() {
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
                store.push(&format!("dns.{}.qps", t.name), sec, q);
            }
        }
        out.push(v);
    }
    out
}

fn class_of(status: &str) -> Option<char> {
    status.chars().next()
}
