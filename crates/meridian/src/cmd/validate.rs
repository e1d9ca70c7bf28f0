//! `meridian validate`: a config's deployment, or every error in it.

use super::{load_config, summary::summary};
use anyhow::Result;
use meridian_config::DEFAULT_CONFIG;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The config file; the embedded default when omitted.
    file: Option<PathBuf>,
    /// Print the embedded default config and exit (a starting point for your own).
    #[arg(long, conflicts_with = "file")]
    print_default: bool,
}

pub fn run(
    ValidateArgs {
        file,
        print_default,
    }: ValidateArgs,
) -> Result<ExitCode> {
    if print_default {
        print!("{DEFAULT_CONFIG}");
        return Ok(ExitCode::SUCCESS);
    }
    match load_config(file.as_deref()) {
        Ok((cfg, _)) => {
            // Record values are checked when the zone is built.
            if let Err(e) = meridian_dns::Zone::build(&cfg) {
                eprintln!(
                    "error: {e}\n  --> {}\n  = fix: correct the record in the [[dns.record]] list",
                    cfg.origin
                );
                return Ok(ExitCode::from(2));
            }
            print!("{}", summary(&cfg));
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}
