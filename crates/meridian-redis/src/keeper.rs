//! The keeper: runs redis-server, keeps it in the role the cluster needs, and fails over.
//!
//! Each keeper holds a *term*, raised by every promotion and kept in the node directory.
//! Of two nodes that both claim to be primary, the higher term wins (on a tie, the node
//! configured as primary); the loser becomes a replica at its next check. That is what
//! makes a returning old primary step down instead of taking writes beside the new one.
//! The keeper's role is what the cluster wants; each check brings Redis in line with it
//! (REPLICAOF), so a frozen server that wakes up is corrected within one check.

use crate::conf;
use crate::error::CacheError;
use crate::options::CacheOptions;
use crate::peer;
use crate::server::RedisServer;
use meridian_config::CacheRole;
use meridian_resp::{Client, Info};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A server that exits this soon after starting, this many times in a row, is broken:
/// the keeper gives up and says why instead of restarting it in a loop.
const QUICK_EXIT: Duration = Duration::from_secs(5);
const QUICK_EXITS_MAX: u32 = 3;
/// How long a new server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Role changes kept for /status.
const EVENTS_KEPT: usize = 16;

/// What a keeper says about itself to its peer (`GET /role`): cheap, from its last check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleView {
    pub name: String,
    pub role: CacheRole,
    pub term: u64,
    /// Whether its Redis answered at the last check.
    pub redis_up: bool,
    /// Its Redis's replication offset.
    pub offset: i64,
    /// Whether its Redis holds the cluster's data: a primary, or a replica that has
    /// synced from its primary since it started.
    pub holds_copy: bool,
}

/// One role change, with its cause.
#[derive(Debug, Clone, Serialize)]
pub struct RoleEvent {
    pub at_unix_ms: u128,
    pub role: CacheRole,
    pub term: u64,
    pub cause: String,
}

pub(crate) struct Keeper {
    pub opts: CacheOptions,
    program: PathBuf,
    version: u32,
    role: Mutex<CacheRole>,
    term: AtomicU64,
    /// The node the primary endpoint leads to.
    primary: watch::Sender<Option<SocketAddr>>,
    /// Own Redis at the last check: up, and its replication offset.
    last: Mutex<(bool, i64)>,
    /// Whether this node's Redis has been a primary or had its link to the primary up
    /// since it started: an empty replica that never synced holds nothing worth keeping.
    synced: std::sync::atomic::AtomicBool,
    /// When the primary (as a replica sees it) last answered.
    primary_seen: Mutex<Instant>,
    pub events: Mutex<VecDeque<RoleEvent>>,
    pub promotions: AtomicU64,
    /// One role decision at a time (a check, or a peer's request to promote).
    deciding: tokio::sync::Mutex<()>,
    /// The passwords this node's Redis takes, as last written or set (current first).
    pub(crate) applied: Mutex<Vec<String>>,
}

