//! `meridian chaos`: break part of a running deployment while global load runs, and
//! measure what clients saw, how long the platform took to notice, and how long to recover.

use crate::admin;
use crate::load::{self, Arch, LoadOptions};
use crate::signals::{one_process, signal_nodes};
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
    /// Every path to a region gets slower by `extra` each way (a degraded origin).
    SlowOrigin { region: String, extra: Duration },
    /// An availability zone's instances freeze.
    KillAz { az: String },
    /// A PoP freezes.
    KillPop { pop: String },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::KillRegion { .. } => "kill-region",
            Fault::Partition { .. } => "partition",
            Fault::SlowOrigin { .. } => "slow-origin",
            Fault::KillAz { .. } => "kill-az",
            Fault::KillPop { .. } => "kill-pop",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub config: Config,
    pub state: DeploymentState,
    pub fault: Fault,
    /// The deployment's admin token (`<state-dir>/admin-token`): to read the PoPs' origin
    /// choice and to change the WAN.
    pub admin_token: Option<String>,
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
    /// Mean latency over the whole run, and the worst location's p99, in ms.
    pub mean_ms: f64,
    pub worst_location_p99_ms: f64,
    pub errors: Vec<String>,
    /// From the outage until every PoP had taken the region out of its origin choice.
    pub edge_detect_seconds: Option<f64>,
    /// From the outage until the DNS sent the nearest clients elsewhere.
    pub dns_detect_seconds: Option<f64>,
    /// From the outage until the region's balancer marked the AZ's targets unhealthy.
    pub lb_detect_seconds: Option<f64>,
    /// Which of (PoPs, DNS, balancer) this scenario concerns.
    pub watched: [bool; 3],
    /// From the repair until everything that reacted had taken it back (the RTO of the
    /// broken part's traffic).
    pub recovery_seconds: Option<f64>,
}

/// Whether every PoP now sees `origin` as healthy (`want` 1) or unhealthy (`want` 0).
async fn pops_agree(pops: &[SocketAddr], origin: &str, want: u8) -> bool {
    let label = format!("origin=\"{origin}\"");
    for admin in pops {
        let Some(text) = admin::metrics(*admin, Duration::from_secs(1)).await else {
            return false;
        };
        let agrees = admin::all_series(
            &text,
            "meridian_edge_origin_healthy",
            &label,
            &want.to_string(),
        );
        if agrees == Some(false) {
            return false;
        }
    }
    true
}

/// Asks the WAN node to start or end a partition or a slowdown.
async fn wan_call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
) -> Result<(), String> {
    let f = admin::call(addr, method, path, Some(token), Duration::from_secs(2)).await?;
    if f.status != 200 {
        return Err(format!(
            "the WAN answered {}: {}",
            f.status,
            String::from_utf8_lossy(&f.body)
        ));
    }
    Ok(())
}

/// Freezing and thawing `pids`, checked before anything runs.
fn freeze(pids: Vec<u32>) -> Result<(Action, Action), String> {
    for &p in &pids {
        one_process(p)?;
    }
    Ok((
        Action::Signal(pids.clone(), libc::SIGSTOP),
        Action::Signal(pids, libc::SIGCONT),
    ))
}

/// How a fault is made and undone.
enum Action {
    Signal(Vec<u32>, i32),
    /// The WAN's admin address, the call, and the admin token it needs.
    Wan(SocketAddr, http::Method, String, String),
}

async fn act(a: &Action) -> Result<(), String> {
    match a {
        Action::Signal(pids, sig) => signal_nodes(pids, *sig),
        Action::Wan(admin, method, path, token) => {
            wan_call(*admin, method.clone(), path, token).await
        }
    }
}

/// What the platform should do about a fault, each watched until it happens.
enum Watch {
    /// These PoPs take `origin` out of (healthy = 0) or back into (1) their choice.
    PopHealth(Vec<SocketAddr>, String),
    /// The DNS answers `name` from `source` with something else than `ip`, then `ip` again.
    Dns(
        SocketAddr,
        std::net::IpAddr,
        String,
        Option<std::net::IpAddr>,
    ),
    /// A balancer marks every target of an AZ unhealthy, then healthy.
    LbAz(SocketAddr, String),
    /// These PoPs (which preferred `origin`) rank another origin first, then `origin` again.
    PopChoice(Vec<SocketAddr>, String, String),
}

