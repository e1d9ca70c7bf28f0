//! What can go wrong running a cache node, each saying which step and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis is not installed (no redis-server on the PATH, in /usr/bin or /usr/local/bin): install it with `apt-get install redis-server`")]
    NotInstalled,

    #[error("MERIDIAN_REDIS_SERVER names {path}, which is not an executable file: point it at a redis-server, or unset it to use the installed one (`apt-get install redis-server`)")]
    NamedProgramMissing { path: PathBuf },

    #[error("invalid cache node options: {0}")]
    InvalidOptions(String),

    #[error("{step} ({path}): {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("redis-server ({name}) exited on its own ({status}): {output_tail}")]
    Exited {
        name: String,
        status: String,
        output_tail: String,
    },

    #[error("redis-server ({name}) did not answer PING within {secs}s of starting: {last_error}")]
    NotReady {
        name: String,
        secs: u64,
        last_error: String,
    },

    #[error("cannot listen on {addr} for the primary endpoint: {source}")]
    EndpointBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
}

impl CacheError {
    /// Whether starting the node again cannot help (a supervisor should stop restarting it).
    pub fn needs_a_person(&self) -> bool {
        matches!(
            self,
            CacheError::NotInstalled | CacheError::InvalidOptions(_)
        )
    }
}
