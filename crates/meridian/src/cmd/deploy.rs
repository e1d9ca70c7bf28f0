//! `meridian deploy --out DIR`: a bundle per host (config, secrets, systemd unit, install
//! script), written by `meridian_supervisor::bundle`.

use super::deployment::load_config;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Deployment config; the embedded default when omitted.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where the bundles go, one directory per host (secrets are made once and kept in
    /// DIR/.secrets, so running it again gives the same ones).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(DeployArgs { config, out }: DeployArgs) -> Result<ExitCode> {
    let (cfg, text) = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let bundles = meridian_supervisor::bundle::write(&cfg, &text, &out)?;
    for b in &bundles {
        eprintln!("wrote {} (host {})", b.dir.display(), b.host);
    }
    eprintln!(
        "on each host: copy the meridian binary to /usr/local/bin/meridian and its bundle anywhere, then run the bundle's install.sh as root"
    );
    Ok(ExitCode::SUCCESS)
}
