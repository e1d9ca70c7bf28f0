//! What a database node is given to run. A leaf: the keeper, the status probe and
//! postgresql.conf all read it, and `lib` re-exports it.

use crate::lease;
use meridian_config::{DbRole, Promotion};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything one database node needs to run.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Node name, e.g. "db-us-east-1a"; also its `application_name` upstream and (see
    /// [`slot_name`]) its replication slot name.
    pub name: String,
    pub role: DbRole,
    /// Where PostgreSQL listens (`listen_addresses` = ip, `port`).
    pub listen: SocketAddr,
    /// The keeper's HTTP admin address.
    pub admin: SocketAddr,
    /// Standby or replica: where to reach the primary (may be a WAN relay's address).
    pub upstream: Option<SocketAddr>,
    /// Standby or replica: the address its connections to the upstream leave from (the
    /// node's own). PostgreSQL cannot choose one, so the keeper relays them from it, on
    /// the port after PostgreSQL's. None: wherever the system sends them from.
    pub source: Option<std::net::IpAddr>,
    /// Primary: names for `synchronous_standby_names = 'FIRST 1 (...)'`; empty means
    /// asynchronous replication only.
    pub sync_standbys: Vec<String>,
    /// Primary: every standby and replica name; a physical slot is made for each.
    pub replicas: Vec<String>,
    pub data_dir: PathBuf,
    /// The superuser `postgres` password, for every TCP connection including replication.
    /// Re-read from its file: after `meridian secrets rotate db-password` the primary's
    /// keeper sets it on the role and every client moves to it (see [`password`](crate::password)).
    pub password: meridian_http::secrets::Secret,
    /// Every other database node of the deployment: the lease's witnesses, and where a
    /// standby finds a new primary.
    pub peers: Vec<lease::Peer>,
    /// How long a granted lease lasts (see [`lease`](crate::lease)).
    pub lease: std::time::Duration,
    /// The deployment's admin token: asking a keeper for the lease needs it.
    pub admin_token: meridian_http::secrets::AdminToken,
    /// Where the other nodes reach this node's PostgreSQL (through the WAN when there is
    /// one; else `listen`).
    pub public: SocketAddr,
    /// Where to serve this region's writer endpoint: a relay to whichever node holds the
    /// leader lease. None: no endpoint here.
    pub writer: Option<SocketAddr>,
    /// This node's region, and the writer region: witnesses are weighed by region, and
    /// the promotion policy applies outside the writer region.
    pub region: String,
    pub home_region: String,
    /// Whether a replica outside the writer region promotes itself when that region is
    /// lost (inside it, promotion is always automatic).
    pub promotion: Promotion,
    /// The most a replica may have lagged (bytes of WAL) at its last contact with the
    /// primary and still be promoted.
    pub max_promotion_lag: u64,
}

/// The physical replication slot a node streams through: its name lowercased, every
/// character outside `[a-z0-9_]` replaced by `_` (PostgreSQL's rule for slot names),
/// cut to 63 bytes (NAMEDATALEN).
pub fn slot_name(node: &str) -> String {
    node.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_postgres_rules() {
        assert_eq!(slot_name("db-us-east-1a"), "db_us_east_1a");
        assert_eq!(slot_name("DB.EU west"), "db_eu_west");
        assert_eq!(slot_name(&"x".repeat(80)).len(), 63);
    }
}
