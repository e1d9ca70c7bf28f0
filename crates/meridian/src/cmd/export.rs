//! `meridian export`: the console's dashboards and alarms for Grafana and Prometheus.

use super::deployment::load_config;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ExportCmd {
    /// A Grafana dashboard (JSON) with the console's panels over Prometheus.
    Grafana {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Prometheus recording and alerting rules (5xxErrorRate, CacheHitRate,
    /// HealthyHostCount, and one alert per [[console.alarm]]), for `promtool check rules`.
    PrometheusRules {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

pub fn run(command: ExportCmd) -> Result<ExitCode> {
    let (config, out) = match &command {
        ExportCmd::Grafana { config, out } | ExportCmd::PrometheusRules { config, out } => {
            (config, out)
        }
    };
    let cfg = match load_config(config.as_deref()) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    let text = match command {
        ExportCmd::Grafana { .. } => {
            serde_json::to_string_pretty(&meridian_console::export::grafana(&cfg))? + "\n"
        }
        ExportCmd::PrometheusRules { .. } => meridian_console::export::prometheus_rules(&cfg),
    };
    match out {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