/// The origin a PoP ranks first in its first origin group, from its `/origins`.
async fn first_choice(addr: SocketAddr, token: &str) -> Option<String> {
    let f = admin::call(
        addr,
        http::Method::GET,
        "/origins",
        Some(token),
        Duration::from_secs(1),
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&f.body).ok()?;
    v["origin_groups"][0]["members"][0]["origin"]
        .as_str()
        .map(str::to_owned)
}

impl Watch {
    /// Whether the reaction (`reacted` true) or the recovery (false) is complete.
    async fn holds(&self, reacted: bool) -> bool {
        match self {
            Watch::PopHealth(pops, origin) => pops_agree(pops, origin, u8::from(!reacted)).await,
            Watch::Dns(server, source, name, ip) => {
                let ans = load::resolve(*server, *source, name).await;
                if reacted {
                    ans.is_some() && ans != *ip
                } else {
                    ans == *ip
                }
            }
            Watch::LbAz(lb, az) => {
                let Some(text) = admin::metrics(*lb, Duration::from_secs(1)).await else {
                    return false;
                };
                let want = if reacted { "0" } else { "1" };
                admin::all_series(
                    &text,
                    "meridian_lb_target_healthy",
                    &format!("az=\"{az}\""),
                    want,
                ) == Some(true)
            }
            Watch::PopChoice(pops, token, origin) => {
                for p in pops {
                    let first = first_choice(*p, token).await;
                    if (first.as_deref() == Some(origin.as_str())) == reacted {
                        return false;
                    }
                }
                !pops.is_empty()
            }
        }
    }
}

/// Everything a scenario needs: what breaks, how to break and repair it, and what to watch.
struct Plan {
    target: String,
    /// The DNS server the load and the watches ask.
    dns_server: SocketAddr,
    region: String,
    apply: Action,
    revert: Action,
    /// (label for the report, what to watch)
    pops: Option<Watch>,
    dns: Option<Watch>,
    lb: Option<Watch>,
}

fn unknown(kind: &str, name: &str, known: Vec<&str>) -> String {
    format!("there is no {kind} `{name}`; {kind}s: {}", known.join(", "))
}

