//! The DNS node: UDP and TCP listeners, the resolution of one query, and the admin API.

use crate::client::{ClientInfo, Locator};
use crate::policy::{decide, Decision};
use crate::zone::Zone;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meridian_config::{HealthCheck, Policy};
use meridian_health::{Health, HealthBoard};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::Metrics;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Largest UDP answer we send (the DNS Flag Day 2020 value, safe from fragmentation).
const MAX_UDP: u16 = 1232;
/// Longest CNAME chain followed inside the zone.
const MAX_CHAIN: usize = 8;

#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub name: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub zone: Zone,
    pub locator: Locator,
    /// How answer targets are checked.
    pub check: HealthCheck,
    /// Threads answering UDP.
    pub udp_threads: usize,
    /// TCP connections served at once. At the cap the listener stops accepting, so new
    /// clients wait in the kernel's backlog until a connection ends.
    pub tcp_max_connections: usize,
    /// How long a TCP client may take to send its next query, or to take an answer: a
    /// client that stops reading must not hold a connection (and a slot of the cap).
    pub tcp_timeout: Duration,
    /// The deployment's admin token: changing the DNS (`POST /latency`) needs it as a
    /// Bearer token. None refuses every change; reading stays open.
    pub admin_token: Option<meridian_http::secrets::AdminToken>,
    /// Where admin actions are recorded.
    pub audit: Arc<meridian_http::audit::AuditLog>,
}

/// TCP is the fallback for truncated answers and zone-sized questions: a few clients at
/// a time, not the UDP path's load.
const TCP_MAX_CONNECTIONS: usize = 1024;
/// RFC 7766 suggests a few seconds of idleness; 10 s also bounds a stalled write.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

