//! The PoP's shared state: its config, cache, origins, fills in flight and metrics. The
//! phases (`phases/`) read it; a clone of [`Edge`] serves each connection.

use crate::clock::Clock;
use crate::log::AccessLog;
use crate::origin::Origins;
use crate::phases::inflight::Inflight;
use crate::phases::metrics::EdgeMetrics;
use crate::phases::response::ResponseHeaders;
use crate::store::Store;
use http::header::HeaderValue;
use meridian_config::Distribution;
use meridian_telemetry::Metrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(crate) struct EdgeState {
    pub pop: String,
    pub dist: Distribution,
    pub store: Arc<Store>,
    pub origins: Arc<Origins>,
    /// Fills in flight, by cache key: what collapses concurrent misses.
    pub inflight: Arc<Inflight>,
    /// The registry `/metrics` encodes.
    pub metrics: Metrics,
    /// The edge's own series in that registry.
    pub stats: Arc<EdgeMetrics>,
    /// WebSocket tunnels (`phases/upgrade.rs`).
    pub websockets: Arc<crate::phases::metrics::WsMetrics>,
    pub log: AccessLog,
    pub https_port: u16,
    /// Identifies a stored body, so its compressed variants are told apart from those of
    /// an older body under the same key.
    /// Shared across reloads, so a reloaded PoP never reuses an id.
    pub body_ids: Arc<AtomicU64>,
    pub via: HeaderValue,
    pub headers: ResponseHeaders,
    /// Bytes that fills may hold in memory before they are stored, across all fills: the
    /// memory tier's size. A fill that cannot reserve more stops keeping its body.
    pub fill_bytes: Arc<Semaphore>,
    /// "Now" for ages and freshness: injected so tests can move time instead of waiting.
    pub clock: Arc<dyn Clock>,
    /// The behaviors' edge functions, compiled, with their key value stores.
    pub functions: Arc<crate::functions::EdgeFunctions>,
    /// `event.context` of every function invocation: the deployment's zone and name.
    pub distribution_domain: String,
    pub distribution_id: String,
    /// Client locations' networks, for the `cloudfront-viewer-*` headers.
    pub viewer_places: crate::viewer::ViewerPlaces,
    /// Rules, rate limits, authentication and idempotency stores (`phases/protect.rs`).
    pub protect: Arc<crate::protect::Protect>,
    /// The targeted cache-control fields (RFC 9213) this PoP obeys, most specific first.
    pub cache_control_targets: Vec<http::HeaderName>,
    /// The digest of the config file this PoP serves (`/health` says it, so `meridian
    /// apply` can see a reload land); shared across reloads.
    pub config_digest: Arc<std::sync::RwLock<String>>,
}

/// Why a PoP cannot start serving: its functions or its protection would not run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Function(#[from] crate::functions::FunctionError),
    #[error(transparent)]
    Protect(#[from] crate::protect::ProtectError),
}

/// A PoP's request handler: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Edge(pub(crate) Arc<EdgeState>);

impl Edge {
    pub fn new(
        pop: &str,
        config: &meridian_config::Config,
        prior: &meridian_config::Prior,
        local_ip: Option<std::net::IpAddr>,
        store: Arc<Store>,
        log: AccessLog,
        clock: Arc<dyn Clock>,
    ) -> Result<Edge, SetupError> {
        let metrics = Metrics::new();
        let functions =
            crate::functions::EdgeFunctions::from_config(&config.distribution, &metrics)?;
        let protect = crate::protect::Protect::from_config(pop, &config.distribution, &metrics)?;
        let origins = Arc::new(Origins::new(config, pop, prior, local_ip, &metrics));
        let stats = Arc::new(EdgeMetrics::new(&metrics));
        let websockets = Arc::new(crate::phases::metrics::WsMetrics::new(&metrics));
        let via = HeaderValue::from_str(&format!("1.1 {pop} (meridian)"))
            .unwrap_or(HeaderValue::from_static("1.1 meridian"));
        let headers = ResponseHeaders::new(
            pop,
            via.clone(),
            &config.distribution,
            config.network.https_port,
        );
        Ok(Edge(Arc::new(EdgeState {
            pop: pop.to_owned(),
            dist: config.distribution.clone(),
            origins,
            inflight: Inflight::new(),
            metrics,
            stats,
            websockets,
            log,
            https_port: config.network.https_port,
            body_ids: Arc::new(AtomicU64::new(1)),
            via,
            headers,
            fill_bytes: Arc::new(Semaphore::new(
                (store.memory_limit as usize).min(Semaphore::MAX_PERMITS),
            )),
            store,
            clock,
            functions: Arc::new(functions),
            distribution_domain: config.deployment.zone.clone(),
            distribution_id: config.deployment.name.clone(),
            viewer_places: crate::viewer::ViewerPlaces::from_config(config),
            protect: Arc::new(protect),
            cache_control_targets: config
                .distribution
                .cache_control_targets
                .iter()
                .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            config_digest: Default::default(),
        })))
    }