fn plan(opts: &ChaosOptions) -> Result<Plan, String> {
    let cfg = &opts.config;
    let state = &opts.state;
    let world = World::new(cfg);
    let dns = crate::global::dns_server(state).ok_or("the deployment runs no DNS server")?;
    let wan = state
        .nodes
        .iter()
        .find(|n| n.spec.role == Role::Wan)
        .map(|n| n.spec.admin);
    let all_pops: Vec<SocketAddr> = state
        .nodes
        .iter()
        .filter(|n| n.spec.role == Role::Edge)
        .map(|n| n.spec.admin)
        .collect();
    let region_of = |name: &str| {
        cfg.regions.iter().find(|r| r.name == name).ok_or_else(|| {
            unknown(
                "region",
                name,
                cfg.regions.iter().map(|r| r.name.as_str()).collect(),
            )
        })
    };
    let pop_node = |name: &str| {
        state
            .nodes
            .iter()
            .find(|n| {
                n.spec.role == Role::Edge && cfg.pop_of(&n.spec).is_some_and(|p| p.name == name)
            })
            .ok_or_else(|| {
                unknown(
                    "PoP",
                    name,
                    cfg.edges.iter().map(|e| e.name.as_str()).collect(),
                )
            })
    };
    // A client location nearest to `place`, and an address to ask the DNS from there.
    let watcher = |kind: PlaceKind, name: &str| {
        cfg.client_locations
            .iter()
            .find(|c| {
                world
                    .place(PlaceKind::Client, &c.name)
                    .and_then(|p| world.nearest(p, kind))
                    .is_some_and(|r| r.name == name)
            })
            .and_then(|c| cfg.client_source(&c.name))
            .map(|net| net.host(2))
    };
    let need_wan = || {
        let admin = wan.ok_or("this scenario needs the WAN: set [simulation] wan = true")?;
        let token = opts.admin_token.clone().ok_or(
            "this scenario changes the WAN, which needs the admin token: <state-dir>/admin-token is missing",
        )?;
        Ok::<_, String>((admin, token))
    };
    let zone = &cfg.deployment.zone;
    Ok(match &opts.fault {
        Fault::KillRegion { region } => {
            let r = region_of(region)?;
            let pids: Vec<u32> = state
                .nodes
                .iter()
                .filter(|n| n.spec.region.as_deref() == Some(r.name.as_str()))
                .filter_map(|n| n.pid)
                .collect();
            if pids.is_empty() {
                return Err(format!(
                    "no running process of region {} in endpoints.json",
                    r.name
                ));
            }
            let (apply, revert) = freeze(pids)?;
            Plan {
                dns_server: dns,
                target: format!("region {} down", r.name),
                region: r.name.clone(),
                apply,
                revert,
                pops: Some(Watch::PopHealth(all_pops, format!("lb:{}", r.name))),
                dns: watcher(PlaceKind::Region, &r.name).map(|src| {
                    Watch::Dns(
                        dns,
                        src,
                        format!("api.{zone}."),
                        cfg.lb_address(&r.name).map(|a| a.ip()),
                    )
                }),
                lb: None,
            }
        }
        Fault::Partition { pop, region } => {
            let r = region_of(region)?;
            let node = pop_node(pop)?;
            let path = format!("/partition?from=pop:{pop}&to={}", r.name);
            let (admin, token) = need_wan()?;
            Plan {
                dns_server: dns,
                target: format!("PoP {pop} cut off from region {}", r.name),
                region: r.name.clone(),
                apply: Action::Wan(admin, http::Method::POST, path.clone(), token.clone()),
                revert: Action::Wan(admin, http::Method::DELETE, path, token),
                pops: Some(Watch::PopHealth(
                    vec![node.spec.admin],
                    format!("lb:{}", r.name),
                )),
                dns: None,
                lb: None,
            }
        }
        Fault::SlowOrigin { region, extra } => {
            let r = region_of(region)?;
            let (admin, token) = need_wan()?;
            let ms = extra.as_millis();
            Plan {
                dns_server: dns,
                target: format!("region {} slowed by {ms} ms each way", r.name),
                region: r.name.clone(),
                apply: Action::Wan(
                    admin,
                    http::Method::POST,
                    format!("/slow?place={}&extra={ms}ms", r.name),
                    token.clone(),
                ),
                revert: Action::Wan(
                    admin,
                    http::Method::DELETE,
                    format!("/slow?place={}", r.name),
                    token,
                ),
                pops: None,
                dns: None,
                lb: None,
            }
        }
        Fault::KillAz { az } => {
            let r = cfg
                .regions
                .iter()
                .find(|r| r.azs.contains(az))
                .ok_or_else(|| {
                    unknown(
                        "AZ",
                        az,
                        cfg.regions
                            .iter()
                            .flat_map(|r| r.azs.iter().map(String::as_str))
                            .collect(),
                    )
                })?;
            let pids: Vec<u32> = state
                .nodes
                .iter()
                .filter(|n| n.spec.az.as_deref() == Some(az.as_str()))
                .filter_map(|n| n.pid)
                .collect();
            let lb = state
                .nodes
                .iter()
                .find(|n| {
                    n.spec.role == Role::Lb && n.spec.region.as_deref() == Some(r.name.as_str())
                })
                .map(|n| n.spec.admin)
                .ok_or("the AZ's region has no load balancer running")?;
            let (apply, revert) = freeze(pids)?;
            Plan {
                dns_server: dns,
                target: format!("AZ {az} of {} down", r.name),
                region: r.name.clone(),
                apply,
                revert,
                pops: None,
                dns: None,
                lb: Some(Watch::LbAz(lb, az.clone())),
            }
        }
        Fault::KillPop { pop } => {
            let node = pop_node(pop)?;
            let pid = node
                .pid
                .ok_or_else(|| format!("PoP {pop} has no running process"))?;
            let ip = cfg.pop_addresses(pop).map(|a| a.0.ip());
            let (apply, revert) = freeze(vec![pid])?;
            Plan {
                dns_server: dns,
                target: format!("PoP {pop} down"),
                region: String::new(),
                apply,
                revert,
                pops: None,
                dns: watcher(PlaceKind::Pop, pop)
                    .map(|src| Watch::Dns(dns, src, format!("cdn.{zone}."), ip)),
                lb: None,
            }
        }
    })
}

