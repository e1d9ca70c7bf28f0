//! The global load generator: simulated clients in every location send an open-loop stream
//! of RichesReach requests from their own source addresses (so the DNS and the WAN place
//! them), through the architecture under test. Latency is measured from when a request was
//! due, not when it was sent, so a slow answer cannot hide the requests queued behind it
//! (no coordinated omission).

use bytes::Bytes;
use hdrhistogram::Histogram;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use meridian_config::Config;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Shows load progress on stderr: rewritten in place on a terminal, a line every five
/// seconds in a log.
pub fn show_progress(t: f64, done: u64, failed: u64) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r  {t:>5.1}s  {done} done  {failed} failed   ");
    } else if (t.round() as u64).is_multiple_of(5) {
        eprintln!("  {t:>5.1}s  {done} done  {failed} failed");
    }
}

/// The three deployments `bench global` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The seed's "before": every client goes to the primary region directly.
    Before,
    /// Latency-routed DNS over the regions' load balancers, no edge.
    MultiRegion,
    /// The full Meridian deployment: DNS to the nearest PoP, which caches and fetches from
    /// the best region.
    Full,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Before, Arch::MultiRegion, Arch::Full];
    pub fn title(self) -> &'static str {
        match self {
            Arch::Before => "before (us-east-1 only)",
            Arch::MultiRegion => "multi-region (latency DNS, no edge)",
            Arch::Full => "full Meridian (DNS + edge PoPs)",
        }
    }
}

/// One kind of request in the RichesReach mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Static,
    Quote,
    Graphql,
    Portfolio,
}

impl Class {
    /// Whether an edge may answer it from its cache.
    pub fn cacheable(self) -> bool {
        !matches!(self, Class::Portfolio)
    }
}

/// The demo origin's static catalog, most popular first (Zipf-ranked).
const ASSETS: &[&str] = &[
    "index.html",
    "app.js",
    "app.css",
    "vendor.js",
    "img/logo.png",
    "fonts/inter.woff2",
    "img/chart-bg.webp",
    "img/hero.jpg",
];
const SYMBOLS: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "V", "UNH", "XOM",
    "JNJ", "WMT", "PG", "MA", "HD", "CVX", "LLY", "AVGO",
];
const GET_QUOTE: &str =
    "query GetQuote($symbol: String!) { quote(symbol: $symbol) { symbol price change changePercent asOf } }";

/// Draws ranks 0..n with probability proportional to 1/(rank+1)^s.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf }
    }

    pub fn sample(&self, u: f64) -> usize {
        self.cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cdf.len() - 1)
    }
}

/// The request mix: half static assets, a quarter quotes, GraphQL persisted-query GETs,
/// and authenticated portfolio calls that no cache may share.
pub struct Mix {
    assets: Zipf,
    symbols: Zipf,
    apq_hash: String,
}

impl Default for Mix {
    fn default() -> Self {
        Self::new()
    }
}

impl Mix {
    pub fn new() -> Mix {
        use sha2::Digest;
        Mix {
            assets: Zipf::new(ASSETS.len(), 1.0),
            symbols: Zipf::new(SYMBOLS.len(), 1.1),
            apq_hash: hex::encode(sha2::Sha256::digest(GET_QUOTE.as_bytes())),
        }
    }

    /// One request: its class, path and query, and whether it carries credentials.
    pub fn next(&self, rng: &mut impl Rng) -> (Class, String, bool) {
        let roll: f64 = rng.random();
        if roll < 0.50 {
            let a = ASSETS[self.assets.sample(rng.random())];
            (Class::Static, format!("/static/{a}"), false)
        } else if roll < 0.75 {
            let s = SYMBOLS[self.symbols.sample(rng.random())];
            (Class::Quote, format!("/api/quotes/{s}"), false)
        } else if roll < 0.90 {
            let s = SYMBOLS[self.symbols.sample(rng.random())];
            let variables = meridian_http::percent::encode(&format!("{{\"symbol\":\"{s}\"}}"));
            let ext = meridian_http::percent::encode(&format!(
                "{{\"persistedQuery\":{{\"version\":1,\"sha256Hash\":\"{}\"}}}}",
                self.apq_hash
            ));
            (
                Class::Graphql,
                format!("/graphql?operationName=GetQuote&variables={variables}&extensions={ext}"),
                false,
            )
        } else {
            (Class::Portfolio, "/api/portfolio".to_owned(), true)
        }
    }
}

