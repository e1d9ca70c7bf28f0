//! `meridian dns`: asking the global DNS of a running deployment.

use super::explain::render_explain;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DnsCmd {
    /// Show the answer a client would get and why: policy, candidates, health, latencies,
    /// and the rule that decided (as Route 53's TestDNSAnswer).
    Explain {
        /// The name to ask for, such as api.richesreach.example.
        name: String,
        /// The record type.
        #[arg(default_value = "A")]
        r#type: String,
        /// The client's address (a client location's network, see endpoints.json).
        #[arg(long)]
        client: std::net::IpAddr,
        /// The state dir of a running `meridian up`.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: DnsCmd) -> Result<ExitCode> {
    let DnsCmd::Explain {
        name,
        r#type,
        client,
        state_dir,
        json,
    } = command;
    let state = meridian_config::state::DeploymentState::read(&state_dir)?;
    let node = state
        .nodes
        .iter()
        .find(|n| n.spec.role == meridian_config::Role::Dns)
        .context("the deployment runs no DNS node")?;
    let path = format!(
        "/explain?name={}&type={}&client={client}",
        meridian_http::percent::encode(&name),
        meridian_http::percent::encode(&r#type)
    );
    let req = http::Request::get(path)
        .header(http::header::HOST, node.spec.admin.to_string())
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))?;
    let res = meridian_http::client::fetch(node.spec.admin, req, Duration::from_secs(5), 1 << 20)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach {} at {}: {e}",
                node.spec.name,
                node.spec.admin
            )
        })?;
    let text = String::from_utf8_lossy(&res.body).into_owned();
    if res.status != 200 {
        anyhow::bail!("{}", text.trim());
    }
    if json {
        println!("{text}");
    } else {
        let v: serde_json::Value = serde_json::from_str(&text)?;
        print!("{}", render_explain(&v));
    }
    Ok(ExitCode::SUCCESS)
}
