//! `meridian chaos`: break part of a running deployment while global load runs, and
//! measure what clients saw, how long the platform took to notice, and how long to recover.

use crate::load::{self, Arch, LoadOptions};
use crate::world::{PlaceKind, World};
use meridian_config::state::DeploymentState;
use meridian_config::{Config, Role};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A region's balancer and instances freeze (power or network loss).
    KillRegion { region: String },
    /// The WAN stops carrying traffic between one PoP and one region.
    Partition { pop: String, region: String },
}

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub config: Config,
    pub state: DeploymentState,
    pub fault: Fault,
    /// How long the load runs in all.
    pub duration: Duration,
    /// How long the region stays down (it goes down a fifth of the way in).
    pub outage: Duration,
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub scenario: &'static str,
    /// What was broken, in words.
    pub target: String,
    pub region: String,
    pub seconds: f64,
    pub outage_seconds: f64,
    pub requests: u64,
    pub failed: u64,
    /// Failures of requests an edge may cache (static, quotes, GraphQL).
    pub failed_cacheable: u64,
    /// Failures of requests that must reach a region (the private portfolio).
    pub failed_uncacheable: u64,
    pub errors: Vec<String>,
    /// From the outage until every PoP had taken the region out of its origin choice.
    pub edge_detect_seconds: Option<f64>,
    /// From the outage until the DNS sent the region's nearest clients elsewhere.
    pub dns_detect_seconds: Option<f64>,
    /// From the region's return until every PoP and the DNS used it again (RTO of the
    /// region's traffic).
    pub recovery_seconds: Option<f64>,
}

/// Whether every PoP now sees `origin` as healthy (`want` 1) or unhealthy (`want` 0).
async fn pops_agree(pops: &[SocketAddr], origin: &str, want: u8) -> bool {
    for admin in pops {
        let req = http::Request::get("/metrics")
            .header(http::header::HOST, admin.to_string())
            .body(http_body_util::Full::new(bytes::Bytes::new()));
        let Ok(req) = req else { return false };
        let Ok(f) = meridian_health::fetch(*admin, req, Duration::from_secs(1), 8 << 20).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&f.body).into_owned();
        let needle = format!("origin=\"{origin}\"");
        let agrees = text
            .lines()
            .filter(|l| l.starts_with("meridian_edge_origin_healthy") && l.contains(&needle))
            .all(|l| l.trim_end().ends_with(&format!(" {want}")));
        if !agrees {
            return false;
        }
    }
    true
}

/// Asks the WAN node to start or end a partition.
async fn wan_call(admin: SocketAddr, method: http::Method, path: &str) -> Result<(), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let f = meridian_health::fetch(admin, req, Duration::from_secs(2), 64 * 1024).await?;
    if f.status != 200 {
        return Err(format!("the WAN answered {}: {}", f.status, String::from_utf8_lossy(&f.body)));
    }
    Ok(())
}

fn signal(pids: &[u32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on pids of the deployment's own nodes.
        unsafe {
            libc::kill(p as i32, sig);
        }
    }
}