/// Asks `server` for `name`'s A record from `source`, as a client there would.
pub async fn resolve(server: SocketAddr, source: IpAddr, name: &str) -> Option<IpAddr> {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .ok()?;
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_str(name).ok()?, RecordType::A));
    q.metadata.recursion_desired = false;
    sock.send_to(&q.to_vec().ok()?, server).await.ok()?;
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_millis(800), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    r.answers.iter().find_map(|a| match &a.data {
        RData::A(ip) => Some(IpAddr::V4(ip.0)),
        _ => None,
    })
}

type BoxedBody = http_body_util::combinators::BoxBody<Bytes, String>;

/// One request over a new TLS connection from `source` (HTTP/1.1).
async fn tls_request(
    cfg: Arc<rustls::ClientConfig>,
    server_name: &str,
    source: IpAddr,
    addr: SocketAddr,
    mut req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<BoxedBody>, String> {
    let tcp = meridian_http::client::connect_from(Some(source), addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    if let Ok(v) = http::HeaderValue::from_str(server_name) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    *req.uri_mut() = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(res.map(|b| b.map_err(|e| e.to_string()).boxed()))
}

/// What one location saw.
#[derive(Debug, Clone)]
pub struct LocationRun {
    pub location: String,
    /// Microseconds from when each successful request was due to its last body byte.
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub failed: u64,
    /// (ok, failed) per request class.
    pub classes: BTreeMap<Class, (u64, u64)>,
    pub bytes: u64,
    /// The first few failures, for the report.
    pub errors: Vec<String>,
    /// Which addresses answered, and how often (follows DNS changes).
    pub served_by: BTreeMap<String, u64>,
}

/// The mean latency in ms of every successful request across `runs`, each location
/// weighted by its successes; None when none succeeded.
pub fn mean_ms(runs: &[LocationRun]) -> Option<f64> {
    let ok: u64 = runs.iter().map(|r| r.ok).sum();
    (ok > 0).then(|| {
        runs.iter()
            .map(|r| r.latency.mean() * r.ok as f64)
            .sum::<f64>()
            / ok as f64
            / 1e3
    })
}

impl LocationRun {
    fn new(location: &str) -> LocationRun {
        LocationRun {
            location: location.to_owned(),
            // 1 µs to 10 minutes at 3 significant digits.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("constant bounds are valid"),
            ok: 0,
            failed: 0,
            classes: BTreeMap::new(),
            bytes: 0,
            errors: Vec::new(),
            served_by: BTreeMap::new(),
        }
    }

    pub fn availability(&self) -> f64 {
        let n = self.ok + self.failed;
        if n == 0 {
            return 0.0;
        }
        self.ok as f64 / n as f64
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return f64::NAN;
        }
        self.latency.value_at_quantile(q) as f64 / 1e3
    }
}

/// Addresses each client location's requests leave from (viewers per location).
pub const VIEWERS_PER_LOCATION: u32 = 16;

/// How to drive one architecture.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub config: Config,
    /// A DNS server of the deployment.
    pub dns: SocketAddr,
    pub duration: Duration,
    /// New requests per second from each location (open loop).
    pub rate: f64,
    /// Upper bound on requests per location, whatever the duration.
    pub max_requests: u64,
    /// A new TCP connection per request (handshakes cost round trips), else keep-alive.
    pub new_connections: bool,
    /// Viewers reach the PoPs over HTTPS, a new TLS connection per request (TCP and TLS
    /// handshakes both cost round trips), trusting these roots. Only the full deployment
    /// has TLS; the other architectures stay on plain connections.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// With `tls`: HTTP/3 over a new QUIC connection per request instead of HTTP/1.1 over
    /// new TCP and TLS connections.
    pub http3: bool,
    /// Only requests an edge may cache (static, quotes, GraphQL), as in a chaos run.
    pub cacheable_only: bool,
}

/// The address a location's clients send to under `arch`, from DNS where the architecture
/// uses it.
async fn target(opts: &LoadOptions, arch: Arch, source: IpAddr) -> Option<SocketAddr> {
    let cfg = &opts.config;
    let port = cfg.network.lb_port;
    match arch {
        Arch::Before => cfg.lb_address(&cfg.primary_region().name),
        Arch::MultiRegion => resolve(opts.dns, source, &format!("api.{}.", cfg.deployment.zone))
            .await
            .map(|ip| SocketAddr::new(ip, port)),
        Arch::Full => resolve(opts.dns, source, &format!("cdn.{}.", cfg.deployment.zone))
            .await
            .map(|ip| SocketAddr::new(ip, port)),
    }
}

