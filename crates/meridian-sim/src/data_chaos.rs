//! `meridian chaos kill-db-primary`: freeze the database primary's node (its keeper and
//! every PostgreSQL process) under a write load through each region's writer endpoint,
//! thaw it, and compare every acknowledged commit with what the primary holds afterwards:
//! RPO (acknowledged writes missing) and RTO (fault to the first acknowledged write).

use crate::admin;
use meridian_config::state::DeploymentState;
use meridian_config::{Config, Role};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::NoTls;

#[derive(Debug, Clone)]
pub struct DataChaosOptions {
    pub config: Config,
    pub state: DeploymentState,
    /// The database superuser's password (`<state-dir>/db-password`).
    pub password: String,
    pub duration: Duration,
    pub outage: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataChaosReport {
    pub scenario: &'static str,
    /// The node that was primary and was frozen.
    pub frozen: String,
    /// The node that was primary at the end.
    pub primary_after: String,
    pub seconds: f64,
    pub outage_seconds: f64,
    /// Commits the writer endpoints acknowledged, per region and in all.
    pub acknowledged: u64,
    pub by_region: Vec<(String, u64)>,
    /// Acknowledged commits the primary does not hold afterwards (the RPO), and the time
    /// span they were acknowledged over.
    pub lost: u64,
    pub lost_span_seconds: f64,
    /// From the fault to the end of the longest silence in acknowledgements that began
    /// around it (the RTO); None when no write worked again before the end.
    pub rto_seconds: Option<f64>,
    pub errors: Vec<String>,
}

impl DataChaosReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# chaos {}: {} frozen for {:.0}s of {:.0}s\n\n",
            self.scenario, self.frozen, self.outage_seconds, self.seconds
        );
        s.push_str(&format!(
            "- primary afterwards: {}\n- commits acknowledged: {} ({})\n- RPO: {} acknowledged commit(s) lost{}\n- RTO: {}\n",
            self.primary_after,
            self.acknowledged,
            self.by_region
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
            match self.rto_seconds {
                Some(t) => format!("{t:.1}s from the fault to the next acknowledged write"),
                None => "no write worked again before the end".to_owned(),
            }
        ));
        for e in self.errors.iter().take(5) {
            s.push_str(&format!("- error: {e}\n"));
        }
        s
    }
}

/// One acknowledged commit: its id, the region whose endpoint took it, and when.
type Acked = Arc<Mutex<Vec<(i64, String, Instant)>>>;

/// Which database node is primary now, by asking every keeper.
async fn current_primary(cfg: &Config, state: &DeploymentState) -> Option<(String, SocketAddr)> {
    for n in state.nodes.iter().filter(|n| n.spec.role == Role::Db) {
        let Ok(f) = admin::call(
            n.spec.admin,
            http::Method::GET,
            "/status",
            None,
            Duration::from_secs(2),
        )
        .await
        else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&f.body) else {
            continue;
        };
        if v["role"] == "primary" && v["in_recovery"] == false {
            return Some((n.spec.name.clone(), cfg.public_address(&n.spec)));
        }
    }
    None
}

async fn connect(addr: SocketAddr, password: &str) -> Result<tokio_postgres::Client, String> {
    let mut c = tokio_postgres::Config::new();
    c.host(addr.ip().to_string())
        .port(addr.port())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("meridian chaos")
        .connect_timeout(Duration::from_secs(3));
    let (client, conn) = c.connect(NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

/// Every process of a database node: its keeper (`--node NAME`) and its PostgreSQL (the
/// data directory and every backend carry the node's name).
fn node_pids(name: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let mine = cmd.contains(&format!("--node {name}"))
                || cmd.contains(&format!("/db/{name}"))
                || cmd.contains(&format!("postgres: {name}:"));
            (mine && pid > 1 && pid != own).then_some(pid)
        })
        .collect()
}

