//! Running PostgreSQL's programs as children: one-shot tools (initdb, pg_basebackup)
//! and the `postgres` server itself, which runs in the foreground for the node's whole
//! life. No child outlives the keeper: each is killed when its handle is dropped and
//! signalled by the kernel if the keeper dies.

use crate::datadir::Node;
use crate::error::DbError;
use crate::keeper::{KeepEnd, Keeper};
use crate::lease::Peer;
use crate::spawn::{command, describe_status, tail, TAIL_LINES};
use crate::status::Probe;
use meridian_config::DbRole;
use std::collections::VecDeque;
use std::future::Future;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long fast shutdown (SIGINT) may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The running `postgres` server.
struct Postgres {
    child: Child,
    pid: i32,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    pump: JoinHandle<()>,
}

impl Postgres {
    fn start(node: &Node<'_>) -> Result<Self, DbError> {
        let program = node.bins.program("postgres");
        // If the keeper dies, the server shuts down fast and cleanly (no orphan, and no
        // crash recovery on the next start).
        let mut cmd = command(&program, node.run_as, libc::SIGINT);
        cmd.arg("-D")
            .arg(&node.opts.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| DbError::Spawn {
            step: "starting postgres",
            program: program.clone(),
            source,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let pump = match child.stderr.take() {
            Some(stderr) => tokio::spawn(pump_stderr(
                node.opts.name.clone(),
                stderr,
                stderr_tail.clone(),
            )),
            None => tokio::spawn(async {}),
        };
        tracing::info!(
            "{}: postgres started (pid {pid}, data {})",
            node.opts.name,
            node.opts.data_dir.display()
        );
        node.phase.set(format!("postgres (pid {pid}) is starting"));
        Ok(Postgres {
            child,
            pid,
            stderr_tail,
            pump,
        })
    }

    /// The error for a server that stopped on its own, with its last words.
    async fn exited(self, status: std::io::Result<ExitStatus>, node: &Node<'_>) -> DbError {
        // Let the pump read what was written just before the exit.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pump).await;
        let lines: Vec<String> = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        DbError::Exited {
            data_dir: node.opts.data_dir.clone(),
            status: match status {
                Ok(s) => describe_status(s),
                Err(e) => format!("cannot wait for it: {e}"),
            },
            stderr_tail: tail(&lines.join("\n")),
        }
    }

    /// Fast shutdown (SIGINT: roll back sessions, checkpoint, exit), then SIGKILL if it
    /// takes longer than the grace period.
    async fn stop(mut self, name: &str) {
        if self.pid > 0 {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGINT) };
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => {
                tracing::info!("{name}: postgres stopped ({})", describe_status(status))
            }
            Ok(Err(e)) => tracing::warn!("{name}: waiting for postgres to stop: {e}"),
            Err(_) => {
                tracing::warn!(
                    "{name}: postgres did not stop within {}s of a fast shutdown; killing it",
                    STOP_GRACE.as_secs()
                );
                let _ = self.child.kill().await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pump).await;
    }
}

/// Logs the server's stderr through tracing, one event per line, and keeps the tail.
async fn pump_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = crate::conf::redact_password(String::from_utf8_lossy(&buf).trim_end());
        if line.is_empty() {
            continue;
        }
        if ["ERROR:", "FATAL:", "PANIC:", "WARNING:"]
            .iter()
            .any(|k| line.contains(k))
        {
            tracing::warn!("{name}: {line}");
        } else {
            tracing::info!("{name}: {line}");
        }
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

enum Event<T> {
    Done(T),
    Exited(std::io::Result<ExitStatus>),
    Stop,
}

/// Runs `work` while watching the server and the stop flag.
async fn watch_while<F: std::future::Future>(
    pg: &mut Postgres,
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Event<F::Output> {
    tokio::select! {
        out = work => Event::Done(out),
        status = pg.child.wait() => Event::Exited(status),
        _ = stop.wait_for(|s| *s) => Event::Stop,
    }
}

/// Runs the server until it stops on its own (Err) or the keeper is told to stop (Ok).
/// A primary first takes the lease, waits for the server to accept connections and makes
/// the missing slots; a node whose data is a primary's but which another node has
/// replaced rejoins as a standby first.
pub(crate) async fn supervise(
    node: &Node<'_>,
    probe: &Probe,
    keeper: &Keeper<'_>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DbError> {
    let name = node.opts.name.as_str();
    // A primary writes nothing before it holds the lease. That is what the data directory
    // says, not only the config: a standby promoted before this start has no
    // standby.signal any more and comes up writable.
    let writable = !node.opts.data_dir.join("standby.signal").exists();
    if writable && node.opts.role != DbRole::Primary {
        tracing::warn!(
            "{name}: its data directory is a primary's (promoted before this start): taking the lease first"
        );
        keeper.role.change(
            DbRole::Primary,
            "its data directory is a primary's (promoted before this start)",
        );
    }
    if !writable && node.opts.role == DbRole::Primary {
        keeper.role.change(
            DbRole::Replica,
            "its data directory is a standby's (it rejoined before this start)",
        );
    }
    let mut held = None;
    if writable {
        node.phase.set("waiting for the leader lease");
        match until_stopped(&mut stop, keeper.acquire()).await {
            None => return Ok(()),
            Some(Ok(h)) => held = Some(h),
            Some(Err(DbError::LeaseHeld { holder, data_dir })) => {
                let Some(leader) = keeper.peer(&holder).cloned() else {
                    return Err(DbError::LeaseHeld { holder, data_dir });
                };
                tracing::warn!(
                    "{name}: {holder} was elected after this node led: rejoining as its standby"
                );
                match until_stopped(&mut stop, rejoin(node, keeper, &leader)).await {
                    None => return Ok(()),
                    Some(done) => done?,
                }
            }
            Some(Err(e)) => return Err(e),
        }
    }

    loop {
        let mut pg = Postgres::start(node)?;
        if keeper.role.get() == DbRole::Primary {
            match watch_while(&mut pg, &mut stop, wait_ready(probe, name)).await {
                Event::Done(()) => {}
                Event::Exited(status) => return Err(pg.exited(status, node).await),
                Event::Stop => {
                    pg.stop(name).await;
                    return Ok(());
                }
            }
            match watch_while(
                &mut pg,
                &mut stop,
                probe.create_missing_slots(&node.opts.replicas),
            )
            .await
            {
                Event::Done(Ok(created)) => {
                    if !created.is_empty() {
                        tracing::info!("{name}: created replication slots {}", created.join(", "));
                    }
                }
                Event::Done(Err(e)) => {
                    pg.stop(name).await;
                    return Err(e);
                }
                Event::Exited(status) => return Err(pg.exited(status, node).await),
                Event::Stop => {
                    pg.stop(name).await;
                    return Ok(());
                }
            }
        }

        node.phase.set("running");
        let pid = pg.pid;
        match watch_while(&mut pg, &mut stop, keeper.keep(held.take(), pid)).await {
            Event::Exited(status) => return Err(pg.exited(status, node).await),
            // Fenced: no write may follow a lease that ran out.
            Event::Done(KeepEnd::Fenced(lost)) => {
                pg.stop(name).await;
                return Err(lost);
            }
            Event::Done(KeepEnd::Rejoin(leader)) => {
                pg.stop(name).await;
                match until_stopped(&mut stop, rejoin(node, keeper, &leader)).await {
                    None => return Ok(()),
                    Some(done) => done?,
                }
            }
            Event::Stop => {
                pg.stop(name).await;
                return Ok(());
            }
        }
    }
}

/// Points this node's relay at `leader` and rewinds the (stopped) server's data to
/// stream from it. It comes back as the leader's synchronous standby when they share a
/// region (the leader's keeper waits for it once it streams), else as a replica.
async fn rejoin(node: &Node<'_>, keeper: &Keeper<'_>, leader: &Peer) -> Result<(), DbError> {
    let (Some(follow), Some(relay)) = (&keeper.follow, node.opts.upstream) else {
        return Err(DbError::LeaseHeld {
            holder: leader.name.clone(),
            data_dir: node.opts.data_dir.clone(),
        });
    };
    let _ = follow.send(Some(leader.address));
    crate::datadir::rewind(node, relay).await?;
    keeper.role.change(
        if leader.region == node.opts.region {
            DbRole::SyncStandby
        } else {
            DbRole::Replica
        },
        format!("rewound to follow {}, elected after it led", leader.name),
    );
    Ok(())
}

/// Waits until the server accepts a connection (crash recovery can take a while on a
/// big database), saying so every few seconds.
async fn wait_ready(probe: &Probe, name: &str) {
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        match probe.connect().await {
            Ok(_) => {
                tracing::info!("{name}: postgres accepts connections on {}", probe.target());
                return;
            }
            Err(reason) => {
                if last_log.elapsed() >= Duration::from_secs(5) {
                    tracing::info!(
                        "{name}: waiting for postgres to accept connections ({}s: {reason})",
                        started.elapsed().as_secs()
                    );
                    last_log = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `work` unless and until the stop flag is set; `None` means stopped first (the
/// work is dropped, which kills any child it spawned).
pub(crate) async fn until_stopped<F: Future>(
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        out = work => Some(out),
        _ = stop.wait_for(|s| *s) => None,
    }
}
