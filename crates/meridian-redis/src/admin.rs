//! The keeper's own endpoints, on the admin address: `/health` (for the supervisor and
//! `meridian health`), `/status` (JSON for the console and people), `/metrics`, and for
//! the peer keeper `/role` and `POST /promote`. Anything that reads the cluster's roles or
//! changes them needs the admin token; health, status and metrics read only.

use crate::keeper::{offset, Keeper, RoleEvent};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use meridian_config::CacheRole;
use meridian_http::admin::{Router, READ};
use meridian_resp::Info;
use meridian_telemetry::prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use meridian_telemetry::Metrics;
use serde::Serialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What `/status` says: the keeper's view and its Redis's own numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    /// The role the cluster needs of this node.
    pub role: CacheRole,
    /// The role Redis reports (None when it does not answer).
    pub redis_role: Option<CacheRole>,
    pub term: u64,
    /// redis-server's process id.
    pub pid: Option<i64>,
    /// Where the primary endpoint leads.
    pub primary: Option<SocketAddr>,
    /// Replica: the link to the primary (`up` or `down`).
    pub link: Option<String>,
    pub used_memory: i64,
    pub maxmemory: i64,
    pub keys: i64,
    pub keyspace_hits: i64,
    pub keyspace_misses: i64,
    /// hits / (hits + misses); None before the first lookup.
    pub hit_rate: Option<f64>,
    pub evicted_keys: i64,
    pub connected_clients: i64,
    pub repl_offset: i64,
    /// Replica: how far behind its primary it is, in bytes of the replication stream.
    pub lag_bytes: Option<i64>,
    /// Primary: its replicas as Redis lists them.
    pub replicas: Vec<String>,
    pub promotions: u64,
    pub events: Vec<RoleEvent>,
}

#[derive(Clone)]
pub(crate) struct AdminState(Arc<Inner>);

struct Inner {
    keeper: Arc<Keeper>,
    metrics: Metrics,
    g: Gauges,
    /// The hit and miss totals at the last scrape (counters advance by the growth).
    scrape: tokio::sync::Mutex<(i64, i64, i64)>,
}

struct Gauges {
    up: Gauge,
    primary: Gauge,
    link_up: Gauge,
    lag_bytes: Gauge,
    used_memory: Gauge,
    maxmemory: Gauge,
    keys: Gauge,
    clients: Gauge,
    hit_ratio: Gauge<f64, AtomicU64>,
    hits: Counter,
    misses: Counter,
    evicted: Counter,
    promotions: Gauge,
    term: Gauge,
}

impl AdminState {
    pub fn new(keeper: Arc<Keeper>) -> Self {
        let m = Metrics::new();
        let gauge = |name: &str, help: &str| m.register(name, help, Gauge::default());
        let counter = |name: &str, help: &str| m.register(name, help, Counter::default());
        let g = Gauges {
            up: gauge("cache_up", "1 when Redis answers, else 0."),
            primary: gauge("cache_primary", "1 when this node is its cluster's primary."),
            link_up: gauge("cache_replication_link_up", "Replica: 1 while the link to the primary is up."),
            lag_bytes: gauge("cache_replication_lag_bytes", "Replica: replication stream not yet received from the primary, in bytes; 0 on a primary."),
            used_memory: gauge("cache_used_memory_bytes", "Memory Redis uses (used_memory)."),
            maxmemory: gauge("cache_maxmemory_bytes", "The memory limit beyond which keys are evicted."),
            keys: gauge("cache_keys", "Keys held, over every database."),
            clients: gauge("cache_connected_clients", "Client connections (replicas not counted)."),
            hit_ratio: m.register("cache_hit_ratio", "Lookups that found their key, since Redis started.", Gauge::<f64, AtomicU64>::default()),
            hits: counter("cache_keyspace_hits", "Lookups that found their key."),
            misses: counter("cache_keyspace_misses", "Lookups that did not find their key."),
            evicted: counter("cache_evicted_keys", "Keys evicted to stay within maxmemory."),
            promotions: gauge("cache_promotions", "Times the keeper promoted this node since it started."),
            term: gauge("cache_term", "The failover term this node knows."),
        };
        AdminState(Arc::new(Inner {
            keeper,
            metrics: m,
            g,
            scrape: tokio::sync::Mutex::new((0, 0, 0)),
        }))
    }

