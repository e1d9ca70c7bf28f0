//! `endpoints.json`: what a running `meridian up` tells other tools about itself.

use crate::node::NodeSpec;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "endpoints.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Starting,
    Running,
    Stopping,
    Stopped,
}

/// The deployment as it runs now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentState {
    pub deployment: String,
    pub zone: String,
    pub status: Status,
    /// The config the nodes were started from (a copy in the state dir).
    pub config: PathBuf,
    pub supervisor_pid: u32,
    pub supervisor_admin: SocketAddr,
    /// Seconds since the Unix epoch when this file was written.
    pub updated_at: u64,
    pub nodes: Vec<NodeState>,
    /// Where simulated clients live and the loopback network each sends from.
    #[serde(default)]
    pub client_locations: Vec<ClientLocationState>,
    /// Each region's desired and running instance counts, when autoscaling is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autoscaling: Vec<RegionCapacity>,
}

/// A region's instance counts under autoscaling (ECS's desired and running counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCapacity {
    pub region: String,
    pub desired: u32,
    pub running: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientLocationState {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// Send from an address in this network to be seen as this location.
    pub source: String,
}

impl ClientLocationState {
    pub fn all(cfg: &crate::load::Config) -> Vec<Self> {
        cfg.client_locations
            .iter()
            .filter_map(|c| {
                Some(ClientLocationState {
                    name: c.name.clone(),
                    lat: c.location.lat,
                    lon: c.location.lon,
                    source: cfg.client_source(&c.name)?.to_string(),
                })
            })
            .collect()
    }
}

/// A node of the topology and its current process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    #[serde(flatten)]
    pub spec: NodeSpec,
    /// Where the node's main listener binds, when its placement puts it elsewhere than
    /// its address (behind a WAN relay under `meridian up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// None while the node is not running (between a crash and its restart).
    pub pid: Option<u32>,
    pub restarts: u32,
    /// The version a service instance runs (`meridian rollout` changes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no deployment state at {path}: is `meridian up` running with this --state-dir?")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a Meridian state file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl DeploymentState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_FILE)
    }

    pub fn read(state_dir: &Path) -> Result<Self, StateError> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StateError::Missing { path: path.clone() },
            _ => StateError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        serde_json::from_str(&text).map_err(|e| StateError::Parse { path, source: e })
    }

    /// Writes atomically (temp file and rename) so a reader never sees half a file.
    pub fn write(&self, state_dir: &Path) -> io::Result<()> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, path)
    }
}
