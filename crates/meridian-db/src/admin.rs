//! The keeper's own endpoints, on the admin address: `/health` (for the supervisor and
//! load balancers), `/status` (JSON, what a console or a failover decision reads) and
//! `/metrics`. Each reads PostgreSQL at request time over a short-timeout connection, so
//! an answer is never older than the request.

use crate::keeper::Standing;
use crate::lease::Witness;
use crate::options::PgOptions;
use crate::role::CurrentRole;
use crate::status::{Probe, Status};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use meridian_http::admin::{Router, READ};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge,
};
use meridian_telemetry::{Labels, Metrics};
use serde_json::json;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What the keeper is doing (initdb, copying from the upstream, running), so a 503 from
/// /health during a long bootstrap says why instead of only "connection refused".
#[derive(Clone)]
pub(crate) struct Phase(Arc<Mutex<String>>);

impl Phase {
    pub fn new(what: impl Into<String>) -> Self {
        Phase(Arc::new(Mutex::new(what.into())))
    }

    pub fn set(&self, what: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = what.into();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
pub(crate) struct AdminState(Arc<Inner>);

struct Inner {
    name: String,
    role: CurrentRole,
    witness: Arc<Witness>,
    standing: Standing,
    admin_token: meridian_http::secrets::AdminToken,
    probe: Probe,
    phase: Phase,
    metrics: Metrics,
    gauges: DbGauges,
    /// One scrape at a time: a scrape clears and refills the standby family, and the
    /// commit counter advances by the difference from the previous scrape.
    scrape: tokio::sync::Mutex<Option<i64>>,
}

struct DbGauges {
    up: Gauge,
    in_recovery: Gauge,
    lag_bytes: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    standbys: Family<Labels, Gauge>,
    commits: Counter,
    connections: Gauge,
}

impl AdminState {
    pub fn new(
        opts: &PgOptions,
        probe: Probe,
        phase: Phase,
        role: CurrentRole,
        witness: Arc<Witness>,
        standing: Standing,
    ) -> Self {
        let metrics = Metrics::new();
        let gauges = DbGauges {
            up: metrics.register("db_up", "1 when PostgreSQL answers a query, else 0.", Gauge::default()),
            in_recovery: metrics.register(
                "db_in_recovery",
                "1 when PostgreSQL is in recovery (a standby or replica).",
                Gauge::default(),
            ),
            lag_bytes: metrics.register(
                "db_replication_lag_bytes",
                "Standby: WAL received but not yet replayed, in bytes; 0 on a primary.",
                Gauge::default(),
            ),
            lag_seconds: metrics.register(
                "db_replication_lag_seconds",
                "Standby: age of the last replayed transaction while WAL waits to be replayed; 0 when caught up.",
                Gauge::<f64, AtomicU64>::default(),
            ),
            standbys: metrics.register(
                "db_standbys",
                "Primary: 1 for each connection streaming from it, by application name and sync state.",
                Family::<Labels, Gauge>::default(),
            ),
            commits: metrics.register(
                "db_commits",
                "Transactions committed, over every database (pg_stat_database.xact_commit).",
                Counter::default(),
            ),
            connections: metrics.register(
                "db_connections",
                "Client sessions open now (pg_stat_activity, client backends; the keeper's own included).",
                Gauge::default(),
            ),
        };
        AdminState(Arc::new(Inner {
            name: opts.name.clone(),
            role,
            witness,
            standing,
            admin_token: opts.admin_token.clone(),
            probe,
            phase,
            metrics,
            gauges,
            scrape: tokio::sync::Mutex::new(None),
        }))
    }

    async fn health(&self) -> http::Response<meridian_http::Body> {
        // JSON with a `status` word, as every node's /health (`meridian health` reads it).
        let (code, body) = match self.0.probe.health().await {
            Ok(()) => (
                StatusCode::OK,
                json!({"status": "healthy", "node": self.0.name, "role": self.0.role.get()}),
            ),
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "unhealthy",
                    "node": self.0.name,
                    "role": self.0.role.get(),
                    "detail": format!("{}: {reason}", self.0.phase.get()),
                }),
            ),
        };
        meridian_http::json(code, body.to_string())
    }

    async fn status(&self) -> http::Response<meridian_http::Body> {
        match self.0.probe.status().await {
            Ok(mut status) => {
                status.promotable = status.in_recovery && self.0.standing.promotable();
                status.synchronous = status.in_recovery && self.0.standing.synchronous();
                status.changes = self.0.role.changes();
                status.promotion_requested = self.0.standing.promotion_requested();
                match serde_json::to_string(&status) {
                Ok(body) => meridian_http::json(StatusCode::OK, body),
                Err(e) => meridian_http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the status: {e}"),
                ),
            }
            }
            Err(reason) => meridian_http::json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "name": self.0.name, "role": self.0.role.get(), "phase": self.0.phase.get(), "error": reason }).to_string(),
            ),
        }
    }

    /// `POST /promote`: an operator asks this standby to take over (the manual promotion
    /// policy's only way across regions). It still needs the lease, so it happens only
    /// once nobody leads; the request stands until then.
    fn promote(&self) -> http::Response<meridian_http::Body> {
        if !self.0.role.get().in_recovery() {
            return meridian_http::json(
                StatusCode::CONFLICT,
                json!({"node": self.0.name, "error": "this node is the primary already"})
                    .to_string(),
            );
        }
        // While a leader renews its lease, this witness's grant to it is live.
        if let Some(holder) = self.0.witness.current(std::time::Instant::now()).holder {
            return meridian_http::json(
                StatusCode::CONFLICT,
                json!({
                    "node": self.0.name,
                    "error": format!("{holder} leads: a promotion by hand is for when nobody does (the writer region is lost)")
                })
                .to_string(),
            );
        }
        self.0.standing.request_promotion();
        meridian_http::json(
            StatusCode::ACCEPTED,
            json!({
                "node": self.0.name,
                "promotion": "requested: it takes over once no node holds the leader lease"
            })
            .to_string(),
        )
    }

    /// The witness: `GET /lease` says who holds this keeper's grant, `POST
    /// /lease?candidate=NODE&term=N` asks for it. Both need the admin token: whoever could
    /// reach an admin port must not be able to take the lease, nor watch it for a moment
    /// to strike.
    fn lease(&self, req: &Request<Incoming>) -> http::Response<meridian_http::Body> {
        let now = std::time::Instant::now();
        // The router lets only GET and POST through: GET reads, POST asks.
        let vote = match *req.method() {
            http::Method::POST => {
                let param = |k: &str| meridian_http::percent::query_param(req.uri().query(), k);
                let (Some(candidate), Some(Ok(term))) =
                    (param("candidate"), param("term").map(|t| t.parse::<u64>()))
                else {
                    return meridian_http::text(
                        StatusCode::BAD_REQUEST,
                        "ask with POST /lease?candidate=NODE&term=N",
                    );
                };
                self.0.witness.request(&candidate, term, now)
            }
            _ => self.0.witness.current(now),
        };
        meridian_http::json(StatusCode::OK, json!(vote).to_string())
    }

    async fn metrics(&self) -> http::Response<meridian_http::Body> {
        let status = self.0.probe.status().await;
        let mut last_commits = self.0.scrape.lock().await;
        self.record(status.ok().as_ref(), &mut last_commits);
        meridian_http::metrics(self.0.metrics.encode())
    }

    /// Sets every series from one status read; when PostgreSQL does not answer only
    /// `up` changes (the other series keep their last known values).
    fn record(&self, status: Option<&Status>, last_commits: &mut Option<i64>) {
        let g = &self.0.gauges;
        let Some(s) = status else {
            g.up.set(0);
            g.standbys.clear();
            return;
        };
        g.up.set(1);
        g.in_recovery.set(i64::from(s.in_recovery));
        g.lag_bytes.set(s.lag_bytes);
        g.lag_seconds.set(s.lag_seconds);
        g.connections.set(s.connections);
        g.standbys.clear();
        for st in &s.standbys {
            g.standbys
                .get_or_create(&vec![
                    ("name", st.name.clone()),
                    ("sync_state", st.sync_state.clone()),
                ])
                .set(1);
        }
        // A counter only goes up: advance by the growth since the last scrape; after a
        // statistics reset (or the first scrape) the new total is all growth.
        let growth = match *last_commits {
            Some(prev) if s.commits_total >= prev => s.commits_total - prev,
            _ => s.commits_total,
        };
        g.commits.inc_by(u64::try_from(growth).unwrap_or(0));
        *last_commits = Some(s.commits_total);
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let token = state.0.admin_token.clone();
    Router::new(
        state,
        "admin endpoints: /health, /status, /metrics, /lease, /promote",
    )
    .token(token)
    .reads_only("admin endpoints take GET")
    .open(READ, "/health", |s, _| async move { s.health().await })
    .open(READ, "/status", |s, _| async move { s.status().await })
    .open(READ, "/metrics", |s, _| async move { s.metrics().await })
    .guarded(
        &[Method::GET, Method::POST],
        "/lease",
        |s, req| async move { s.lease(&req) },
    )
    .method_not_allowed("/lease", "/lease takes GET or POST")
    .guarded(
        &[Method::POST],
        "/promote",
        |s, _| async move { s.promote() },
    )
    .method_not_allowed("/promote", "/promote takes POST")
    .serve(listener, shutdown)
    .await
}
