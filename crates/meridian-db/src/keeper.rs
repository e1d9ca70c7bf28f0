//! The keeper's loop beside a running PostgreSQL, in Patroni's manner but without an
//! external store: the keepers themselves are the lease's witnesses (see [`crate::lease`]).
//!
//! - A primary takes the lease before its first write and renews it every quarter lease;
//!   when it cannot renew before its lease runs out it stops PostgreSQL (fences itself).
//!   A watchdog thread kills PostgreSQL the moment the lease has run out, even when the
//!   whole node was frozen and resumes at once: the loop would notice a tick later.
//! - The synchronous standby watches the primary; when a check finds it unreachable, and
//!   the primary had it as its synchronous standby at the last check that reached it, it
//!   asks for the lease and, once granted, promotes itself: commits waited for it, so no
//!   acknowledged write is lost.
//! - A replica promotes itself when nobody has led for two leases (the whole home region
//!   is gone: its standby would have taken over well before): only with the automatic
//!   promotion policy, only when its lag at the last contact was within the limit, and
//!   only the one that received the most WAL among the replicas it can reach.
//! - Standbys and replicas stream from whoever holds the lease; when that changes, their
//!   relay is pointed at the new primary. One that still cannot stream from it after a
//!   while holds WAL the new primary never had: it is rewound ([`KeepEnd::Rejoin`]).

use crate::error::DbError;
use crate::lease::{self, Electorate, Held, Peer, Survey, Witness};
use crate::options::PgOptions;
use crate::role::CurrentRole;
use crate::status::{describe, Probe};
use meridian_config::DbRole;
use meridian_config::Promotion;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What one keeper works with.
pub(crate) struct Keeper<'a> {
    pub opts: &'a PgOptions,
    /// This node's own PostgreSQL.
    pub probe: &'a Probe,
    pub role: CurrentRole,
    pub witness: Arc<Witness>,
    pub electorate: Electorate,
    /// Where this node's relay to its upstream points.
    pub follow: Option<watch::Sender<Option<SocketAddr>>>,
    /// Where the lease holder's PostgreSQL is: what the writer endpoint relays to.
    pub leader: watch::Sender<Option<SocketAddr>>,
    /// What this node knew of its upstream at the last check that reached it.
    pub standing: Standing,
}

/// A standby's standing for promotion, shared with `/status`.
#[derive(Clone)]
pub(crate) struct Standing {
    contact: Arc<Mutex<Contact>>,
    /// The promotion policy lets this node be promoted: always inside the home region,
    /// elsewhere only with `promotion = "automatic"`.
    policy_allows: bool,
    max_lag: u64,
    lease: Duration,
    /// An operator asked for this node's promotion (`meridian db promote`).
    requested: Arc<AtomicBool>,
}

impl Standing {
    pub fn new(opts: &PgOptions) -> Self {
        Standing {
            contact: Arc::default(),
            policy_allows: opts.promotion == Promotion::Automatic
                || opts.region == opts.home_region,
            max_lag: opts.max_promotion_lag,
            lease: opts.lease,
            requested: Arc::default(),
        }
    }

    pub fn request_promotion(&self) {
        self.requested.store(true, Ordering::Release);
    }

    pub fn promotion_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The primary had this standby as its synchronous one at a contact less than a
    /// lease and a half ago.
    pub fn synchronous(&self) -> bool {
        let c = self.contact();
        c.was_sync
            && c.at
                .is_some_and(|at| at.elapsed() < self.lease.mul_f64(1.5))
    }

    pub fn contact(&self) -> Contact {
        *self.contact.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, change: impl FnOnce(&mut Contact)) {
        change(&mut self.contact.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The policy allows it, and its lag at the last contact was within the limit.
    pub fn promotable(&self) -> bool {
        self.policy_allows
            && self
                .contact()
                .lag_bytes
                .is_some_and(|l| u64::try_from(l).is_ok_and(|l| l <= self.max_lag))
    }
}

/// A standby's last word from its primary, kept for the moment the primary is gone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Contact {
    /// The primary had this node as its synchronous standby.
    pub was_sync: bool,
    /// When this node last reached its primary.
    pub at: Option<Instant>,
    /// WAL the primary had flushed that this node had not received, in bytes, while it
    /// streamed (None: it never streamed in this run).
    pub lag_bytes: Option<i64>,
}

/// Why [`Keeper::keep`] ended.
pub(crate) enum KeepEnd {
    /// The lease ran out: PostgreSQL must stop taking writes.
    Fenced(DbError),
    /// This node's WAL went past the new primary's history: rewind from it and stream.
    Rejoin(Peer),
}

impl Keeper<'_> {
    pub(crate) fn tick(&self) -> Duration {
        self.opts.lease / 4
    }

