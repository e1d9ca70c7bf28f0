//! `meridian up`: a whole deployment as supervised child processes.

use crate::fleet::Slot;
use meridian_config::state::{DeploymentState, NodeState, Status};
use meridian_config::{
    CheckProtocol, Config, HealthCheck, NodeSpec, Placement, Role, StatusMatcher,
};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge,
};
use meridian_telemetry::{Labels, Metrics};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub struct UpOptions {
    pub config: Config,
    /// The config text, copied into the state dir for the children to read.
    pub config_text: String,
    /// The config file, when there is one: children read it in place so that files it
    /// names by relative path (a zone file) are found.
    pub config_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The `meridian` binary to start nodes with (normally this one).
    pub exe: PathBuf,
    /// Run only the nodes `[[host]]` places on this host (`meridian agent --host`);
    /// None runs every node on this machine.
    pub host: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot prepare the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {addr} for {node}: {reason}\n  fix: stop whatever holds it (another `meridian up`?), or give this deployment its own [network] subnet")]
    AddressBusy {
        node: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("{} of {total} nodes were not healthy after {}s:\n{details}\n  logs: {logs}", .unhealthy, .waited.as_secs())]
    NotReady {
        unhealthy: usize,
        total: usize,
        waited: Duration,
        details: String,
        logs: String,
    },
}

struct Shared {
    opts: UpOptions,
    config_path: PathBuf,
    /// The config text the nodes run now (`apply.rs`).
    applied: tokio::sync::Mutex<String>,
    /// Every node, and every service instance's replacement home (inactive until used).
    slots: Vec<Arc<Slot>>,
    /// True once the deployment stops: what a slot started at run time is told too.
    stopping: watch::Receiver<bool>,
    /// The rollout running or last run (`rollout.rs`).
    rollout: crate::fleet::Progress,
    scaling: crate::autoscale_state::Scaling,
    status: Mutex<Status>,
    /// Serializes writes of endpoints.json (they share one temp file).
    write_lock: Mutex<()>,
    started: Instant,
    restarts_metric: Family<Labels, Counter>,
    up_metric: Family<Labels, Gauge>,
    /// Where nodes listen: behind the WAN's relays when this deployment runs the WAN.
    placement: Placement,
}

impl Shared {
    fn state(&self) -> DeploymentState {
        let cfg = &self.opts.config;
        DeploymentState {
            deployment: cfg.deployment.name.clone(),
            zone: cfg.deployment.zone.clone(),
            status: self
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            config: self.config_path.clone(),
            supervisor_pid: std::process::id(),
            supervisor_admin: admin_address(&self.opts),
            updated_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            nodes: self
                .slots
                .iter()
                .filter(|s| s.active.load(Ordering::Acquire))
                .map(|s| NodeState {
                    spec: s.spec.clone(),
                    listen: Some(self.placement.listen_of(&s.spec))
                        .filter(|l| *l != s.spec.address),
                    pid: *s.pid.lock().unwrap_or_else(|p| p.into_inner()),
                    restarts: s.restarts.load(Ordering::Relaxed),
                    version: (s.spec.role == Role::Service)
                        .then(|| s.version.lock().unwrap_or_else(|p| p.into_inner()).clone()),
                })
                .collect(),
            client_locations: meridian_config::state::ClientLocationState::all(cfg),
            autoscaling: self.scaling.capacities(),
        }
    }

    /// Rewrites endpoints.json; called whenever a pid or the status changes.
    fn publish(&self) {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.state().write(&self.opts.state_dir) {
            tracing::error!(error = %e, "cannot write endpoints.json");
        }
    }