    async fn read(&self) -> Result<Status, String> {
        let k = &self.0.keeper;
        let mut c = k.own().await.map_err(|e| e.to_string())?;
        let info = c.info("all").await.map_err(|e| e.to_string())?;
        let hits = info.int("keyspace_hits").unwrap_or(0);
        let misses = info.int("keyspace_misses").unwrap_or(0);
        let role = k.role();
        let own_offset = offset(&info);
        let lag_bytes = match (role, k.opts.peer.as_ref()) {
            (CacheRole::Replica, Some(p)) => primary_offset(k, p.address)
                .await
                .map(|po| (po - own_offset).max(0)),
            _ => None,
        };
        Ok(Status {
            name: k.opts.name.clone(),
            role,
            redis_role: Some(if info.is_primary() {
                CacheRole::Primary
            } else {
                CacheRole::Replica
            }),
            term: k.term(),
            pid: info.int("process_id"),
            primary: k.primary(),
            link: info.get("master_link_status").map(str::to_owned),
            used_memory: info.int("used_memory").unwrap_or(0),
            maxmemory: info.int("maxmemory").unwrap_or(0),
            keys: info.keys(),
            keyspace_hits: hits,
            keyspace_misses: misses,
            hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            evicted_keys: info.int("evicted_keys").unwrap_or(0),
            connected_clients: info.int("connected_clients").unwrap_or(0),
            repl_offset: own_offset,
            lag_bytes,
            replicas: replicas(&info),
            promotions: k.promotions.load(Ordering::Relaxed),
            events: k
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        })
    }

    /// 200 only when Redis answers, plays the role the cluster needs, and as a replica
    /// has its link to the primary up.
    async fn health(&self) -> http::Response<meridian_http::Body> {
        let k = &self.0.keeper;
        let verdict = async {
            let mut c = k.own().await.map_err(|e| e.to_string())?;
            let info: Info = c.info("replication").await.map_err(|e| e.to_string())?;
            k.observe(Some(&info));
            match (k.role(), info.is_primary()) {
                (CacheRole::Primary, true) => Ok(()),
                (CacheRole::Primary, false) => Err("Redis is still a replica; the keeper is promoting it".to_owned()),
                (CacheRole::Replica, true) => Err("Redis is a primary but the cluster has another; the keeper is making it a replica".to_owned()),
                (CacheRole::Replica, false) => match info.get("master_link_status") {
                    Some("up") => Ok(()),
                    other => Err(format!(
                        "the link to the primary {} is {}",
                        info.primary().map(|p| p.to_string()).unwrap_or_default(),
                        other.unwrap_or("unknown")
                    )),
                },
            }
        }
        .await;
        let (code, body) = match verdict {
            Ok(()) => (
                StatusCode::OK,
                json!({"status": "healthy", "node": k.opts.name, "role": k.role()}),
            ),
            Err(detail) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unhealthy", "node": k.opts.name, "role": k.role(), "detail": detail}),
            ),
        };
        meridian_http::json(code, body.to_string())
    }

    async fn status(&self) -> http::Response<meridian_http::Body> {
        match self.read().await {
            Ok(s) => match serde_json::to_string(&s) {
                Ok(body) => meridian_http::json(StatusCode::OK, body),
                Err(e) => meridian_http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the status: {e}"),
                ),
            },
            Err(reason) => {
                let k = &self.0.keeper;
                meridian_http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"name": k.opts.name, "role": k.role(), "term": k.term(), "primary": k.primary(), "error": reason}).to_string(),
                )
            }
        }
    }

    async fn metrics(&self) -> http::Response<meridian_http::Body> {
        let status = self.read().await;
        let mut last = self.0.scrape.lock().await;
        let g = &self.0.g;
        let k = &self.0.keeper;
        g.primary.set(i64::from(k.role() == CacheRole::Primary));
        g.promotions
            .set(k.promotions.load(Ordering::Relaxed) as i64);
        g.term.set(k.term() as i64);
        match status {
            Err(_) => {
                g.up.set(0);
            }
            Ok(s) => {
                g.up.set(1);
                g.link_up.set(i64::from(s.link.as_deref() == Some("up")));
                g.lag_bytes.set(s.lag_bytes.unwrap_or(0));
                g.used_memory.set(s.used_memory);
                g.maxmemory.set(s.maxmemory);
                g.keys.set(s.keys);
                g.clients.set(s.connected_clients);
                g.hit_ratio.set(s.hit_rate.unwrap_or(0.0));
                // A counter only goes up: after a Redis restart the new total is all growth.
                let grow = |now: i64, prev: i64| {
                    u64::try_from(if now >= prev { now - prev } else { now }).unwrap_or(0)
                };
                g.hits.inc_by(grow(s.keyspace_hits, last.0));
                g.misses.inc_by(grow(s.keyspace_misses, last.1));
                g.evicted.inc_by(grow(s.evicted_keys, last.2));
                *last = (s.keyspace_hits, s.keyspace_misses, s.evicted_keys);
            }
        }
        meridian_http::metrics(self.0.metrics.encode())
    }

    /// `GET /role`: what the peer keeper decides by. `POST /promote?term=N`: a peer whose
    /// Redis restarted empty asks this node to take over. Both need the admin token:
    /// whoever merely reaches an admin port must not be able to move the primary.
    async fn role(&self) -> http::Response<meridian_http::Body> {
        match serde_json::to_string(&self.0.keeper.view().await) {
            Ok(body) => meridian_http::json(StatusCode::OK, body),
            Err(e) => meridian_http::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    async fn promote(&self, req: &Request<Incoming>) -> http::Response<meridian_http::Body> {
        let term = meridian_http::percent::query_param(req.uri().query(), "term")
            .and_then(|t| t.parse::<u64>().ok());
        let Some(term) = term else {
            return meridian_http::text(
                StatusCode::BAD_REQUEST,
                "ask with POST /promote?term=N (the asker's term)",
            );
        };
        match self
            .0
            .keeper
            .promote(
                term,
                "asked to take over (the peer's Redis restarted empty, or an operator)".into(),
            )
            .await
        {
            Ok(t) => meridian_http::text(StatusCode::OK, t.to_string()),
            Err(e) => meridian_http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot promote: {e}"),
            ),
        }
    }
}

