//! One node in this process.

use meridian_config::{Config, Role, ServiceRuntime};
use meridian_demo::{DemoOptions, Identity};
use std::os::unix::process::CommandExt;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the config has no node named `{name}`; its nodes are: {known}")]
    UnknownNode { name: String, known: String },
    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the DNS node cannot start: {0}")]
    DnsOptions(#[from] meridian_dns::OptionsError),
    #[error(transparent)]
    Dns(#[from] meridian_dns::RunError),
    #[error(transparent)]
    Edge(#[from] meridian_edge::EdgeError),
    #[error(transparent)]
    Console(#[from] meridian_console::ConsoleError),
    #[error(transparent)]
    Wan(#[from] meridian_sim::wan::WanError),
    #[error("cannot read or make the admin token {path}: {source}")]
    AdminToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}`: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a node keeps its state (admin token, development certificate, disk cache, access
/// log): the state dir of the `meridian up` that started it, else `.meridian`.
pub fn state_dir() -> std::path::PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::default_state_dir().to_owned())
}

/// The deployment's admin token, from the state dir (`up` makes it before any node
/// starts; a node run on its own makes it there when it is missing).
fn admin_token() -> Result<String, NodeError> {
    let dir = state_dir();
    meridian_http::admin::token(&dir).map_err(|source| NodeError::AdminToken {
        path: dir.join(meridian_http::admin::TOKEN_FILE),
        source,
    })
}

/// How `up` tells its children where the state dir is.
pub const STATE_DIR_ENV: &str = "MERIDIAN_STATE_DIR";

/// Runs node `name` of `config` until SIGINT or SIGTERM, then drains and returns.
pub async fn run_node(config: &Config, name: &str) -> Result<(), NodeError> {
    let Some(node) = config.node(name) else {
        let known: Vec<String> = config.nodes().into_iter().map(|n| n.name).collect();
        return Err(NodeError::UnknownNode {
            name: name.to_owned(),
            known: known.join(", "),
        });
    };
    match node.role {
        Role::Lb => {
            let opts = meridian_lb::LbOptions::from_config(config, &node);
            meridian_lb::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Wan => {
            let opts = meridian_sim::wan::WanOptions::new(node.admin, admin_token()?);
            meridian_sim::wan::run(config, opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Console => {
            meridian_console::run(
                config.clone(),
                node.address,
                meridian_http::shutdown_signal(),
            )
            .await?;
        }
        Role::Edge => {
            let opts = meridian_edge::EdgeOptions::from_config(config, &node, &state_dir())?;
            meridian_edge::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Dns => {
            let mut opts = meridian_dns::DnsOptions::from_config(config, &node)?;
            opts.admin_token = Some(admin_token()?);
            meridian_dns::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Service => match &config.service.runtime {
            ServiceRuntime::Demo { processing_time } => {
                let opts = DemoOptions {
                    identity: Identity {
                        region: node.region.clone().unwrap_or_default(),
                        az: node.az.clone().unwrap_or_default(),
                        instance: node.name.clone(),
                    },
                    processing_time: *processing_time,
                };
                meridian_demo::serve(node.address, opts, meridian_http::shutdown_signal()).await?;
            }
            ServiceRuntime::Command { argv } => {
                // Replace this process with the user's server so signals reach it directly.
                let fill = |a: &String| {
                    a.replace("{host}", &node.address.ip().to_string())
                        .replace("{port}", &node.address.port().to_string())
                };
                let args: Vec<String> = argv.iter().map(fill).collect();
                let err = std::process::Command::new(&args[0])
                    .args(&args[1..])
                    .env("HOST", node.address.ip().to_string())
                    .env("PORT", node.address.port().to_string())
                    .env("MERIDIAN_REGION", node.region.clone().unwrap_or_default())
                    .env("MERIDIAN_AZ", node.az.clone().unwrap_or_default())
                    .env("MERIDIAN_INSTANCE", &node.name)
                    .exec();
                return Err(NodeError::Exec {
                    program: args[0].clone(),
                    source: err,
                });
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The CLI and the edge still name the token file through the edge crate.
    #[test]
    fn one_admin_token_file() {
        assert_eq!(
            meridian_edge::ADMIN_TOKEN_FILE,
            meridian_http::admin::TOKEN_FILE
        );
    }
}
