//! What the console scrapes: every node of the config but itself, and the supervisor.

use meridian_config::{Config, Role};
use std::net::SocketAddr;

/// A scrape target: a node of the config, or the supervisor of `meridian up`.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// `lb`, `service`, `edge`, `dns`, `wan` or `supervisor`.
    pub role: &'static str,
    pub region: Option<String>,
    pub az: Option<String>,
    pub admin: SocketAddr,
}

impl Target {
    /// Every node of `config` but the console, then the supervisor.
    pub fn all(config: &Config) -> Vec<Target> {
        let mut out: Vec<Target> = config
            .nodes()
            .into_iter()
            .filter(|n| n.role != Role::Console)
            .map(|n| Target {
                name: n.name,
                role: n.role.as_str(),
                region: n.region,
                az: n.az,
                admin: n.admin,
            })
            .collect();
        out.push(Target {
            name: "supervisor".to_owned(),
            role: "supervisor",
            region: None,
            az: None,
            admin: config.supervisor_admin(),
        });
        out
    }
}
