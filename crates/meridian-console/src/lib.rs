//! The console: Meridian's CloudWatch.
//!
//! A `console` node scrapes every node's `/metrics` once a second, keeps an hour of
//! one-second series in fixed rings, turns health gauges and counters into a timeline of
//! events, evaluates the config's alarms, estimates cost from measured traffic, and serves
//! a page (compiled into the binary) that shows it all live.

pub mod alarms;
pub mod audit_panel;
pub mod cache_tier;
pub mod db_tier;
pub mod events;
pub mod export;
pub mod model;
pub mod reading;
pub mod security_panel;
pub mod series;
pub mod target;

use axum::extract::{Query, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use meridian_config::Config;
use model::{Route, State};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

struct Shared {
    state: Mutex<State>,
    scrapes: prometheus::Counters,
    /// Where the nodes' audit files are (None: the audit panel stays empty).
    state_dir: Option<std::path::PathBuf>,
    /// The admin token the PoPs' `/protection` reports are asked for with.
    token: Option<meridian_http::secrets::AdminToken>,
}

/// The console's own metrics.
mod prometheus {
    use meridian_telemetry::prometheus_client::metrics::counter::Counter;
    use meridian_telemetry::prometheus_client::metrics::gauge::Gauge;
    use meridian_telemetry::Metrics;

    pub struct Counters {
        pub registry: Metrics,
        pub scrapes: Counter,
        pub failures: Counter,
        pub series: Gauge,
        pub alarms_firing: Gauge,
    }

    impl Counters {
        pub fn new() -> Self {
            let registry = Metrics::new();
            Counters {
                scrapes: registry.register(
                    "console_scrapes",
                    "Node scrapes attempted",
                    Counter::default(),
                ),
                failures: registry.register(
                    "console_scrape_failures",
                    "Node scrapes that got no metrics (node down, slow or refusing)",
                    Counter::default(),
                ),
                series: registry.register(
                    "console_series",
                    "Time series held in memory",
                    Gauge::default(),
                ),
                alarms_firing: registry.register(
                    "console_alarms_firing",
                    "Alarms in the ALARM state",
                    Gauge::default(),
                ),
                registry,
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the console node at `listen` until `shutdown`.
pub async fn run(
    config: Config,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    run_with(
        config,
        listen,
        meridian_http::ServerOptions::default(),
        shutdown,
    )
    .await
}

/// [`run`] with the listener's limits given. The console is served by the shared HTTP
/// listener, so a client that trickles its request head (slowloris) is cut off after
/// `header_read_timeout`, which `axum::serve` never does.
pub async fn run_with(
    config: Config,
    listen: SocketAddr,
    server: meridian_http::ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    run_in(config, listen, None, server, shutdown).await
}

/// [`run_with`] for a deployment whose state dir (audit logs) is at hand.
pub async fn run_in(
    config: Config,
    listen: SocketAddr,
    state_dir: Option<std::path::PathBuf>,
    server: meridian_http::ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ConsoleError::Bind {
            addr: listen,
            source,
        })?;
    let interval = config.console.scrape_interval;
    let webhook = config.console.webhook.clone();
    let token = security_panel::load_token(&config, state_dir.as_deref());
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(config, unix_now() as u64)),
        scrapes: prometheus::Counters::new(),
        state_dir,
        token,
    });
    tracing::info!(%listen, "console listening: open http://{listen}/");
    let scraper = tokio::spawn(scrape_loop(shared.clone(), interval, webhook));
    let router = tokio::spawn(routing_loop(shared.clone()));
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/api/overview", get(overview))
        .route("/api/series", get(series))
        .route("/api/audit", get(audit_events))
        .route("/api/security", get(security))
        .route("/health", get(health))
        .route("/metrics", get(own_metrics))
        .fallback(not_found)
        .with_state(shared);
    meridian_http::serve(
        listener,
        server,
        move |_| meridian_http::TowerService(app.clone()),
        shutdown,
    )
    .await;
    scraper.abort();
    router.abort();
    Ok(())
}

async fn scrape_one(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let f =
        meridian_http::client::call(addr, http::Method::GET, "/metrics", None, timeout, 16 << 20)
            .await?;
    if f.status != 200 {
        // It answers, so it is up; it just has no metrics (a user's own service, say).
        tracing::debug!(%addr, status = f.status, "no /metrics");
        return Ok(String::new());
    }
    Ok(String::from_utf8_lossy(&f.body).into_owned())
}

async fn scrape_loop(shared: Arc<Shared>, interval: Duration, webhook: Option<String>) {
    let targets: Vec<SocketAddr> = lock(&shared).targets().iter().map(|t| t.admin).collect();
    let pops: Vec<(String, SocketAddr)> = lock(&shared)
        .targets()
        .iter()
        .filter(|t| t.role == "edge")
        .map(|t| (t.name.clone(), t.admin))
        .collect();
    let deployment = lock(&shared).config().deployment.name.clone();
    // Every scrape must finish inside the tick so that a dead node costs one tick, not more.
    let timeout = interval.mul_f64(0.8);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let token = shared.token.as_ref().map(|t| t.current());
        let (results, reports) = futures_util::future::join(
            futures_util::future::join_all(targets.iter().map(|a| scrape_one(*a, timeout))),
            futures_util::future::join_all(pops.iter().map(|(name, a)| {
                let token = token.as_deref();
                async move {
                    let r = security_panel::fetch(*a, token, timeout).await;
                    (name.clone(), r)
                }
            })),
        )
        .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        shared.scrapes.scrapes.inc_by(results.len() as u64);
        shared.scrapes.failures.inc_by(failed as u64);
        let transitions = {
            let mut s = lock(&shared);
            s.set_protection(reports);
            let t = s.tick(unix_now(), results);
            shared.scrapes.series.set(s.store.len() as i64);
            shared.scrapes.alarms_firing.set(
                s.overview()
                    .alarms
                    .iter()
                    .filter(|a| a.state == alarms::State::Alarm)
                    .count() as i64,
            );
            t
        };
        if let Some(w) = &webhook {
            for t in &transitions {
                alarms::notify(w, &deployment, t);
            }
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks a DNS node, as each client location, where `api.` and `cdn.` send it: the
/// routing picture. Every two seconds; it is a picture, not a health signal.
async fn routing_loop(shared: Arc<Shared>) {
    let (dns_admins, zone, locations, regions, pops) = {
        let s = lock(&shared);
        let c = s.config();
        let dns: Vec<SocketAddr> = s
            .targets()
            .iter()
            .filter(|t| t.role == "dns")
            .map(|t| t.admin)
            .collect();
        let locations: Vec<(String, String)> = c
            .client_locations
            .iter()
            .filter_map(|l| {
                let ip = c.client_source(&l.name)?.host(1);
                Some((l.name.clone(), ip.to_string()))
            })
            .collect();
        let regions: Vec<(String, String)> = c
            .regions
            .iter()
            .filter_map(|r| Some((c.lb_address(&r.name)?.ip().to_string(), r.name.clone())))
            .collect();
        let pops: Vec<(String, String)> = c
            .edges
            .iter()
            .filter_map(|p| Some((c.pop_addresses(&p.name)?.0.ip().to_string(), p.name.clone())))
            .collect();
        (dns, c.deployment.zone.clone(), locations, regions, pops)
    };
    if dns_admins.is_empty() || locations.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut routes = Vec::with_capacity(locations.len());
        for (location, ip) in &locations {
            let mut route = Route {
                location: location.clone(),
                source: ip.clone(),
                api_region: None,
                cdn_pop: None,
            };
            for admin in &dns_admins {
                let api = explain(*admin, &format!("api.{zone}"), ip).await;
                let cdn = explain(*admin, &format!("cdn.{zone}"), ip).await;
                if api.is_none() && cdn.is_none() {
                    continue; // this DNS node is down: ask the next one
                }
                let name_of = |addrs: Option<Vec<String>>, table: &[(String, String)]| {
                    addrs?
                        .iter()
                        .find_map(|a| table.iter().find(|(ip, _)| ip == a).map(|(_, n)| n.clone()))
                };
                route.api_region = name_of(api, &regions);
                route.cdn_pop = name_of(cdn, &pops);
                break;
            }
            routes.push(route);
        }
        lock(&shared).set_routing(routes);
    }
}

/// The A answers a DNS node gives `name` for a client at `client`.
async fn explain(admin: SocketAddr, name: &str, client: &str) -> Option<Vec<String>> {
    let path = format!("/explain?name={name}&type=A&client={client}");
    let f = meridian_http::client::call(
        admin,
        http::Method::GET,
        &path,
        None,
        Duration::from_millis(800),
        1 << 20,
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&f.body).ok()?;
    Some(
        v.get("answers")?
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str()?.split_whitespace().last().map(str::to_owned))
            .collect(),
    )
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

fn json(value: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value,
    )
        .into_response()
}

async fn overview(AxState(shared): AxState<Arc<Shared>>) -> Response {
    let body = serde_json::to_string(lock(&shared).overview()).unwrap_or_default();
    json(body)
}

/// `/api/security`: the security panel (rules, top rate-limited keys, authentication
/// failures, idempotent requests) as of the last tick.
async fn security(AxState(shared): AxState<Arc<Shared>>) -> Response {
    let body = serde_json::to_string(lock(&shared).security()).unwrap_or_default();
    json(body)
}

async fn audit_events(AxState(shared): AxState<Arc<Shared>>) -> Response {
    let events = match &shared.state_dir {
        Some(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || audit_panel::recent(&dir))
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    json(serde_json::to_string(&events).unwrap_or_default())
}

#[derive(serde::Deserialize)]
struct SeriesQuery {
    /// Comma-separated series names.
    names: String,
    /// How many seconds back from now (default 300, at most the retention).
    secs: Option<usize>,
}

/// `/api/series?names=global.edge_rps,global.region_rps&secs=300`: values oldest first,
/// null where there was none.
async fn series(
    AxState(shared): AxState<Arc<Shared>>,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return (
            StatusCode::BAD_REQUEST,
            "use /api/series?names=global.edge_rps,global.hit_rate&secs=300",
        )
            .into_response();
    };
    let s = lock(&shared);
    let secs = q
        .secs
        .unwrap_or(300)
        .clamp(1, s.config().console.retention.as_secs().max(1) as usize);
    let mut out = serde_json::Map::new();
    for name in q.names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let v = s
            .series(name, secs)
            .map(|vals| serde_json::json!(vals))
            .unwrap_or(serde_json::Value::Null);
        out.insert(name.to_owned(), v);
    }
    let body = serde_json::json!({ "until": s.overview().now, "secs": secs, "series": out });
    json(body.to_string())
}

async fn health() -> Response {
    json(serde_json::json!({ "status": "healthy", "role": "console" }).to_string())
}

async fn own_metrics(AxState(shared): AxState<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, meridian_telemetry::CONTENT_TYPE)],
        shared.scrapes.registry.encode(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "console pages: /, /api/overview, /api/security, /api/series?names=...&secs=..., /metrics, /health",
    )
        .into_response()
}