impl DnsOptions {
    pub fn from_config(
        cfg: &meridian_config::Config,
        node: &meridian_config::NodeSpec,
    ) -> Result<Self, OptionsError> {
        Ok(DnsOptions {
            name: node.name.clone(),
            listen: node.address,
            admin: node.admin,
            zone: Zone::build(cfg)?,
            locator: Locator::with_geoip(cfg)?,
            check: cfg.dns.health_check.clone(),
            udp_threads: cfg.dns.udp_threads as usize,
            tcp_max_connections: TCP_MAX_CONNECTIONS,
            tcp_timeout: TCP_TIMEOUT,
            admin_token: None,
            audit: Arc::new(meridian_http::audit::AuditLog::disabled(&node.name)),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Zone(#[from] crate::ZoneError),
    #[error(transparent)]
    GeoIp(#[from] crate::client::GeoIpError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Admin(#[from] meridian_http::BindError),
}

type Labels = Vec<(&'static str, String)>;

/// Query labels are static strings in a fixed array: counting a query allocates nothing.
type QueryLabels = [(&'static str, &'static str); 3];

struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    duration: Histogram,
    flips: Family<Labels, Counter>,
    target_healthy: Family<Labels, Gauge>,
    dropped: Counter,
}

struct Inner {
    name: String,
    cache: crate::cache::AnswerCache,
    /// Round trips measured by Meridian (client location, region) -> ms, set at run time.
    measured: std::sync::RwLock<rustc_hash::FxHashMap<(String, String), f64>>,
    /// Bumped when measurements change, so cached answers are recomputed.
    measured_generation: std::sync::atomic::AtomicU64,
    zone: Zone,
    locator: Locator,
    board: HealthBoard,
    metrics: Metrics,
    m: DnsMetrics,
}

/// A DNS server's state, shared by its listeners.
#[derive(Clone)]
pub struct Dns(Arc<Inner>);

/// The outcome of resolving one question.
pub struct Resolution {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    pub decisions: Vec<(Name, RecordType, Decision)>,
    /// The narrowest ECS scope any decision needed.
    pub scope_prefix: u8,
}

impl Dns {
    pub fn new(opts: &DnsOptions) -> Self {
        let metrics = Metrics::new();
        let m = DnsMetrics {
            queries: metrics.register(
                "dns_queries",
                "Queries answered, by type, response code and routing policy",
                Family::default(),
            ),
            duration: metrics.register(
                "dns_answer_duration_seconds",
                "Time a query spent in the server: for UDP, from its batch's arrival to the batch's answers being sent; for TCP, to compute and encode",
                Histogram::new([
                    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005,
                ]),
            ),
            flips: metrics.register(
                "dns_health_flips",
                "Health changes of answer targets, by target and new state",
                Family::default(),
            ),
            target_healthy: metrics.register(
                "dns_target_healthy",
                "1 when an answer target passes its health check",
                Family::default(),
            ),
            dropped: metrics.register(
                "dns_dropped_packets",
                "Packets too short or not queries, dropped without answer",
                Counter::default(),
            ),
        };
        let board = HealthBoard::new();
        for t in &opts.zone.health_targets {
            board.register(
                &t.key,
                opts.check.healthy_threshold,
                opts.check.unhealthy_threshold,
            );
        }
        Dns(Arc::new(Inner {
            name: opts.name.clone(),
            cache: Default::default(),
            measured: Default::default(),
            measured_generation: Default::default(),
            zone: opts.zone.clone(),
            locator: opts.locator.clone(),
            board,
            metrics,
            m,
        }))
    }

    pub fn board(&self) -> &HealthBoard {
        &self.0.board
    }

    /// Starts checking every answer target; keeps health metrics current.
    pub fn start_health_checks(&self, check: &HealthCheck) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .0
            .zone
            .health_targets
            .iter()
            .map(|t| {
                let mut c = check.clone();
                c.path = t.path.clone();
                self.0.board.watch(&t.key, t.addr, c)
            })
            .collect();
        let me = self.clone();
        let mut events = self.0.board.subscribe();
        tasks.push(tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                let to = format!("{:?}", ev.to).to_lowercase();
                me.0.m
                    .flips
                    .get_or_create(&vec![("target", ev.target.clone()), ("to", to)])
                    .inc();
                me.0.m
                    .target_healthy
                    .get_or_create(&vec![("target", ev.target.clone())])
                    .set(i64::from(ev.to == Health::Healthy));
            }
        }));
        tasks
    }

    /// Unknown counts as healthy: a target is trusted until its first check fails, so a
    /// fresh node does not answer as if everything were down.
    fn healthy(&self, key: &str) -> bool {
        self.0.board.health(key) != Health::Unhealthy
    }

    /// Who the client is: ECS when the query carries it, else the packet's source.
    pub fn client(&self, src: IpAddr, ecs: Option<&ClientSubnet>) -> ClientInfo {
        let (ip, via, source_prefix) = match ecs {
            Some(cs) if cs.source_prefix() > 0 => (cs.addr(), "ecs", cs.source_prefix()),
            _ => (src, "source", if src.is_ipv4() { 32 } else { 128 }),
        };
        ClientInfo {
            ip,
            via,
            source_prefix,
            location: self.0.locator.locate(ip),
        }
    }

    /// Resolves one question for one client against the zone.
    pub fn resolve(
        &self,
        qname: &Name,
        qtype: RecordType,
        client: &ClientInfo,
        explain: bool,
    ) -> Resolution {
        let zone = &self.0.zone;
        let mut r = Resolution {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            decisions: Vec::new(),
            scope_prefix: 0,
        };
        let mut name = qname.to_lowercase();
        for _ in 0..MAX_CHAIN {
            if !zone.contains(&name) {
                break; // a CNAME left the zone: the resolver follows it
            }
            if name == zone.origin && qtype == RecordType::SOA {
                r.answers.push(zone.soa.clone());
                return r;
            }
            if name == zone.origin && qtype == RecordType::NS {
                r.answers.extend(zone.ns.iter().cloned());
                r.additionals.extend(zone.glue.iter().cloned());
                return r;
            }
            if qtype == RecordType::A && zone.set(&name, RecordType::A).is_none() {
                let glue: Vec<Record> = zone
                    .glue
                    .iter()
                    .filter(|g| g.name == name)
                    .cloned()
                    .collect();
                if !glue.is_empty() {
                    r.answers.extend(glue);
                    return r;
                }
            }
            let types: Vec<RecordType> = if qtype == RecordType::ANY {
                zone.sets_at(&name).map(|s| s.rtype).collect()
            } else {
                vec![qtype]
            };
            let mut found = false;
            for t in types {
                if let Some(set) = zone.set(&name, t) {
                    found = true;
                    self.answer_set(&mut r, set, client, explain);
                }
            }
            if found {
                if r.answers.is_empty() {
                    r.authority.push(self.negative_soa());
                }
                return r;
            }
            // Not found: follow a CNAME at this name.
            if qtype != RecordType::CNAME {
                if let Some(cname) = zone.set(&name, RecordType::CNAME) {
                    let before = r.answers.len();
                    self.answer_set(&mut r, cname, client, explain);
                    let next = r.answers[before..].iter().find_map(|rec| match &rec.data {
                        RData::CNAME(c) => Some(c.0.to_lowercase()),
                        _ => None,
                    });
                    match next {
                        Some(n) => {
                            name = n;
                            continue;
                        }
                        None => return r,
                    }
                }
            }
            if !zone.exists(&name) {
                // NXDOMAIN belongs to the last name of the chain (RFC 6604).
                r.rcode = ResponseCode::NXDomain;
            }
            r.authority.push(self.negative_soa());
            return r;
        }
        r
    }

    fn answer_set(
        &self,
        r: &mut Resolution,
        set: &crate::zone::RtSet,
        client: &ClientInfo,
        explain: bool,
    ) {
        let measured = |client: &str, region: &str| {
            let m = self.0.measured.read().ok()?;
            m.get(&(client.to_owned(), region.to_owned())).copied()
        };
        let d = decide(
            explain,
            &self.0.zone,
            set,
            client,
            &|k| self.healthy(k),
            &measured,
        );
        r.scope_prefix = r.scope_prefix.max(d.scope_prefix);
        for rd in &d.rdata {
            r.answers
                .push(Record::from_rdata(set.name.clone(), set.ttl, rd.clone()));
        }
        r.decisions.push((set.name.clone(), set.rtype, d));
    }

    /// The SOA for negative answers; its TTL is the negative-caching time (RFC 2308).
    fn negative_soa(&self) -> Record {
        let mut soa = self.0.zone.soa.clone();
        soa.ttl = self.0.zone.negative_ttl;
        soa
    }

    fn count(&self, qtype: &'static str, rcode: ResponseCode, policy: &'static str) {
        self.0
            .m
            .queries
            .get_or_create(&[
                ("qtype", qtype),
                ("rcode", rcode_label(rcode)),
                ("policy", policy),
            ])
            .inc();
    }

    /// Answers one DNS message and records how long it took; `None` means drop it (not a
    /// query, or too short to answer).
    pub fn handle(&self, buf: &[u8], src: IpAddr, udp: bool) -> Option<Vec<u8>> {
        let start = Instant::now();
        let mut out = Vec::new();
        let answered = self.answer(buf, src, udp, &mut out);
        self.0.m.duration.observe(start.elapsed().as_secs_f64());
        answered.then_some(out)
    }

    /// Records `n` answers that each took `seconds` inside the server. The UDP loop times
    /// a whole batch (receive to send), which is what every query in it waited.
    pub fn observe_latency(&self, seconds: f64, n: usize) {
        for _ in 0..n {
            self.0.m.duration.observe(seconds);
        }
    }

    /// Writes the answer to one DNS message into `out` (replacing what it held) without
    /// timing it; false means drop the message. A repeated plain question costs a cache
    /// lookup and a copy into the caller's buffer, with no allocation.
    pub fn answer(&self, buf: &[u8], src: IpAddr, udp: bool, out: &mut Vec<u8>) -> bool {
        self.resolve_message(buf, src, udp, out).is_some()
    }

    fn resolve_message(&self, buf: &[u8], src: IpAddr, udp: bool, out: &mut Vec<u8>) -> Option<()> {
        if buf.len() < 12 || buf[2] & 0x80 != 0 {
            self.0.m.dropped.inc();
            return None;
        }
        // The common case first: a plain question answered before under the same health.
        let plain = crate::cache::plain_question(buf);
        let cache_ctx = plain.as_ref().and_then(|_| {
            Some(crate::cache::Context {
                udp,
                location: self.0.locator.cache_key(src)?,
            })
        });
        let generation = self.0.board.generation()
            + self
                .0
                .measured_generation
                .load(std::sync::atomic::Ordering::Acquire);
        if let (Some(q), Some(ctx)) = (&plain, cache_ctx) {
            if self.0.cache.get(buf, q, ctx, generation, out) {
                return Some(());
            }
        }
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let msg = match Message::from_vec(buf) {
            Ok(m) => m,
            Err(_) => {
                self.count("-", ResponseCode::FormErr, "-");
                *out = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok()?;
                return Some(());
            }
        };
        let mut res = Message::response(id, msg.metadata.op_code);
        res.metadata.message_type = MessageType::Response;
        res.metadata.recursion_desired = msg.metadata.recursion_desired;
        res.add_queries(msg.queries.iter().cloned());
        let mut max = 512u16;
        let mut ecs = None;
        if let Some(e) = &msg.edns {
            let mut opt = Edns::new();
            opt.set_max_payload(MAX_UDP);
            if e.version() > 0 {
                res.metadata.response_code = ResponseCode::BADVERS;
                res.set_edns(opt);
                self.count("-", ResponseCode::BADVERS, "-");
                *out = res.to_vec().ok()?;
                return Some(());
            }
            max = e.max_payload().clamp(512, MAX_UDP);
            if let Some(EdnsOption::Subnet(cs)) = e.option(EdnsCode::Subnet) {
                ecs = Some(*cs);
            }
            res.set_edns(opt);
        }
        let reply = |mut res: Message,
                     code: ResponseCode,
                     this: &Self,
                     qt: &'static str,
                     policy: &'static str| {
            res.metadata.response_code = code;
            this.count(qt, code, policy);
            res.to_vec().ok()
        };
        if msg.metadata.op_code != OpCode::Query {
            *out = reply(res, ResponseCode::NotImp, self, "-", "-")?;
            return Some(());
        }
        let [q] = &msg.queries[..] else {
            *out = reply(res, ResponseCode::FormErr, self, "-", "-")?;
            return Some(());
        };
        let qtype = q.query_type();
        if q.query_class() != DNSClass::IN || !self.0.zone.contains(&q.name().to_lowercase()) {
            *out = reply(res, ResponseCode::Refused, self, qtype.into(), "-")?;
            return Some(());
        }
        res.metadata.authoritative = true;
        let client = self.client(src, ecs.as_ref());
        let r = self.resolve(q.name(), qtype, &client, false);
        let policy = r
            .decisions
            .first()
            .map(|(_, _, d)| d.policy.as_str())
            .unwrap_or("-");
        if let (Some(cs), Some(edns)) = (&ecs, res.edns.as_mut()) {
            let scope = if cs.source_prefix() == 0 {
                0
            } else {
                r.scope_prefix.min(cs.source_prefix())
            };
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    cs.addr(),
                    cs.source_prefix(),
                    scope,
                )));
        }
        // Deterministic answers may be reused for the same question, place and health; a
        // lone weighted choice is kept as all its alternatives, chosen per query.
        let weighted_alternatives = match &r.decisions[..] {
            [(_, _, d)] if d.policy == Policy::Weighted && !d.alternatives.is_empty() => r
                .answers
                .first()
                .map(|a| (a.name.clone(), a.ttl, d.alternatives.clone())),
            _ => None,
        };
        let cacheable = weighted_alternatives.is_some()
            || r.decisions.iter().all(|(_, _, d)| {
                matches!(
                    d.policy,
                    Policy::Simple
                        | Policy::Latency
                        | Policy::Failover
                        | Policy::Geolocation
                        | Policy::Geoproximity
                )
            });
        res.metadata.response_code = r.rcode;
        res.insert_answers(r.answers);
        res.insert_authorities(r.authority);
        res.insert_additionals(r.additionals);
        self.count(qtype.into(), r.rcode, policy);
        let mut bytes = res.to_vec().ok()?;
        if udp && bytes.len() > usize::from(max) {
            // Too big for this client's UDP: say so, and it will ask again over TCP.
            bytes = res.truncate().to_vec().ok()?;
        }
        if let (true, Some(q), Some(ctx)) = (cacheable, &plain, cache_ctx) {
            let variants = match weighted_alternatives {
                Some((name, ttl, alternatives)) => alternatives
                    .into_iter()
                    .filter_map(|(w, rdata)| {
                        let mut alt = res.clone();
                        alt.answers = rdata
                            .into_iter()
                            .map(|d| Record::from_rdata(name.clone(), ttl, d))
                            .collect();
                        let b = alt.to_vec().ok()?;
                        let b = if udp && b.len() > usize::from(max) {
                            alt.truncate().to_vec().ok()?
                        } else {
                            b
                        };
                        Some((w, b))
                    })
                    .collect(),
                None => vec![(1, bytes.clone())],
            };
            let counter = self
                .0
                .m
                .queries
                .get_or_create(&[
                    ("qtype", qtype.into()),
                    ("rcode", rcode_label(r.rcode)),
                    ("policy", policy),
                ])
                .clone();
            self.0.cache.put(variants, q, ctx, generation, counter);
        }
        *out = bytes;
        Some(())
    }

    /// Records a measured round trip from a client location to a region; latency routing
    /// prefers it over the config's table and the model.
    pub fn set_measured_latency(
        &self,
        client: &str,
        region: &str,
        rtt_ms: f64,
    ) -> Result<(), String> {
        if !self.0.locator.locations.iter().any(|l| l.name == client) {
            return Err(format!(
                "`{client}` is not a client location of this deployment"
            ));
        }
        let known_region = self
            .0
            .zone
            .all_sets()
            .flat_map(|s| &s.answers)
            .any(|a| a.region.as_deref() == Some(region));
        if !known_region {
            return Err(format!("no latency answer is in region `{region}`"));
        }
        if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
            return Err(format!("{rtt_ms} is not a round trip in milliseconds"));
        }
        if let Ok(mut m) = self.0.measured.write() {
            m.insert((client.to_owned(), region.to_owned()), rtt_ms);
        }
        self.0
            .measured_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// What `meridian dns explain` shows: the answer and why, as Route 53's TestDNSAnswer.
    pub fn explain(
        &self,
        name: &str,
        qtype: &str,
        client_ip: IpAddr,
    ) -> Result<serde_json::Value, String> {
        let name = Name::from_str(
            if name.ends_with('.') {
                name.to_owned()
            } else {
                format!("{name}.")
            }
            .as_str(),
        )
        .map_err(|e| format!("`{name}` is not a domain name: {e}"))?;
        let rtype = RecordType::from_str(&qtype.to_ascii_uppercase())
            .map_err(|_| format!("`{qtype}` is not a record type"))?;
        if !self.0.zone.contains(&name.to_lowercase()) {
            return Ok(
                json!({ "name": name.to_string(), "type": rtype.to_string(), "rcode": "REFUSED",
                "why": format!("{name} is outside the zone {}", self.0.zone.origin) }),
            );
        }
        let client = self.client(client_ip, None);
        let r = self.resolve(&name, rtype, &client, true);
        let health: Vec<_> = self
            .0
            .board
            .snapshot()
            .into_iter()
            .map(|t| json!({ "target": t.target, "health": t.health, "last_check": t.last_probe }))
            .collect();
        Ok(json!({
            "server": self.0.name,
            "name": name.to_string(),
            "type": rtype.to_string(),
            "client": client,
            "rcode": rcode_label(r.rcode),
            "answers": r.answers.iter().map(|a| format!("{} {} {} {}", a.name, a.ttl, a.record_type(), a.data)).collect::<Vec<_>>(),
            "authority": r.authority.iter().map(|a| format!("{} {} {}", a.name, a.ttl, a.record_type())).collect::<Vec<_>>(),
            "ecs_scope_prefix": r.scope_prefix,
            "decisions": r.decisions.iter().map(|(n, t, d)| json!({ "name": n.to_string(), "type": t.to_string(), "decision": d })).collect::<Vec<_>>(),
            "health": health,
        }))
    }
}

