//! The keeper's loop beside a running PostgreSQL, in Patroni's manner but without an
//! external store: the keepers themselves are the lease's witnesses (see [`crate::lease`]).
//!
//! - A primary takes the lease before its first write and renews it every quarter lease;
//!   when it cannot renew before its lease runs out it stops PostgreSQL (fences itself).
//! - The synchronous standby watches the primary; whenever a check finds it unreachable
//!   it asks for the lease, and once a majority grants it (the old primary's lease
//!   has run out everywhere) it promotes itself. Commits waited for this standby, so no
//!   acknowledged write is lost.
//! - Standbys and replicas stream from whoever holds the lease: when that changes, their
//!   relay is pointed at the new primary.
//!
//! Cross-region promotion (of a replica, when the whole home region is lost) and an old
//! primary rejoining with `pg_rewind` are not built yet.

use crate::lease::{self, Held, Witness};
use crate::role::CurrentRole;
use crate::status::Probe;
use crate::{DbError, DbRole, PgOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What one keeper works with.
pub(crate) struct Keeper<'a> {
    pub opts: &'a PgOptions,
    /// This node's own PostgreSQL.
    pub probe: &'a Probe,
    pub role: CurrentRole,
    pub witness: Arc<Witness>,
    /// Where this node's relay to its upstream points (standbys with a relay).
    pub follow: Option<watch::Sender<Option<SocketAddr>>>,
    /// Where the lease holder's PostgreSQL is: what the writer endpoint relays to.
    pub leader: watch::Sender<Option<SocketAddr>>,
}