/// Breaks what `opts.fault` says under global load on the full deployment, then repairs
/// it, measuring failures, detection and recovery.
/// Runs the scenario; `phases`, when given, hears when the fault began and ended (the
/// data tier's watch runs beside it).
pub async fn run(
    opts: &ChaosOptions,
    mut say: impl FnMut(String),
    phases: Option<&tokio::sync::watch::Sender<crate::data_chaos::Phase>>,
) -> Result<ChaosReport, String> {
    let cfg = &opts.config;
    let mut plan = plan(opts)?;
    if let (Fault::SlowOrigin { region, .. }, Some(token)) = (&opts.fault, &opts.admin_token) {
        // Watch the PoPs that prefer the region now.
        let origin = format!("lb:{region}");
        let mut preferring = Vec::new();
        for n in opts
            .state
            .nodes
            .iter()
            .filter(|n| n.spec.role == Role::Edge)
        {
            if first_choice(n.spec.admin, token).await.as_deref() == Some(origin.as_str()) {
                preferring.push(n.spec.admin);
            }
        }
        if !preferring.is_empty() {
            plan.pops = Some(Watch::PopChoice(preferring, token.clone(), origin));
        }
    }
    let lo = LoadOptions {
        config: cfg.clone(),
        dns: plan.dns_server,
        duration: opts.duration,
        rate: opts.rate,
        max_requests: 1_000_000,
        new_connections: false,
        tls: None,
        http3: false,
        cacheable_only: false,
    };
    say(format!(
        "load: full deployment, {}/s from each of {} locations for {}s; {} at {:.1}s for {}s",
        opts.rate,
        cfg.client_locations.len(),
        opts.duration.as_secs_f64(),
        plan.target,
        opts.duration.as_secs_f64() / 5.0,
        opts.outage.as_secs_f64()
    ));
    let load = tokio::spawn(async move { load::run(&lo, Arch::Full, load::show_progress).await });
    let started = Instant::now();
    tokio::time::sleep(opts.duration / 5).await;
    let down_at = Instant::now();
    act(&plan.apply).await?;
    if let Some(p) = phases {
        p.send_replace(crate::data_chaos::Phase::Down(down_at));
    }
    eprintln!();
    say(format!(
        "  {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        plan.target
    ));
    let watches = [&plan.pops, &plan.dns, &plan.lb];
    let mut noticed: [Option<f64>; 3] = [None; 3];
    let up_at = down_at + opts.outage;
    while Instant::now() < up_at {
        for (i, w) in watches.iter().enumerate() {
            if let (None, Some(w)) = (noticed[i], w) {
                if w.holds(true).await {
                    noticed[i] = Some(down_at.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    act(&plan.revert).await?;
    let back_at = Instant::now();
    if let Some(p) = phases {
        p.send_replace(crate::data_chaos::Phase::Up(down_at, back_at));
    }
    say(format!(
        "  {:.1}s: repaired",
        started.elapsed().as_secs_f64()
    ));
    let mut recovered = None;
    let give_up = back_at + Duration::from_secs(30);
    while Instant::now() < give_up {
        let mut all = true;
        for w in watches.iter().copied().flatten() {
            all &= w.holds(false).await;
        }
        if all {
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
    let mean_ms = load::mean_ms(&runs).unwrap_or(0.0);
    let p99_ms = runs
        .iter()
        .map(|r| r.percentile_ms(0.99))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    Ok(ChaosReport {
        scenario: opts.fault.name(),
        target: plan.target,
        region: plan.region,
        seconds: opts.duration.as_secs_f64(),
        outage_seconds: opts.outage.as_secs_f64(),
        requests: runs.iter().map(|r| r.ok + r.failed).sum(),
        failed: runs.iter().map(|r| r.failed).sum(),
        failed_cacheable: count(true),
        failed_uncacheable: count(false),
        mean_ms: (mean_ms * 10.0).round() / 10.0,
        worst_location_p99_ms: (p99_ms * 10.0).round() / 10.0,
        errors: runs
            .iter()
            .flat_map(|r| r.errors.iter().cloned())
            .take(10)
            .collect(),
        edge_detect_seconds: noticed[0],
        dns_detect_seconds: noticed[1],
        lb_detect_seconds: noticed[2],
        watched: [plan.pops.is_some(), plan.dns.is_some(), plan.lb.is_some()],
        recovery_seconds: recovered,
    })
}

impl ChaosReport {
    pub fn markdown(&self) -> String {
        let s = |x: Option<f64>, watched: bool| match (x, watched) {
            (_, false) => "not concerned".to_owned(),
            (Some(v), true) => format!("{v:.1} s"),
            (None, true) => "not observed".to_owned(),
        };
        let mut out = format!(
            "# Chaos: {}\n\n{} for {:.0} s during {:.0} s of global load on the full deployment.\n\n\
             | measure | value |\n|---|---|\n\
             | requests | {} |\n| failed | {} |\n| failed, cacheable content | {} |\n| failed, uncacheable (portfolio) | {} |\n\
             | mean latency | {:.1} ms |\n| worst location's p99 | {:.1} ms |\n\
             | PoPs stopped using it after | {} |\n| DNS sent clients elsewhere after | {} |\n| balancer took the AZ out after | {} |\n\
             | recovery (RTO): taken back this long after the repair | {} |\n",
            self.scenario,
            self.target,
            self.outage_seconds,
            self.seconds,
            self.requests,
            self.failed,
            self.failed_cacheable,
            self.failed_uncacheable,
            self.mean_ms,
            self.worst_location_p99_ms,
            s(self.edge_detect_seconds, self.watched[0]),
            s(self.dns_detect_seconds, self.watched[1]),
            s(self.lb_detect_seconds, self.watched[2]),
            s(self.recovery_seconds, self.watched.iter().any(|w| *w)),
        );
        if !self.errors.is_empty() {
            out.push_str(&format!(
                "\nfirst errors:\n{}\n",
                self.errors
                    .iter()
                    .map(|e| format!("- {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_config::state::{NodeState, Status};

    /// The default deployment as endpoints.json would show it, every node with `pid`.
    fn options(fault: Fault, pid: u32) -> ChaosOptions {
        let config = Config::embedded_default();
        let nodes = config
            .nodes()
            .into_iter()
            .map(|spec| NodeState {
                spec,
                listen: None,
                pid: Some(pid),
                restarts: 0,
                version: None,
            })
            .collect();
        ChaosOptions {
            state: DeploymentState {
                deployment: "t".into(),
                zone: config.deployment.zone.clone(),
                status: Status::Running,
                config: "meridian.toml".into(),
                supervisor_pid: std::process::id(),
                supervisor_admin: ([127, 0, 0, 1], 9).into(),
                updated_at: 0,
                nodes,
                client_locations: Vec::new(),
                autoscaling: Vec::new(),
            },
            config,
            fault,
            admin_token: None,
            duration: Duration::from_secs(10),
            outage: Duration::from_secs(2),
            rate: 1.0,
        }
    }

    #[test]
    fn pids_that_signal_more_than_one_process_are_refused_before_anything_runs() {
        let faults = [
            Fault::KillPop {
                pop: "london".into(),
            },
            Fault::KillRegion {
                region: "eu-west-1".into(),
            },
            Fault::KillAz {
                az: "us-east-1a".into(),
            },
        ];
        for fault in faults {
            for bad in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
                let e = plan(&options(fault.clone(), bad)).err();
                assert!(
                    e.as_deref()
                        .is_some_and(|e| e.contains(&format!("pid {bad}"))),
                    "{fault:?} with pid {bad}: {e:?}"
                );
            }
            assert!(plan(&options(fault, 4242)).is_ok());
        }
    }

    #[test]
    fn wan_faults_carry_the_admin_token_and_need_it() {
        let fault = Fault::Partition {
            pop: "london".into(),
            region: "eu-west-1".into(),
        };
        let e = plan(&options(fault.clone(), 4242)).err();
        assert!(e.is_some_and(|e| e.contains("admin token")));
        let mut o = options(fault, 4242);
        o.admin_token = Some("t0ken".into());
        let p = plan(&o).unwrap();
        for a in [&p.apply, &p.revert] {
            assert!(
                matches!(a, Action::Wan(_, _, path, token) if path.starts_with("/partition") && token == "t0ken")
            );
        }
    }
}
