//! `meridian health`: the seed's health_check_phase3.py, against one endpoint or every
//! node of a running deployment. The report (what is checked and how it is scored) is the
//! CLI's own, in `report.rs`; the probes it sends come from `meridian-health`.

pub mod report;
#[cfg(test)]
mod tests;

use super::deployment::client_trusting;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["url", "state_dir"])))]
pub struct HealthArgs {
    /// An application endpoint, such as http://127.10.1.1:8080 (a load balancer).
    #[arg(long, conflicts_with = "state_dir")]
    url: Option<String>,
    /// The state dir of a running `meridian up`: checks every node.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Responses slower than this many milliseconds count as degraded.
    #[arg(long, default_value_t = 1000)]
    slow_ms: u64,
    /// For an https:// URL: the certificate (PEM) to trust, such as a deployment's
    /// <state-dir>/tls/dev-cert.pem.
    #[arg(long, requires = "url")]
    cacert: Option<PathBuf>,
}

pub async fn run(args: HealthArgs) -> Result<ExitCode> {
    let roots = match &args.cacert {
        Some(path) => Some(client_trusting(path)?),
        None => None,
    };
    let th = report::Thresholds {
        slow: Duration::from_millis(args.slow_ms),
        ..Default::default()
    };
    let rep = match (args.url, args.state_dir) {
        (Some(url), _) => report::check_url(&url, &th, roots.as_ref()).await?,
        (None, Some(dir)) => {
            let state = meridian_config::state::DeploymentState::read(&dir)?;
            report::check_state(&state, &th).await
        }
        (None, None) => anyhow::bail!("give --url or --state-dir"),
    };
    print!("{}", report::render(&rep));
    if let Some(path) = args.output {
        let json = serde_json::to_string_pretty(&rep)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nreport written to {}", path.display());
    }
    Ok(if rep.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