impl Keeper {
    pub fn new(opts: CacheOptions, program: PathBuf, version: u32) -> Self {
        let term = std::fs::read_to_string(opts.dir.join("term"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let (primary, _) = watch::channel(None);
        Keeper {
            role: Mutex::new(opts.role),
            opts,
            program,
            version,
            term: AtomicU64::new(term),
            primary,
            last: Mutex::new((false, 0)),
            synced: std::sync::atomic::AtomicBool::new(false),
            primary_seen: Mutex::new(Instant::now()),
            events: Mutex::new(VecDeque::new()),
            promotions: AtomicU64::new(0),
            deciding: tokio::sync::Mutex::new(()),
            applied: Mutex::new(Vec::new()),
        }
    }

    pub fn primary_watch(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.primary.subscribe()
    }

    pub fn role(&self) -> CacheRole {
        *self.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    pub fn primary(&self) -> Option<SocketAddr> {
        *self.primary.borrow()
    }

    /// Notes what one INFO of this node's Redis says.
    pub fn observe(&self, info: Option<&Info>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = match info {
            Some(info) => {
                if info.is_primary() || info.get("master_link_status") == Some("up") {
                    self.synced.store(true, Ordering::Release);
                }
                (true, offset(info))
            }
            None => (false, 0),
        };
    }

    /// What this node is now, read from its Redis at the time of asking.
    pub async fn view(&self) -> RoleView {
        // Within half the asker's deadline, so a frozen Redis is an answer, not a timeout.
        let read = async {
            let mut c = self.own().await.ok()?;
            c.info("replication").await.ok()
        };
        let info = tokio::time::timeout(self.call_timeout() / 2, read)
            .await
            .ok()
            .flatten();
        self.observe(info.as_ref());
        let (redis_up, offset) = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        RoleView {
            name: self.opts.name.clone(),
            role: self.role(),
            term: self.term(),
            redis_up,
            offset,
            holds_copy: redis_up && self.synced.load(Ordering::Acquire),
        }
    }

    /// How often the keeper checks: often enough to notice a lost primary well within
    /// the failover time.
    pub fn interval(&self) -> Duration {
        (self.opts.failover / 6).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// The deadline of one call to a Redis or a keeper.
    pub fn call_timeout(&self) -> Duration {
        (self.opts.failover / 3).clamp(Duration::from_millis(200), Duration::from_secs(1))
    }

    /// A fresh authenticated connection to this node's Redis.
    pub async fn own(&self) -> Result<Client, meridian_resp::RespError> {
        self.connect(self.opts.listen).await
    }

    /// Writes redis.conf for the role `replica_of` says, with `passwords`.
    pub(crate) fn write_conf(
        &self,
        replica_of: Option<SocketAddr>,
        passwords: &[String],
    ) -> Result<(), CacheError> {
        let path = self.opts.dir.join("redis.conf");
        let text = conf::render(&self.opts, replica_of, self.version, passwords);
        meridian_http::tls::write_secret(&path, text.as_bytes()).map_err(|source| CacheError::Io {
            step: "writing redis.conf",
            path,
            source,
        })
    }

    fn set_role(&self, role: CacheRole, term: u64, primary: Option<SocketAddr>, cause: String) {
        let before = std::mem::replace(
            &mut *self.role.lock().unwrap_or_else(|p| p.into_inner()),
            role,
        );
        let old_term = self.term.swap(term, Ordering::AcqRel);
        if old_term != term {
            // Kept so a restarted keeper still knows which promotions it has seen.
            let _ = std::fs::write(self.opts.dir.join("term"), format!("{term}\n"));
        }
        self.primary.send_if_modified(|p| {
            let changed = *p != primary;
            *p = primary;
            changed
        });
        if before != role || old_term != term {
            tracing::info!(
                "{}: now {} (term {term}): {cause}",
                self.opts.name,
                role.as_str()
            );
            let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
            if ev.len() == EVENTS_KEPT {
                ev.pop_front();
            }
            ev.push_back(RoleEvent {
                at_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                role,
                term,
                cause,
            });
        }
    }

    async fn peer_view(&self) -> Option<RoleView> {
        let peer = self.opts.peer.as_ref()?;
        let (code, body) = peer::request(
            peer.admin,
            "GET",
            "/role",
            &self.opts.admin_token.current(),
            self.call_timeout(),
        )
        .await?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Whether `peer` should be primary rather than this node: a higher term, or on a tie
    /// the node the config made primary.
    fn outranked_by(&self, peer: &RoleView) -> bool {
        peer.term > self.term()
            || (peer.term == self.term() && self.opts.role == CacheRole::Replica)
    }

    /// Makes this node the primary (REPLICAOF NO ONE) with a term above `at_least` and its
    /// own; the new term.
    pub async fn promote(&self, at_least: u64, cause: String) -> Result<u64, String> {
        let _one = self.deciding.lock().await;
        self.promote_locked(at_least, cause).await
    }

    async fn promote_locked(&self, at_least: u64, cause: String) -> Result<u64, String> {
        if self.role() == CacheRole::Primary && self.term() >= at_least {
            return Ok(self.term());
        }
        let mut c = self.own().await.map_err(|e| e.to_string())?;
        c.call(&["REPLICAOF", "NO", "ONE"])
            .await
            .map_err(|e| e.to_string())?;
        let term = self.term().max(at_least) + 1;
        self.promotions.fetch_add(1, Ordering::Relaxed);
        self.set_role(CacheRole::Primary, term, Some(self.opts.listen), cause);
        Ok(term)
    }

    /// Follows `primary` from now on; Redis is brought in line by the next check.
    fn follow(&self, primary: SocketAddr, term: u64, cause: String) {
        *self.primary_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.set_role(
            CacheRole::Replica,
            term.max(self.term()),
            Some(primary),
            cause,
        );
    }

    /// The role to start Redis in, from what the peer says: a node whose Redis starts
    /// empty never becomes primary over a peer that holds the data.
    async fn decide_start(&self) -> Option<SocketAddr> {
        let Some(peer) = self.opts.peer.clone() else {
            self.set_role(
                CacheRole::Primary,
                self.term(),
                Some(self.opts.listen),
                "a single-node cluster".into(),
            );
            return None;
        };
        match self.peer_view().await {
            Some(v) if v.role == CacheRole::Primary && v.redis_up => {
                self.follow(
                    peer.address,
                    v.term,
                    format!("{} is primary (term {})", peer.name, v.term),
                );
                return Some(peer.address);
            }
            Some(v) if v.role == CacheRole::Replica && v.holds_copy => {
                // It holds a copy and this node's Redis starts empty: it takes over.
                let path = format!("/promote?term={}", self.term());
                if let Some((200, body)) = peer::request(
                    peer.admin,
                    "POST",
                    &path,
                    &self.opts.admin_token.current(),
                    self.call_timeout() * 3,
                )
                .await
                {
                    let term = body.trim().parse().unwrap_or(v.term + 1);
                    self.follow(
                        peer.address,
                        term,
                        format!(
                            "started empty; {} holds the data and took over (term {term})",
                            peer.name
                        ),
                    );
                    return Some(peer.address);
                }
            }
            _ => {}
        }
        match self.opts.role {
            CacheRole::Primary => {
                self.set_role(
                    CacheRole::Primary,
                    self.term(),
                    Some(self.opts.listen),
                    "configured primary".into(),
                );
                None
            }
            CacheRole::Replica => {
                self.follow(
                    peer.address,
                    self.term(),
                    format!("configured replica of {}", peer.name),
                );
                Some(peer.address)
            }
        }
    }

    /// One check: read this node's Redis and the peer, fail over or step down when the
    /// cluster needs it, then bring Redis in line with the role.
    async fn check(&self) {
        let _one = self.deciding.lock().await;
        let own = match self.own().await {
            Ok(mut c) => c.info("replication").await.ok().map(|i| (c, i)),
            Err(_) => None,
        };
        self.observe(own.as_ref().map(|(_, i)| i));
        let Some(peer) = self.opts.peer.clone() else {
            return self.converge(own, None).await;
        };
        // The peer keeper's word and the primary's own answer, asked at once so a check
        // takes one call's deadline at most.
        let ping_primary = async {
            if self.role() != CacheRole::Replica {
                return false;
            }
            match self.connect(peer.address).await {
                Ok(mut c) => c.ping().await.is_ok(),
                Err(_) => false,
            }
        };
        let (view, reachable) = tokio::join!(self.peer_view(), ping_primary);
        match self.role() {
            CacheRole::Primary => {
                if let Some(v) = view.as_ref().filter(|v| v.role == CacheRole::Primary) {
                    if self.outranked_by(v) {
                        self.follow(
                            peer.address,
                            v.term,
                            format!(
                                "{} is primary with term {} (this node had {}): stepping down",
                                peer.name,
                                v.term,
                                self.term()
                            ),
                        );
                    }
                }
            }
            CacheRole::Replica => {
                let now = Instant::now();
                let seen = {
                    let mut s = self.primary_seen.lock().unwrap_or_else(|p| p.into_inner());
                    if reachable {
                        *s = now;
                    }
                    *s
                };
                let peer_leads = view
                    .as_ref()
                    .is_some_and(|v| v.role == CacheRole::Primary && v.redis_up);
                let both_replicas = view
                    .as_ref()
                    .is_some_and(|v| v.role == CacheRole::Replica && !self.outranked_by(v));
                let cause = if both_replicas && own.is_some() {
                    Some(format!(
                        "{} is a replica too, and this node outranks it",
                        peer.name
                    ))
                } else if now.duration_since(seen) >= self.opts.failover
                    && !peer_leads
                    && own.is_some()
                {
                    Some(format!(
                        "the primary {} has been unreachable for {:.1}s (failover after {:.1}s)",
                        peer.name,
                        now.duration_since(seen).as_secs_f64(),
                        self.opts.failover.as_secs_f64()
                    ))
                } else {
                    None
                };
                if let Some(cause) = cause {
                    let at_least = view.as_ref().map(|v| v.term).unwrap_or(0);
                    if let Err(e) = self.promote_locked(at_least, cause).await {
                        tracing::warn!("{}: cannot promote: {e}", self.opts.name);
                    }
                    // The connection used for INFO saw the old role.
                    let own = match self.own().await {
                        Ok(mut c) => c.info("replication").await.ok().map(|i| (c, i)),
                        Err(_) => None,
                    };
                    return self.converge(own, Some(peer.address)).await;
                }
            }
        }
        self.converge(own, Some(peer.address)).await
    }

    /// Brings Redis in line with the keeper's role.
    async fn converge(&self, own: Option<(Client, Info)>, peer: Option<SocketAddr>) {
        let Some((mut c, info)) = own else { return };
        self.sync_passwords(&mut c).await;
        let name = &self.opts.name;
        match (self.role(), peer) {
            (CacheRole::Primary, _) if !info.is_primary() => {
                tracing::info!(
                    "{name}: Redis is a replica but this node is primary: REPLICAOF NO ONE"
                );
                if let Err(e) = c.call(&["REPLICAOF", "NO", "ONE"]).await {
                    tracing::warn!("{name}: {e}");
                }
            }
            (CacheRole::Replica, Some(p)) if info.is_primary() || info.primary() != Some(p) => {
                tracing::info!("{name}: making Redis a replica of {p}");
                let (ip, port) = (p.ip().to_string(), p.port().to_string());
                if let Err(e) = c.call(&["REPLICAOF", &ip, &port]).await {
                    tracing::warn!("{name}: {e}");
                }
            }
            _ => {}
        }
    }

    /// Runs Redis until the stop flag is set (Ok), restarting it when it exits, unless
    /// it keeps exiting at once (Err).
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), CacheError> {
        let name = self.opts.name.clone();
        let conf_path = self.opts.dir.join("redis.conf");
        let mut quick_exits = 0;
        loop {
            let replica_of = tokio::select! {
                r = self.decide_start() => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let passwords = self.wanted_passwords();
            if passwords.is_empty() {
                return Err(CacheError::InvalidOptions(format!(
                    "cache node {name:?}: no usable cache password"
                )));
            }
            self.write_conf(replica_of, &passwords)?;
            self.set_applied(passwords);
            let run_as = crate::owner::run_as().filter(|u| {
                let ok = crate::owner::can_reach(*u, &self.opts.dir);
                if !ok {
                    tracing::warn!(
                        "{name}: the redis user cannot reach {}; running redis-server as root",
                        self.opts.dir.display()
                    );
                }
                ok
            });
            if let Some(user) = run_as {
                // Its config holds the password: readable by it alone. Its directory is
                // where a replica receives a full copy.
                for path in [&self.opts.dir, &conf_path] {
                    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(
                        |source| CacheError::Io {
                            step: "giving the node directory to the redis user",
                            path: path.to_path_buf(),
                            source,
                        },
                    )?;
                }
            }
            let mut server = RedisServer::start(&self.program, &conf_path, &name, run_as)?;
            let started = Instant::now();
            let mut last_error = String::new();
            let mut ready = false;
            let exit = loop {
                tokio::select! {
                    st = server.wait() => break Some(st),
                    _ = stop.wait_for(|s| *s) => break None,
                    _ = tokio::time::sleep(if ready { self.interval() } else { Duration::from_millis(50) }) => {}
                }
                if !ready {
                    match self.own().await {
                        Ok(mut c) => match c.ping().await {
                            Ok(()) => {
                                ready = true;
                                tracing::info!("{name}: Redis answers on {}", self.opts.listen);
                            }
                            Err(e) => last_error = e.to_string(),
                        },
                        Err(e) => last_error = e.to_string(),
                    }
                    if !ready && started.elapsed() > READY_TIMEOUT {
                        server.stop(&name).await;
                        return Err(CacheError::NotReady {
                            name,
                            secs: READY_TIMEOUT.as_secs(),
                            last_error,
                        });
                    }
                    continue;
                }
                self.check().await;
            };
            let Some(status) = exit else {
                server.stop(&name).await;
                return Ok(());
            };
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (false, 0);
            // The next server starts empty.
            self.synced.store(false, Ordering::Release);
            let err = server.exited(status, &name).await;
            quick_exits = if started.elapsed() < QUICK_EXIT {
                quick_exits + 1
            } else {
                0
            };
            if quick_exits >= QUICK_EXITS_MAX {
                return Err(err);
            }
            tracing::warn!("{name}: {err}; starting it again");
        }
    }
}

/// A node's replication offset: a replica's `slave_repl_offset`, else its own.
pub(crate) fn offset(info: &Info) -> i64 {
    info.int("slave_repl_offset")
        .or_else(|| info.int("master_repl_offset"))
        .unwrap_or(0)
}
