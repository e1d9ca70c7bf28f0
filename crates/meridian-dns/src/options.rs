//! What a DNS node is given to run: its addresses, zone, locator, checks and limits.

use crate::client::Locator;
use crate::zone::Zone;
use meridian_config::HealthCheck;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct DnsOptions {
    pub name: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub zone: Zone,
    pub locator: Locator,
    /// How answer targets are checked.
    pub check: HealthCheck,
    /// Threads answering UDP.
    pub udp_threads: usize,
    /// TCP connections served at once. At the cap the listener stops accepting, so new
    /// clients wait in the kernel's backlog until a connection ends.
    pub tcp_max_connections: usize,
    /// How long a TCP client may take to send its next query, or to take an answer: a
    /// client that stops reading must not hold a connection (and a slot of the cap).
    pub tcp_timeout: Duration,
    /// The deployment's admin token: changing the DNS (`POST /latency`) needs it as a
    /// Bearer token. None refuses every change; reading stays open.
    pub admin_token: Option<meridian_http::secrets::AdminToken>,
    /// Where admin actions are recorded.
    pub audit: Arc<meridian_http::audit::AuditLog>,
    /// What latency routing assumes until it has measurements or configured values (the
    /// supervisor hands over the latency model when `[simulation] prior` is on).
    pub prior: meridian_config::Prior,
    /// PoPs whose measured round trips latency routing uses, asked every health-check
    /// interval (needs the admin token).
    pub measurement_sources: Vec<crate::measurements::MeasurementSource>,
    /// The digest of the config file (`/health` reports it; empty when not from a file).
    pub config_digest: String,
    /// New configs whose zone to answer from without a restart (SIGHUP); None: fixed.
    pub reloads: Option<Reloads>,
}

/// New configs for a running DNS node, with their files' digests.
pub type Reloads = tokio::sync::mpsc::Receiver<(meridian_config::Config, String)>;

/// TCP is the fallback for truncated answers and zone-sized questions: a few clients at
/// a time, not the UDP path's load.
const TCP_MAX_CONNECTIONS: usize = 1024;
/// RFC 7766 suggests a few seconds of idleness; 10 s also bounds a stalled write.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

impl DnsOptions {
    pub fn from_config(
        cfg: &meridian_config::Config,
        node: &meridian_config::NodeSpec,
    ) -> Result<Self, OptionsError> {
        Ok(DnsOptions {
            name: node.name.clone(),
            listen: node.address,
            admin: node.admin,
            zone: Zone::build(cfg)?,
            locator: Locator::with_geoip(cfg)?,
            check: cfg.dns.health_check.clone(),
            udp_threads: cfg.dns.udp_threads as usize,
            tcp_max_connections: TCP_MAX_CONNECTIONS,
            tcp_timeout: TCP_TIMEOUT,
            admin_token: None,
            audit: Arc::new(meridian_http::audit::AuditLog::disabled(&node.name)),
            prior: None,
            measurement_sources: crate::measurements::sources(cfg),
            config_digest: String::new(),
            reloads: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Zone(#[from] crate::zone::ZoneError),
    #[error(transparent)]
    GeoIp(#[from] crate::client::GeoIpError),
}
