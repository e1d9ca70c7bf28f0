//! Reading an instance's state over the PostgreSQL protocol: whether it answers, whether
//! it is in recovery, where its WAL is, and who streams from it. The admin endpoints read
//! these at request time; a keeper loop (failover, next) polls the same queries.

use crate::error::DbError;
use crate::options::PgOptions;
use crate::role::CurrentRole;
use meridian_config::DbRole;
use meridian_http::secrets::Secret;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// How long one probe (connect plus queries) may take: a scrape or health check must
/// answer quickly even when PostgreSQL hangs.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub role: DbRole,
    pub in_recovery: bool,
    /// The current WAL position (primary) or the last replayed one (standby).
    pub lsn: Option<String>,
    /// Standby: WAL received but not yet replayed, in bytes (0 on a primary).
    pub lag_bytes: i64,
    /// Standby: age of the last replayed transaction while WAL waits to be replayed; 0
    /// when nothing is waiting (an idle primary does not make a standby look behind).
    pub lag_seconds: f64,
    /// Primary: every connection streaming from it (pg_stat_replication).
    pub standbys: Vec<StandbyStatus>,
    /// Committed transactions over every database (pg_stat_database).
    pub commits_total: i64,
    /// Standby: how far its received WAL reaches, in bytes from the start of WAL (what
    /// replicas compare to choose the most advanced for promotion); 0 on a primary.
    #[serde(default)]
    pub received: i64,
    /// Standby: whether it may be promoted now (the promotion policy allows it and its
    /// lag at its last contact with the primary was within the limit).
    #[serde(default)]
    pub promotable: bool,
    /// Client sessions open now (pg_stat_activity's client backends): what RDS shows as
    /// DatabaseConnections, the first sign of a pool leak or a connection storm.
    #[serde(default)]
    pub connections: i64,
    /// Standby: the primary had it as its synchronous standby at its last check: only
    /// then does it take over on its own inside the home region.
    #[serde(default)]
    pub synchronous: bool,
    /// The last role changes of this node's keeper, with their causes, oldest first.
    #[serde(default)]
    pub changes: Vec<crate::role::RoleChange>,
    /// An operator asked for this standby's promotion and it has not happened yet.
    #[serde(default)]
    pub promotion_requested: bool,
}

/// A standby's WAL receiver, as `pg_stat_wal_receiver` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Receiver {
    pub streaming: bool,
    /// WAL the primary said it had flushed that this node had not, in bytes.
    pub lag_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyStatus {
    /// Its application_name: the node name for Meridian's standbys.
    pub name: String,
    /// streaming, catchup, backup, ...
    pub state: String,
    /// sync, potential, quorum or async.
    pub sync_state: String,
    /// WAL the primary has written that the standby has not replayed, in bytes.
    pub replay_lag_bytes: i64,
}

/// Connections to one PostgreSQL server as the superuser, with short timeouts.
#[derive(Clone)]
pub(crate) struct Probe {
    name: String,
    role: CurrentRole,
    /// Everything but the password, which is set per attempt.
    config: Config,
    password: Secret,
    target: SocketAddr,
    /// A connection kept between probes of this node's own server: a scrape or a health
    /// check then costs a query, not a password exchange (scram's hashing alone can take
    /// longer than a scraper waits).
    kept: Arc<tokio::sync::Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    client: Option<Client>,
    /// A probe was cut off mid-query (a frozen server): the connection is not to be
    /// trusted with the next one.
    interrupted: bool,
}

impl Probe {
    /// A probe of this node's own PostgreSQL, in the role it has now.
    pub fn new(opts: &PgOptions, role: CurrentRole) -> Self {
        let target = reachable(opts.listen);
        Probe {
            name: opts.name.clone(),
            role,
            config: config(target, &format!("{} keeper", opts.name)),
            password: opts.password.clone(),
            target,
            kept: Arc::default(),
        }
    }

    /// A probe of another server (the upstream a standby copies from).
    pub fn of(target: SocketAddr, opts: &PgOptions) -> Self {
        Probe {
            name: opts.name.clone(),
            role: CurrentRole::new(opts.role),
            config: config(target, &format!("{} keeper", opts.name)),
            password: opts.password.clone(),
            target,
            kept: Arc::default(),
        }
    }

