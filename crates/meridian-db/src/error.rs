//! What can go wrong running a database node, each saying which step, which path and
//! (for PostgreSQL's own programs) the end of what the program said.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL is not installed (no pg_config, no /usr/lib/postgresql/*/bin): install it with `apt-get install postgresql`")]
    NotInstalled,

    #[error("running as root, but there is no `postgres` user to run PostgreSQL as (PostgreSQL refuses root): install PostgreSQL with `apt-get install postgresql`, which creates it, or run Meridian as an ordinary user")]
    NoPostgresUser,

    #[error("the `{user}` user cannot reach the data directory {data_dir}: {dir} is not traversable by it; run `chmod o+x {dir}` or use a state directory under a path it can traverse")]
    NotTraversable {
        data_dir: PathBuf,
        dir: PathBuf,
        user: String,
    },

    #[error("invalid database options: {0}")]
    InvalidOptions(String),

    #[error("{path} is not empty and is not a PostgreSQL data directory (no PG_VERSION); Meridian never wipes a directory it did not make: move it away or give the node another data directory")]
    NotADataDir { path: PathBuf },

    #[error("the data directory {path} is damaged ({reason}); Meridian does not repair or wipe it: restore it, or move it away so the node starts afresh (a standby re-copies it from the primary)")]
    Damaged { path: PathBuf, reason: String },

    #[error("the data directory {path} is from PostgreSQL {found}, but the installed server is PostgreSQL {installed}: run the matching server or upgrade the directory with pg_upgrade")]
    VersionMismatch {
        path: PathBuf,
        found: String,
        installed: u32,
    },

    #[error("{step} ({path}): {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{step}: cannot start {program}: {source}")]
    Spawn {
        step: &'static str,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{step}: {program} failed ({status}): {stderr_tail}")]
    Tool {
        step: &'static str,
        program: PathBuf,
        status: String,
        stderr_tail: String,
    },

    #[error("the upstream {upstream} did not accept a PostgreSQL connection within {}s (last error: {last_error}): is the primary running, and is this the right address?", waited.as_secs())]
    UpstreamUnreachable {
        upstream: SocketAddr,
        waited: Duration,
        last_error: String,
    },

    #[error("postgres ({data_dir}) exited on its own ({status}): {stderr_tail}")]
    Exited {
        data_dir: PathBuf,
        status: String,
        stderr_tail: String,
    },

    #[error("{step}: {source}")]
    Postgres {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{holder} was elected after this node led: this node must not take writes again, and it cannot rejoin as a standby on its own (no source address to stream from, or {holder} is not among its peers): move {data_dir} away and start it again to copy it afresh")]
    LeaseHeld { holder: String, data_dir: PathBuf },
    #[error("lost the leader lease (no majority of witnesses renewed it): PostgreSQL was stopped so that it takes no write another primary could contradict")]
    LeaseLost,
    #[error("promoting the standby failed: {0}")]
    Promote(String),
    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
}

impl DbError {
    /// Whether starting the node again cannot help: the data directory, the installation
    /// or the cluster's state needs a person (a supervisor should stop restarting it).
    pub fn needs_a_person(&self) -> bool {
        matches!(
            self,
            DbError::NotInstalled
                | DbError::NoPostgresUser
                | DbError::NotTraversable { .. }
                | DbError::InvalidOptions(_)
                | DbError::NotADataDir { .. }
                | DbError::Damaged { .. }
                | DbError::VersionMismatch { .. }
                | DbError::LeaseHeld { .. }
        )
    }
}