/// Runs `arch` from every client location at once; `progress` is called about once a
/// second with (seconds elapsed, requests done, requests failed).
pub async fn run(
    opts: &LoadOptions,
    arch: Arch,
    progress: impl Fn(f64, u64, u64) + Send + Sync,
) -> Vec<LocationRun> {
    let cfg = &opts.config;
    let mix = Arc::new(Mix::new());
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in &cfg.client_locations {
        let Some(net) = cfg.client_source(&c.name) else {
            continue;
        };
        // A location is many viewers: its requests leave from several of its addresses,
        // as a city's users do, so per-viewer limits at the edge see viewers, not a city.
        let sources: Vec<IpAddr> = (1..=VIEWERS_PER_LOCATION).map(|i| net.host(i)).collect();
        let opts = opts.clone();
        let mix = mix.clone();
        let name = c.name.clone();
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            run_location(&opts, arch, &name, sources, mix, done, failed).await
        }));
    }
    let started = Instant::now();
    let all = futures_util::future::join_all(tasks);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            r = &mut all => break r,
            _ = tokio::time::sleep(Duration::from_secs(1)) => progress(
                started.elapsed().as_secs_f64(),
                done.load(std::sync::atomic::Ordering::Relaxed),
                failed.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    };
    results.into_iter().filter_map(Result::ok).collect()
}

