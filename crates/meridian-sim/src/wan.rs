//! The `wan` node: holds the public address of every region load balancer, PoP and DNS
//! server, and relays each connection (and each DNS datagram) to the node behind it,
//! delayed by the modelled round trip between where it comes from (its source address)
//! and where it goes. The nodes themselves know nothing of it; they listen on their
//! backstage ports.
//!
//! The DNS is anycast, as Route 53's servers answer from edge locations: a query pays the
//! way to the PoP nearest its sender (the nearest region when there are no PoPs). It
//! reaches the DNS node from the sender's own address, so the DNS still knows where the
//! client is.

use crate::relay::{relay, Conditions, Link};
use crate::world::{Place, PlaceKind, World};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use meridian_config::Config;
use meridian_http::admin::Router;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, histogram::Histogram,
};
use meridian_telemetry::{Labels, Metrics};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// One relayed destination: the public address, the node behind it, and where it is.
#[derive(Debug, Clone)]
pub struct Destination {
    pub public: SocketAddr,
    pub backstage: SocketAddr,
    pub site: Site,
}

/// Where a destination answers from.
#[derive(Debug, Clone)]
pub enum Site {
    At(Place),
    /// A DNS server: anycast, answering at the PoP nearest each sender, over UDP and TCP.
    Dns,
}

/// The WAN holds each public port and forwards to the node listening behind it; `up` starts
/// those nodes with this placement.
const BEHIND: meridian_config::Placement = meridian_config::Placement::BehindRelay;

/// Every destination the WAN fronts in this deployment.
pub fn destinations(cfg: &Config, world: &World) -> Vec<Destination> {
    let mut out = Vec::new();
    for r in &cfg.regions {
        let (Some(public), Some(place)) = (
            cfg.lb_address(&r.name),
            world.place(crate::world::PlaceKind::Region, &r.name),
        ) else {
            continue;
        };
        for port in [public.port(), cfg.lb_tls_port()] {
            out.push(Destination {
                public: SocketAddr::new(public.ip(), port),
                backstage: BEHIND.listen(SocketAddr::new(public.ip(), port)),
                site: Site::At(place.clone()),
            });
        }
    }
    for p in &cfg.edges {
        let (Some((public, _)), Some(place)) = (
            cfg.pop_addresses(&p.name),
            world.place(crate::world::PlaceKind::Pop, &p.name),
        ) else {
            continue;
        };
        for port in [public.port(), cfg.network.https_port] {
            out.push(Destination {
                public: SocketAddr::new(public.ip(), port),
                backstage: BEHIND.listen(SocketAddr::new(public.ip(), port)),
                site: Site::At(place.clone()),
            });
        }
    }
    // Regional edge caches sit in their region: a PoP pays the way there, as to the
    // balancer beside them.
    for r in &cfg.regions {
        let (Some(public), Some(place)) = (
            cfg.regional_cache_address(&r.name),
            world.place(crate::world::PlaceKind::Region, &r.name),
        ) else {
            continue;
        };
        for port in [public.port(), cfg.network.https_port] {
            out.push(Destination {
                public: SocketAddr::new(public.ip(), port),
                backstage: BEHIND.listen(SocketAddr::new(public.ip(), port)),
                site: Site::At(place.clone()),
            });
        }
    }
    // Databases: replication and every client pay the distance to the instance's region.
    for n in cfg
        .nodes()
        .iter()
        .filter(|n| n.role == meridian_config::Role::Db)
    {
        let place = n
            .region
            .as_deref()
            .and_then(|r| world.place(crate::world::PlaceKind::Region, r));
        if let Some(place) = place {
            out.push(Destination {
                public: n.address,
                backstage: BEHIND.listen(n.address),
                site: Site::At(place.clone()),
            });
        }
    }
    for n in cfg
        .nodes()
        .iter()
        .filter(|n| n.role == meridian_config::Role::Dns)
    {
        out.push(Destination {
            public: n.address,
            backstage: BEHIND.listen(n.address),
            site: Site::Dns,
        });
    }
    out
}

