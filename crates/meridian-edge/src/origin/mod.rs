//! Origin groups: members (region load balancers or plain HTTP servers), their health and
//! measured round trip from this PoP, the order to try them in, and sending one request
//! with failover to the next member inside the same viewer request.

mod answer;
mod checks;
mod forward;
mod group;
pub(crate) mod hedge;
mod outbound;
mod rank;
pub mod tier;

pub use answer::{OriginFailure, OriginName, OriginResponse};
pub use group::{Group, Member};
pub use outbound::Outbound;

use meridian_config::Config;
use meridian_health::HealthBoard;
use meridian_http::CountedUpstreamClient;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use meridian_telemetry::Labels;

/// Per-origin series, shared by the checks and the requests.
struct OriginMetrics {
    duration: Family<Labels, Histogram>,
    requests: Family<Labels, Counter>,
    failovers: Family<Labels, Counter>,
    healthy: Family<Labels, Gauge>,
    rtt: Family<Labels, Gauge<f64, AtomicU64>>,
}

pub struct Origins {
    pub groups: Vec<Arc<Group>>,
    /// Where checks and requests leave from.
    local_ip: Option<std::net::IpAddr>,
    pub board: HealthBoard,
    client: CountedUpstreamClient,
    /// The HTTP/2 pool, for gRPC (h2 by ALPN over TLS, h2c on plain connections).
    client_h2: CountedUpstreamClient,
    /// Connections opened to origins (requests per connection = reuse).
    pub connections_opened: Arc<AtomicU64>,
    m: OriginMetrics,
    /// Origin access control: every origin request is signed with the deployment's edge
    /// signing key, set once at start.
    /// Whether this edge is a regional cache: only one takes requests of the tier. A PoP
    /// never does, so an edge signature that reached some origin cannot open its viewer
    /// phases.
    takes_tier: bool,
    signer: std::sync::OnceLock<Arc<meridian_http::signing::Signer>>,
    /// Hedged requests spent against requests sent (`hedge.rs`).
    hedges: hedge::HedgeBudget,
    /// This edge's name, sent to the next cache of the tier (`tier::TIER_HEADER`).
    pop: http::HeaderValue,
    /// Whether misses go through the regional caches (`tier.rs`): on whenever the config
    /// has them; the admin API turns it off so `bench global` can compare in one run.
    pub tier_on: std::sync::atomic::AtomicBool,
}

impl Origins {
    pub fn new(
        cfg: &Config,
        pop: &str,
        prior: &meridian_config::Prior,
        local_ip: Option<std::net::IpAddr>,
        metrics: &Metrics,
    ) -> Self {
        let board = HealthBoard::new();
        let https = cfg.distribution.origin_protocol == meridian_config::OriginProtocol::Https;
        let (groups, tls_names) = group::from_config(cfg, pop, prior, &board, https);
        let connections_opened = Arc::new(AtomicU64::new(0));
        let connect_timeout = cfg
            .distribution
            .origin_groups
            .iter()
            .map(|g| g.connect_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1));
        let tls = https.then(|| origin_tls(cfg, tls_names)).flatten();
        let client = meridian_http::counted_upstream_client(
            connect_timeout,
            Duration::from_secs(90),
            local_ip,
            connections_opened.clone(),
            tls.clone(),
        );
        let client_h2 = meridian_http::counted_upstream_client_h2(
            connect_timeout,
            Duration::from_secs(90),
            local_ip,
            connections_opened.clone(),
            tls,
        );
        let m = OriginMetrics {
            duration: metrics.register(
                "edge_origin_duration_seconds",
                "Time from sending a request to an origin to its response head, by origin",
                Family::new_with_constructor(
                    meridian_telemetry::latency_histogram as fn() -> Histogram,
                ),
            ),
            requests: metrics.register(
                "edge_origin_requests",
                "Requests sent to origins, by origin and outcome",
                Family::default(),
            ),
            failovers: metrics.register(
                "edge_origin_failovers",
                "Requests moved to the next origin of a group, by reason",
                Family::default(),
            ),
            healthy: metrics.register(
                "edge_origin_healthy",
                "1 while an origin passes its health checks",
                Family::default(),
            ),
            rtt: metrics.register(
                "edge_origin_rtt_seconds",
                "Measured round trip of an origin's health checks from this PoP",
                Family::default(),
            ),
        };
        Origins {
            groups,
            local_ip,
            board,
            client,
            client_h2,
            connections_opened,
            m,
            signer: std::sync::OnceLock::new(),
            hedges: hedge::HedgeBudget::default(),
            pop: http::HeaderValue::from_str(pop).unwrap_or(http::HeaderValue::from_static("-")),
            tier_on: std::sync::atomic::AtomicBool::new(cfg.distribution.tiered_cache.enabled),
            takes_tier: cfg.regional_cache_region(pop).is_some(),
        }
    }

    /// Signs every origin request from now on (a second call changes nothing).
    pub fn sign_with(&self, signer: Arc<meridian_http::signing::Signer>) {
        let _ = self.signer.set(signer);
    }

    pub fn group(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.iter().find(|g| g.cfg.name == name)
    }
}

/// The TLS of the origin pool: the CA the config names (`up` resolves it to the deployment
/// CA when none is named). Without a usable CA there is none, and every TLS origin request
/// fails (502): never sent in the clear instead.
fn origin_tls(cfg: &Config, names: group::TlsNames) -> Option<meridian_http::OriginTls> {
    let Some(ca) = &cfg.distribution.origin_ca_file else {
        tracing::error!("origin_protocol is https but no CA file is known: TLS origins will fail");
        return None;
    };
    match meridian_http::pki::client_config(ca) {
        Ok(c) => Some(meridian_http::OriginTls::new(c, names)),
        Err(e) => {
            tracing::error!(error = %e, "origin TLS is unusable: TLS origins will fail");
            None
        }
    }
}

impl Origins {
    /// The sending edge's name when a request comes from another cache of this
    /// deployment's tier, to a regional cache: it names one (`tier::TIER_HEADER`) and carries a valid edge signature
    /// for its method, host and target. A PoP without the signing key trusts no one.
    pub(crate) fn tier_sender(&self, req: &http::request::Parts) -> Option<String> {
        if !self.takes_tier {
            return None;
        }
        let from = req.headers.get(tier::TIER_HEADER)?.to_str().ok()?;
        let signer = self.signer.get()?;
        let host = req.headers.get(http::header::HOST)?.to_str().ok()?;
        let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        signer
            .verify_for(
                meridian_http::signing::Audience::Tier,
                &req.headers,
                &req.method,
                host,
                target,
                std::time::SystemTime::now(),
            )
            .ok()?;
        Some(from.to_owned())
    }
}
