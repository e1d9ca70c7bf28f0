//! Origin groups: members (region load balancers or plain HTTP servers), their health and
//! measured round trip from this PoP, the order to try them in, and sending one request
//! with failover to the next member inside the same viewer request.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use meridian_config::{Config, OriginGroup, OriginMember, OriginSelection};
use meridian_health::{HealthBoard, HealthHandle};
use meridian_http::CountedUpstreamClient;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, String)>;

/// One origin of a group.
pub struct Member {
    /// How it is written in the config (`lb:us-east-1`, `http://10.0.0.5:80`).
    pub name: String,
    /// Where requests and health checks go: checks take the way traffic takes (through
    /// the WAN when there is one), and a balancer answers /health there only while one of
    /// its targets does.
    pub addr: SocketAddr,
    /// Requests go over TLS (a balancer with `origin_protocol = "https"`): `addr` is then
    /// the balancer's TLS port.
    pub tls: bool,
    /// Where health checks go: plain HTTP to the balancer's HTTP port on the health path
    /// (a balancer's /health says whether its targets are up, not its certificate).
    pub check_addr: SocketAddr,
    /// Its name on the health board (`<group>/<member>`).
    pub key: String,
    pub health: HealthHandle,
    /// Exponentially weighted round trip of passing health checks (half a probe, which
    /// opens a connection), in microseconds (0 until measured).
    pub rtt_us: AtomicU64,
    /// The round trip the latency model gives for this PoP and member, in microseconds.
    pub modelled_us: u64,
}

impl Member {
    /// The round trip used to rank members: the measured one, but never less than the
    /// model's. A path is at least as long as its distance; measurements can only show it
    /// slower (congestion, a struggling region). So members that all measure near zero
    /// (every origin on one machine without WAN relays) keep the model's order instead of
    /// flapping on noise, and with the WAN the measurement decides. Whole milliseconds.
    pub fn rank_key(&self) -> (u64, u64) {
        let measured = self.rtt_us.load(Ordering::Relaxed);
        (measured.max(self.modelled_us) / 1000, self.modelled_us)
    }
}

pub struct Group {
    pub cfg: OriginGroup,
    pub members: Vec<Member>,
}

impl Group {
    /// Members in the order to try them: healthy ones by the group's selection, then the
    /// unhealthy ones (fail open, as CloudFront's origin failover does when all are down).
    pub fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        match self.cfg.selection {
            OriginSelection::Ordered => {}
            OriginSelection::Latency => {
                order.sort_by_key(|&i| self.members[i].rank_key());
            }
        }
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| self.members[i].health.is_healthy());
        healthy.extend(unhealthy);
        healthy
    }
}

/// Why no origin produced a usable answer.
#[derive(Debug, Clone)]
pub struct OriginFailure {
    /// One line per member tried.
    pub attempts: Vec<String>,
    /// Every attempt timed out (504 rather than 502).
    pub timed_out: bool,
}

impl std::fmt::Display for OriginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.attempts.join("; "))
    }
}

/// A response from an origin, and which member sent it.
pub struct OriginResponse {
    pub member: String,
    pub response: Response<Incoming>,
    pub elapsed: Duration,
}

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
    /// Connections opened to origins (requests per connection = reuse).
    pub connections_opened: Arc<AtomicU64>,
    m: OriginMetrics,
    /// Origin access control: every origin request is signed with the deployment's edge
    /// signing key, set once at start.
    signer: std::sync::OnceLock<Arc<meridian_http::signing::Signer>>,
}