struct Wan {
    world: World,
    cfg: Config,
    /// Place pairs (ids, either order) that cannot reach each other now.
    partitions: Mutex<HashSet<(String, String)>>,
    /// Extra one-way delay on every link to or from a place (a slow region).
    slow: Mutex<std::collections::HashMap<String, std::time::Duration>>,
    /// What `/partition` and `/slow` ask for.
    admin_token: meridian_http::secrets::AdminToken,
    /// Bumped when partitions change, so held connections look again.
    changed: watch::Sender<u64>,
    connections: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    datagrams: Family<Labels, Counter>,
    /// How late each chunk went beyond its modelled moment: the relay's own delay.
    lateness: Histogram,
    metrics: Metrics,
}

/// Bucket bounds for the relay's own lateness, in seconds: fine below a millisecond, where
/// the goal is.
pub const LATENESS_BUCKETS: [f64; 11] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
];

impl Wan {
    /// Where `site` answers a sender at `from`; None when that is nowhere in particular (an
    /// unknown sender asking the DNS).
    fn place_of<'a>(&'a self, site: &'a Site, from: Option<&Place>) -> Option<&'a Place> {
        match site {
            Site::At(p) => Some(p),
            Site::Dns => {
                let from = from?;
                self.world
                    .nearest(from, PlaceKind::Pop)
                    .or_else(|| self.world.nearest(from, PlaceKind::Region))
            }
        }
    }

    fn link(&self, from: Option<&Place>, to: Option<&Place>) -> Link {
        let sim = &self.cfg.simulation;
        let (Some(from), Some(to)) = (from, to) else {
            // Unknown sources (a person's curl from 127.0.0.1) are next door.
            return Link::rtt(std::time::Duration::ZERO);
        };
        Link {
            one_way: self.world.rtt(from, to) / 2,
            jitter: sim.jitter,
            bandwidth: sim.bandwidth.map(|b| b.0),
        }
    }

    /// The metric and partition names of a sender and a destination place.
    fn ids(&self, from: Option<&Place>, to: Option<&Place>) -> (String, String) {
        (
            from.map(Place::id).unwrap_or_else(|| "local".into()),
            to.map(Place::id).unwrap_or_else(|| "dns".into()),
        )
    }

