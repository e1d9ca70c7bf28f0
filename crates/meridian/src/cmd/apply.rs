//! `meridian apply`: a new config for the running deployment, shown as a plan (as
//! `terraform plan` reads), then taken in place by the nodes it changes (SIGHUP), each
//! checked to serve it. The plan itself is `meridian_config::diff`.

use super::deployment::{admin_token, load_config};
use super::validate::checks_beyond_parsing;
use anyhow::{Context, Result};
use meridian_config::diff::{digest, moved_nodes, plan, NodePlan};
use meridian_config::state::DeploymentState;
use meridian_config::Config;
use meridian_config::Role;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a node may take to report the new config after its SIGHUP.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The new config; by default the file the running deployment reads (edited in place).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The state dir of a running `meridian up`.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
    /// Apply without asking.
    #[arg(long)]
    yes: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    plan_only: bool,
}

pub async fn run(
    ApplyArgs {
        config,
        state_dir,
        yes,
        plan_only,
    }: ApplyArgs,
) -> Result<ExitCode> {
    let state = DeploymentState::read(&state_dir)?;
    let new_path = config.unwrap_or_else(|| state.config.clone());
    // A config that does not validate changes nothing: exit 2, as `validate` does.
    let (new, new_text) = match load_config(Some(&new_path)) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !checks_beyond_parsing(&new) {
        return Ok(ExitCode::from(2));
    }
    // What runs is the copy `up` made (the file the nodes read may be edited already).
    let running = state_dir.join("meridian.toml");
    let old_text = std::fs::read_to_string(&running)
        .with_context(|| format!("cannot read the running config {}", running.display()))?;
    let old = Config::parse(&old_text, &running.display().to_string()).map_err(|e| {
        anyhow::anyhow!(
            "the running config {} is unreadable:\n{e}",
            running.display()
        )
    })?;
    let plan = plan(&old, &new);
    if plan.is_empty() {
        println!(
            "No changes: the deployment already runs what {} says.",
            new_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Meridian will change the running deployment as follows:\n\n{plan}\n");
    // Restarting nodes one at a time cannot add, remove or move any: `up` owns that table.
    let moved = moved_nodes(&old, &new);
    let supervisor = plan.nodes.iter().any(|n| n.role.is_none());
    if !moved.is_empty() || supervisor {
        let what = if moved.is_empty() {
            "[supervisor] settings".to_owned()
        } else {
            format!("the nodes {}", moved.join(", "))
        };
        eprintln!(
            "error: the new config changes {what}, which only a new `meridian up` takes; nothing changed\n  = fix: stop `meridian up` and start it with the new config"
        );
        return Ok(ExitCode::FAILURE);
    }
    if plan_only {
        return Ok(ExitCode::SUCCESS);
    }
    if !confirmed(yes)? {
        println!("Apply cancelled; nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    let new_digest = digest(&new_text);
    write_config(&state.config, &new_path, &running, &new_text)?;
    let nodes: Vec<&NodePlan> = plan.reloads().collect();
    let total = nodes.len();
    if total > 0 {
        println!("Reloading {total} node(s) with config {new_digest}:");
    }
    let mut waits = Vec::new();
    for n in &nodes {
        let Some(node) = state.nodes.iter().find(|s| s.spec.name == n.node) else {
            continue;
        };
        let Some(pid) = node.pid else {
            waits.push((n.node.clone(), None));
            continue;
        };
        // SAFETY: a signal to a pid `up` reports as one of its running children.
        unsafe {
            libc::kill(pid as i32, libc::SIGHUP);
        }
        let admin = node.spec.admin;
        waits.push((
            n.node.clone(),
            Some(tokio::spawn(reloaded(admin, new_digest.clone()))),
        ));
    }
    let (mut done, mut failed) = (0, Vec::new());
    for (name, wait) in waits {
        let took = match wait {
            Some(t) => t.await.ok().flatten(),
            None => None,
        };
        done += 1;
        match took {
            Some(t) => println!(
                "  [{done}/{total}] {name:<24} reloaded in {} ms",
                t.as_millis()
            ),
            None => {
                println!("  [{done}/{total}] {name:<24} FAILED: did not report config {new_digest} within {}s (see its log)", RELOAD_TIMEOUT.as_secs());
                failed.push(name);
            }
        }
    }
    let restarts: Vec<&NodePlan> = plan.restarts().collect();
    if !restarts.is_empty() {
        let token = admin_token(&new, &state_dir)?;
        println!("Restarting {} node(s), one at a time:", restarts.len());
        for (i, n) in restarts.iter().enumerate() {
            let began = Instant::now();
            match restart(&state_dir, state.supervisor_admin, &token, n, &new_digest).await {
                Ok((from, to)) => println!(
                    "  [{}/{}] {:<24} restarted in {:.1} s (pid {from} → {to})",
                    i + 1,
                    restarts.len(),
                    n.node,
                    began.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    // The next node waits: its peers may be carrying this one's traffic.
                    println!(
                        "  [{}/{}] {:<24} FAILED: {e}",
                        i + 1,
                        restarts.len(),
                        n.node
                    );
                    failed.push(n.node.clone());
                    break;
                }
            }
        }
    }
    let outcome = if failed.is_empty() {
        format!("{total} node(s) reloaded, {} restarted", restarts.len())
    } else {
        format!(
            "{} of {} node(s) did not take it: {}",
            failed.len(),
            total + restarts.len(),
            failed.join(", ")
        )
    };
    event(
        &state_dir,
        &format!(
            "apply: config {new_digest} from {}: {outcome}",
            new_path.display()
        ),
    );
    if failed.is_empty() {
        println!("Apply complete: {outcome}.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Apply incomplete: {outcome}.");
        Ok(ExitCode::FAILURE)
    }
}

/// How long a restarted node may take to run again and answer healthy.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the supervisor to restart `node`, then waits for a new pid and for the node to
/// answer healthy (a PoP or DNS node: with the new config's digest): (old pid, new pid).
async fn restart(
    state_dir: &Path,
    supervisor: std::net::SocketAddr,
    token: &str,
    node: &NodePlan,
    want: &str,
) -> Result<(u32, u32)> {
    let pid_of = || -> Option<u32> {
        DeploymentState::read(state_dir)
            .ok()?
            .nodes
            .into_iter()
            .find(|n| n.spec.name == node.node)?
            .pid
    };
    let spec = DeploymentState::read(state_dir)?
        .nodes
        .into_iter()
        .find(|n| n.spec.name == node.node)
        .with_context(|| format!("{} is not in endpoints.json", node.node))?
        .spec;
    let path = format!(
        "/restart?node={}",
        meridian_http::percent::encode(&node.node)
    );
    let asked = meridian_http::client::call(
        supervisor,
        http::Method::POST,
        &path,
        Some(token),
        Duration::from_secs(5),
        1 << 16,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the supervisor at {supervisor}: {e}"))?;
    if asked.status != 202 {
        anyhow::bail!(
            "the supervisor answered {}: {}",
            asked.status,
            String::from_utf8_lossy(&asked.body)
        );
    }
    let from = serde_json::from_slice::<serde_json::Value>(&asked.body)
        .ok()
        .and_then(|v| v["pid"].as_u64())
        .unwrap_or(0) as u32;
    let began = Instant::now();
    let (addr, digest) = match spec.role {
        Role::Service => (spec.address, None),
        Role::Edge | Role::Dns => (spec.admin, Some(want)),
        _ => (spec.admin, None),
    };
    while began.elapsed() < RESTART_TIMEOUT {
        if let Some(to) = pid_of().filter(|p| *p != from) {
            if healthy(addr, digest).await {
                return Ok((from, to));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "not running and healthy again within {}s (see its log)",
        RESTART_TIMEOUT.as_secs()
    )
}

/// Whether `addr` answers `/health` with 200 (and, when given, the config digest).
async fn healthy(addr: std::net::SocketAddr, digest: Option<&str>) -> bool {
    match meridian_http::client::call(
        addr,
        http::Method::GET,
        "/health",
        None,
        Duration::from_secs(2),
        1 << 20,
    )
    .await
    {
        Ok(a) if a.status == 200 => digest.is_none_or(|d| {
            serde_json::from_slice::<serde_json::Value>(&a.body).unwrap_or_default()["config"] == d
        }),
        _ => false,
    }
}

/// The node's `/health` reports config `want`: how long that took, or None past the bound.
async fn reloaded(admin: std::net::SocketAddr, want: String) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < RELOAD_TIMEOUT {
        if healthy(admin, Some(&want)).await {
            return Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// Asks on a terminal; elsewhere `--yes` must say it.
fn confirmed(yes: bool) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not a terminal to ask on: pass --yes to apply this plan");
    }
    print!("Apply these changes? Only 'yes' is accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Writes the new config where the nodes read it (unless that is the file given) and
/// over the running copy in the state dir.
fn write_config(nodes_read: &Path, given: &Path, running: &Path, text: &str) -> Result<()> {
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .zip(std::fs::canonicalize(b).ok())
            .is_some_and(|(a, b)| a == b)
    };
    let mut paths = vec![running];
    if !same(nodes_read, given) && !same(nodes_read, running) {
        paths.push(nodes_read);
    }
    for path in paths {
        // Owner-only, through a temporary file renamed over the old one.
        meridian_http::tls::write_secret(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A line of the supervisor's event log, as its own events are written.
fn event(state_dir: &Path, text: &str) {
    use std::io::Write;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("events.log"))
    {
        let _ = f.write_all(format!("{secs} {text}\n").as_bytes());
    }
}