impl Origins {
    pub fn new(
        cfg: &Config,
        pop_location: meridian_config::Coordinates,
        local_ip: Option<std::net::IpAddr>,
        metrics: &Metrics,
    ) -> Self {
        let board = HealthBoard::new();
        let https = cfg.distribution.origin_protocol == meridian_config::OriginProtocol::Https;
        let mut tls_names = std::collections::HashMap::new();
        let groups = cfg
            .distribution
            .origin_groups
            .iter()
            .map(|g| {
                let hc = &g.health_check;
                let members = g
                    .members
                    .iter()
                    .filter_map(|m| {
                        let (check_addr, modelled) = match m {
                            OriginMember::Lb(region) => {
                                let r = cfg.regions.iter().find(|r| &r.name == region)?;
                                let rtt =
                                    Duration::from_secs_f64(pop_location.rtt_ms(&r.location) / 1e3);
                                (cfg.lb_address(region)?, rtt)
                            }
                            OriginMember::Address(a) => (*a, Duration::ZERO),
                        };
                        let (addr, tls) = match m {
                            OriginMember::Lb(region) if https => {
                                let addr = cfg.lb_tls_address(region)?;
                                if let Ok(name) = rustls::pki_types::ServerName::try_from(
                                    cfg.lb_server_name(region),
                                ) {
                                    tls_names.insert(addr, name);
                                }
                                (addr, true)
                            }
                            _ => (check_addr, false),
                        };
                        let name = m.to_string();
                        let key = format!("{}/{name}", g.name);
                        Some(Member {
                            health: board.register(
                                &key,
                                hc.healthy_threshold,
                                hc.unhealthy_threshold,
                            ),
                            key,
                            name,
                            addr,
                            tls,
                            check_addr,
                            rtt_us: AtomicU64::new(0),
                            modelled_us: modelled.as_micros() as u64,
                        })
                    })
                    .collect();
                Arc::new(Group {
                    cfg: g.clone(),
                    members,
                })
            })
            .collect();
        let connections_opened = Arc::new(AtomicU64::new(0));
        let connect_timeout = cfg
            .distribution
            .origin_groups
            .iter()
            .map(|g| g.connect_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1));
        let client = meridian_http::counted_upstream_client(
            connect_timeout,
            Duration::from_secs(90),
            local_ip,
            connections_opened.clone(),
            https.then(|| origin_tls(cfg, tls_names)).flatten(),
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
            connections_opened,
            m,
            signer: std::sync::OnceLock::new(),
        }
    }

    /// Signs every origin request from now on (a second call changes nothing).
    pub fn sign_with(&self, signer: Arc<meridian_http::signing::Signer>) {
        let _ = self.signer.set(signer);
    }

    pub fn group(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.iter().find(|g| g.cfg.name == name)
    }

    /// Starts health checks of every member; each check's round trip feeds the member's
    /// latency estimate.
    pub fn start_checks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            for (mi, _) in g.members.iter().enumerate() {
                let me = self.clone();
                tasks.push(tokio::spawn(async move {
                    let g = &me.groups[gi];
                    let m = &g.members[mi];
                    let labels = vec![("origin", m.name.clone()), ("group", g.cfg.name.clone())];
                    let mut tick = tokio::time::interval(g.cfg.health_check.interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let out = meridian_health::probe_from(
                            me.local_ip,
                            m.check_addr,
                            &g.cfg.health_check,
                        )
                        .await;
                        if out.healthy {
                            // A probe opens a new connection: handshake and request are two
                            // round trips.
                            let sample = out.latency.as_micros() as u64 / 2;
                            let old = m.rtt_us.load(Ordering::Relaxed);
                            let new = if old == 0 {
                                sample
                            } else {
                                (old * 7 + sample) / 8
                            };
                            m.rtt_us.store(new, Ordering::Relaxed);
                            me.m.rtt.get_or_create(&labels).set(new as f64 / 1e6);
                        }
                        me.board.observe(&m.key, out);
                        me.m.healthy
                            .get_or_create(&labels)
                            .set(i64::from(m.health.is_healthy()));
                    }
                }));
            }
        }
        tasks
    }

    /// Sends a request to the group, trying members in rank order. A member that refuses
    /// the connection is passed over for any method; one that times out or answers with a
    /// failover status is passed over when the request is safe to repeat.
    pub async fn send(
        &self,
        group: &Group,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<OriginResponse, OriginFailure> {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let order = group.ranked();
        let mut attempts = Vec::new();
        let mut all_timeouts = true;
        let mut last_bad: Option<OriginResponse> = None;
        for (n, &i) in order.iter().enumerate() {
            let m = &group.members[i];
            let more = n + 1 < order.len();
            let scheme = if m.tls { "https" } else { "http" };
            let uri = format!("{scheme}://{}{}", m.addr, path_and_query);
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(h) = req.headers_mut() {
                *h = headers.clone();
                // Signed with the Host the origin will see: the one set here, else the
                // member's address (hyper writes it from the URI).
                if let Some(s) = self.signer.get() {
                    let addr = m.addr.to_string();
                    let host = h
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(&addr)
                        .to_owned();
                    h.insert(
                        meridian_http::signing::HEADER,
                        s.sign(method, &host, path_and_query),
                    );
                }
            }
            let Ok(req) = req.body(meridian_http::full(body.clone())) else {
                attempts.push(format!("{}: the request could not be built", m.name));
                break;
            };
            let started = Instant::now();
            let labels =
                |outcome: &str| vec![("origin", m.name.clone()), ("outcome", outcome.to_owned())];
            match tokio::time::timeout(group.cfg.response_timeout, self.client.request(req)).await {
                Ok(Ok(res)) => {
                    let elapsed = started.elapsed();
                    self.m
                        .duration
                        .get_or_create(&vec![("origin", m.name.clone())])
                        .observe(elapsed.as_secs_f64());
                    let status = res.status().as_u16();
                    self.m
                        .requests
                        .get_or_create(&labels(&format!("{}xx", status / 100)))
                        .inc();
                    if group.cfg.failover_statuses.contains(&status) && safe && more {
                        attempts.push(format!("{}: answered {status}", m.name));
                        self.failover("status");
                        all_timeouts = false;
                        last_bad = Some(OriginResponse {
                            member: m.name.clone(),
                            response: res,
                            elapsed,
                        });
                        continue;
                    }
                    return Ok(OriginResponse {
                        member: m.name.clone(),
                        response: res,
                        elapsed,
                    });
                }
                Ok(Err(e)) => {
                    all_timeouts = false;
                    let connect = e.is_connect();
                    self.m
                        .requests
                        .get_or_create(&labels(if connect { "connect_error" } else { "io_error" }))
                        .inc();
                    attempts.push(format!("{}: {}", m.name, meridian_http::describe(&e)));
                    if connect {
                        self.board.report_failure(&m.key, "connection failed");
                    }
                    if !(connect || safe) {
                        break;
                    }
                    if more {
                        self.failover(if connect { "connect" } else { "io" });
                    }
                }
                Err(_) => {
                    self.m.requests.get_or_create(&labels("timeout")).inc();
                    // A member that holds a request past the timeout is treated as down
                    // until its health checks pass again, so the next viewers do not wait
                    // for it too (a frozen region costs one timeout, not one per request).
                    self.board
                        .report_failure(&m.key, "no response within the response timeout");
                    attempts.push(format!(
                        "{}: no response within {}",
                        m.name,
                        meridian_config::units::format_duration(group.cfg.response_timeout)
                    ));
                    if !safe {
                        break;
                    }
                    if more {
                        self.failover("timeout");
                    }
                }
            }
        }
        // Every member failed; the last one's own error answer is better than ours.
        if let Some(r) = last_bad {
            return Ok(r);
        }
        Err(OriginFailure {
            attempts,
            timed_out: all_timeouts,
        })
    }

    fn failover(&self, reason: &str) {
        self.m
            .failovers
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }
}

/// The TLS of the origin pool: the CA the config names (`up` resolves it to the deployment
/// CA when none is named). Without a usable CA there is none, and every TLS origin request
/// fails (502): never sent in the clear instead.
fn origin_tls(
    cfg: &Config,
    names: std::collections::HashMap<SocketAddr, rustls::pki_types::ServerName<'static>>,
) -> Option<meridian_http::OriginTls> {
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