    /// What the link between two places is doing now.
    fn conditions(&self, a: &str, b: &str) -> Conditions {
        let p = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let held =
            p.contains(&(a.to_owned(), b.to_owned())) || p.contains(&(b.to_owned(), a.to_owned()));
        let slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        let extra =
            slow.get(a).copied().unwrap_or_default() + slow.get(b).copied().unwrap_or_default();
        Conditions { held, extra }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WanError {
    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
    #[error("cannot listen on {addr} (udp): {source}")]
    Udp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How one WAN node runs, beyond its config.
#[derive(Debug, Clone)]
pub struct WanOptions {
    /// Where its admin endpoint listens.
    pub admin: SocketAddr,
    /// The deployment's admin token: changing the network (`/partition`, `/slow`) needs
    /// it as a Bearer token; `/health` and `/metrics` stay open.
    pub admin_token: meridian_http::secrets::AdminToken,
    /// Connections relayed at once, over all its listeners. At the cap the listeners stop
    /// accepting, so new connections wait in the kernel's backlog until one ends. Each
    /// relayed connection holds four descriptors (two sockets and their delay-line twins).
    pub max_connections: usize,
    /// Where admin actions (partitions, slow links) are recorded.
    pub audit: Arc<meridian_http::audit::AuditLog>,
}

impl WanOptions {
    /// Room for every simulated client of a deployment with keep-alive, within a
    /// `ulimit -n` of 20,000.
    pub const MAX_CONNECTIONS: usize = 4096;

    pub fn new(admin: SocketAddr, admin_token: meridian_http::secrets::AdminToken) -> Self {
        WanOptions {
            admin,
            admin_token,
            max_connections: Self::MAX_CONNECTIONS,
            audit: Arc::new(meridian_http::audit::AuditLog::disabled("wan")),
        }
    }
}

/// Runs the WAN node until `shutdown` resolves.
pub async fn run(
    cfg: &Config,
    opts: WanOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WanError> {
    let admin = opts.admin;
    let world = World::new(cfg);
    let dests = destinations(cfg, &world);
    let metrics = Metrics::new();
    let wan = Arc::new(Wan {
        connections: metrics.register(
            "wan_connections",
            "Connections relayed, by source and destination place",
            Family::default(),
        ),
        bytes: metrics.register(
            "wan_bytes",
            "Bytes relayed, by source and destination place",
            Family::default(),
        ),
        datagrams: metrics.register(
            "wan_datagrams",
            "Datagrams relayed over UDP (DNS queries, QUIC packets to and from PoPs), by source and destination place",
            Family::default(),
        ),
        lateness: metrics.register(
            "wan_lateness_seconds",
            "How much later than the link model a relayed chunk was written (chunks that waited for a slow receiver or a partition are not counted)",
            Histogram::new(LATENESS_BUCKETS),
        ),
        metrics,
        world,
        cfg: cfg.clone(),
        admin_token: opts.admin_token.clone(),
        partitions: Mutex::new(HashSet::new()),
        slow: Mutex::new(std::collections::HashMap::new()),
        changed: watch::channel(0).0,
    });
    let mut listeners = Vec::new();
    let mut udp = Vec::new();
    for d in &dests {
        listeners.push((meridian_http::bind(d.public).await?, d.clone()));
        if matches!(d.site, Site::Dns) {
            udp.push((bind_udp(d.public).await?, d.clone()));
        }
    }
    // HTTP/3 viewers reach the PoPs over UDP at their HTTPS ports.
    let mut quic = Vec::new();
    for d in dests.iter().filter(|d| is_pop_https(cfg, d)) {
        quic.push((bind_udp(d.public).await?, d.clone()));
    }
    let admin_listener = meridian_http::bind(admin).await?;
    tracing::info!(links = dests.len(), quic = quic.len(), "wan relaying");
    let mut tasks = Vec::new();
    let room = Arc::new(tokio::sync::Semaphore::new(
        opts.max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    for (l, d) in listeners {
        tasks.push(tokio::spawn(accept_loop(wan.clone(), l, d, room.clone())));
    }
    for (sock, d) in udp {
        tasks.push(tokio::spawn(datagram_loop(wan.clone(), Arc::new(sock), d)));
    }
    for (sock, d) in quic {
        let w = wan.clone();
        let path = move |ip: std::net::IpAddr| {
            let from = w.world.place_of_ip(ip);
            let to = w.place_of(&d.site, from);
            let link = w.link(from, to);
            let (from_id, to_id) = w.ids(from, to);
            let c = w.conditions(&from_id, &to_id);
            if !c.held {
                w.datagrams
                    .get_or_create(&vec![("from", from_id), ("to", to_id)])
                    .inc();
            }
            crate::quic_relay::Path {
                one_way: link.one_way + c.extra,
                held: c.held,
            }
        };
        let backstage = d.backstage;
        tasks.push(tokio::spawn(crate::quic_relay::run(
            Arc::new(sock),
            backstage,
            path,
        )));
    }
    admin_router(wan, opts.audit.clone())
        .serve(admin_listener, shutdown)
        .await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Whether `d` is a PoP's HTTPS port of a distribution that serves HTTP/3 there.
fn is_pop_https(cfg: &Config, d: &Destination) -> bool {
    cfg.distribution.http_version.http3()
        && d.public.port() == cfg.network.https_port
        && cfg.edges.iter().any(|p| {
            cfg.pop_addresses(&p.name)
                .is_some_and(|(a, _)| a.ip() == d.public.ip())
        })
}

async fn accept_loop(
    wan: Arc<Wan>,
    listener: TcpListener,
    dest: Destination,
    room: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Then a slot: at the cap, this loop waits with one accepted connection and the
        // rest wait in the backlog, not in our memory. (A slot taken before `accept` would
        // be held by an idle listener while another listener's clients wait for it.)
        let Ok(permit) = room.clone().acquire_owned().await else {
            return;
        };
        let from = wan.world.place_of_ip(peer.ip()).cloned();
        let to = wan.place_of(&dest.site, from.as_ref());
        let link = wan.link(from.as_ref(), to);
        let (from_id, to_id) = wan.ids(from.as_ref(), to);
        let labels = vec![("from", from_id.clone()), ("to", to_id.clone())];
        wan.connections.get_or_create(&labels).inc();
        let bytes = wan.bytes.get_or_create(&labels).clone();
        // A per-connection view of what this pair's link is doing now.
        let (held_tx, held_rx) = watch::channel(wan.conditions(&from_id, &to_id));
        let mut changes = wan.changed.subscribe();
        let w = wan.clone();
        let (f, t) = (from_id.clone(), to_id.clone());
        let watcher = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if held_tx.send(w.conditions(&f, &t)).is_err() {
                    return;
                }
            }
        });
        let backstage = dest.backstage;
        let lateness = wan.lateness.clone();
        // The DNS places its client by address, so its connections keep the sender's.
        let source = matches!(dest.site, Site::Dns).then(|| peer.ip());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = relay(stream, backstage, source, link, held_rx, move |n, late| {
                bytes.inc_by(n);
                if let Some(late) = late {
                    lateness.observe(late.as_secs_f64());
                }
            })
            .await;
            watcher.abort();
        });
    }
}

/// DNS queries in flight through one relay at most; past it, new ones are dropped, as a
/// full link would drop them.
const MAX_DATAGRAMS_IN_FLIGHT: usize = 4096;

/// DNS over UDP: each query waits the way to the DNS site, goes to the DNS node from the
/// sender's own address, and its answer waits the way back. Inside a partition both are
/// lost, as datagrams are; the client asks again.
async fn datagram_loop(wan: Arc<Wan>, public: Arc<UdpSocket>, dest: Destination) {
    let mut buf = vec![0u8; 65_535];
    let room = Arc::new(tokio::sync::Semaphore::new(MAX_DATAGRAMS_IN_FLIGHT));
    loop {
        let Ok((n, peer)) = public.recv_from(&mut buf).await else {
            continue;
        };
        let arrived = tokio::time::Instant::now();
        let from = wan.world.place_of_ip(peer.ip());
        let to = wan.place_of(&dest.site, from);
        let link = wan.link(from, to);
        let (from_id, to_id) = wan.ids(from, to);
        let conditions = wan.conditions(&from_id, &to_id);
        if conditions.held {
            continue;
        }
        let Ok(permit) = room.clone().try_acquire_owned() else {
            continue;
        };
        let labels = vec![("from", from_id), ("to", to_id)];
        wan.datagrams.get_or_create(&labels).inc();
        let one_way = link.one_way + conditions.extra;
        let query = buf[..n].to_vec();
        let (public, backstage) = (public.clone(), dest.backstage);
        tokio::spawn(async move {
            let _permit = permit;
            // tokio's timer works in whole milliseconds: DNS is delayed to the millisecond.
            if !one_way.is_zero() {
                tokio::time::sleep_until(arrived + one_way).await;
            }
            let Ok(sock) = UdpSocket::bind(SocketAddr::new(peer.ip(), 0)).await else {
                return;
            };
            if sock.send_to(&query, backstage).await.is_err() {
                return;
            }
            let mut answer = vec![0u8; 65_535];
            let Ok(Ok(len)) =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv(&mut answer))
                    .await
            else {
                return;
            };
            if !one_way.is_zero() {
                tokio::time::sleep(one_way).await;
            }
            let _ = public.send_to(&answer[..len], peer).await;
        });
    }
}