fn signal(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on pids read from /proc just now, each > 1.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

/// Writes through `endpoint` until `until`, reconnecting after any error.
async fn write_load(
    region: String,
    endpoint: SocketAddr,
    password: String,
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
    until: Instant,
) {
    while Instant::now() < until {
        let client = match connect(endpoint, &password).await {
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

fn note(errors: &Mutex<Vec<String>>, e: String) {
    let mut v = errors.lock().unwrap_or_else(|p| p.into_inner());
    if v.len() < 50 && !v.contains(&e) {
        v.push(e);
    }
}

pub async fn kill_db_primary(
    opts: &DataChaosOptions,
    progress: impl Fn(&str),
) -> Result<DataChaosReport, String> {
    let cfg = &opts.config;
    let (frozen, primary_addr) = current_primary(cfg, &opts.state)
        .await
        .ok_or("no database node says it is primary: is the data tier running?")?;
    let setup = connect(primary_addr, &opts.password).await?;
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS meridian_chaos (id bigserial PRIMARY KEY, region text, at timestamptz DEFAULT now())",
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(setup);
    // One writer endpoint per region, on a node that is not the one to be frozen.
    let mut endpoints: Vec<(String, SocketAddr)> = Vec::new();
    for r in &cfg.regions {
        let node = opts.state.nodes.iter().find(|n| {
            n.spec.role == Role::Db
                && n.spec.region.as_deref() == Some(r.name.as_str())
                && n.spec.name != frozen
        });
        if let Some(n) = node {
            endpoints.push((r.name.clone(), cfg.db_writer_endpoint(&n.spec)));
        }
    }
    if endpoints.is_empty() {
        return Err("no writer endpoint outside the primary's node".into());
    }
    let started = Instant::now();
    let until = started + opts.duration;
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let loads: Vec<_> = endpoints
        .iter()
        .map(|(region, ep)| {
            tokio::spawn(write_load(
                region.clone(),
                *ep,
                opts.password.clone(),
                acked.clone(),
                errors.clone(),
                until,
            ))
        })
        .collect();
    progress(&format!(
        "writing through {} writer endpoint(s) for {:.0}s; freezing {frozen} in {:.0}s",
        endpoints.len(),
        opts.duration.as_secs_f64(),
        (opts.duration / 5).as_secs_f64()
    ));
    tokio::time::sleep(opts.duration / 5).await;
    let pids = node_pids(&frozen);
    if pids.is_empty() {
        return Err(format!("no process of {frozen} found to freeze"));
    }
    let fault_at = Instant::now();
    signal(&pids, libc::SIGSTOP);
    progress(&format!("froze {frozen} ({} processes)", pids.len()));
    tokio::time::sleep(opts.outage).await;
    signal(&pids, libc::SIGCONT);
    progress(&format!("thawed {frozen}"));
    for l in loads {
        let _ = l.await;
    }
    let (primary_after, addr) = current_primary(cfg, &opts.state)
        .await
        .ok_or("no database node says it is primary after the run")?;
    let check = connect(addr, &opts.password).await?;
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
    // Freezing a dozen processes is not one instant: a commit already on its way may be
    // acknowledged just after. Writes stop in the longest silence that begins around the
    // fault; the RTO is from the fault to the end of that silence.
    let mut times: Vec<Instant> = acked.iter().map(|(_, _, at)| *at).collect();
    times.sort();
    let around = fault_at
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(fault_at);
    let rto = times
        .windows(2)
        .filter(|w| w[0] >= around && w[1] > fault_at)
        .max_by_key(|w| w[1] - w[0])
        .map(|w| w[1].duration_since(fault_at).as_secs_f64());
    let by_region = endpoints
        .iter()
        .map(|(r, _)| {
            (
                r.clone(),
                acked.iter().filter(|(_, reg, _)| reg == r).count() as u64,
            )
        })
        .collect();
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(DataChaosReport {
        scenario: "kill-db-primary",
        frozen,
        primary_after,
        seconds: started.elapsed().as_secs_f64(),
        outage_seconds: opts.outage.as_secs_f64(),
        acknowledged: acked.len() as u64,
        by_region,
        lost: lost.len() as u64,
        lost_span_seconds: span,
        rto_seconds: rto,
        errors,
    })
}
