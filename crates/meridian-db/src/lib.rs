//! Meridian's database nodes: one real PostgreSQL instance per node (`db-<region>-<az>`),
//! started and watched by a Rust keeper beside it.
//!
//! [`run`] is the whole life of a node: find the binaries, make the data directory
//! (initdb on a primary, pg_basebackup from the upstream on a standby or replica), run
//! `postgres` in the foreground as a child, serve `/health`, `/status` and `/metrics` on
//! the admin address, and stop PostgreSQL cleanly on shutdown. Failover, leases and
//! pg_rewind build on this later: the status queries in [`status`] are what a keeper loop
//! polls.

mod admin;
mod binaries;
mod conf;
mod datadir;
mod egress;
mod error;
mod keeper;
pub mod lease;
mod nat;
mod options;
mod owner;
mod password;
mod process;
mod role;
mod spawn;
pub mod status;

pub use binaries::{binaries, PgBinaries};
pub use error::DbError;
pub use lease::Peer;
pub use nat::kernel_path_missing;
pub use options::{slot_name, PgOptions};
pub use role::RoleChange;
pub use status::{StandbyStatus, Status};

use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::watch;

/// The role names are the config's: one type from `[database]` to `/status`.
pub use meridian_config::{DbRole, Promotion};

/// Kept here rather than in `options`: the checks need `password`, which depends on the
/// keeper, which depends on the options.
impl PgOptions {
    fn validate(&self) -> Result<(), DbError> {
        let bad = |why: String| {
            Err(DbError::InvalidOptions(format!(
                "db node {:?}: {why}",
                self.name
            )))
        };
        if self.name.trim().is_empty() {
            return bad("the node name is empty".into());
        }
        if let Err(why) = password::usable(&self.password.current()) {
            return bad(why.into());
        }
        if self.role.in_recovery() && self.upstream.is_none() {
            return bad(format!(
                "a {} needs an upstream address to stream from",
                self.role.as_str()
            ));
        }
        if self.listen == self.admin {
            return bad(format!(
                "postgres and the keeper's admin server cannot both listen on {}",
                self.listen
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("the data directory is empty".into());
        }
        if self.lease < std::time::Duration::from_millis(500) {
            return bad(format!("a lease of {:?} is too short to renew", self.lease));
        }
        if !self.peers.is_empty() && self.admin_token.is_empty() {
            return bad("witnesses need the admin token".into());
        }
        Ok(())
    }
}

/// Runs one database node until `shutdown` resolves (Ok) or PostgreSQL stops on its own
/// or cannot be started (Err: the supervisor restarts the node).
pub async fn run(
    opts: PgOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DbError> {
    opts.validate()?;
    let mut opts = opts;
    opts.data_dir = std::path::absolute(&opts.data_dir).map_err(|source| DbError::Io {
        step: "resolving the data directory",
        path: opts.data_dir.clone(),
        source,
    })?;

    // One flag for "stop", set by the caller's future; every phase below watches it.
    let (stop_tx, stop_rx) = watch::channel(false);
    let _watcher = AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    }));
    // Held for as long as the node runs; the keeper points it at a new primary. A primary
    // has one too, idle until it has to rejoin as a standby after a failover.
    let mut follow = None;
    let _egress = match (opts.upstream, opts.source) {
        (upstream, Some(source)) if upstream.is_some() || !opts.role.in_recovery() => {
            let at = SocketAddr::new(source, opts.listen.port().wrapping_add(1));
            // A previous run of this node (just stopped) may still be letting go of it.
            let mut tries = 0;
            let listener = loop {
                match meridian_http::bind(at).await {
                    Ok(l) => break l,
                    Err(_) if tries < 20 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            opts.upstream = Some(at);
            let (tx, rx) = watch::channel(upstream);
            follow = Some(tx);
            Some(AbortOnDrop(egress::start(listener, rx, source)))
        }
        _ => None,
    };
    // The writer endpoint: always the current primary, sessions cut when it changes.
    let (leader_tx, leader_rx) = watch::channel(None);
    // Connections made on this host are rewritten to the primary in the kernel where the
    // keeper may (nat.rs); the relay serves the others.
    let _writer = match opts.writer {
        Some(at) => {
            let listener = meridian_http::bind(at).await?;
            let source = opts.source.unwrap_or(opts.listen.ip());
            let kernel = tokio::spawn(nat::follow(opts.name.clone(), at, leader_rx.clone()));
            Some((
                AbortOnDrop(egress::start(listener, leader_rx, source)),
                AbortOnDrop(kernel),
            ))
        }
        None => None,
    };
    run_node(opts, stop_rx, follow, leader_tx).await
}

/// A background task that ends with the `run` future, even when that future is dropped
/// instead of being shut down.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_node(
    opts: PgOptions,
    stop: watch::Receiver<bool>,
    follow: Option<watch::Sender<Option<SocketAddr>>>,
    leader: watch::Sender<Option<SocketAddr>>,
) -> Result<(), DbError> {
    let bins = binaries()?;
    let run_as = owner::run_as()?;
    tracing::info!(
        "{}: PostgreSQL {} from {}{}",
        opts.name,
        bins.version,
        bins.bindir.display(),
        match &run_as {
            Some(u) => format!(", running as the `{}` user", u.name),
            None => String::new(),
        }
    );

    // The admin server comes up first so /health says 503 (and why) while the data
    // directory is being made, instead of refusing connections.
    let listener = meridian_http::bind(opts.admin).await?;
    let role = role::CurrentRole::new(opts.role);
    let probe = status::Probe::new(&opts, role.clone());
    let phase = admin::Phase::new("preparing the data directory");
    // The witness keeps its grants beside the data directory, so they outlive a restart.
    let witness_file = opts.data_dir.with_extension("lease.json");
    let witness = std::sync::Arc::new(lease::Witness::open(opts.lease, witness_file));
    let standing = keeper::Standing::new(&opts);
    let admin_state = admin::AdminState::new(
        &opts,
        probe.clone(),
        phase.clone(),
        role.clone(),
        witness.clone(),
        standing.clone(),
    );
    let (admin_stop_tx, mut admin_stop_rx) = watch::channel(false);
    let mut admin_task = AbortOnDrop(tokio::spawn(admin::serve(
        listener,
        admin_state,
        async move {
            let _ = admin_stop_rx.wait_for(|s| *s).await;
        },
    )));

    let node = datadir::Node {
        opts: &opts,
        bins: &bins,
        run_as: run_as.as_ref(),
        phase: &phase,
    };
    let result = async {
        let mut stop = stop.clone();
        let Some(prepared) = process::until_stopped(&mut stop, datadir::prepare(&node)).await
        else {
            return Ok(());
        };
        prepared?;
        let keeper = keeper::Keeper {
            opts: &opts,
            probe: &probe,
            role: role.clone(),
            witness: witness.clone(),
            electorate: lease::Electorate::new(
                &opts.name,
                &opts.region,
                &opts.peers,
                &opts.home_region,
            ),
            follow,
            leader,
            standing,
        };
        process::supervise(&node, &probe, &keeper, stop).await
    }
    .await;

    let _ = admin_stop_tx.send(true);
    let _ = (&mut admin_task.0).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_installed_says_how_to_install_in_one_line() {
        assert_eq!(
            DbError::NotInstalled.to_string(),
            "PostgreSQL is not installed (no pg_config, no /usr/lib/postgresql/*/bin): install it with `apt-get install postgresql`"
        );
    }

    #[test]
    fn roles_serialize_snake_case() {
        assert_eq!(
            serde_json::to_string(&DbRole::SyncStandby).unwrap(),
            "\"sync_standby\""
        );
        assert_eq!(
            serde_json::to_string(&DbRole::Primary).unwrap(),
            "\"primary\""
        );
    }
}