    /// This PoP with `config`'s distribution: everything built from the parts a reload
    /// may not change (cache, origins and their checks, functions, protection, metrics,
    /// fills in flight) is shared with `self`, so nothing is lost or counted twice.
    pub(crate) fn reloaded(&self, config: &meridian_config::Config) -> Edge {
        let old = &self.0;
        let dist = config.distribution.clone();
        Edge(Arc::new(EdgeState {
            pop: old.pop.clone(),
            headers: ResponseHeaders::new(&old.pop, old.via.clone(), &dist, old.https_port),
            cache_control_targets: dist
                .cache_control_targets
                .iter()
                .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            dist,
            store: old.store.clone(),
            origins: old.origins.clone(),
            inflight: old.inflight.clone(),
            metrics: old.metrics.clone(),
            stats: old.stats.clone(),
            websockets: old.websockets.clone(),
            log: old.log.clone(),
            https_port: old.https_port,
            body_ids: old.body_ids.clone(),
            via: old.via.clone(),
            fill_bytes: old.fill_bytes.clone(),
            clock: old.clock.clone(),
            functions: old.functions.clone(),
            distribution_domain: old.distribution_domain.clone(),
            distribution_id: old.distribution_id.clone(),
            viewer_places: crate::viewer::ViewerPlaces::from_config(config),
            protect: old.protect.clone(),
            config_digest: old.config_digest.clone(),
        }))
    }

    /// The digest of the config file this PoP serves (empty when it was not given one).
    pub fn config_digest(&self) -> String {
        self.0
            .config_digest
            .read()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    pub(crate) fn functions(&self) -> &crate::functions::EdgeFunctions {
        &self.0.functions
    }

    pub fn origins(&self) -> &Arc<Origins> {
        &self.0.origins
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    pub fn pop(&self) -> &str {
        &self.0.pop
    }

    /// Metrics text, with the cache tier sizes and connection counts read now.
    pub fn metrics_text(&self) -> String {
        let s = self.0.store.stats();
        let mut out = self.0.metrics.encode();
        // Gauges computed at scrape time, written in the same exposition format.
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        let extra = format!(
            "# HELP meridian_edge_cache_objects Objects stored, by tier.\n# TYPE meridian_edge_cache_objects gauge\nmeridian_edge_cache_objects{{tier=\"memory\"}} {}\nmeridian_edge_cache_objects{{tier=\"disk\"}} {}\n# HELP meridian_edge_cache_bytes Bytes stored, by tier.\n# TYPE meridian_edge_cache_bytes gauge\nmeridian_edge_cache_bytes{{tier=\"memory\"}} {}\nmeridian_edge_cache_bytes{{tier=\"disk\"}} {}\n# HELP meridian_edge_origin_connections Connections opened to origins.\n# TYPE meridian_edge_origin_connections counter\nmeridian_edge_origin_connections_total {}\n",
            s.memory_objects,
            s.disk_objects,
            s.memory_bytes,
            s.disk_bytes,
            self.0.origins.connections_opened.load(Ordering::Relaxed)
        );
        out.insert_str(eof, &extra);
        out
    }

    /// Removes every stored object whose path matches one of `paths` (CloudFront
    /// invalidation paths: `*` matches any run of characters).
    pub fn invalidate(&self, paths: &[String]) -> usize {
        let mut n = 0;
        for p in paths {
            let pattern = p.clone();
            n += self
                .0
                .store
                .invalidate(move |path| meridian_config::path_matches(&pattern, path));
            self.0.stats.invalidations.inc();
        }
        n
    }
}