    /// Nodes that run (replacement homes only while a rollout uses them).
    fn active_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.active.load(Ordering::Acquire))
            .count()
    }

    fn set_status(&self, s: Status) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
        self.publish();
    }

    fn event(&self, text: &str) {
        tracing::warn!("{text}");
        let line = format!(
            "{} {text}\n",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        let path = self.opts.state_dir.join("events.log");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// What rollouts (`rollout.rs`, `instances.rs`) use of the supervisor.
impl crate::fleet::Fleet for Shared {
    fn config(&self) -> &Config {
        &self.opts.config
    }
    fn state_dir(&self) -> &std::path::Path {
        &self.opts.state_dir
    }
    fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }
    fn applied(&self) -> &tokio::sync::Mutex<String> {
        &self.applied
    }
    fn slots(&self) -> &[Arc<Slot>] {
        &self.slots
    }
    fn supervise(self: Arc<Self>, slot: Arc<Slot>) {
        let stopping = self.stopping.clone();
        tokio::spawn(supervise(self, slot, stopping));
    }
    fn readiness(&self, spec: &NodeSpec) -> (SocketAddr, HealthCheck) {
        readiness_check(self, spec)
    }
    fn publish(&self) {
        Shared::publish(self)
    }
    fn event(&self, text: &str) {
        Shared::event(self, text)
    }
    fn rollout(&self) -> &crate::fleet::Progress {
        &self.rollout
    }
    fn scaling(&self) -> &crate::autoscale_state::Scaling {
        &self.scaling
    }
}

fn labels(spec: &NodeSpec) -> Labels {
    vec![
        ("node", spec.name.clone()),
        ("role", spec.role.as_str().to_owned()),
        ("region", spec.region.clone().unwrap_or_default()),
    ]
}

/// Runs the deployment until SIGINT or SIGTERM; returns after every child has exited.
pub async fn up(opts: UpOptions) -> Result<(), UpError> {
    let started = Instant::now();
    let cfg = &opts.config;
    let logs = opts.state_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| UpError::StateDir {
        path: logs.clone(),
        source,
    })?;
    let config_path = opts.state_dir.join("meridian.toml");
    // Owner-only: a config can hold secrets (a webhook URL with its token).
    meridian_http::tls::write_secret(&config_path, opts.config_text.as_bytes()).map_err(
        |source| UpError::StateDir {
            path: config_path.clone(),
            source,
        },
    )?;
    let config_path = match &opts.config_file {
        Some(f) => std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()),
        None => std::fs::canonicalize(&config_path).unwrap_or(config_path),
    };

    let mut nodes = cfg.nodes();
    if let Some(host) = &opts.host {
        nodes.retain(|n| cfg.host_of(n).is_some_and(|h| &h.name == host));
    }
    if nodes.iter().any(|n| n.role == Role::Db) {
        if let Err(e) = meridian_db::binaries() {
            // The rest of the deployment is still worth running: say what is missing, once.
            eprintln!("warning: the data tier will not run: {e}");
            nodes.retain(|n| n.role != Role::Db);
        } else if let Some(note) = meridian_db::kernel_path_missing() {
            eprintln!("note: {note}");
        }
    }
    if nodes.iter().any(|n| n.role == Role::Cache) {
        if let Err(e) = meridian_redis::redis_server() {
            eprintln!("warning: the cache tier will not run: {e}");
            nodes.retain(|n| n.role != Role::Cache);
        }
    }
    // This machine is every host: the one place the simulation decides where nodes listen
    // (behind the WAN's relays when there is a WAN), and each node is told so.
    let placement = if cfg.simulation.wan {
        Placement::BehindRelay
    } else {
        Placement::Direct
    };
    preflight(admin_address(&opts), &nodes, placement)?;
    crate::secrets::prepare(cfg, &opts.state_dir, opts.host.as_deref()).map_err(|e| {
        UpError::StateDir {
            path: e.path,
            source: e.source,
        }
    })?;

    let metrics = Metrics::new();
    let restarts_metric = metrics.register(
        "supervisor_restarts",
        "Times a node process was restarted after it exited",
        Family::<Labels, Counter>::default(),
    );
    let up_metric = metrics.register(
        "supervisor_node_up",
        "1 while the node's process is running",
        Family::<Labels, Gauge>::default(),
    );
    let rollout = crate::fleet::Progress::default();
    metrics.register(
        "supervisor_rollout",
        "Rollouts: 1 for each one's current state (running, succeeded, rolled_back, failed)",
        rollout.1.clone(),
    );
    let scaling = crate::autoscale_state::Scaling::default();
    scaling.register(&metrics);
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        placement,
        config_path,
        applied: tokio::sync::Mutex::new(opts.config_text.clone()),
        slots: crate::instances::with_replacements(cfg, &nodes)
            .into_iter()
            .map(|(n, active)| {
                Arc::new(Slot {
                    version: Mutex::new(crate::instances::initial_version(
                        &opts.state_dir,
                        cfg,
                        &n,
                    )),
                    spec: n,
                    pid: Mutex::new(None),
                    restarts: AtomicU32::new(0),
                    restart_asked: AtomicBool::new(false),
                    active: AtomicBool::new(active),
                })
            })
            .collect(),
        stopping: stopping_rx.clone(),
        rollout,
        scaling,
        status: Mutex::new(Status::Starting),
        write_lock: Mutex::new(()),
        started,
        restarts_metric,
        up_metric,
        opts,
    });
    for s in &shared.slots {
        let _ = shared.restarts_metric.get_or_create(&labels(&s.spec));
    }
    shared.publish();

    let (stop_admin_tx, stop_admin_rx) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(serve_admin(shared.clone(), metrics, async {
        let _ = stop_admin_rx.await;
    }));

    let mut runners = Vec::new();
    let signal = meridian_http::shutdown_signal();
    tokio::pin!(signal);
    let ready = tokio::select! {
        r = start_in_waves(&shared, &stopping_rx, &mut runners) => r,
        _ = &mut signal => Ok(()),
    };
    let result = match ready {
        Ok(()) if *stopping_rx.borrow() => Ok(()),
        Err(e) if shared.opts.host.is_none() => Err(e),
        ready => {
            // A host's agent keeps supervising its nodes: their peers on other hosts may
            // simply not be up yet, and nothing here can start them.
            if let Err(e) = ready {
                eprintln!("warning: {e}\n  the agent keeps supervising them; peers on other hosts may not be up yet");
            }
            shared.set_status(Status::Running);
            crate::autoscale::spawn(shared.clone());
            crate::table::print(
                &shared.opts.config,
                &shared.state(),
                &shared.opts.state_dir,
                shared.started.elapsed(),
            );
            (&mut signal).await;
            eprintln!("\nstopping {} nodes...", shared.active_count());
            Ok(())
        }
    };

    shared.scaling.stopped.store(true, Ordering::Release);
    shared.set_status(Status::Stopping);
    let _ = stopping_tx.send(true);
    stop_all(&shared, runners).await;
    let _ = stop_admin_tx.send(());
    let _ = admin.await;
    shared.set_status(Status::Stopped);
    if result.is_ok() {
        eprintln!("stopped; no node is running.");
    }
    result
}

