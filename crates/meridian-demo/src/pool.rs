//! A few PostgreSQL sessions kept open per endpoint, reopened when they break.
//!
//! A failover or a restart cuts every session: a pool that kept handing out a dead session
//! would fail every request afterwards. Each checkout therefore checks that its session is
//! still open, and a request that meets a broken one discards it, so the next one connects
//! again (to whichever host of the multi-host list answers now).

use meridian_http::secrets::Secret;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, NoTls};

/// How long one host may take to accept a session (TCP, then scram) before the next is tried.
const CONNECT_TIMEOUT_PER_HOST: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no {pool} endpoint has accepted a session: {source}")]
    Connect {
        pool: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("no {pool} endpoint answered within {after:?}")]
    ConnectTimeout { pool: &'static str, after: Duration },
}

/// Who to log in as, and where.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    /// Re-read, so each new session logs in with the password of the moment: after a
    /// rotation the new one, or the previous one while the server has not taken the new.
    pub password: Secret,
    pub dbname: String,
}

/// Sessions to one endpoint list (the writers, or the readers).
pub struct Pool {
    name: &'static str,
    /// Everything but the password, which is set per attempt.
    config: tokio_postgres::Config,
    password: Secret,
    hosts: usize,
    slots: Vec<Arc<Mutex<Option<Client>>>>,
    next: AtomicUsize,
    /// Why the last attempt failed, for /health; None once it works again.
    last_error: StdMutex<Option<String>>,
}

impl Pool {
    /// `hosts` are tried in order (libpq's multi-host list); with `read_write` only a host
    /// that takes writes is kept, as `target_session_attrs=read-write`.
    pub fn new(
        name: &'static str,
        hosts: &[SocketAddr],
        login: &Login,
        read_write: bool,
        size: usize,
    ) -> Self {
        let mut config = tokio_postgres::Config::new();
        for h in hosts {
            config.host(h.ip().to_string()).port(h.port());
        }
        config
            .user(&login.user)
            .dbname(&login.dbname)
            .application_name("meridian-demo")
            .connect_timeout(CONNECT_TIMEOUT_PER_HOST)
            .target_session_attrs(if read_write {
                TargetSessionAttrs::ReadWrite
            } else {
                TargetSessionAttrs::Any
            });
        Pool {
            name,
            config,
            password: login.password.clone(),
            hosts: hosts.len().max(1),
            slots: (0..size.max(1))
                .map(|_| Arc::new(Mutex::new(None)))
                .collect(),
            next: AtomicUsize::new(0),
            last_error: StdMutex::new(None),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// An open session: the first free one (so a quiet instance keeps reusing one warm
    /// session instead of paying a connection to a far primary per request), else the next
    /// to be freed, in turn.
    pub async fn session(&self) -> Result<Session<'_>, PoolError> {
        let free = self
            .slots
            .iter()
            .find_map(|s| s.clone().try_lock_owned().ok());
        let mut guard = match free {
            Some(g) => g,
            None => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                self.slots[turn].clone().lock_owned().await
            }
        };
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            match self.connect().await {
                Ok(client) => *guard = Some(client),
                Err(e) => {
                    self.note_error(&e);
                    return Err(e);
                }
            }
        }
        Ok(Session { pool: self, guard })
    }

    /// A new session, with the current password and then the previous one in its grace.
    async fn connect(&self) -> Result<Client, PoolError> {
        meridian_http::secrets::try_each(
            &self.password,
            |pw| self.connect_with(pw),
            |e| matches!(e, PoolError::Connect { source, .. } if password_refused(source)),
        )
        .await
    }

    async fn connect_with(&self, password: String) -> Result<Client, PoolError> {
        let mut config = self.config.clone();
        config.password(password);
        // Every host may time out in turn before the last one answers.
        let after = CONNECT_TIMEOUT_PER_HOST * self.hosts as u32 + Duration::from_secs(1);
        let (client, connection) = tokio::time::timeout(after, config.connect(NoTls))
            .await
            .map_err(|_| PoolError::ConnectTimeout {
                pool: self.name,
                after,
            })?
            .map_err(|source| PoolError::Connect {
                pool: self.name,
                source,
            })?;
        let pool = self.name;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(pool, error = %e, "database session ended");
            }
        });
        Ok(client)
    }

    pub fn note_error(&self, e: &dyn std::fmt::Display) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    pub fn note_ok(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    /// Why the last attempt failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}

/// A session checked out of a pool; back in the pool when dropped.
pub struct Session<'a> {
    pool: &'a Pool,
    guard: OwnedMutexGuard<Option<Client>>,
}

impl Session<'_> {
    pub fn client(&mut self) -> &mut Client {
        // Checkout put a client here; it is only taken out by `discard`, which consumes.
        self.guard
            .as_mut()
            .expect("a checked-out session holds a client")
    }

    /// Closes the session after an error that may have broken it (or left it mid-way),
    /// so the next checkout connects afresh.
    pub fn discard(mut self, why: &dyn std::fmt::Display) {
        self.pool.note_error(why);
        *self.guard = None;
    }

    /// Keeps the session unless `e` says the connection, the server or its role is in
    /// question (connection lost, shutting down, now read-only, out of resources).
    pub fn keep_or_discard(self, e: &tokio_postgres::Error) {
        if connection_lost(e) {
            self.discard(e);
        }
    }
}

/// Whether the server refused the login itself (SQLSTATE class 28: a wrong password).
pub(crate) fn password_refused(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("28"))
}

/// Whether an error comes from the session rather than from the statement: then the
/// session is closed and a later request connects again.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // 08 connection, 25 read-only transaction (the primary was demoted), 53
            // resources, 57 operator intervention (shutdown), 58 system error.
            matches!(class, "08" | "25" | "53" | "57" | "58")
        }
    }
}
