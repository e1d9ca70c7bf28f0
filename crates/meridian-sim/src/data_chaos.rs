//! The data tier under a fault: a write load through every region's writer endpoint that
//! records each acknowledged commit, and a watch that writes to every database node
//! directly, all through the run, to catch two nodes taking writes at once.
//!
//! `meridian chaos kill-db-primary` freezes the primary's node (its keeper and every
//! PostgreSQL process) and thaws it; `meridian chaos kill-region` of a region with database
//! nodes runs the same watch beside its traffic load while it freezes the whole region.
//! Afterwards every acknowledged commit is compared with what the primary holds: the RPO
//! (acknowledged writes missing, and the time they span) and the RTO (fault to the next
//! acknowledged write); and the report says who was promoted and when, the replica's lag
//! at the fault, whether the old primary took any write after the new one did, and
//! whether it came back as a standby.

use crate::admin;
use meridian_config::state::DeploymentState;
use meridian_config::{Config, Role};
use meridian_http::secrets::Secret;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::NoTls;

#[derive(Debug, Clone)]
pub struct DataChaosOptions {
    pub config: Config,
    pub state: DeploymentState,
    /// The database superuser's password (`<state-dir>/db-password`), re-read: a run
    /// across `meridian secrets rotate db-password` keeps logging in.
    pub password: Secret,
    pub duration: Duration,
    pub outage: Duration,
}

/// Where a run is, as the side that makes the fault says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    /// The fault began at this moment.
    Down(Instant),
    /// The fault began, and was undone at the second moment.
    Up(Instant, Instant),
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DataChaosReport {
    pub scenario: String,
    /// The node that was primary when the fault began.
    pub primary_before: String,
    /// The nodes that were frozen.
    pub frozen: Vec<String>,
    /// The node that was primary at the end.
    pub primary_after: String,
    pub seconds: f64,
    pub outage_seconds: f64,
    /// Commits the writer endpoints acknowledged, per client location (each writing
    /// through the writer endpoint of its nearest region that was not frozen) and in all.
    pub acknowledged: u64,
    pub by_location: Vec<(String, u64)>,
    /// Acknowledged commits the primary does not hold afterwards (the RPO), and the time
    /// span they were acknowledged over.
    pub lost: u64,
    pub lost_span_seconds: f64,
    /// From the fault to the end of the longest silence in acknowledgements that began
    /// around it (the RTO); None when no write worked again before the end.
    pub rto_seconds: Option<f64>,
    /// From the fault until another node said it was primary; None if none did.
    pub promoted_after_seconds: Option<f64>,
    /// The promoted node's replication lag (seconds and bytes) at its last report before
    /// the fault: what an asynchronous replica's promotion may lose.
    pub lag_at_fault_seconds: Option<f64>,
    pub lag_at_fault_bytes: Option<i64>,
    /// Direct writes each node took during the run (the watch writes to every node).
    pub direct_writes: Vec<(String, u64)>,
    /// Whether two nodes took direct writes at overlapping times (their first-to-last
    /// spans overlap): two writers at once.
    pub two_writers: bool,
    /// Direct writes the old primary took after the new primary took its first.
    pub old_primary_writes_after_promotion: u64,
    /// From the thaw until the old primary streamed as a standby again; None if it did
    /// not before the end (or it is still primary).
    pub old_primary_rejoined_after_seconds: Option<f64>,
    pub errors: Vec<String>,
}