    /// Runs `work` on the kept connection (made when there is none, it closed, or a probe
    /// was cut off on it), within the probe timeout; a failure drops the connection.
    async fn on_kept<T>(
        &self,
        work: impl for<'c> FnOnce(
            &'c Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'c>,
        >,
    ) -> Result<T, String> {
        let attempt = async {
            let mut guard = self.kept.lock().await;
            let Kept {
                client,
                interrupted,
            } = &mut *guard;
            if *interrupted || client.as_ref().is_none_or(|c| c.is_closed()) {
                *client = None;
                *client = Some(self.connect().await?);
            }
            let Some(c) = client.as_ref() else {
                return Err("no connection".to_owned());
            };
            *interrupted = true;
            let out = work(c).await;
            *interrupted = false;
            if out.is_err() {
                *client = None;
            }
            out
        };
        tokio::time::timeout(PROBE_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {}s",
                    self.target,
                    PROBE_TIMEOUT.as_secs()
                ))
            })
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// One connection; the connection task ends when the client is dropped. It logs in
    /// with the current password, then the previous one during its grace (the server may
    /// not have taken the new one yet, or this keeper started mid-rotation).
    pub async fn connect(&self) -> Result<Client, String> {
        self.connect_as().await.map(|(c, _)| c)
    }

    /// [`connect`](Self::connect), and the password that logged in: what a tool or a
    /// standby's stream to this server should give.
    pub async fn connect_as(&self) -> Result<(Client, String), String> {
        let out = meridian_http::secrets::try_each(
            &self.password,
            |pw| async move { self.connect_with(&pw).await.map(|c| (c, pw)) },
            |e: &ConnectError| e.refused,
        )
        .await;
        out.map_err(|e| e.why)
    }

    /// One connection with exactly `password`: whether the server takes it.
    pub async fn connect_with(&self, password: &str) -> Result<Client, ConnectError> {
        let mut config = self.config.clone();
        config.password(password);
        let connecting = config.connect(NoTls);
        let (client, connection) = tokio::time::timeout(PROBE_TIMEOUT, connecting)
            .await
            .map_err(|_| ConnectError {
                refused: false,
                why: format!(
                    "no answer from {} within {}s",
                    self.target,
                    PROBE_TIMEOUT.as_secs()
                ),
            })?
            .map_err(|e| ConnectError {
                refused: password_refused(&e),
                why: format!("cannot connect to {}: {}", self.target, describe(&e)),
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Ok when PostgreSQL answers and its recovery state matches the role; the reason
    /// otherwise.
    pub async fn health(&self) -> Result<(), String> {
        let role = self.role.get();
        self.on_kept(move |client| {
            Box::pin(async move {
                let row = client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| format!("pg_is_in_recovery() failed: {}", describe(&e)))?;
                let in_recovery: bool = row.get(0);
                if in_recovery != role.in_recovery() {
                    return Err(format!(
                        "role is {} but pg_is_in_recovery() is {in_recovery}",
                        role.as_str()
                    ));
                }
                // A standby that is not streaming from its upstream serves ever older data.
                if in_recovery {
                    let streaming = client
                        .query_opt(
                            "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                            &[],
                        )
                        .await
                        .map_err(|e| format!("pg_stat_wal_receiver failed: {}", describe(&e)))?;
                    if streaming.is_none() {
                        return Err("not streaming from its upstream".to_owned());
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// The whole status, read in one short connection.
    pub async fn status(&self) -> Result<Status, String> {
        let (name, role) = (self.name.clone(), self.role.get());
        self.on_kept(move |client| {
            Box::pin(async move {
                let row = client
                    .query_one(STATUS_SQL, &[])
                    .await
                    .map_err(|e| format!("status query failed: {}", describe(&e)))?;
                let in_recovery: bool = row.get(0);
                let standbys = if in_recovery {
                    Vec::new()
                } else {
                    client
                        .query(STANDBYS_SQL, &[])
                        .await
                        .map_err(|e| format!("pg_stat_replication query failed: {}", describe(&e)))?
                        .iter()
                        .map(|r| StandbyStatus {
                            name: r.get(0),
                            state: r.get(1),
                            sync_state: r.get(2),
                            replay_lag_bytes: r.get(3),
                        })
                        .collect()
                };
                Ok(Status {
                    name,
                    role,
                    in_recovery,
                    lsn: row.get(1),
                    lag_bytes: row.get(2),
                    lag_seconds: row.get(3),
                    standbys,
                    commits_total: row.get(4),
                    received: row.get(5),
                    promotable: false,
                    connections: row.get(6),
                    synchronous: false,
                    changes: Vec::new(),
                    promotion_requested: false,
                })
            })
        })
        .await
    }

    /// The WAL receiver of this standby, if one runs.
    pub async fn receiver(&self) -> Result<Option<Receiver>, String> {
        self.on_kept(|client| {
            Box::pin(async move {
                let row = client
                    .query_opt(RECEIVER_SQL, &[])
                    .await
                    .map_err(|e| format!("pg_stat_wal_receiver failed: {}", describe(&e)))?;
                Ok(row.map(|r| Receiver {
                    streaming: r.get(0),
                    lag_bytes: r.get(1),
                }))
            })
        })
        .await
    }

    /// Makes a physical replication slot for each name that has none. The slot reserves
    /// WAL from the standby's first connection, so a standby that was down catches up.
    pub async fn create_missing_slots(&self, nodes: &[String]) -> Result<Vec<String>, DbError> {
        let client = self.connect().await.map_err(|reason| DbError::Tool {
            step: "creating replication slots",
            program: "postgres".into(),
            status: "not reachable".into(),
            stderr_tail: reason,
        })?;
        let mut created = Vec::new();
        for node in nodes {
            let slot = crate::options::slot_name(node);
            let rows = client
                .query(
                    "SELECT pg_create_physical_replication_slot($1) \
                     WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                    &[&slot],
                )
                .await
                .map_err(|source| DbError::Postgres {
                    step: "creating a replication slot",
                    source,
                })?;
            if !rows.is_empty() {
                created.push(slot);
            }
        }
        Ok(created)
    }
}

const STATUS_SQL: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, \
    CASE WHEN pg_is_in_recovery() \
         THEN GREATEST(COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0), 0)::bigint \
         ELSE 0::bigint END, \
    CASE WHEN NOT pg_is_in_recovery() \
           OR pg_last_wal_receive_lsn() IS NULL \
           OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0::float8 \
         ELSE GREATEST(COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0), 0)::float8 END, \
    (SELECT COALESCE(sum(xact_commit), 0)::bigint FROM pg_stat_database), \
    CASE WHEN pg_is_in_recovery() \
         THEN COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0'), 0)::bigint \
         ELSE 0::bigint END, \
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::bigint";

const RECEIVER_SQL: &str = "SELECT status = 'streaming', \
    GREATEST(COALESCE(pg_wal_lsn_diff(latest_end_lsn, flushed_lsn), 0), 0)::bigint \
    FROM pg_stat_wal_receiver";

const STANDBYS_SQL: &str = "SELECT COALESCE(application_name, ''), COALESCE(state, ''), \
    COALESCE(sync_state, ''), \
    GREATEST(COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0), 0)::bigint \
    FROM pg_stat_replication ORDER BY application_name";

/// Why a connection failed, and whether the server refused the password itself.
#[derive(Debug)]
pub struct ConnectError {
    pub refused: bool,
    pub why: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Whether the server refused the login itself (SQLSTATE class 28: a wrong password).
pub(crate) fn password_refused(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("28"))
}

fn config(target: SocketAddr, application_name: &str) -> Config {
    let mut config = Config::new();
    config
        .host(target.ip().to_string())
        .port(target.port())
        .user("postgres")
        .dbname("postgres")
        .application_name(application_name)
        .connect_timeout(PROBE_TIMEOUT);
    config
}

/// Where to reach a server that listens on `listen`: its own address, or loopback when
/// it listens on every interface.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// A tokio-postgres error with its cause (the server's message, or the I/O error).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