/// Runs the UDP and TCP listeners and the admin endpoint until `shutdown`.
pub async fn run(
    opts: DnsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let bind_err = |proto| {
        move |source| RunError::Bind {
            addr: opts.listen,
            proto,
            source,
        }
    };
    let udp = UdpSocket::bind(opts.listen)
        .await
        .map_err(bind_err("udp"))?;
    let tcp = TcpListener::bind(opts.listen)
        .await
        .map_err(bind_err("tcp"))?;
    let admin = meridian_http::bind(opts.admin).await?;
    let dns = Dns::new(&opts);
    let checks = dns.start_health_checks(&opts.check);
    tracing::info!(name = %opts.name, listen = %opts.listen, zone = %opts.zone.origin, "dns listening (udp, tcp)");
    // UDP is served by plain threads with blocking sockets: one system call per packet
    // each way, no readiness round trip through the reactor.
    let udp_err = |source| RunError::Bind {
        addr: opts.listen,
        proto: "udp",
        source,
    };
    let udp = udp.into_std().map_err(udp_err)?;
    // No read timeout: a thread blocked with a timer armed pays for the timer on every
    // sleep; shutdown wakes the threads with `batch::wake_receivers` instead.
    udp.set_nonblocking(false).map_err(udp_err)?;
    crate::batch::tune(&udp);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..opts.udp_threads.max(1))
        .filter_map(|_| {
            let sock = udp.try_clone().ok()?;
            let (dns, stop) = (dns.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || udp_loop(dns, sock, stop))
                .ok()
        })
        .collect();
    let mut tasks = vec![tokio::spawn(tcp_loop(
        dns.clone(),
        tcp,
        opts.tcp_max_connections,
        opts.tcp_timeout,
    ))];
    tasks.extend(checks);
    let admin_dns = dns.clone();
    let token = opts.admin_token.clone();
    let audit = opts.audit.clone();
    meridian_http::serve(
        admin,
        meridian_http::ServerOptions::admin(),
        move |peer| {
            let dns = admin_dns.clone();
            let token = token.clone();
            let audit = audit.clone();
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (dns, token, audit) = (dns.clone(), token.clone(), audit.clone());
                async move {
                    let res = audit
                        .observe(
                            peer,
                            req,
                            |req| async move { admin_route(&dns, &token, &req) },
                        )
                        .await;
                    Ok::<_, std::convert::Infallible>(res)
                }
            })
        },
        shutdown,
    )
    .await;
    for t in tasks {
        t.abort();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    crate::batch::wake_receivers(&udp);
    for t in threads {
        let _ = t.join();
    }
    tracing::info!(name = %opts.name, "dns stopped");
    Ok(())
}

