//! `meridian up` (the whole deployment on this machine) and `meridian run` (one node).

use super::deployment::load_config;
use super::errors::describe;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Deployment config (meridian.toml); the embedded default when omitted.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where endpoints.json, logs and the config copy go.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Deployment config with `[[host]]` entries (the same file on every host).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// This host's name, as its `[[host]]` entry gives it.
    #[arg(long)]
    host: String,
    /// Where endpoints.json, logs and the config copy go on this host.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Deployment config; the embedded default when omitted.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The node's name, as `meridian validate` lists them (e.g. lb-us-east-1).
    #[arg(long)]
    node: String,
    /// Listen behind the simulated WAN's relays: on each public port plus 10000, the
    /// relay holding the public one. `meridian up` sets it when it runs the WAN; a node
    /// on a real host never needs it.
    #[arg(long, conflicts_with = "bind_any")]
    behind_relay: bool,
    /// Bind every interface on the configured ports: the config's address is not on this
    /// machine (a Kubernetes Service's ClusterIP in front of the pod). `meridian export
    /// kubernetes` runs each node's pod with it.
    #[arg(long)]
    bind_any: bool,
}

pub async fn up(UpArgs { config, state_dir }: UpArgs) -> Result<ExitCode> {
    supervise(config, state_dir, None).await
}

/// `meridian agent --host NAME`: the supervisor of `up`, for the nodes placed on one host.
pub async fn agent(
    AgentArgs {
        config,
        host,
        state_dir,
    }: AgentArgs,
) -> Result<ExitCode> {
    supervise(config, state_dir, Some(host)).await
}

async fn supervise(
    config: Option<PathBuf>,
    state_dir: PathBuf,
    host: Option<String>,
) -> Result<ExitCode> {
    meridian_telemetry::init_logs("warn");
    let config_path_arg = config.clone();
    let (config, config_text) = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(h) = &host {
        if config.host(h).is_none() {
            let known: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
            eprintln!(
                "error: the config has no host `{h}`\n  fix: {}",
                if known.is_empty() {
                    "add [[host]] entries to the config; `meridian up` runs every node on this machine".to_owned()
                } else {
                    format!("use one of: {}", known.join(", "))
                }
            );
            return Ok(ExitCode::from(2));
        }
    }
    let exe =
        std::env::current_exe().context("cannot find the meridian binary to start nodes with")?;
    meridian_supervisor::up(meridian_supervisor::UpOptions {
        config_file: config_path_arg,
        config,
        config_text,
        state_dir,
        exe,
        host,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(
    RunArgs {
        config,
        node,
        behind_relay,
        bind_any,
    }: RunArgs,
) -> Result<ExitCode> {
    meridian_telemetry::init_logs("info");
    let (parsed, text) = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // A node run from a file reloads it on SIGHUP (`meridian apply`).
    let source = config.map(|path| meridian_supervisor::Source {
        path,
        digest: meridian_config::diff::digest(&text),
    });
    let config = parsed;
    let placement = if behind_relay {
        meridian_config::Placement::BehindRelay
    } else if bind_any {
        meridian_config::Placement::AnyInterface
    } else {
        meridian_config::Placement::Direct
    };
    match meridian_supervisor::run_node(&config, &node, placement, source).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.needs_a_person() => {
            eprintln!("error: {}", describe(&anyhow::Error::new(e)));
            Ok(ExitCode::from(meridian_supervisor::EXIT_NEEDS_A_PERSON))
        }
        Err(e) => Err(e.into()),
    }
}
