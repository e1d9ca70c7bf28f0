//! `meridian rollout`: a rolling update of a running deployment's service instances (ECS's
//! UpdateService with a new task definition). The supervisor of `meridian up` runs it;
//! this command starts it and shows its progress until it ends.

use super::deployment::{admin_token, running_deployment};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RolloutArgs {
    /// The version to roll out (the demo reports it in `x-service-version` and /health;
    /// one ending in `-broken` fails its health checks, to see the rollback).
    #[arg(long)]
    service_version: String,
    /// How traffic moves to the new version: `rolling` (ECS's rolling update), or
    /// CodeDeploy's traffic shifting through a green twin of the target groups: `canary`
    /// (--canary-percent, bake, then all), `linear` (--step-percent more every
    /// --step-interval) or `blue-green` (all at once once green is healthy).
    #[arg(long, default_value = "rolling", value_parser = ["rolling", "canary", "linear", "blue-green"])]
    strategy: String,
    /// canary: the share of traffic the new version takes during the bake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=99))]
    canary_percent: u32,
    /// canary: how long the new version takes its share while the rollback alarm
    /// (its 5xx rate against the old one's, its health checks) watches.
    #[arg(long, default_value = "20s")]
    bake: String,
    /// linear: the share added at each step.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=99))]
    step_percent: u32,
    /// linear: how long each step is watched before the next.
    #[arg(long, default_value = "10s")]
    step_interval: String,
    /// canary, linear, blue-green: how long the old instances stay, ready to take the
    /// traffic back, after all of it went to the new version.
    #[arg(long, default_value = "0s")]
    termination_wait: String,
    /// The state dir of the running `meridian up`.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
}

const CALL: Duration = Duration::from_secs(5);

/// Exit 0 when every instance runs the new version; 1 when the rollout was rolled back or
/// stopped (the reason on one line); 2 when it could not start.
pub async fn run(args: RolloutArgs) -> Result<ExitCode> {
    let (config, state) = running_deployment(&args.state_dir)?;
    let token = admin_token(&config, &args.state_dir)?;
    let admin = state.supervisor_admin;
    let enc = meridian_http::percent::encode;
    let path = format!(
        "/rollout?version={}&strategy={}&canary_percent={}&bake={}&step_percent={}&step_interval={}&termination_wait={}",
        enc(&args.service_version),
        enc(&args.strategy),
        args.canary_percent,
        enc(&args.bake),
        args.step_percent,
        enc(&args.step_interval),
        enc(&args.termination_wait)
    );
    let started = meridian_http::client::call(
        admin,
        http::Method::POST,
        &path,
        Some(&token),
        CALL,
        1 << 20,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the supervisor at {admin}: {e}"))?;
    if started.status != 202 {
        let body: serde_json::Value = serde_json::from_slice(&started.body).unwrap_or_default();
        let reason = match body["error"].as_str() {
            Some(e) => e.to_owned(),
            // Not the supervisor's own refusal: say what answered.
            None => format!(
                "{admin} answered {}: {}",
                started.status,
                String::from_utf8_lossy(&started.body).trim()
            ),
        };
        eprintln!("error: the rollout did not start: {reason}");
        return Ok(ExitCode::from(2));
    }
    let begun = Instant::now();
    let mut shown = 0;
    let mut bars = String::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report = match meridian_http::client::call(
            admin,
            http::Method::GET,
            "/rollout",
            None,
            CALL,
            4 << 20,
        )
        .await
        {
            Ok(a) if a.status == 200 => {
                unreachable_since = None;
                serde_json::from_slice::<serde_json::Value>(&a.body).unwrap_or_default()
            }
            Ok(a) => bail!("the supervisor answered {} to GET /rollout", a.status),
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(15) {
                    bail!("the supervisor at {admin} stopped answering: {e}");
                }
                continue;
            }
        };
        let steps = report["steps"].as_array().cloned().unwrap_or_default();
        for s in steps.iter().skip(shown) {
            eprintln!(
                "  [{:>5.1}s] {}",
                begun.elapsed().as_secs_f64(),
                s.as_str().unwrap_or_default()
            );
        }
        shown = shown.max(steps.len());
        let now = region_bars(&report);
        if now != bars {
            eprintln!("{now}");
            bars = now;
        }
        match report["state"].as_str() {
            Some("running") => continue,
            Some("succeeded") => {
                println!(
                    "rolled out: every instance runs version {} ({:.1}s)",
                    args.service_version,
                    begun.elapsed().as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some("rolled_back") => {
                println!(
                    "rolled back to version {}: {}",
                    report["previous"].as_str().unwrap_or("?"),
                    report["reason"].as_str().unwrap_or("no reason given")
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {
                println!(
                    "rollout stopped: {}",
                    report["reason"].as_str().unwrap_or("no reason given")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

/// One bar per region: `us-east-1  [######------]  2/4`.
fn region_bars(report: &serde_json::Value) -> String {
    let mut out = Vec::new();
    for r in report["regions"].as_array().into_iter().flatten() {
        let (done, total) = (
            r["done"].as_u64().unwrap_or(0) as usize,
            r["total"].as_u64().unwrap_or(0) as usize,
        );
        let width = 20;
        let fill = (done * width).checked_div(total).unwrap_or(width);
        out.push(format!(
            "  {:<16} [{}{}] {done}/{total}",
            r["region"].as_str().unwrap_or("?"),
            "#".repeat(fill),
            "-".repeat(width - fill)
        ));
    }
    out.join("\n")
}
