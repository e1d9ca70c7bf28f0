//! `meridian db`: the operator's hand on the data tier. `promote` is how a standby in
//! another region takes over when the promotion policy is `manual` (RDS's "promote read
//! replica"): it still needs the leader lease, so it happens only once nobody leads.

use super::deployment::running_deployment;
use anyhow::{bail, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DbCmd {
    /// Ask a database node (a standby) to take over as primary once nobody holds the
    /// leader lease: the way across regions with `promotion = "manual"`.
    Promote {
        /// The node, such as db-eu-west-1a.
        node: String,
        /// The state dir of the running deployment.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
    },
}

pub(crate) async fn run(command: DbCmd) -> Result<ExitCode> {
    match command {
        DbCmd::Promote { node, state_dir } => {
            let (config, state) = running_deployment(&state_dir)?;
            let Some(n) = state
                .nodes
                .iter()
                .find(|n| n.spec.name == node && n.spec.role == meridian_config::Role::Db)
            else {
                let known: Vec<&str> = state
                    .nodes
                    .iter()
                    .filter(|n| n.spec.role == meridian_config::Role::Db)
                    .map(|n| n.spec.name.as_str())
                    .collect();
                bail!(
                    "there is no database node `{node}` in this deployment; database nodes: {}",
                    known.join(", ")
                );
            };
            let token = super::deployment::admin_token(&config, &state_dir)?;
            let answer = meridian_http::client::call(
                n.spec.admin,
                http::Method::POST,
                "/promote",
                Some(&token),
                Duration::from_secs(5),
                64 * 1024,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{node}'s keeper at {}: {e}", n.spec.admin))?;
            let body = String::from_utf8_lossy(&answer.body);
            println!("{node}: {} {body}", answer.status);
            Ok(if answer.status == 202 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
