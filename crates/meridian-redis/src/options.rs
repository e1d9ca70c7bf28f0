//! What a cache node is given to run. A leaf: the keeper, the server and redis.conf all read
//! it, and `lib` re-exports it.

use meridian_config::CacheRole;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The other node of a cache cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Its Redis.
    pub address: SocketAddr,
    /// Its keeper's admin server.
    pub admin: SocketAddr,
}

/// Everything one cache node needs to run.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Node name, e.g. "redis-us-east-1a".
    pub name: String,
    /// The role it is configured to start in (a keeper may find the cluster otherwise).
    pub role: CacheRole,
    /// Where Redis listens.
    pub listen: SocketAddr,
    /// The keeper's HTTP admin address.
    pub admin: SocketAddr,
    /// The cluster's other node; None for a single-node cluster.
    pub peer: Option<Peer>,
    /// The cache password (the default user's, and `masterauth`): every client and every
    /// replica gives it. Re-read from its file, so `meridian secrets rotate cache-password`
    /// takes effect without a restart (see [`auth`](crate::auth)).
    pub password: meridian_http::secrets::Secret,
    /// `maxmemory` in bytes.
    pub maxmemory: u64,
    /// `maxmemory-policy`, e.g. "allkeys-lru".
    pub eviction: String,
    /// How long the primary may be unreachable before the replica takes over.
    pub failover: Duration,
    /// The node's own directory (redis.conf, the keeper's term).
    pub dir: PathBuf,
    /// The deployment's admin token: asking a keeper to promote needs it.
    pub admin_token: meridian_http::secrets::AdminToken,
    /// Where to serve the region's primary endpoint (shared with the peer with
    /// SO_REUSEPORT); None: no endpoint here.
    pub endpoint: Option<SocketAddr>,
    /// Where admin actions (a promotion asked for) are recorded.
    pub audit: Arc<meridian_http::audit::AuditLog>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn options(name: &str, listen: &str) -> CacheOptions {
        let listen: SocketAddr = listen.parse().unwrap();
        CacheOptions {
            name: name.into(),
            role: CacheRole::Replica,
            listen,
            admin: SocketAddr::new(listen.ip(), 9900),
            peer: None,
            password: "secret".into(),
            maxmemory: 8 << 20,
            eviction: "allkeys-lru".into(),
            failover: Duration::from_secs(2),
            dir: "/tmp/x".into(),
            admin_token: "token".into(),
            endpoint: None,
            audit: Arc::new(meridian_http::audit::AuditLog::disabled(name)),
        }
    }
}
