//! `meridian sim`: the simulated planet's latency model.

use super::deployment::load_config;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SimCmd {
    /// Print the modelled round trip from every client location to every region and PoP.
    ///
    /// Great-circle distance over light in fibre (200 km per ms one way), times the route
    /// inflation, plus the access cost, with the config's [[simulation.latency]] overrides.
    Latency {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (with the fibre-only physical limit) for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: SimCmd) -> Result<ExitCode> {
    let SimCmd::Latency { config, json } = command;
    let cfg = match load_config(config.as_deref()) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    let matrix = meridian_sim::World::new(&cfg).matrix();
    if json {
        println!("{}", serde_json::to_string_pretty(&matrix)?);
    } else {
        println!("{matrix}");
    }
    Ok(ExitCode::SUCCESS)
}