/// The WAN node's admin endpoints. Changing the network is for the deployment's
/// operators (chaos runs), not for anything that can reach the admin port.
fn admin_router(wan: Arc<Wan>, audit: Arc<meridian_http::audit::AuditLog>) -> Router<Arc<Wan>> {
    const CHANGE: &[Method] = &[Method::POST, Method::DELETE];
    let token = wan.admin_token.clone();
    Router::new(
        wan,
        "wan endpoints: /health, /metrics, POST|DELETE /partition?from=&to=, POST|DELETE /slow?place=&extra= (these two with the admin token)",
    )
    .token(token)
    .audit(audit)
    .health(|_| serde_json::json!({"status": "healthy", "role": "wan"}))
    .metrics(|wan| wan.metrics.encode())
    .guarded(CHANGE, "/partition", |wan, req| async move { partition(&wan, &req) })
    .guarded(CHANGE, "/slow", |wan, req| async move { slow(&wan, &req) })
}

fn query_param(req: &Request<Incoming>, k: &str) -> Option<String> {
    meridian_http::percent::query_param(req.uri().query(), k)
}

/// `POST /partition?from=&to=` cuts the link between two places; `DELETE` mends it.
fn partition(wan: &Wan, req: &Request<Incoming>) -> http::Response<meridian_http::Body> {
    let param = |k: &str| query_param(req, k);
    let (Some(a), Some(b)) = (param("from"), param("to")) else {
        return meridian_http::text(
            StatusCode::BAD_REQUEST,
            "give ?from=<place>&to=<place> (a region, pop:<name> or client:<name>)",
        );
    };
    let known = |id: &str| wan.world.places.iter().any(|p| p.id() == id);
    if !known(&a) || !known(&b) {
        return meridian_http::text(
            StatusCode::BAD_REQUEST,
            format!("unknown place `{a}` or `{b}`"),
        );
    }
    {
        let mut p = wan.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if req.method() == Method::POST {
            p.insert((a.clone(), b.clone()));
        } else {
            p.remove(&(a.clone(), b.clone()));
            p.remove(&(b.clone(), a.clone()));
        }
    }
    wan.changed.send_modify(|n| *n += 1);
    meridian_http::json(
        StatusCode::OK,
        serde_json::json!({"from": a, "to": b, "partitioned": req.method() == Method::POST})
            .to_string(),
    )
}

