//! Meridian's cache nodes: one real `redis-server` per node (`redis-<az>`), started and
//! watched by a Rust keeper beside it, as ElastiCache for Redis runs a replication group.
//!
//! A region's cache cluster is a primary and (Multi-AZ) a replica in another AZ. The two
//! keepers fail over without Sentinel: the replica's keeper promotes its server when the
//! primary has been unreachable for the failover time; a keeper whose server restarted
//! empty hands the primary role to its peer (which holds the data) and follows it; a
//! returning old primary sees its peer's higher term and becomes its replica at its next
//! check. Every keeper also serves the region's primary endpoint: a relay to whichever
//! node is primary now.
//!
//! [`run`] is the whole life of a node.

mod admin;
mod auth;
mod binary;
mod conf;
mod endpoint;
mod error;
mod keeper;
mod options;
mod owner;
mod peer;
mod server;

pub use admin::Status;
pub use binary::{redis_server, PROGRAM_ENV};
pub use error::CacheError;
pub use keeper::RoleView;
pub use meridian_config::CacheRole;
/// The RESP client lives in its own crate so applications (the demo) can use the cache
/// without depending on the nodes that run it.
pub use meridian_resp as resp;
pub use options::{CacheOptions, Peer};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The file in a state dir that holds the cache tier's password (`requirepass`).
pub const PASSWORD_FILE: &str = meridian_http::admin::CACHE_PASSWORD_FILE;

/// Kept here rather than in `options`: the checks need `auth`, which depends on the keeper,
/// which depends on the options.
impl CacheOptions {
    fn validate(&self) -> Result<(), CacheError> {
        let bad = |why: String| {
            Err(CacheError::InvalidOptions(format!(
                "cache node {:?}: {why}",
                self.name
            )))
        };
        if self.name.trim().is_empty() {
            return bad("the node name is empty".into());
        }
        if let Err(why) = auth::usable(&self.password.current()) {
            return bad(why.into());
        }
        if self.listen == self.admin {
            return bad(format!(
                "redis and the keeper's admin server cannot both listen on {}",
                self.listen
            ));
        }
        if self.peer.as_ref().is_some_and(|p| p.address == self.listen) {
            return bad("the peer is this node's own address".into());
        }
        if self.failover < Duration::from_millis(300) {
            return bad(format!(
                "a failover time of {:?} is too short to check",
                self.failover
            ));
        }
        if self.maxmemory < 1 << 20 {
            return bad(format!(
                "a maxmemory of {} bytes leaves no room for a cache",
                self.maxmemory
            ));
        }
        if self.peer.is_some() && self.admin_token.is_empty() {
            return bad("keepers of a cluster need the admin token to ask each other".into());
        }
        if self.dir.as_os_str().is_empty() {
            return bad("the node directory is empty".into());
        }
        Ok(())
    }
}

/// Runs one cache node until `shutdown` resolves (Ok), or Redis cannot be started or keeps
/// exiting (Err: the supervisor restarts the node).
pub async fn run(
    opts: CacheOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CacheError> {
    opts.validate()?;
    let mut opts = opts;
    opts.dir = std::path::absolute(&opts.dir).map_err(|source| CacheError::Io {
        step: "resolving the node directory",
        path: opts.dir.clone(),
        source,
    })?;
    std::fs::create_dir_all(&opts.dir).map_err(|source| CacheError::Io {
        step: "making the node directory",
        path: opts.dir.clone(),
        source,
    })?;
    let program = redis_server()?;
    let version = binary::major_version(&program).unwrap_or(0);
    tracing::info!("{}: Redis {version} from {}", opts.name, program.display());

    let (stop_tx, stop_rx) = watch::channel(false);
    let _watcher = AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    }));
    let keeper = Arc::new(keeper::Keeper::new(opts.clone(), program, version));
    // The admin server first, so /health says 503 (and why) while Redis starts.
    let admin = meridian_http::bind(opts.admin).await?;
    let _endpoint = match opts.endpoint {
        Some(at) => {
            let listener = endpoint::bind_shared(at)
                .map_err(|source| CacheError::EndpointBind { addr: at, source })?;
            Some(AbortOnDrop(endpoint::start(
                listener,
                keeper.primary_watch(),
                opts.listen.ip(),
            )))
        }
        None => None,
    };
    let (admin_stop_tx, mut admin_stop_rx) = watch::channel(false);
    let mut admin_task = AbortOnDrop(tokio::spawn(admin::serve(
        admin,
        admin::AdminState::new(keeper.clone()),
        async move {
            let _ = admin_stop_rx.wait_for(|s| *s).await;
        },
    )));
    let result = keeper.run(stop_rx).await;
    let _ = admin_stop_tx.send(true);
    let _ = (&mut admin_task.0).await;
    result
}

/// A background task that ends with the `run` future, even when that future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::tests::options;

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let ok = options("redis-a", "127.81.9.70:6379");
        assert!(ok.validate().is_ok());
        let mut o = ok.clone();
        o.password = "has space".into();
        let e = o.validate().unwrap_err();
        assert!(e.to_string().contains("space"), "{e}");
        assert!(e.needs_a_person());
        let mut o = ok.clone();
        o.password = "".into();
        assert!(o.validate().is_err());
        let mut o = ok.clone();
        o.admin = o.listen;
        assert!(o.validate().is_err());
        let mut o = ok.clone();
        o.failover = Duration::from_millis(10);
        assert!(o.validate().is_err());
        let mut o = ok;
        o.maxmemory = 1000;
        assert!(o.validate().is_err());
    }
}
