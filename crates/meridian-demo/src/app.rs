//! The state every handler shares, and the request helpers the handlers have in common.
//!
//! Apart from lib.rs so the handler modules (`graphql`, `orders`) can use it without
//! depending on the crate root that routes to them.

use crate::apq::QueryStore;
use crate::options::{DemoOptions, ServiceVersion};
use crate::quote_cache::QuoteCache;
use crate::store::Store;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, histogram::Histogram,
};
use meridian_telemetry::{Labels, Metrics};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// What the handlers share: options, the backing tiers and the metrics they record.
pub(crate) struct App {
    pub(crate) opts: DemoOptions,
    pub(crate) version: ServiceVersion,
    pub(crate) started: Instant,
    pub(crate) apq: QueryStore,
    pub(crate) store: Option<Arc<Store>>,
    pub(crate) quote_cache: Option<QuoteCache>,
    pub(crate) metrics: Metrics,
    pub(crate) requests: Family<Labels, Counter>,
    pub(crate) latency: Family<Labels, Histogram>,
    /// Orders by outcome, and how long the committed ones took to write.
    pub(crate) orders: Family<Labels, Counter>,
    pub(crate) order_write: Histogram,
    /// Portfolio reads by where they were served (`replica` or `writer`).
    pub(crate) portfolio_reads: Family<Labels, Counter>,
    /// Quotes by how the cache served them (`hit`, `miss`, `bypass`).
    pub(crate) quote_cache_lookups: Family<Labels, Counter>,
    /// Turns true when the instance shuts down: open WebSockets send close 1001 and end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

pub(crate) async fn simulate_work(app: &App) {
    if !app.opts.processing_time.is_zero() {
        tokio::time::sleep(app.opts.processing_time).await;
    }
}

/// The bearer token, if the request carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CACHE_CONTROL, "private"),
            (header::WWW_AUTHENTICATE, "Bearer realm=\"richesreach\""),
        ],
        Json(json!({ "error": "unauthorized", "message": "send Authorization: Bearer <token>" })),
    )
        .into_response()
}