/// Breaks what `opts.fault` says under global load on the full deployment, then repairs
/// it, measuring failures, detection and recovery.
pub async fn run(opts: &ChaosOptions, mut say: impl FnMut(String)) -> Result<ChaosReport, String> {
    let cfg = &opts.config;
    let (region_name, pop_name) = match &opts.fault {
        Fault::KillRegion { region } => (region.clone(), None),
        Fault::Partition { pop, region } => (region.clone(), Some(pop.clone())),
    };
    let region = cfg
        .regions
        .iter()
        .find(|r| r.name == region_name)
        .ok_or_else(|| {
            format!(
                "there is no region `{region_name}`; regions: {}",
                cfg.regions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
    if let Some(p) = &pop_name {
        if !cfg.edges.iter().any(|e| &e.name == p) {
            return Err(format!(
                "there is no PoP `{p}`; PoPs: {}",
                cfg.edges.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let pids: Vec<u32> = opts
        .state
        .nodes
        .iter()
        .filter(|n| n.spec.region.as_deref() == Some(region.name.as_str()))
        .filter_map(|n| n.pid)
        .collect();
    let wan_admin = opts
        .state
        .nodes
        .iter()
        .find(|n| n.spec.role == Role::Wan)
        .map(|n| n.spec.admin);
    let target = match &pop_name {
        None => {
            if pids.is_empty() {
                return Err(format!("no running process of region {} in endpoints.json", region.name));
            }
            format!("region {} down", region.name)
        }
        Some(p) => {
            if wan_admin.is_none() {
                return Err("partitions need the WAN: set [simulation] wan = true".into());
            }
            format!("PoP {p} cut off from region {}", region.name)
        }
    };
    // The PoPs that must notice: all of them for a region loss, the cut-off one for a
    // partition.
    let pops: Vec<SocketAddr> = opts
        .state
        .nodes
        .iter()
        .filter(|n| n.spec.role == Role::Edge)
        .filter(|n| pop_name.as_ref().is_none_or(|p| cfg.pop_of(&n.spec).is_some_and(|x| &x.name == p)))
        .map(|n| n.spec.admin)
        .collect();
    let dns = crate::global::dns_server(&opts.state).ok_or("the deployment runs no DNS server")?;
    let lb_ip = cfg.lb_address(&region.name).map(|a| a.ip());
    let world = World::new(cfg);
    // A client location this region serves, to watch the DNS from.
    let watcher = cfg.client_locations.iter().find(|c| {
        world
            .place(PlaceKind::Client, &c.name)
            .and_then(|p| world.nearest(p, PlaceKind::Region))
            .is_some_and(|r| r.name == region.name)
    });
    // A partition between a PoP and a region does not concern the DNS.
    let watch_source = watcher
        .filter(|_| pop_name.is_none())
        .and_then(|c| cfg.client_source(&c.name))
        .map(|net| match net.addr {
            std::net::IpAddr::V4(v) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v) + 2)),
            other => other,
        });
    let api = format!("api.{}.", cfg.deployment.zone);
    let origin = format!("lb:{}", region.name);

    let lo = LoadOptions {
        config: cfg.clone(),
        dns,
        duration: opts.duration,
        rate: opts.rate,
        max_requests: 1_000_000,
        new_connections: false,
        cacheable_only: false,
    };
    say(format!(
        "load: full deployment, {}/s from each of {} locations for {}s; {target} at {:.1}s for {}s",
        opts.rate,
        cfg.client_locations.len(),
        opts.duration.as_secs_f64(),
        opts.duration.as_secs_f64() / 5.0,
        opts.outage.as_secs_f64()
    ));
    let load = tokio::spawn(async move {
        load::run(&lo, Arch::Full, load::show_progress)
        .await
    });
    let started = Instant::now();
    tokio::time::sleep(opts.duration / 5).await;
    let down_at = Instant::now();
    let pair = pop_name.as_ref().map(|p| format!("/partition?from=pop:{p}&to={}", region.name));
    match (&pair, wan_admin) {
        (Some(path), Some(admin)) => wan_call(admin, http::Method::POST, path).await?,
        _ => signal(&pids, libc::SIGSTOP),
    }
    eprintln!();
    say(format!("  {:.1}s: {target}", started.elapsed().as_secs_f64()));
    let (mut edge_detect, mut dns_detect) = (None, None);
    let up_at = down_at + opts.outage;
    while Instant::now() < up_at {
        if edge_detect.is_none() && !pops.is_empty() && pops_agree(&pops, &origin, 0).await {
            edge_detect = Some(down_at.elapsed().as_secs_f64());
        }
        if dns_detect.is_none() {
            if let Some(src) = watch_source {
                let ans = load::resolve(dns, src, &api).await;
                if ans.is_some() && ans != lb_ip {
                    dns_detect = Some(down_at.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match (&pair, wan_admin) {
        (Some(path), Some(admin)) => wan_call(admin, http::Method::DELETE, path).await?,
        _ => signal(&pids, libc::SIGCONT),
    }
    let back_at = Instant::now();
    say(format!("  {:.1}s: repaired", started.elapsed().as_secs_f64()));
    let mut recovered = None;
    let give_up = back_at + Duration::from_secs(30);
    while Instant::now() < give_up {
        let pops_ok = pops.is_empty() || pops_agree(&pops, &origin, 1).await;
        let dns_ok = match watch_source {
            Some(src) => load::resolve(dns, src, &api).await == lb_ip,
            None => true,
        };
        if pops_ok && dns_ok {
            recovered = Some(back_at.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = load.await.map_err(|e| e.to_string())?;
    eprintln!();
    let count = |cacheable: bool| -> u64 {
        runs.iter()
            .flat_map(|r| r.classes.iter())
            .filter(|(c, _)| c.cacheable() == cacheable)
            .map(|(_, (_, failed))| failed)
            .sum()
    };
    Ok(ChaosReport {
        scenario: if pop_name.is_some() { "partition" } else { "kill-region" },
        target,
        region: region.name.clone(),
        seconds: opts.duration.as_secs_f64(),
        outage_seconds: opts.outage.as_secs_f64(),
        requests: runs.iter().map(|r| r.ok + r.failed).sum(),
        failed: runs.iter().map(|r| r.failed).sum(),
        failed_cacheable: count(true),
        failed_uncacheable: count(false),
        errors: runs.iter().flat_map(|r| r.errors.iter().cloned()).take(10).collect(),
        edge_detect_seconds: edge_detect,
        dns_detect_seconds: dns_detect,
        recovery_seconds: recovered,
    })
}

impl ChaosReport {
    pub fn markdown(&self) -> String {
        let s = |x: Option<f64>| x.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "not observed".into());
        format!(
            "# Chaos: {}\n\n{} for {:.0} s during {:.0} s of global load on the full deployment.\n\n\
             | measure | value |\n|---|---|\n\
             | requests | {} |\n| failed | {} |\n| failed, cacheable content | {} |\n| failed, uncacheable (portfolio) | {} |\n\
             | the PoPs concerned stopped using the region after | {} |\n| DNS sent its clients elsewhere after | {} |\n\
             | recovery (RTO): they use it again this long after the repair | {} |\n{}",
            self.scenario,
            self.target,
            self.outage_seconds,
            self.seconds,
            self.requests,
            self.failed,
            self.failed_cacheable,
            self.failed_uncacheable,
            s(self.edge_detect_seconds),
            if self.scenario == "partition" {
                "not concerned (the DNS checks regions directly)".to_owned()
            } else {
                s(self.dns_detect_seconds)
            },
            s(self.recovery_seconds),
            if self.errors.is_empty() {
                String::new()
            } else {
                format!("\nfirst errors:\n{}\n", self.errors.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n"))
            }
        )
    }
}