/// Fails early, with the node's name, when an address is already taken.
fn preflight(admin: SocketAddr, nodes: &[NodeSpec], placement: Placement) -> Result<(), UpError> {
    let mut addrs = vec![("supervisor".to_owned(), admin)];
    for n in nodes {
        // Its listener, and the public address in front of it (the WAN's) when that differs.
        let listen = placement.listen_of(n);
        addrs.push((n.name.clone(), listen));
        if n.address != listen {
            addrs.push(("wan".to_owned(), n.address));
        }
        if n.admin != n.address {
            addrs.push((n.name.clone(), n.admin));
        }
    }
    for (node, addr) in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(UpError::AddressBusy {
                node,
                addr,
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

fn spawn_child(shared: &Shared, spec: &NodeSpec) -> std::io::Result<Child> {
    let log_path = shared
        .opts
        .state_dir
        .join("logs")
        .join(format!("{}.log", spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut cmd = Command::new(&shared.opts.exe);
    cmd.arg("run")
        .arg("--config")
        .arg(&shared.config_path)
        .arg("--node")
        .arg(&spec.name)
        .args((shared.placement == Placement::BehindRelay).then_some("--behind-relay"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches only `up`, which then stops
        // the nodes in order instead of racing them.
        .process_group(0);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let state_dir = std::fs::canonicalize(&shared.opts.state_dir)
        .unwrap_or_else(|_| shared.opts.state_dir.clone());
    cmd.env(crate::state_dir::STATE_DIR_ENV, state_dir);
    // If `up` dies without cleaning up (SIGKILL), the kernel stops the child too.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Keeps one node running: restart with exponential backoff, reset after a stable run.
async fn supervise(shared: Arc<Shared>, slot: Arc<Slot>, mut stopping: watch::Receiver<bool>) {
    let sup = &shared.opts.config.supervisor;
    let mut backoff = sup.restart_backoff;
    let name = slot.spec.name.clone();
    let gauge = shared.up_metric.get_or_create(&labels(&slot.spec)).clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        let began = Instant::now();
        let mut needs_a_person = false;
        let status = match spawn_child(&shared, &slot.spec) {
            Ok(mut child) => {
                *slot.pid.lock().unwrap_or_else(|p| p.into_inner()) = child.id();
                gauge.set(1);
                shared.publish();
                let status = child.wait().await;
                *slot.pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
                gauge.set(0);
                needs_a_person = status
                    .as_ref()
                    .is_ok_and(|s| s.code() == Some(i32::from(crate::node::EXIT_NEEDS_A_PERSON)));
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string())
            }
            Err(e) => format!("could not start: {e}"),
        };
        if *stopping.borrow() || !slot.active.load(Ordering::Acquire) {
            shared.publish();
            return;
        }
        if slot.restart_asked.swap(false, Ordering::AcqRel) {
            shared.event(&format!("node {name} restarted as asked ({status})"));
            continue;
        }
        if needs_a_person {
            // Starting it again cannot help; its log says what to do.
            shared.event(&format!(
                "node {name} stopped and is not restarted: it needs a person (see logs/{name}.log)"
            ));
            shared.publish();
            return;
        }
        if began.elapsed() > Duration::from_secs(10) {
            backoff = sup.restart_backoff;
        }
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        shared
            .restarts_metric
            .get_or_create(&labels(&slot.spec))
            .inc();
        shared.event(&format!(
            "node {name} exited ({status}); restarting in {}",
            meridian_config::units::format_duration(backoff)
        ));
        shared.publish();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping.changed() => return,
        }
        backoff = (backoff * 2).min(sup.restart_backoff_max);
    }
}

/// What `up` probes to call a node healthy.
fn readiness_check(shared: &Shared, spec: &NodeSpec) -> (SocketAddr, HealthCheck) {
    let lb_check = &shared.opts.config.load_balancer.health_check;
    let quick = HealthCheck {
        timeout: Duration::from_millis(800),
        ..lb_check.clone()
    };
    match spec.role {
        Role::Service => (spec.address, quick),
        // Our own nodes answer /health on their admin address; a balancer only says 200
        // when it has a healthy target to send traffic to.
        Role::Lb | Role::Dns | Role::Edge | Role::Wan | Role::Console | Role::Db | Role::Cache => (
            spec.admin,
            HealthCheck {
                protocol: CheckProtocol::Http,
                path: "/health".to_owned(),
                matcher: StatusMatcher(vec![(200, 200)]),
                body_contains: None,
                ..quick
            },
        ),
    }
}

/// Starts the WAN, the databases, the data path (instances and balancers), then the PoPs and
/// the DNS, so that every health check finds its targets up instead of starting from
/// failures.
async fn start_in_waves(
    shared: &Arc<Shared>,
    stopping: &watch::Receiver<bool>,
    runners: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), UpError> {
    let total = shared.slots.len();
    eprintln!(
        "starting {} nodes of `{}` ({} region(s))...",
        shared.active_count(),
        shared.opts.config.deployment.name,
        shared.opts.config.regions.len()
    );
    let role_of = |i: &usize| shared.slots[*i].spec.role;
    // The WAN first: it only relays, and database replicas reach their primary through it.
    // Then the databases, before the instances that use them.
    // The cache nodes start with the databases: nothing they need starts later.
    let db: Vec<usize> = (0..total)
        .filter(|i| matches!(role_of(i), Role::Db | Role::Cache))
        .collect();
    let data: Vec<usize> = (0..total)
        .filter(|i| matches!(role_of(i), Role::Service | Role::Lb))
        .filter(|i| shared.slots[*i].active.load(Ordering::Acquire))
        .collect();
    let wan: Vec<usize> = (0..total).filter(|i| role_of(i) == Role::Wan).collect();
    let edges: Vec<usize> = (0..total).filter(|i| role_of(i) == Role::Edge).collect();
    let dns: Vec<usize> = (0..total).filter(|i| role_of(i) == Role::Dns).collect();
    let console: Vec<usize> = (0..total).filter(|i| role_of(i) == Role::Console).collect();
    let deadline = Instant::now() + shared.opts.config.supervisor.ready_timeout;
    let mut ready = vec![false; total];
    for wave in [wan, db, data, edges, dns, console] {
        for &i in &wave {
            runners.push(tokio::spawn(supervise(
                shared.clone(),
                shared.slots[i].clone(),
                stopping.clone(),
            )));
        }
        wait_ready(shared, &wave, &mut ready, deadline).await?;
    }
    Ok(())
}

async fn wait_ready(
    shared: &Shared,
    wave: &[usize],
    ready: &mut [bool],
    deadline: Instant,
) -> Result<(), UpError> {
    let total = shared.slots.len();
    let mut last_detail = vec![String::from("not probed yet"); total];
    loop {
        for &i in wave {
            let slot = &shared.slots[i];
            if ready[i] {
                continue;
            }
            let (addr, check) = readiness_check(shared, &slot.spec);
            let out = meridian_health::probe(addr, &check).await;
            if out.healthy {
                ready[i] = true;
                eprintln!(
                    "  [{:>2}/{}] {} healthy ({:.1}s)",
                    ready.iter().filter(|r| **r).count(),
                    shared.active_count(),
                    slot.spec.name,
                    shared.started.elapsed().as_secs_f64()
                );
            } else {
                last_detail[i] = out.detail;
            }
        }
        if wave.iter().all(|&i| ready[i]) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let details: Vec<String> = shared
                .slots
                .iter()
                .enumerate()
                .filter(|(i, _)| wave.contains(i) && !ready[*i])
                .map(|(i, s)| format!("  - {}: {}", s.spec.name, last_detail[i]))
                .collect();
            return Err(UpError::NotReady {
                unhealthy: details.len(),
                total,
                waited: shared.opts.config.supervisor.ready_timeout,
                details: details.join("\n"),
                logs: shared.opts.state_dir.join("logs").display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Stops the front first: edges and load balancers (they drain in-flight requests to the
/// instances), then the rest; whatever is still running at the stop timeout is killed.
async fn stop_all(shared: &Shared, runners: Vec<tokio::task::JoinHandle<()>>) {
    let timeout = shared.opts.config.supervisor.stop_timeout;
    let deadline = Instant::now() + timeout;
    let pids_of = |role: Role| -> Vec<u32> {
        shared
            .slots
            .iter()
            .filter(|s| s.spec.role == role)
            .filter_map(|s| *s.pid.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    };
    let front = || [pids_of(Role::Edge), pids_of(Role::Lb)].concat();
    for pid in front() {
        crate::fleet::signal(pid, libc::SIGTERM);
    }
    let lb_deadline = Instant::now() + timeout.mul_f64(0.6);
    while !front().is_empty() && Instant::now() < lb_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = || -> Vec<u32> {
        shared
            .slots
            .iter()
            .filter_map(|s| *s.pid.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    };
    for pid in all() {
        crate::fleet::signal(pid, libc::SIGTERM);
    }
    while !all().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in &shared.slots {
        if let Some(pid) = *s.pid.lock().unwrap_or_else(|p| p.into_inner()) {
            shared.event(&format!(
                "node {} did not stop in time; killing it",
                s.spec.name
            ));
            crate::fleet::signal(pid, libc::SIGKILL);
        }
    }
    for r in runners {
        let _ = r.await;
    }
}

/// Where this supervisor serves `/state` and `/metrics`: a host agent on its host's agent
/// port, `up` on the deployment's supervisor address.
fn admin_address(opts: &UpOptions) -> SocketAddr {
    let cfg = &opts.config;
    match opts.host.as_deref().and_then(|h| cfg.host(h)) {
        Some(h) => cfg.agent_admin(h),
        None => cfg.supervisor_admin(),
    }
}

async fn serve_admin(
    shared: Arc<Shared>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let addr = admin_address(&shared.opts);
    let listener = match meridian_http::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("supervisor admin endpoint unavailable: {e}");
            return;
        }
    };
    let token = meridian_http::secrets::AdminToken::load(
        &shared.opts.config.secrets.admin_token,
        &shared.opts.state_dir,
    )
    .map_err(|e| tracing::error!("rollouts need the admin token: {e}"))
    .ok();
    // Rollouts, applies and restarts are admin actions like a purge: in the audit log.
    let audit = std::sync::Arc::new(meridian_http::audit::AuditLog::open_or_warn(
        &shared.opts.state_dir,
        "supervisor",
    ));
    let router = meridian_http::admin::Router::new(
        shared,
        "supervisor endpoints: /metrics, /health, /state, /rollout, /autoscaling, /restart, /config",
    )
    .token(token)
    .audit(audit);
    let router = crate::rollout::routes(router);
    crate::apply::routes(crate::restart::routes(crate::autoscale::routes(router)))
        .metrics(move |_| metrics.encode())
        .health(|_| serde_json::json!({ "status": "healthy", "role": "supervisor" }))
        .open(
            meridian_http::admin::ANY,
            "/state",
            |shared, _| async move {
                meridian_http::json(
                    http::StatusCode::OK,
                    serde_json::to_string(&shared.state()).unwrap_or_default(),
                )
            },
        )
        .serve(listener, shutdown)
        .await
}