/// The primary's replication offset, read from it directly.
async fn primary_offset(k: &Keeper, primary: SocketAddr) -> Option<i64> {
    let mut c = k.connect(primary).await.ok()?;
    c.info("replication").await.ok()?.int("master_repl_offset")
}

/// `slaveN:ip=..,port=..,state=online,offset=..,lag=..` lines, as written.
fn replicas(info: &Info) -> Vec<String> {
    let mut out: Vec<String> = info
        .0
        .iter()
        .filter(|(k, _)| {
            k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()) && k.len() > 5
        })
        .map(|(_, v)| v.clone())
        .collect();
    out.sort();
    out
}

/// `GET /role`: what the peer keeper decides by. `POST /promote?term=N`: a peer whose
/// Redis restarted empty asks this node to take over. Both need the admin token: whoever
/// merely reaches an admin port must not be able to move the primary.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    const PEER_CALLS: &str = "GET /role or POST /promote?term=N";
    let opts = &state.0.keeper.opts;
    let (token, audit) = (opts.admin_token.clone(), opts.audit.clone());
    Router::new(
        state,
        "admin endpoints: /health, /status, /metrics, /role, POST /promote",
    )
    .token(token)
    .audit(audit)
    .reads_only("admin endpoints take GET")
    .open(READ, "/health", |s, _| async move { s.health().await })
    .open(READ, "/status", |s, _| async move { s.status().await })
    .open(READ, "/metrics", |s, _| async move { s.metrics().await })
    .guarded(
        &[Method::GET],
        "/role",
        |s, _| async move { s.role().await },
    )
    .method_not_allowed("/role", PEER_CALLS)
    .guarded(&[Method::POST], "/promote", |s, req| async move {
        s.promote(&req).await
    })
    .method_not_allowed("/promote", PEER_CALLS)
    .serve(listener, shutdown)
    .await
}