impl Keeper<'_> {
    fn tick(&self) -> Duration {
        self.opts.lease / 4
    }

    /// How long one question to a witness may take: well inside a tick.
    fn ask_timeout(&self) -> Duration {
        (self.opts.lease / 8).max(Duration::from_millis(200))
    }

    async fn campaign(&self, term: u64) -> (Option<Held>, u64) {
        lease::campaign(
            &self.witness,
            &self.opts.name,
            term,
            &self.opts.peers,
            &self.opts.admin_token,
            self.ask_timeout(),
        )
        .await
    }

    async fn leader(&self) -> Option<String> {
        lease::leader(
            &self.witness,
            &self.opts.peers,
            &self.opts.admin_token,
            self.ask_timeout(),
        )
        .await
    }

    /// A primary's first step, before PostgreSQL takes a single write: the lease. Waits
    /// for a majority of witnesses to answer; refuses when another node leads.
    pub async fn acquire(&self) -> Result<Held, DbError> {
        let name = &self.opts.name;
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut term = 1;
        loop {
            if let Some(holder) = self.leader().await.filter(|h| h != name) {
                return Err(DbError::LeaseHeld {
                    holder,
                    data_dir: self.opts.data_dir.clone(),
                });
            }
            let (held, highest) = self.campaign(term).await;
            if let Some(h) = held {
                tracing::info!("{name}: holds the leader lease (term {})", h.term);
                return Ok(h);
            }
            term = highest + 1;
            if last_log.elapsed() >= Duration::from_secs(5) {
                tracing::info!(
                    "{name}: waiting for a majority of {} witnesses to grant the leader lease ({}s)",
                    self.opts.peers.len() + 1,
                    started.elapsed().as_secs()
                );
                last_log = Instant::now();
            }
            tokio::time::sleep(self.tick()).await;
        }
    }

    /// Runs until this node must stop taking writes (Err(LeaseLost)); never returns
    /// otherwise.
    pub async fn keep(&self, held: Option<Held>) -> DbError {
        let name = self.opts.name.as_str();
        let mut held = held;
        let mut term = held.map(|h| h.term).unwrap_or(0);
        let mut misses = 0u32;
        loop {
            match self.role.get() {
                DbRole::Primary => {
                    let (renewed, highest) = self.campaign(term.max(1)).await;
                    match renewed {
                        Some(h) => {
                            held = Some(h);
                            term = h.term;
                        }
                        None if held.is_some_and(|h| h.valid(Instant::now())) => {
                            // A standby that asked in a blip left a higher term behind:
                            // renew under it, or those witnesses refuse this node forever.
                            term = term.max(highest);
                            tracing::warn!(
                                "{name}: could not renew the leader lease (a majority did not answer or refused); trying again"
                            );
                        }
                        None => {
                            tracing::error!(
                                "{name}: the leader lease ran out (highest term seen {highest}); stopping PostgreSQL"
                            );
                            return DbError::LeaseLost;
                        }
                    }
                }
                DbRole::SyncStandby => {
                    let upstream = self.opts.upstream.map(|u| Probe::of(u, self.opts));
                    // A frozen primary accepts nothing: give it a tick, not the probe's 3 s.
                    let reachable = match &upstream {
                        Some(p) => matches!(
                            tokio::time::timeout(self.tick(), p.connect()).await,
                            Ok(Ok(_))
                        ),
                        None => true,
                    };
                    misses = if reachable { 0 } else { misses + 1 };
                    // Asking early is safe: no witness grants while the primary's lease
                    // lives. Without witnesses there is no lease to win: no failover.
                    if misses >= 1 && !self.opts.peers.is_empty() {
                        let (won, highest) = self.campaign(term.max(highest_term(self)) + 1).await;
                        term = term.max(highest);
                        if let Some(h) = won {
                            match self.promote().await {
                                Ok(()) => {
                                    held = Some(h);
                                    term = h.term;
                                    self.role.set(DbRole::Primary);
                                    misses = 0;
                                }
                                Err(e) => tracing::error!("{name}: {e}"),
                            }
                        }
                    }
                    self.follow_leader().await;
                }
                DbRole::Replica => self.follow_leader().await,
            }
            if self.role.get() == DbRole::Primary && held.is_some_and(|h| h.valid(Instant::now())) {
                self.point_writer(Some(self.opts.public));
            }
            tokio::time::sleep(self.tick()).await;
        }
    }

    /// Promotes this standby and prepares it to lead: a slot for every other node.
    async fn promote(&self) -> Result<(), DbError> {
        let name = &self.opts.name;
        tracing::warn!("{name}: the primary is gone and this node holds the lease: promoting");
        let client = self.probe.connect().await.map_err(DbError::Promote)?;
        let promoted: bool = client
            .query_one("SELECT pg_promote(true, 60)", &[])
            .await
            .map_err(|e| DbError::Promote(e.to_string()))?
            .get(0);
        if !promoted {
            return Err(DbError::Promote(
                "pg_promote() did not finish within 60 s".into(),
            ));
        }
        let others: Vec<String> = self.opts.peers.iter().map(|p| p.name.clone()).collect();
        let created = self.probe.create_missing_slots(&others).await?;
        tracing::warn!(
            "{name}: promoted to primary (slots made: {})",
            if created.is_empty() {
                "none".to_owned()
            } else {
                created.join(", ")
            }
        );
        Ok(())
    }

    /// Points this node's relay and writer endpoint at whoever holds the lease.
    async fn follow_leader(&self) {
        let leader = self.leader().await;
        let peer = leader
            .as_ref()
            .and_then(|l| self.opts.peers.iter().find(|p| &p.name == l));
        self.point_writer(peer.map(|p| p.address));
        let (Some(follow), Some(peer)) = (&self.follow, peer) else {
            return;
        };
        if *follow.borrow() != Some(peer.address) {
            tracing::warn!(
                "{}: the primary is now {}: streaming from {}",
                self.opts.name,
                peer.name,
                peer.address
            );
            let _ = follow.send(Some(peer.address));
        }
    }

    /// The writer endpoint relays to `to` from now on (cutting sessions to the old one).
    fn point_writer(&self, to: Option<SocketAddr>) {
        self.leader.send_if_modified(|cur| {
            let changed = *cur != to;
            *cur = to;
            changed
        });
    }
}

/// The highest term this node's own witness has seen.
fn highest_term(k: &Keeper<'_>) -> u64 {
    k.witness.current(Instant::now()).term
}
