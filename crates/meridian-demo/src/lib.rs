//! The RichesReach API stand-in.
//!
//! Every test and benchmark of Meridian needs an origin that behaves like the seed's
//! application: health endpoints, GraphQL with automatic persisted queries, cacheable
//! quotes, a private portfolio, immutable static assets. Every response names the region,
//! AZ and instance that served it, so routing is visible from outside.

mod apq;
pub use apq::BUILTIN_OPERATIONS;
mod app;
mod assets;
mod graphql;
pub mod grpc;
mod market;
mod options;
pub use options::{DemoOptions, Identity, ServiceVersion};
mod orders;
pub use orders::{
    COMMIT_LSN_HEADER, MIN_LSN_COOKIE, MIN_LSN_HEADER, READ_FROM_HEADER, VERIFIED_USER,
};
mod pool;
mod quote_cache;
pub use quote_cache::{Outcome as QuoteCacheOutcome, QuoteCacheOptions, QUOTE_CACHE_HEADER};
mod store;
pub use store::{DatabaseOptions, Lsn};
mod ws;

use app::{bearer, simulate_work, unauthorized, App};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, histogram::Histogram,
};
use meridian_telemetry::{Labels, Metrics};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the demo origin's router.
pub fn router(opts: DemoOptions) -> Router {
    // No shutdown signal: the sender is dropped, so WebSockets run until their clients go.
    router_with(
        opts,
        ServiceVersion::default(),
        tokio::sync::watch::channel(false).1,
    )
}

/// [`router`] reporting `version` (the version a rollout starts instances with).
pub fn router_version(opts: DemoOptions, version: ServiceVersion) -> Router {
    router_with(opts, version, tokio::sync::watch::channel(false).1)
}

/// The router, with the signal that tells its WebSockets the instance is shutting down.
fn router_with(
    opts: DemoOptions,
    version: ServiceVersion,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let metrics = Metrics::new();
    let requests = metrics.register(
        "http_requests",
        "Requests served by the demo origin, by route, method and status",
        Family::<Labels, Counter>::default(),
    );
    let latency = metrics.register(
        "http_request_duration_seconds",
        "Time to produce a response, by route",
        Family::<Labels, Histogram>::new_with_constructor(meridian_telemetry::latency_histogram),
    );
    let orders = metrics.register(
        "orders",
        "Orders answered, by outcome (created, invalid, conflict, unavailable, unknown)",
        Family::<Labels, Counter>::default(),
    );
    let order_write = metrics.register(
        "order_write_duration_seconds",
        "Time from an order's arrival to its commit and LSN, as the writer endpoint served it",
        meridian_telemetry::latency_histogram(),
    );
    let portfolio_reads = metrics.register(
        "portfolio_reads",
        "Portfolio reads, by where they were served: the region's replica or the writer",
        Family::<Labels, Counter>::default(),
    );
    let quote_cache_lookups = metrics.register(
        "quote_cache_lookups",
        "Quotes served with the region's Redis configured, by outcome: hit, miss (made and stored) or bypass (Redis failed or its circuit is open)",
        Family::<Labels, Counter>::default(),
    );
    let quote_cache = opts.quote_cache.clone().map(quote_cache::QuoteCache::new);
    let store = opts
        .database
        .as_ref()
        .map(|db| Arc::new(store::Store::new(db)));
    if let (Some(store), Ok(runtime)) = (&store, tokio::runtime::Handle::try_current()) {
        // The tables are made now rather than on the first order; a writer that cannot
        // be reached yet is tried again by each order.
        let store = store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.ensure_schema().await {
                tracing::warn!(error = %e, "the demo schema is not made yet");
            }
        });
    }
    let app = Arc::new(App {
        opts,
        version,
        store,
        quote_cache,
        started: Instant::now(),
        apq: apq::QueryStore::new(),
        metrics,
        requests,
        latency,
        orders,
        order_write,
        portfolio_reads,
        quote_cache_lookups,
        shutdown,
    });
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/health/detailed", get(health_detailed))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/api/quotes/{symbol}", get(quote))
        .route("/api/portfolio", get(portfolio))
        .route("/api/portfolio/{user}", get(orders::portfolio))
        .route("/api/orders", post(orders::place))
        .route("/static/{*path}", get(assets::serve))
        // GET for HTTP/1.1; CONNECT for an extended CONNECT (RFC 8441) over HTTP/2.
        .route("/ws/quotes", get(ws::quotes).connect(ws::quotes))
        .route("/metrics", get(metrics_page))
        .route("/richesreach.v1.Quotes/GetQuote", post(grpc::get_quote))
        .route(
            "/richesreach.v1.Quotes/StreamQuotes",
            post(grpc::stream_quotes),
        )
        .route("/grpc.health.v1.Health/Check", post(grpc::health_check))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Serves the demo origin until `shutdown` resolves, then drains.