impl DataChaosReport {
    /// Where the last report of a scenario is kept in a deployment's state directory, for
    /// `bench global`'s verdict on the RPO and RTO promises.
    pub fn latest_path(state_dir: &std::path::Path, scenario: &str) -> std::path::PathBuf {
        state_dir
            .join("chaos")
            .join(format!("{scenario}-data.json"))
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# chaos {}: {} frozen for {:.0}s of {:.0}s\n\n",
            self.scenario,
            self.frozen.join(", "),
            self.outage_seconds,
            self.seconds
        );
        let opt = |v: Option<f64>, what: &str| match v {
            Some(t) => format!("{t:.1}s"),
            None => what.to_owned(),
        };
        s.push_str(&format!(
            "- primary: {} before, {} afterwards (promoted after {})\n\
             - commits acknowledged: {} ({})\n\
             - RPO: {} acknowledged commit(s) lost{} (the promoted node's lag at the fault: {}{})\n\
             - RTO: {}\n\
             - two writers at once: {}; the old primary took {} write(s) after the new one took its first\n\
             - the old primary streamed as a standby again: {}\n",
            self.primary_before,
            self.primary_after,
            opt(self.promoted_after_seconds, "none"),
            self.acknowledged,
            self.by_location
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.lost,
            if self.lost > 0 {
                format!(" over {:.1}s", self.lost_span_seconds)
            } else {
                String::new()
            },
            opt(self.lag_at_fault_seconds, "unknown"),
            self.lag_at_fault_bytes
                .map(|b| format!(", {b} bytes"))
                .unwrap_or_default(),
            match self.rto_seconds {
                Some(t) => format!("{t:.1}s from the fault to the next acknowledged write"),
                None => "no write worked again before the end".to_owned(),
            },
            if self.two_writers { "YES" } else { "no" },
            self.old_primary_writes_after_promotion,
            opt(
                self.old_primary_rejoined_after_seconds,
                "not before the end"
            ),
        ));
        for e in self.errors.iter().take(5) {
            s.push_str(&format!("- error: {e}\n"));
        }
        s
    }
}

/// One acknowledged commit: its id, the client location that wrote it, and when.
type Acked = Arc<Mutex<Vec<(i64, String, Instant)>>>;

/// What one database node's keeper said, and when.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    primary: bool,
    /// A standby streaming from its primary (healthy) or a primary.
    healthy: bool,
    lag_seconds: f64,
    lag_bytes: i64,
}

/// A running watch: write loads, the direct writers and the status poller.
pub struct DataWatch {
    opts: DataChaosOptions,
    scenario: String,
    primary_before: String,
    frozen: Vec<String>,
    /// (client location, its writer endpoint, the address it writes from)
    endpoints: Vec<(String, SocketAddr, Option<std::net::IpAddr>)>,
    started: Instant,
    until: Instant,
    acked: Acked,
    direct: Arc<Mutex<Vec<(String, Instant)>>>,
    samples: Arc<Mutex<HashMap<String, Vec<Sample>>>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Which database node is primary now, by asking every keeper.
pub async fn current_primary(state: &DeploymentState) -> Option<(String, SocketAddr)> {
    for n in db_nodes(state) {
        if let Some(s) = status(n.spec.admin).await {
            if s.primary {
                return Some((n.spec.name.clone(), n.spec.address));
            }
        }
    }
    None
}

fn db_nodes(state: &DeploymentState) -> impl Iterator<Item = &meridian_config::state::NodeState> {
    state.nodes.iter().filter(|n| n.spec.role == Role::Db)
}

async fn status(admin: SocketAddr) -> Option<Sample> {
    let f = admin::call(
        admin,
        http::Method::GET,
        "/status",
        None,
        Duration::from_millis(800),
    )
    .await
    .ok()?;
    let v = serde_json::from_slice::<serde_json::Value>(&f.body).ok()?;
    let primary = v["role"] == "primary" && v["in_recovery"] == false;
    Some(Sample {
        at: Instant::now(),
        primary,
        healthy: f.status == 200,
        lag_seconds: v["lag_seconds"].as_f64().unwrap_or(0.0),
        lag_bytes: v["lag_bytes"].as_i64().unwrap_or(0),
    })
}

/// Why a login failed, and whether it was the password (so the previous one may do).
struct LoginError {
    refused: bool,
    why: String,
}

impl From<tokio_postgres::Error> for LoginError {
    fn from(e: tokio_postgres::Error) -> Self {
        LoginError {
            refused: e.code().is_some_and(|c| c.code().starts_with("28")),
            why: e.to_string(),
        }
    }
}

impl From<String> for LoginError {
    fn from(why: String) -> Self {
        LoginError {
            refused: false,
            why,
        }
    }
}

/// Logs in with the current password, then the previous one during its grace.
async fn login<Fut>(
    password: &Secret,
    attempt: impl FnMut(String) -> Fut,
) -> Result<tokio_postgres::Client, String>
where
    Fut: std::future::Future<Output = Result<tokio_postgres::Client, LoginError>>,
{
    meridian_http::secrets::try_each(password, attempt, |e: &LoginError| e.refused)
        .await
        .map_err(|e| e.why)
}

/// A connection from `source` (a client location's address, so the WAN places it there).
async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    password: &Secret,
) -> Result<tokio_postgres::Client, String> {
    let Some(source) = source else {
        return connect(addr, password).await;
    };
    login(password, |pw| connect_from_with(addr, source, pw)).await
}