/// `POST /slow?place=&extra=` adds a one-way delay to everything through a place;
/// `DELETE` removes it.
fn slow(wan: &Wan, req: &Request<Incoming>) -> http::Response<meridian_http::Body> {
    let param = |k: &str| query_param(req, k);
    let Some(place) = param("place") else {
        return meridian_http::text(
            StatusCode::BAD_REQUEST,
            "give ?place=<place>&extra=<duration>",
        );
    };
    if !wan.world.places.iter().any(|p| p.id() == place) {
        return meridian_http::text(StatusCode::BAD_REQUEST, format!("unknown place `{place}`"));
    }
    let extra = if req.method() == Method::POST {
        match param("extra").map(|e| meridian_config::units::parse_duration(&e)) {
            Some(Ok(d)) => d,
            _ => {
                return meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    "give the extra one-way delay, such as extra=200ms",
                )
            }
        }
    } else {
        std::time::Duration::ZERO
    };
    {
        let mut slow = wan.slow.lock().unwrap_or_else(|p| p.into_inner());
        if extra.is_zero() {
            slow.remove(&place);
        } else {
            slow.insert(place.clone(), extra);
        }
    }
    wan.changed.send_modify(|n| *n += 1);
    meridian_http::json(
        StatusCode::OK,
        serde_json::json!({"place": place, "extra_ms": extra.as_secs_f64() * 1e3}).to_string(),
    )
}

/// A UDP socket on `addr`, or why not.
async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, WanError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| WanError::Udp { addr, source })
}