pub async fn serve(
    addr: SocketAddr,
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        addr,
        opts,
        meridian_http::ServerOptions::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with the listener's limits given: the shared HTTP listener, so a client that
/// trickles its request head (slowloris) is cut off after `header_read_timeout`, which
/// `axum::serve` never does.
pub async fn serve_with(
    addr: SocketAddr,
    opts: DemoOptions,
    server: meridian_http::ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_version(addr, opts, ServiceVersion::default(), server, shutdown).await
}

/// [`serve_with`] reporting `version`: what a service node runs (the supervisor says
/// which version, a rollout changes it).
pub async fn serve_version(
    addr: SocketAddr,
    opts: DemoOptions,
    version: ServiceVersion,
    server: meridian_http::ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, region = %opts.identity.region, az = %opts.identity.az, instance = %opts.identity.instance, version = %version.0, "demo origin listening");
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    let app = router_with(opts, version, stop_rx);
    meridian_http::serve_conns(
        listener,
        server,
        None,
        move |peer: meridian_http::Peer| {
            meridian_http::interim::WithInterim::new(
                peer.interim,
                meridian_http::TowerService(app.clone()),
            )
        },
        async move {
            shutdown.await;
            // Open WebSockets keep their connections' places, which the drain waits for:
            // they are told to send their close frame (1001) and end.
            let _ = stopping.send(true);
        },
    )
    .await;
    Ok(())
}

/// Adds identity headers and records metrics for every response.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    // The documented test aid: a `-5xx` version fails every API request.
    let mut res = if app.version.fails_requests() && req.uri().path().starts_with("/api/") {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "version {} fails API requests (a test aid)\n",
                app.version.0
            ),
        )
            .into_response()
    } else {
        next.run(req).await
    };
    let id = &app.opts.identity;
    let h = res.headers_mut();
    for (name, value) in [
        ("x-meridian-region", &id.region),
        ("x-meridian-az", &id.az),
        ("x-meridian-instance", &id.instance),
        ("x-service-version", &app.version.0),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    app.requests
        .get_or_create(&vec![
            ("route", route.clone()),
            ("method", method),
            ("status", res.status().as_u16().to_string()),
        ])
        .inc();
    app.latency
        .get_or_create(&vec![("route", route)])
        .observe(start.elapsed().as_secs_f64());
    res
}

async fn index(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({
        "service": "richesreach-api (Meridian demo origin)",
        "instance": app.opts.identity.instance,
        "endpoints": ["/health", "/health/detailed", "/graphql", "/api/quotes/{symbol}",
                      "/api/portfolio", "/api/portfolio/{user}", "POST /api/orders",
                      "/static/app.js", "/ws/quotes", "/metrics"],
    }))
}

