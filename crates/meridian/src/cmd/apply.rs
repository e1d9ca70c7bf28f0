//! `meridian apply`: a new config for the running deployment, shown as a plan (as
//! `terraform plan` reads), then taken in place by the nodes it changes. The CLI checks
//! the config and shows the plan; each supervisor (`meridian up`'s, or every host's
//! `meridian agent` with `--agents`) carries it out on its own nodes
//! (`meridian_supervisor::apply`), so a change reaches hosts this machine cannot signal.

use super::deployment::{admin_token, load_config};
use super::validate::checks_beyond_parsing;
use anyhow::{Context, Result};
use meridian_config::state::DeploymentState;
use meridian_supervisor::apply::{Applied, RESTART_TIMEOUT};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The new config; by default the file the running deployment reads (edited in place).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The state dir of a running `meridian up`.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
    /// Send the config to the agent of every `[[host]]` it places nodes on, one host at a
    /// time, instead of to the `meridian up` of --state-dir.
    #[arg(long)]
    agents: bool,
    /// Apply without asking.
    #[arg(long)]
    yes: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    plan_only: bool,
}

/// A supervisor that takes the config: `up`'s, or one host's agent.
struct Supervisor {
    /// `local`, or the host's name.
    name: String,
    admin: SocketAddr,
}

pub async fn run(
    ApplyArgs {
        config,
        state_dir,
        agents,
        yes,
        plan_only,
    }: ApplyArgs,
) -> Result<ExitCode> {
    let new_path = match (&config, agents) {
        (Some(c), _) => c.clone(),
        (None, false) => DeploymentState::read(&state_dir)?.config,
        (None, true) => anyhow::bail!("--agents needs the new config: pass --config FILE"),
    };
    // A config that does not validate changes nothing: exit 2, as `validate` does.
    let (new, new_text) = match load_config(Some(&new_path)) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !checks_beyond_parsing(&new) {
        return Ok(ExitCode::from(2));
    }
    let supervisors: Vec<Supervisor> = if agents {
        if new.hosts.is_empty() {
            anyhow::bail!(
                "{} has no [[host]]: --agents sends a config to each host's agent; without it, apply reaches the `meridian up` of --state-dir",
                new_path.display()
            );
        }
        new.hosts
            .iter()
            .map(|h| Supervisor {
                name: h.name.clone(),
                admin: new.agent_admin(h),
            })
            .collect()
    } else {
        let state = DeploymentState::read(&state_dir)?;
        vec![Supervisor {
            name: "local".to_owned(),
            admin: state.supervisor_admin,
        }]
    };
    let token = admin_token(&new, &state_dir)?;

    // Each supervisor plans against what it runs: nothing changes yet.
    let mut plans = Vec::new();
    for s in &supervisors {
        match send(s, &token, &new_text, true, Duration::from_secs(30)).await? {
            Ok(p) => plans.push(p),
            Err(code) => return Ok(code),
        }
    }
    if plans.iter().all(|p| p.reloads + p.restarts == 0) {
        println!(
            "No changes: the deployment already runs what {} says.",
            new_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Meridian will change the running deployment as follows:\n");
    for (s, p) in supervisors.iter().zip(&plans) {
        if agents {
            println!("host {} ({}):", s.name, s.admin);
        }
        println!("{}\n", p.plan);
    }
    if plan_only {
        return Ok(ExitCode::SUCCESS);
    }
    if !confirmed(yes)? {
        println!("Apply cancelled; nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    let (mut reloaded, mut restarted, mut failed) = (0, 0, Vec::new());
    for (s, p) in supervisors.iter().zip(&plans) {
        if p.reloads + p.restarts == 0 {
            continue;
        }
        if agents {
            println!("host {}:", s.name);
        }
        // Every reload waits at most 10 s (together), every restart its own bound.
        let bound = Duration::from_secs(30) + RESTART_TIMEOUT * p.restarts as u32;
        let done = match send(s, &token, &new_text, false, bound).await? {
            Ok(done) => done,
            Err(code) => return Ok(code),
        };
        print_outcome(&done);
        reloaded += done.reloads;
        restarted += done.restarts;
        failed.extend(done.nodes.iter().filter(|n| !n.ok).map(|n| n.node.clone()));
        if !failed.is_empty() {
            // The next host waits: this one's nodes did not all take the config.
            break;
        }
    }
    if failed.is_empty() {
        println!("Apply complete: {reloaded} node(s) reloaded, {restarted} restarted.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "Apply incomplete: {} of {} node(s) did not take it: {}.",
            failed.len(),
            reloaded + restarted,
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `POST /config` to one supervisor: its answer, or the exit code for a refusal (2: the
/// config does not validate there; 1: it cannot be applied, or was not).
async fn send(
    to: &Supervisor,
    token: &str,
    text: &str,
    plan_only: bool,
    bound: Duration,
) -> Result<Result<Applied, ExitCode>> {
    let path = if plan_only {
        "/config?plan=only"
    } else {
        "/config"
    };
    let req = http::Request::post(path)
        .header(http::header::HOST, to.admin.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/toml")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            text.to_owned(),
        )))?;
    let who = if to.name == "local" {
        format!("the supervisor at {}", to.admin)
    } else {
        format!("the agent of host {} at {}", to.name, to.admin)
    };
    let answer = meridian_http::client::fetch(to.admin, req, bound, 1 << 20)
        .await
        .map_err(|e| anyhow::anyhow!("{who}: {e}"))?;
    if answer.status == 200 {
        return serde_json::from_slice(&answer.body)
            .map(Ok)
            .with_context(|| format!("{who} answered what is not an apply report"));
    }
    let error = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    let (code, fix) = match answer.status {
        409 => (1, "stop the deployment and start it with the new config"),
        422 => (2, "`meridian validate` on that host shows every error"),
        401 => (
            1,
            "the admin token differs: use the deployment's [secrets] admin_token",
        ),
        _ => (1, "see the supervisor's log"),
    };
    eprintln!("error: {who}: {error}\n  = fix: {fix}");
    Ok(Err(ExitCode::from(code)))
}

/// One supervisor's report, a line per node.
fn print_outcome(done: &Applied) {
    let mut shown = (0, 0);
    for n in &done.nodes {
        let (i, of) = if n.action == "reload" {
            if shown.0 == 0 {
                println!(
                    "Reloading {} node(s) with config {}:",
                    done.reloads, done.config
                );
            }
            shown.0 += 1;
            (shown.0, done.reloads)
        } else {
            if shown.1 == 0 {
                println!("Restarting {} node(s), one at a time:", done.restarts);
            }
            shown.1 += 1;
            (shown.1, done.restarts)
        };
        match (&n.error, n.pids) {
            (Some(e), _) => println!("  [{i}/{of}] {:<24} FAILED: {e}", n.node),
            (None, Some((from, to))) => println!(
                "  [{i}/{of}] {:<24} restarted in {:.1} s (pid {from} → {to})",
                n.node,
                n.millis as f64 / 1000.0
            ),
            (None, None) => println!("  [{i}/{of}] {:<24} reloaded in {} ms", n.node, n.millis),
        }
    }
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