async fn connect_from_with(
    addr: SocketAddr,
    source: std::net::IpAddr,
    password: String,
) -> Result<tokio_postgres::Client, LoginError> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("binding {source}: {e}"))?;
    let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .map_err(|_| format!("no connection to {addr} within 2s"))?
        .map_err(|e| e.to_string())?;
    let (client, conn) = pg_config(&password).connect_raw(stream, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn pg_config(password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("meridian chaos")
        .connect_timeout(Duration::from_secs(2));
    c
}

async fn connect(addr: SocketAddr, password: &Secret) -> Result<tokio_postgres::Client, String> {
    login(password, |pw| connect_with(addr, pw)).await
}

async fn connect_with(
    addr: SocketAddr,
    password: String,
) -> Result<tokio_postgres::Client, LoginError> {
    let mut c = tokio_postgres::Config::new();
    c.host(addr.ip().to_string())
        .port(addr.port())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("meridian chaos")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = c.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Writes through `endpoint` from `source` until `until`, reconnecting after any error.
async fn write_load(
    region: String,
    endpoint: SocketAddr,
    source: Option<std::net::IpAddr>,
    password: Secret,
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
    until: Instant,
) {
    while Instant::now() < until {
        let client = match connect_from(endpoint, source, &password).await {
            Ok(c) => c,
            Err(e) => {
                note(&errors, format!("{region}: connect: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while Instant::now() < until {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&region];
            let insert = client.query_one(
                "INSERT INTO meridian_chaos (region) VALUES ($1) RETURNING id",
                &params,
            );
            match tokio::time::timeout(Duration::from_secs(5), insert).await {
                Ok(Ok(row)) => acked.lock().unwrap_or_else(|p| p.into_inner()).push((
                    row.get(0),
                    region.clone(),
                    Instant::now(),
                )),
                Ok(Err(e)) => {
                    note(&errors, format!("{region}: {e}"));
                    break;
                }
                Err(_) => {
                    note(&errors, format!("{region}: no answer within 5s"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Writes to one node's PostgreSQL directly, not through an endpoint, until `until`:
/// a standby refuses; a primary takes it. Every write it took is recorded.
async fn direct_writes(
    node: String,
    addr: SocketAddr,
    password: Secret,
    took: Arc<Mutex<Vec<(String, Instant)>>>,
    until: Instant,
) {
    while Instant::now() < until {
        let Ok(Ok(client)) =
            tokio::time::timeout(Duration::from_secs(1), connect(addr, &password)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while Instant::now() < until {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&node];
            let insert = client.execute(
                "INSERT INTO meridian_chaos_direct (node) VALUES ($1)",
                &params,
            );
            match tokio::time::timeout(Duration::from_secs(1), insert).await {
                Ok(Ok(_)) => took
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((node.clone(), Instant::now())),
                // A standby: read-only. Ask again in a moment, on the same connection.
                Ok(Err(e)) if e.as_db_error().is_some() && !client.is_closed() => {}
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Asks every keeper for its status every quarter second until `until`.
async fn poll_status(
    nodes: Vec<(String, SocketAddr)>,
    samples: Arc<Mutex<HashMap<String, Vec<Sample>>>>,
    until: Instant,
) {
    while Instant::now() < until {
        let asks = nodes
            .iter()
            .map(|(n, a)| async move { (n.clone(), status(*a).await) });
        for (n, s) in futures_util::future::join_all(asks).await {
            if let Some(s) = s {
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(n)
                    .or_default()
                    .push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn note(errors: &Mutex<Vec<String>>, e: String) {
    let mut v = errors.lock().unwrap_or_else(|p| p.into_inner());
    if v.len() < 50 && !v.contains(&e) {
        v.push(e);
    }
}

impl DataWatch {
    /// Makes the tables, and starts the write loads (through a writer endpoint of every
    /// region with a database node outside `frozen`), the direct writers and the poller,
    /// for the run's whole duration from now. `frozen` None: the primary's node.
    pub async fn start(
        opts: &DataChaosOptions,
        scenario: &str,
        frozen: Option<Vec<String>>,
    ) -> Result<DataWatch, String> {
        let cfg = &opts.config;
        let (primary_before, primary_addr) = current_primary(&opts.state)
            .await
            .ok_or("no database node says it is primary: is the data tier running?")?;
        let frozen = frozen.unwrap_or_else(|| vec![primary_before.clone()]);
        let setup = connect(primary_addr, &opts.password).await?;
        setup
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS meridian_chaos (id bigserial PRIMARY KEY, region text, at timestamptz DEFAULT now()); \
                 CREATE TABLE IF NOT EXISTS meridian_chaos_direct (id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT now())",
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(setup);
        // Every client location writes through the writer endpoint of its nearest region
        // that keeps a database node; without client locations, each such region does.
        let mut regional: Vec<(String, SocketAddr)> = Vec::new();
        for r in &cfg.regions {
            let node = db_nodes(&opts.state).find(|n| {
                n.spec.region.as_deref() == Some(r.name.as_str()) && !frozen.contains(&n.spec.name)
            });
            if let Some(n) = node {
                regional.push((r.name.clone(), cfg.db_writer_endpoint(&n.spec)));
            }
        }
        if regional.is_empty() {
            return Err("no writer endpoint outside the nodes to be frozen".into());
        }
        let world = crate::World::new(cfg);
        let mut endpoints: Vec<(String, SocketAddr, Option<std::net::IpAddr>)> = Vec::new();
        for c in &cfg.client_locations {
            let Some(from) = world.place(crate::world::PlaceKind::Client, &c.name) else {
                continue;
            };
            let nearest = regional.iter().min_by_key(|(r, _)| {
                world
                    .place(crate::world::PlaceKind::Region, r)
                    .map(|to| world.rtt(from, to))
                    .unwrap_or(Duration::MAX)
            });
            if let Some((_, ep)) = nearest {
                let source = cfg.client_source(&c.name).map(|net| net.host(2));
                endpoints.push((c.name.clone(), *ep, source));
            }
        }
        if endpoints.is_empty() {
            endpoints = regional.into_iter().map(|(r, ep)| (r, ep, None)).collect();
        }
        let started = Instant::now();
        let until = started + opts.duration;
        let acked: Acked = Arc::default();
        let direct: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let samples: Arc<Mutex<HashMap<String, Vec<Sample>>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for (location, ep, source) in &endpoints {
            tasks.push(tokio::spawn(write_load(
                location.clone(),
                *ep,
                *source,
                opts.password.clone(),
                acked.clone(),
                errors.clone(),
                until,
            )));
        }
        let mut keepers = Vec::new();
        for n in db_nodes(&opts.state) {
            tasks.push(tokio::spawn(direct_writes(
                n.spec.name.clone(),
                n.spec.address,
                opts.password.clone(),
                direct.clone(),
                until,
            )));
            keepers.push((n.spec.name.clone(), n.spec.admin));
        }
        tasks.push(tokio::spawn(poll_status(keepers, samples.clone(), until)));
        Ok(DataWatch {
            opts: opts.clone(),
            scenario: scenario.to_owned(),
            primary_before,
            frozen,
            endpoints,
            started,
            until,
            acked,
            direct,
            samples,
            errors,
            tasks,
        })
    }

    pub fn frozen(&self) -> &[String] {
        &self.frozen
    }

    /// How many client locations write, for the progress line.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Waits for the run's end, then compares and reports. `fault` is when the fault began
    /// and was undone.
    pub async fn finish(self, fault: Phase) -> Result<DataChaosReport, String> {
        let (fault_at, thawed_at) = match fault {
            Phase::Up(down, up) => (down, Some(up)),
            Phase::Down(down) => (down, None),
            Phase::Before => return Err("the fault never began".into()),
        };
        tokio::time::sleep_until(self.until).await;
        for t in self.tasks {
            let _ = t.await;
        }
        let (primary_after, addr) = current_primary(&self.opts.state)
            .await
            .ok_or("no database node says it is primary after the run")?;
        let check = connect(addr, &self.opts.password).await?;
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ids: Vec<i64> = acked.iter().map(|(id, _, _)| *id).collect();
        let rows = check
            .query("SELECT id FROM meridian_chaos WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(|e| e.to_string())?;
        let held: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        let lost: Vec<&(i64, String, Instant)> = acked
            .iter()
            .filter(|(id, _, _)| !held.contains(id))
            .collect();
        let span = match (lost.first(), lost.last()) {
            (Some(a), Some(b)) => b.2.duration_since(a.2).as_secs_f64(),
            _ => 0.0,
        };
        let mut times: Vec<Instant> = acked.iter().map(|(_, _, at)| *at).collect();
        times.sort();
        let rto = recovery(&times, fault_at);
        let by_location = self
            .endpoints
            .iter()
            .map(|(r, _, _)| {
                (
                    r.clone(),
                    acked.iter().filter(|(_, reg, _)| reg == r).count() as u64,
                )
            })
            .collect();

        let samples = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let promoted = samples
            .iter()
            .filter(|(n, _)| **n != self.primary_before)
            .filter_map(|(n, v)| {
                v.iter()
                    .find(|s| s.at > fault_at && s.primary)
                    .map(|s| (n.clone(), s.at))
            })
            .min_by_key(|(_, at)| *at);
        let before_fault = promoted
            .as_ref()
            .and_then(|(n, _)| samples.get(n)?.iter().rfind(|s| s.at <= fault_at).cloned());
        let rejoined = thawed_at.and_then(|up| {
            samples
                .get(&self.primary_before)?
                .iter()
                .find(|s| s.at > up && !s.primary && s.healthy)
                .map(|s| s.at.duration_since(up).as_secs_f64())
        });

        let direct = self
            .direct
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut spans: Vec<(String, Instant, Instant, u64)> = Vec::new();
        for (node, at) in &direct {
            match spans.iter_mut().find(|s| &s.0 == node) {
                Some(s) => {
                    s.1 = s.1.min(*at);
                    s.2 = s.2.max(*at);
                    s.3 += 1;
                }
                None => spans.push((node.clone(), *at, *at, 1)),
            }
        }
        let two_writers = spans
            .iter()
            .enumerate()
            .any(|(i, a)| spans[i + 1..].iter().any(|b| a.1 <= b.2 && b.1 <= a.2));
        let new_first = direct
            .iter()
            .filter(|(n, _)| *n != self.primary_before)
            .map(|(_, at)| *at)
            .min();
        let old_after = new_first.map_or(0, |first| {
            direct
                .iter()
                .filter(|(n, at)| *n == self.primary_before && *at > first)
                .count() as u64
        });
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(DataChaosReport {
            scenario: self.scenario,
            primary_before: self.primary_before,
            frozen: self.frozen,
            primary_after,
            seconds: self.started.elapsed().as_secs_f64(),
            outage_seconds: thawed_at
                .map(|up| up.duration_since(fault_at).as_secs_f64())
                .unwrap_or(0.0),
            acknowledged: acked.len() as u64,
            by_location,
            lost: lost.len() as u64,
            lost_span_seconds: span,
            rto_seconds: rto,
            promoted_after_seconds: promoted
                .map(|(_, at)| at.duration_since(fault_at).as_secs_f64()),
            lag_at_fault_seconds: before_fault.as_ref().map(|s| s.lag_seconds),
            lag_at_fault_bytes: before_fault.as_ref().map(|s| s.lag_bytes),
            direct_writes: spans.iter().map(|s| (s.0.clone(), s.3)).collect(),
            two_writers,
            old_primary_writes_after_promotion: old_after,
            old_primary_rejoined_after_seconds: rejoined,
            errors,
        })
    }
}

/// The processes of the named nodes, from the deployment's state file.
pub fn node_pids(state: &DeploymentState, names: &[String]) -> Vec<u32> {
    state
        .nodes
        .iter()
        .filter(|n| names.contains(&n.spec.name))
        .filter_map(|n| n.pid)
        .collect()
}

/// `meridian chaos kill-db-primary`: freeze the primary's node a fifth into the run,
/// thaw it after the outage, and report.
pub async fn kill_db_primary(
    opts: &DataChaosOptions,
    progress: impl Fn(&str),
) -> Result<DataChaosReport, String> {
    let watch = DataWatch::start(opts, "kill-db-primary", None).await?;
    let frozen = watch.frozen().to_vec();
    let pids = node_pids(&opts.state, &frozen);
    if pids.is_empty() {
        return Err(format!(
            "no process of {} in endpoints.json",
            frozen.join(", ")
        ));
    }
    progress(&format!(
        "writing from {} client location(s) through writer endpoints for {:.0}s; freezing {} in {:.0}s",
        watch.endpoints(),
        opts.duration.as_secs_f64(),
        frozen.join(", "),
        (opts.duration / 5).as_secs_f64()
    ));
    tokio::time::sleep(opts.duration / 5).await;
    let down = Instant::now();
    crate::signals::signal_nodes(&pids, libc::SIGSTOP)?;
    progress(&format!("froze {}", frozen.join(", ")));
    tokio::time::sleep(opts.outage).await;
    crate::signals::signal_nodes(&pids, libc::SIGCONT)?;
    let up = Instant::now();
    progress(&format!("thawed {}", frozen.join(", ")));
    watch.finish(Phase::Up(down, up)).await
}

/// Follows a fault made by someone else (`chaos kill-region`): reports when `phases` says
/// the fault began and ended.
pub async fn observe(
    watch: DataWatch,
    mut phases: watch::Receiver<Phase>,
) -> Result<DataChaosReport, String> {
    let until = watch.until;
    let last = loop {
        let now = *phases.borrow_and_update();
        if matches!(now, Phase::Up(..)) || Instant::now() >= until {
            break now;
        }
        if tokio::time::timeout_at(until, phases.changed())
            .await
            .is_err()
        {
            break *phases.borrow();
        }
    };
    watch.finish(last).await
}

/// The RTO from sorted acknowledgement times: from the fault to the end of the longest
/// silence in acknowledgements that began around it. Freezing a dozen processes is not one
/// instant (a commit already on its way may be acknowledged just after), so a silence
/// that begins up to [`FAULT_SPREAD`] either side of the fault counts; a later one is not
/// the fault's (a run whose writes never stopped once reported its last pause as the RTO).
/// A longest silence no longer than writes' usual pauses means they never stopped: then
/// the RTO is the wait for the first write after the fault. None when no write was
/// acknowledged after the fault.
fn recovery(times: &[Instant], fault_at: Instant) -> Option<f64> {
    let from = fault_at.checked_sub(FAULT_SPREAD).unwrap_or(fault_at);
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or_default();
    let stopped = (usual * 4).max(Duration::from_millis(100));
    let first_after = *times.iter().find(|t| **t > fault_at)?;
    let end = times
        .windows(2)
        .filter(|w| w[0] >= from && w[0] <= fault_at + FAULT_SPREAD && w[1] > fault_at)
        .filter(|w| w[1] - w[0] > stopped)
        .max_by_key(|w| w[1] - w[0])
        .map_or(first_after, |w| w[1]);
    Some(end.duration_since(fault_at).as_secs_f64())
}

/// How far from the fault's instant the silence it causes may begin.
const FAULT_SPREAD: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rto_is_the_silence_the_fault_began_not_a_later_pause() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let fault = at(6_000);
        // Writes every 50 ms that never stop, with a 400 ms pause 18 s after the fault.
        let mut steady: Vec<Instant> = (0..600).map(|i| at(i * 50)).collect();
        steady.retain(|t| *t < at(24_000) || *t > at(24_400));
        let rto = recovery(&steady, fault).unwrap();
        assert!(rto <= 0.05, "{rto}");
        // Writes stop 300 ms after the fault and resume 6 s later.
        let stalled: Vec<Instant> = (0..600)
            .map(|i| at(i * 50))
            .filter(|t| *t <= at(6_300) || *t >= at(12_300))
            .collect();
        let rto = recovery(&stalled, fault).unwrap();
        assert!((rto - 6.3).abs() < 0.01, "{rto}");
        // Nothing acknowledged after the fault.
        let none: Vec<Instant> = (0..100).map(|i| at(i * 50)).collect();
        assert_eq!(recovery(&none, fault), None);
    }
}