/// Healthy whatever the database's state: the balancer must keep routing quotes and static
/// files to an instance whose database is away. The body says what the database did last.
async fn health(State(app): State<Arc<App>>) -> Response {
    let id = &app.opts.identity;
    let database = match &app.store {
        None => json!("not configured"),
        Some(store) => {
            let (writer, reader) = store.last_errors();
            json!({
                "schema_ready": store.schema_ready(),
                "writer": writer.unwrap_or_else(|| "ok".into()),
                "reader": reader.unwrap_or_else(|| "ok".into()),
            })
        }
    };
    // The documented test aid: a `-broken` version fails its health checks.
    let broken = app.version.fails_health_checks();
    let body = Json(json!({
        "status": if broken { "unhealthy" } else { "healthy" },
        "service": "richesreach-api",
        "service_version": app.version.0,
        "region": id.region,
        "az": id.az,
        "instance": id.instance,
        "uptime_seconds": app.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
    }));
    let status = if broken {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

async fn health_detailed(State(app): State<Arc<App>>) -> Response {
    // Without a [database] each component reports the work it models; with one, the
    // database's part is a real round trip to the writer and the reader.
    let t = app.opts.processing_time.as_secs_f64() * 1000.0;
    let database = match &app.store {
        None => {
            json!({ "status": "healthy", "latency_ms": t, "detail": "primary reachable (modelled)" })
        }
        Some(store) => {
            let probes = store.probe(Duration::from_millis(500)).await;
            let ok = probes.iter().all(|(_, r)| r.is_ok());
            let parts: serde_json::Map<String, serde_json::Value> = probes
                .into_iter()
                .map(|(name, r)| {
                    let v = match r {
                        Ok(took) => json!({ "status": "healthy", "latency_ms": took.as_secs_f64() * 1000.0 }),
                        Err(e) => json!({ "status": "unhealthy", "detail": e }),
                    };
                    (name.to_owned(), v)
                })
                .collect();
            json!({ "status": if ok { "healthy" } else { "unhealthy" }, "endpoints": parts })
        }
    };
    // With the region's Redis, the circuit's state: open means quotes bypass it now.
    let cache = match &app.quote_cache {
        None => json!({ "status": "healthy", "latency_ms": t / 4.0, "detail": "in-memory" }),
        Some(c) if c.is_closed() => {
            json!({ "status": "healthy", "detail": format!("redis at {}", c.endpoint()) })
        }
        Some(c) => json!({ "status": "unhealthy",
                           "detail": format!("redis at {} failed lately: quotes bypass it", c.endpoint()) }),
    };
    let status = if database["status"] == "healthy" && cache["status"] == "healthy" {
        "healthy"
    } else {
        "degraded"
    };
    let components = json!({
        "database": database,
        "cache": cache,
        "market_data": { "status": "healthy", "latency_ms": t / 2.0, "detail": "deterministic feed" },
        "graphql": { "status": "healthy", "latency_ms": 0.0,
                     "detail": format!("{} persisted queries", app.apq.len()) },
    });
    let id = &app.opts.identity;
    let body = Json(json!({
        "status": status,
        "region": id.region,
        "az": id.az,
        "instance": id.instance,
        "uptime_seconds": app.started.elapsed().as_secs(),
        "components": components,
    }));
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// A quote from the deterministic feed, read through the region's Redis when there is one:
/// a hit skips the work of making it. The cache never fails a quote (see `quote_cache`).
async fn quote(State(app): State<Arc<App>>, Path(symbol): Path<String>) -> Response {
    const CACHE_CONTROL: (header::HeaderName, &str) = (header::CACHE_CONTROL, "public, max-age=5");
    let Some(q) = market::quote(&symbol, market::now_secs()) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "error": "invalid_symbol",
                "message": "a symbol is 1 to 10 letters, digits, '.' or '-', such as AAPL or BRK.B",
            })),
        )
            .into_response();
    };
    let Some(cache) = &app.quote_cache else {
        simulate_work(&app).await;
        return ([CACHE_CONTROL], Json(q)).into_response();
    };
    // The price window is in the key: a cached quote is never one from an earlier window.
    let key = format!("quote:{}:{}", q.symbol, q.as_of);
    let ours = |v: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(v)
            .is_ok_and(|j| j["symbol"] == q.symbol.as_str() && j["as_of"] == q.as_of)
    };
    let produce = async {
        simulate_work(&app).await;
        // A quote is plain fields: serialising it cannot fail.
        serde_json::to_vec(&q).unwrap_or_default()
    };
    let (body, outcome) = cache.read_through(&key, ours, produce).await;
    app.quote_cache_lookups
        .get_or_create(&vec![("outcome", outcome.as_str().to_owned())])
        .inc();
    (
        [
            CACHE_CONTROL,
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static(QUOTE_CACHE_HEADER),
                outcome.as_str(),
            ),
        ],
        body,
    )
        .into_response()
}

async fn portfolio(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return unauthorized();
    };
    simulate_work(&app).await;
    let p = market::portfolio(token, market::now_secs());
    ([(header::CACHE_CONTROL, "private")], Json(p)).into_response()
}

async fn metrics_page(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, meridian_telemetry::CONTENT_TYPE)],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    if meridian_http::grpc::is_grpc(&headers) {
        return grpc::unimplemented(uri.path());
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "public, max-age=10")],
        Json(json!({ "error": "not_found" })),
    )
        .into_response()
}