async fn run_location(
    opts: &LoadOptions,
    arch: Arch,
    name: &str,
    sources: Vec<IpAddr>,
    mix: Arc<Mix>,
    done: Arc<std::sync::atomic::AtomicU64>,
    failed_count: Arc<std::sync::atomic::AtomicU64>,
) -> LocationRun {
    let result = Arc::new(Mutex::new(LocationRun::new(name)));
    // The location's DNS questions come from its first address.
    let Some(&source) = sources.first() else {
        return LocationRun::new(name);
    };
    // One client (and connection pool) per viewer address.
    let clients: Vec<(IpAddr, Client<HttpConnector, Empty<Bytes>>)> = sources
        .iter()
        .map(|&s| {
            let mut connector = HttpConnector::new();
            connector.set_local_address(Some(s));
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_secs(5)));
            let mut builder = Client::builder(TokioExecutor::new());
            if opts.new_connections {
                builder.pool_max_idle_per_host(0);
            }
            (s, builder.build(connector))
        })
        .collect();
    // Follow the DNS as it changes (failover), as a client honouring a short TTL would.
    let current = Arc::new(Mutex::new(target(opts, arch, source).await));
    let refresher = {
        let (opts, current) = (opts.clone(), current.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Some(t) = target(&opts, arch, source).await {
                    *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
                }
            }
        })
    };
    let tls = opts
        .tls
        .clone()
        .filter(|_| arch == Arch::Full)
        .map(|c| (c, Arc::new(format!("cdn.{}", opts.config.deployment.zone))));
    let cdn_host = Arc::new(format!("cdn.{}", opts.config.deployment.zone));
    let interval = Duration::from_secs_f64(1.0 / opts.rate.max(0.01));
    let start = Instant::now();
    let deadline = start + opts.duration;
    // A seedable, Send generator: each location draws its own sequence.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rand::random());
    let mut inflight = tokio::task::JoinSet::new();
    for k in 0..opts.max_requests {
        let due = start + interval.mul_f64(k as f64);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (class, path, auth) = loop {
            let r = mix.next(&mut rng);
            if !opts.cacheable_only || r.0.cacheable() {
                break r;
            }
        };
        let Some(addr) = *current.lock().unwrap_or_else(|p| p.into_inner()) else {
            let mut r = result.lock().unwrap_or_else(|p| p.into_inner());
            r.failed += 1;
            r.classes.entry(class).or_default().1 += 1;
            if r.errors.len() < 5 {
                r.errors.push("no address: the DNS did not answer".into());
            }
            continue;
        };
        let (viewer, client) = clients[k as usize % clients.len()].clone();
        let result = result.clone();
        let (done, failed_count) = (done.clone(), failed_count.clone());
        let tls = tls.clone();
        let http3 = opts.http3;
        let cdn_host = cdn_host.clone();
        let addr = match &tls {
            Some(_) => SocketAddr::new(addr.ip(), opts.config.network.https_port),
            None => addr,
        };
        inflight.spawn(async move {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut req = http::Request::get(format!("{scheme}://{addr}{path}"));
            // A viewer that resolved the distribution's name sends it, so every PoP (and
            // every regional cache behind them) keys an object alike, as for real viewers.
            if arch == Arch::Full {
                req = req.header(http::header::HOST, cdn_host.as_str());
            }
            if auth {
                req = req.header(http::header::AUTHORIZATION, "Bearer demo-user");
            }
            let outcome = async {
                let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
                let res = match &tls {
                    Some((cfg, name)) if http3 => {
                        let (parts, _) = req.into_parts();
                        let req = http::Request::from_parts(parts, ());
                        crate::h3_client::request(cfg, name, viewer, addr, req).await?
                    }
                    Some((cfg, name)) => tls_request(cfg.clone(), name, viewer, addr, req).await?,
                    None => client
                        .request(req)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|b| b.map_err(|e| e.to_string()).boxed()),
                };
                let status = res.status();
                let body = res
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if status.is_server_error() {
                    return Err(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ));
                }
                Ok(body.len() as u64)
            };
            let outcome = tokio::time::timeout(Duration::from_secs(15), outcome)
                .await
                .unwrap_or_else(|_| Err("no answer within 15s".into()));
            let latency = due.elapsed();
            let mut r = result.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Ok(bytes) => {
                    r.ok += 1;
                    r.bytes += bytes;
                    r.classes.entry(class).or_default().0 += 1;
                    let _ = r.latency.record((latency.as_micros() as u64).max(1));
                    *r.served_by.entry(addr.ip().to_string()).or_default() += 1;
                }
                Err(e) => {
                    r.failed += 1;
                    failed_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    r.classes.entry(class).or_default().1 += 1;
                    if r.errors.len() < 5 {
                        r.errors.push(format!("{path}: {e}"));
                    }
                }
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    while inflight.join_next().await.is_some() {}
    refresher.abort();
    let r = result.lock().unwrap_or_else(|p| p.into_inner()).clone();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_in_proportion() {
        let z = Zipf::new(4, 1.0);
        // Weights 1, 1/2, 1/3, 1/4 over 25/12.
        let mut counts = [0u32; 4];
        for i in 0..10_000 {
            counts[z.sample((i as f64 + 0.5) / 10_000.0)] += 1;
        }
        let expect = [4800.0, 2400.0, 1600.0, 1200.0];
        for (c, e) in counts.iter().zip(expect) {
            assert!((*c as f64 - e).abs() < 5.0, "{counts:?}");
        }
    }

    #[test]
    fn the_mix_has_every_class_in_its_share() {
        let mix = Mix::new();
        let mut rng = rand::rng();
        let mut counts: BTreeMap<Class, u32> = BTreeMap::new();
        for _ in 0..20_000 {
            let (c, path, auth) = mix.next(&mut rng);
            assert!(path.starts_with('/'));
            assert_eq!(auth, c == Class::Portfolio);
            *counts.entry(c).or_default() += 1;
        }
        let share = |c| counts[&c] as f64 / 20_000.0;
        assert!((share(Class::Static) - 0.50).abs() < 0.02);
        assert!((share(Class::Quote) - 0.25).abs() < 0.02);
        assert!((share(Class::Graphql) - 0.15).abs() < 0.02);
        assert!((share(Class::Portfolio) - 0.10).abs() < 0.02);
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let mut r = LocationRun::new("x");
        for ms in 1..=100u64 {
            r.latency.record(ms * 1000).unwrap();
        }
        r.ok = 100;
        r.failed = 0;
        assert!(
            (r.percentile_ms(0.5) - 50.0).abs() < 0.1,
            "{}",
            r.percentile_ms(0.5)
        );
        assert!((r.percentile_ms(0.95) - 95.0).abs() < 0.1);
        assert!((r.percentile_ms(0.99) - 99.0).abs() < 0.1);
        assert_eq!(r.availability(), 1.0);
        r.failed = 1;
        assert!((r.availability() - 100.0 / 101.0).abs() < 1e-12);
    }
}