    /// How long one question to a witness may take: well inside a tick.
    fn ask_timeout(&self) -> Duration {
        (self.opts.lease / 8).max(Duration::from_millis(200))
    }

    async fn campaign(&self, term: u64) -> (Option<Held>, u64) {
        lease::campaign(
            &self.electorate,
            &self.witness,
            &self.opts.name,
            term,
            &self.opts.peers,
            &self.opts.admin_token.current(),
            self.ask_timeout(),
        )
        .await
    }

    async fn survey(&self) -> Survey {
        lease::survey(
            &self.electorate,
            &self.witness,
            &self.opts.name,
            &self.opts.peers,
            &self.opts.admin_token.current(),
            self.ask_timeout(),
        )
        .await
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.opts.peers.iter().find(|p| p.name == name)
    }

    /// A primary's first step, before PostgreSQL takes a single write: the lease. Waits
    /// for a majority of witnesses to answer; refuses (LeaseHeld) when another node leads
    /// now, or was elected after this one: this node's data is then behind or beside the
    /// history that node wrote.
    pub async fn acquire(&self) -> Result<Held, DbError> {
        let name = &self.opts.name;
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut term = 1;
        loop {
            let survey = self.survey().await;
            let other = survey
                .leader
                .filter(|h| h != name)
                .or(survey.last.filter(|(h, _)| h != name).map(|(h, _)| h));
            if let Some(holder) = other {
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
                    "{name}: waiting for witnesses weighing more than half of {} to grant the leader lease ({}s)",
                    self.opts.peers.len() + 1,
                    started.elapsed().as_secs()
                );
                last_log = Instant::now();
            }
            tokio::time::sleep(self.tick()).await;
        }
    }

    /// Runs until this node must stop taking writes, or must be rewound to follow the
    /// primary; never returns otherwise. `postgres` is the server's pid, for the fence.
    pub async fn keep(&self, held: Option<Held>, postgres: i32) -> KeepEnd {
        let name = self.opts.name.as_str();
        let fence = Fence::start(name, postgres);
        let mut held = held;
        let mut term = held.map(|h| h.term).unwrap_or(0);
        // Since when nobody has led (replicas), and since when this node has followed a
        // leader without streaming from it.
        let mut leaderless_since: Option<Instant> = None;
        let mut not_streaming_since: Option<(String, Instant)> = None;
        let mut sync_names: Option<String> = None;
        let mut standbys_gone_since: Option<Instant> = None;
        // The database password known to be on the role (primary) or in the stream's
        // primary_conninfo (standby): see [`crate::password`].
        let mut password_set: Option<String> = None;
        loop {
            fence.arm(held.filter(|_| self.role.get() == DbRole::Primary));
            match self.role.get() {
                DbRole::Primary => {
                    let (renewed, highest) = self.campaign(term.max(1)).await;
                    match renewed {
                        Some(h) => {
                            held = Some(h);
                            term = h.term;
                            fence.arm(Some(h));
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
                            return KeepEnd::Fenced(DbError::LeaseLost);
                        }
                    }
                    self.keep_synchronous(&mut sync_names, &mut standbys_gone_since)
                        .await;
                    self.keep_password(&mut password_set).await;
                }
                DbRole::SyncStandby => {
                    self.sample_receiver().await;
                    // A frozen primary accepts nothing: give it a tick, not the probe's 3 s.
                    let reached = match self.opts.upstream {
                        Some(up) => self.check_upstream(up).await,
                        None => true,
                    };
                    let was_sync = self.standing.synchronous();
                    // Asking early is safe: no witness grants while the primary's lease
                    // lives. Without witnesses there is no lease to win: no failover.
                    if !reached && was_sync && !self.opts.peers.is_empty() {
                        let (won, highest) = self.campaign(term.max(self.highest_term()) + 1).await;
                        term = term.max(highest);
                        if let Some(h) = won {
                            if self
                                .promote("the primary is unreachable and this synchronous standby holds the lease")
                                .await
                            {
                                held = Some(h);
                                term = h.term;
                                continue;
                            }
                        }
                    }
                    let survey = self.survey().await;
                    // Not known to be synchronous: it may still be the most advanced node
                    // left, and then takes over as a replica would.
                    if !was_sync {
                        if let Some(h) = self
                            .promote_if_leaderless(&survey, &mut leaderless_since, &mut term)
                            .await
                        {
                            held = Some(h);
                            continue;
                        }
                    }
                    self.keep_conninfo(&mut password_set).await;
                    if let Some(end) = self.follow(&survey, &mut not_streaming_since).await {
                        return end;
                    }
                }
                DbRole::Replica => {
                    // Its own WAL receiver, not a connection to the primary: across regions
                    // a connection alone can take longer than a tick.
                    self.sample_receiver().await;
                    let survey = self.survey().await;
                    if let Some(h) = self
                        .promote_if_leaderless(&survey, &mut leaderless_since, &mut term)
                        .await
                    {
                        held = Some(h);
                        continue;
                    }
                    self.keep_conninfo(&mut password_set).await;
                    if let Some(end) = self.follow(&survey, &mut not_streaming_since).await {
                        return end;
                    }
                }
            }
            if self.role.get() == DbRole::Primary && held.is_some_and(|h| h.valid(Instant::now())) {
                self.point_writer(Some(self.opts.public));
            }
            tokio::time::sleep(self.tick()).await;
        }
    }

    /// When nobody has led for two leases (the writer region is lost, or a standby that
    /// did not know itself synchronous is left), promotes this node if the policy, its lag
    /// and the WAL the others received allow it; the lease it won when it did.
    async fn promote_if_leaderless(
        &self,
        survey: &Survey,
        leaderless_since: &mut Option<Instant>,
        term: &mut u64,
    ) -> Option<Held> {
        if survey.leader.is_some() {
            *leaderless_since = None;
            return None;
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        // By hand, the operator has judged the lag and the policy: nobody leading is enough.
        let by_hand = self.standing.promotion_requested();
        if !by_hand && (since.elapsed() < self.opts.lease * 2 || !self.may_promote().await) {
            return None;
        }
        let (won, highest) = self.campaign((*term).max(self.highest_term()) + 1).await;
        *term = (*term).max(highest);
        let h = won?;
        let cause = if by_hand {
            "promoted by hand (meridian db promote) while nobody led"
        } else {
            "nobody has led for two leases and this node is the most advanced left"
        };
        if self.promote(cause).await {
            self.standing.requested.store(false, Ordering::Release);
            *term = h.term;
            *leaderless_since = None;
            Some(h)
        } else {
            None
        }
    }

    fn highest_term(&self) -> u64 {
        self.witness.current(Instant::now()).term
    }

    /// Connects to the upstream (through the relay) within a tick; on success records
    /// whether it has this node as its synchronous standby.
    async fn check_upstream(&self, upstream: SocketAddr) -> bool {
        let me = self.opts.name.clone();
        let check = async {
            let client = Probe::of(upstream, self.opts).connect().await?;
            let row = client
                .query_opt(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                    &[&me],
                )
                .await
                .map_err(|e| describe(&e))?;
            Ok::<_, String>(row.is_some_and(|r| r.get::<_, String>(0) == "sync"))
        };
        let reached = tokio::time::timeout(self.tick(), check).await;
        match reached {
            Ok(Ok(was_sync)) => {
                self.standing.record(|c| {
                    c.was_sync = was_sync;
                    c.at = Some(Instant::now());
                });
                true
            }
            _ => false,
        }
    }

    /// Records this standby's lag while its WAL receiver streams: the lag at the last
    /// contact is what a promotion would lose.
    async fn sample_receiver(&self) {
        if let Ok(Some(r)) = self.probe.receiver().await {
            if r.streaming {
                self.standing.record(|c| c.lag_bytes = Some(r.lag_bytes));
            }
        }
    }

    /// Whether this replica may be promoted now: the policy allows it, its lag at the
    /// last contact was within the limit, and no reachable standby received more WAL.
    async fn may_promote(&self) -> bool {
        let name = &self.opts.name;
        if self.opts.peers.is_empty() || !self.standing.promotable() {
            return false;
        }
        let Ok(own) = self.probe.status().await else {
            return false;
        };
        for p in &self.opts.peers {
            let Ok(fetched) = meridian_http::client::call(
                p.admin,
                http::Method::GET,
                "/status",
                None,
                self.ask_timeout(),
                64 * 1024,
            )
            .await
            else {
                continue;
            };
            let Ok(other) = serde_json::from_slice::<crate::status::Status>(&fetched.body) else {
                continue;
            };
            if !other.in_recovery || !other.promotable {
                continue;
            }
            if (other.received, other.name.as_str()) > (own.received, name.as_str()) {
                tracing::info!(
                    "{name}: nobody leads, but {} received more WAL ({} > {} bytes): leaving the promotion to it",
                    other.name,
                    other.received,
                    own.received
                );
                return false;
            }
        }
        true
    }

    /// Promotes this standby and prepares it to lead: a slot for every other node. Says
    /// why, since every role change is an event with its cause.
    async fn promote(&self, cause: &str) -> bool {
        let name = &self.opts.name;
        tracing::warn!("{name}: promoting: {cause}");
        match self.promote_now().await {
            Ok(created) => {
                self.role.change(DbRole::Primary, cause);
                tracing::warn!(
                    "{name}: promoted to primary (slots made: {})",
                    if created.is_empty() {
                        "none".to_owned()
                    } else {
                        created.join(", ")
                    }
                );
                true
            }
            Err(e) => {
                tracing::error!("{name}: {e}");
                false
            }
        }
    }

    async fn promote_now(&self) -> Result<Vec<String>, DbError> {
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
        // The new timeline reaches pg_control only at a checkpoint, and pg_rewind reads
        // the timeline there: an old primary rewinding from this node before it would
        // find "the same timeline" and not rewind at all.
        client.batch_execute("CHECKPOINT").await.map_err(|e| {
            DbError::Promote(format!("CHECKPOINT after promotion: {}", describe(&e)))
        })?;
        let others: Vec<String> = self.opts.peers.iter().map(|p| p.name.clone()).collect();
        self.probe.create_missing_slots(&others).await
    }

    /// A primary waits on commit for one standby of its own region, as Multi-AZ does;
    /// when none has streamed for two leases, commits stop waiting (asynchronous) rather
    /// than stop altogether, and the console shows a primary without a synchronous standby.
    /// Two leases: longer than a cut-off standby believes it is synchronous, so it never
    /// takes over missing a commit acknowledged without it.
    async fn keep_synchronous(
        &self,
        current: &mut Option<String>,
        gone_since: &mut Option<Instant>,
    ) {
        // The configured standbys, then every other node of this region.
        let mut local = self.opts.sync_standbys.clone();
        for p in &self.opts.peers {
            if p.region == self.opts.region && !local.contains(&p.name) {
                local.push(p.name.clone());
            }
        }
        let Ok(status) = self.probe.status().await else {
            return;
        };
        let streaming = status
            .standbys
            .iter()
            .any(|s| local.contains(&s.name) && s.state == "streaming");
        if streaming || local.is_empty() {
            *gone_since = None;
        } else {
            gone_since.get_or_insert_with(Instant::now);
        }
        // Waiting starts only once a standby streams: a node just promoted, or a primary
        // whose standby has not connected yet, has nobody to wait for, and every commit
        // would hang. A standby that was streaming is given a lease to come back.
        // Before its first setting, a configured primary waits as its config says.
        let waiting = match current.as_deref() {
            Some(c) => !c.is_empty(),
            None => self.opts.role == DbRole::Primary && !self.opts.sync_standbys.is_empty(),
        };
        let wanted = if streaming
            || (waiting && !gone_since.is_some_and(|t| t.elapsed() >= self.opts.lease * 2))
        {
            crate::conf::synchronous_standby_names(&local)
        } else {
            String::new()
        };
        if current.as_deref() == Some(wanted.as_str()) {
            return;
        }
        let sql = format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            crate::conf::quote(&wanted)
        );
        let set = async {
            let client = self.probe.connect().await?;
            // Two statements: ALTER SYSTEM cannot run inside the implicit transaction of
            // a multi-statement query.
            client.batch_execute(&sql).await.map_err(|e| describe(&e))?;
            client
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .map_err(|e| describe(&e))
        };
        match set.await {
            Ok(()) => {
                if wanted.is_empty() && !local.is_empty() {
                    tracing::warn!(
                        "{}: no standby of its region streams: commits do not wait for one",
                        self.opts.name
                    );
                } else if current.is_some() {
                    tracing::info!(
                        "{}: commits wait for a standby of its region again ({wanted})",
                        self.opts.name
                    );
                }
                *current = Some(wanted);
            }
            Err(e) => tracing::warn!(
                "{}: cannot set synchronous_standby_names: {e}",
                self.opts.name
            ),
        }
    }

    /// Points this node's relay and writer endpoint at whoever holds the lease; asks for
    /// a rewind when this node has not streamed from that leader for four leases although
    /// it answers.
    async fn follow(
        &self,
        survey: &Survey,
        not_streaming_since: &mut Option<(String, Instant)>,
    ) -> Option<KeepEnd> {
        let peer = survey.leader.as_deref().and_then(|l| self.peer(l)).cloned();
        self.point_writer(peer.as_ref().map(|p| p.address));
        let (Some(follow), Some(peer)) = (&self.follow, peer) else {
            *not_streaming_since = None;
            return None;
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
        let streaming = self
            .probe
            .receiver()
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.streaming);
        if streaming {
            *not_streaming_since = None;
            return None;
        }
        let since = match not_streaming_since {
            Some((leader, since)) if *leader == peer.name => *since,
            _ => {
                *not_streaming_since = Some((peer.name.clone(), Instant::now()));
                return None;
            }
        };
        let reachable = match self.opts.upstream {
            Some(up) => matches!(
                tokio::time::timeout(self.tick(), Probe::of(up, self.opts).connect()).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        if since.elapsed() >= self.opts.lease * 4 && reachable {
            tracing::warn!(
                "{}: has not streamed from {} for {}s although it answers: its history went past the primary's; rewinding",
                self.opts.name,
                peer.name,
                since.elapsed().as_secs()
            );
            return Some(KeepEnd::Rejoin(peer));
        }
        None
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

/// The primary's watchdog: a thread of its own that kills PostgreSQL the moment the
/// lease it holds is no longer valid. When the node was frozen (SIGSTOP, a paused VM) and
/// resumes, this thread runs as soon as the server's processes do, long before a client
/// can finish a connection; the keeper's loop would only notice at its next tick.
struct Fence {
    deadline: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Fence {
    fn start(name: &str, postgres: i32) -> Fence {
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s, name) = (deadline.clone(), stop.clone(), name.to_owned());
        let spawned = std::thread::Builder::new()
            .name("db-fence".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                    let mut due = d.lock().unwrap_or_else(|p| p.into_inner());
                    if due.is_some_and(|t| Instant::now() >= t) && postgres > 0 {
                        kill_server(postgres);
                        tracing::error!(
                            "{name}: the leader lease ran out before it was renewed (was the node frozen?): PostgreSQL killed"
                        );
                        *due = None;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the fence thread: {e}");
        }
        Fence { deadline, stop }
    }

    /// Kill the server once `held` is no longer valid (None: never).
    fn arm(&self, held: Option<Held>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) =
            held.map(|h| h.asked + h.lease.mul_f64(0.8));
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// SIGKILL to the postmaster, then to every process it had started: a backend waiting for
/// a synchronous commit must not get to acknowledge it.
fn kill_server(postmaster: i32) {
    let children = children_of(postmaster);
    // SAFETY: kill has no memory preconditions; the pids are the server's processes.
    unsafe {
        libc::kill(postmaster, libc::SIGKILL);
        for c in children {
            libc::kill(c, libc::SIGKILL);
        }
    }
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // The command name may hold spaces and parentheses: ppid follows the last ')'.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