/// The mnemonic dig and RFC 1035 use (NOERROR, NXDOMAIN, ...), for labels and JSON.
fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

fn udp_loop(dns: Dns, sock: std::net::UdpSocket, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut batch = crate::batch::Batch::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Shutdown wakes a blocked receive (it returns 0) so the loop sees `stop`.
        let Ok(n) = batch.recv(&sock) else { continue };
        let start = Instant::now();
        let answered = batch.answer_all(n, |packet, peer, reply| {
            dns.answer(packet, peer, true, reply)
        });
        batch.send(&sock);
        dns.observe_latency(start.elapsed().as_secs_f64(), answered);
    }
}

async fn tcp_loop(dns: Dns, listener: TcpListener, max: usize, timeout: Duration) {
    let room = Arc::new(tokio::sync::Semaphore::new(
        max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    loop {
        // A slot first: at the cap, clients wait in the backlog, not in our memory.
        let Ok(permit) = room.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let dns = dns.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_conn(dns, stream, peer.ip(), timeout).await;
        });
    }
}

/// One TCP connection: length-prefixed messages (RFC 1035 §4.2.2), at most 1000 of them;
/// every read and every write bounded by `timeout`.
async fn tcp_conn(
    dns: Dns,
    mut s: TcpStream,
    peer: IpAddr,
    timeout: Duration,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    for _ in 0..1000 {
        let mut len = [0u8; 2];
        match tokio::time::timeout(timeout, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        let mut buf = vec![0u8; n];
        tokio::time::timeout(timeout, s.read_exact(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        let Some(out) = dns.handle(&buf, peer, false) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        tokio::time::timeout(timeout, s.write_all(&framed))
            .await
            .map_err(|_| timed_out())??;
    }
    Ok(())
}

/// The admin endpoints. Reading is open to monitoring; changing what the DNS answers
/// (`POST /latency`) needs the admin token (an empty one matches nothing).
fn admin_route<B>(
    dns: &Dns,
    token: &Option<meridian_http::secrets::AdminToken>,
    req: &http::Request<B>,
) -> http::Response<meridian_http::Body> {
    use http::StatusCode;
    let (method, uri) = (req.method(), req.uri());
    if method != http::Method::GET
        && method != http::Method::HEAD
        && !token.as_ref().is_some_and(|t| t.accepts(req.headers()))
    {
        return meridian_http::admin::unauthorized();
    }
    match uri.path() {
        "/metrics" => meridian_http::metrics(dns.0.metrics.encode()),
        "/health" => meridian_http::json(
            StatusCode::OK,
            json!({ "status": "healthy", "role": "dns", "name": dns.0.name }).to_string(),
        ),
        "/targets" => meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&dns.0.board.snapshot()).unwrap_or_default(),
        ),
        "/latency" => {
            let q = query_pairs(uri);
            let (true, Some(client), Some(region), Some(rtt)) = (
                method == http::Method::POST,
                q.get("client"),
                q.get("region"),
                q.get("rtt_ms"),
            ) else {
                let m = dns
                    .0
                    .measured
                    .read()
                    .map(|m| {
                        m.iter()
                            .map(|((c, r), v)| json!({ "client": c, "region": r, "rtt_ms": v }))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                return meridian_http::json(StatusCode::OK, json!({ "measured": m, "set": "POST /latency?client=london&region=eu-west-1&rtt_ms=12.5" }).to_string());
            };
            match rtt
                .parse::<f64>()
                .map_err(|_| format!("`{rtt}` is not a number"))
                .and_then(|v| dns.set_measured_latency(client, region, v))
            {
                Ok(()) => meridian_http::json(
                    StatusCode::OK,
                    json!({ "client": client, "region": region, "rtt_ms": rtt }).to_string(),
                ),
                Err(e) => meridian_http::text(StatusCode::BAD_REQUEST, e),
            }
        }
        "/explain" => {
            let q = query_pairs(uri);
            let (Some(name), Some(client)) = (q.get("name"), q.get("client")) else {
                return meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    "use /explain?name=api.example.com&type=A&client=127.10.203.1",
                );
            };
            let Ok(ip) = client.parse::<IpAddr>() else {
                return meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    format!("`{client}` is not an IP address"),
                );
            };
            match dns.explain(name, q.get("type").map(String::as_str).unwrap_or("A"), ip) {
                Ok(v) => meridian_http::json(StatusCode::OK, v.to_string()),
                Err(e) => meridian_http::text(StatusCode::BAD_REQUEST, e),
            }
        }
        _ => meridian_http::text(
            StatusCode::NOT_FOUND,
            "dns admin endpoints: /metrics, /health, /targets, /explain, /latency (POST with the admin token)",
        ),
    }
}

fn query_pairs(uri: &http::Uri) -> std::collections::HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
