//! The DNS server's core: the resolution of one question against the zone and the
//! wire path of one message (parse, EDNS and ECS, answer cache, truncation). Listeners,
//! the admin API, the health feed and explanations are in their own files.

use crate::client::{ClientInfo, Locator};
use crate::options::DnsOptions;
use crate::policy::{decide, Decision};
use crate::zone::Zone;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meridian_config::Policy;
use meridian_health::{Health, HealthBoard};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use meridian_telemetry::{Labels, Metrics};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Largest UDP answer we send (the DNS Flag Day 2020 value, safe from fragmentation).
const MAX_UDP: u16 = 1232;
/// Longest CNAME chain followed inside the zone.
const MAX_CHAIN: usize = 8;

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
    /// What latency routing assumes where nothing is measured or configured.
    prior: meridian_config::Prior,
    /// Swapped whole on reload: a question is answered from one zone, old or new.
    zone: std::sync::RwLock<Arc<Zone>>,
    /// The digest of the config file the zone came from (`/health` says it).
    config_digest: std::sync::RwLock<String>,
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
            prior: opts.prior.clone(),
            zone: std::sync::RwLock::new(Arc::new(opts.zone.clone())),
            config_digest: std::sync::RwLock::new(opts.config_digest.clone()),
            locator: opts.locator.clone(),
            board,
            metrics,
            m,
        }))
    }

    pub fn board(&self) -> &HealthBoard {
        &self.0.board
    }

    /// The zone answered from now.
    pub(crate) fn zone(&self) -> Arc<Zone> {
        self.0
            .zone
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Answers from `zone` from the next question on (questions being answered finish
    /// on the old one); answers cached from the old zone are not served again. Checks of
    /// targets the old zone did not have start now; the returned tasks run them.
    pub fn reload(
        &self,
        zone: Zone,
        check: &meridian_config::HealthCheck,
        digest: &str,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let old = self.zone();
        let new: Vec<_> = zone
            .health_targets
            .iter()
            .filter(|t| !old.health_targets.iter().any(|o| o.key == t.key))
            .cloned()
            .collect();
        let tasks = self.watch_targets(&new, check);
        *self.0.zone.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zone);
        *self
            .0
            .config_digest
            .write()
            .unwrap_or_else(|p| p.into_inner()) = digest.to_owned();
        self.0
            .measured_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tasks
    }

    /// The digest of the config file the zone came from.
    pub fn config_digest(&self) -> String {
        self.0
            .config_digest
            .read()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Round trips set at run time, (client location, region) -> ms.
    pub(crate) fn measured(
        &self,
    ) -> &std::sync::RwLock<rustc_hash::FxHashMap<(String, String), f64>> {
        &self.0.measured
    }

    /// Counts a health change of an answer target and sets its gauge.
    pub(crate) fn record_health(&self, target: &str, to: &Health) {
        let label = format!("{to:?}").to_lowercase();
        self.0
            .m
            .flips
            .get_or_create(&vec![("target", target.to_owned()), ("to", label)])
            .inc();
        self.0
            .m
            .target_healthy
            .get_or_create(&vec![("target", target.to_owned())])
            .set(i64::from(*to == Health::Healthy));
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
        self.resolve_in(&self.zone(), qname, qtype, client, explain)
    }

    /// `resolve` against `zone`: a query takes the zone once, so the check that it is for
    /// this zone and the answer read the same one even while a reload swaps it.
    fn resolve_in(
        &self,
        zone: &Zone,
        qname: &Name,
        qtype: RecordType,
        client: &ClientInfo,
        explain: bool,
    ) -> Resolution {
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
                    self.answer_set(zone, &mut r, set, client, explain);
                }
            }
            if found {
                if r.answers.is_empty() {
                    r.authority.push(negative_soa(zone));
                }
                return r;
            }
            // Not found: follow a CNAME at this name.
            if qtype != RecordType::CNAME {
                if let Some(cname) = zone.set(&name, RecordType::CNAME) {
                    let before = r.answers.len();
                    self.answer_set(zone, &mut r, cname, client, explain);
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
            r.authority.push(negative_soa(zone));
            return r;
        }
        r
    }

    fn answer_set(
        &self,
        zone: &Zone,
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
            zone,
            set,
            client,
            &|k| self.healthy(k),
            &crate::policy::RoundTrips {
                measured: &measured,
                prior: self.0.prior.as_deref(),
            },
        );
        r.scope_prefix = r.scope_prefix.max(d.scope_prefix);
        for rd in &d.rdata {
            r.answers
                .push(Record::from_rdata(set.name.clone(), set.ttl, rd.clone()));
        }
        r.decisions.push((set.name.clone(), set.rtype, d));
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
        let zone = self.zone();
        if q.query_class() != DNSClass::IN || !zone.contains(&q.name().to_lowercase()) {
            *out = reply(res, ResponseCode::Refused, self, qtype.into(), "-")?;
            return Some(());
        }
        res.metadata.authoritative = true;
        let client = self.client(src, ecs.as_ref());
        let r = self.resolve_in(&zone, q.name(), qtype, &client, false);
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
            .zone()
            .all_sets()
            .flat_map(|s| &s.answers)
            .any(|a| a.region.as_deref() == Some(region));
        if !known_region {
            return Err(format!("no latency answer is in region `{region}`"));
        }
        if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
            return Err(format!("{rtt_ms} is not a round trip in milliseconds"));
        }
        let changed = match self.0.measured.write() {
            Ok(mut m) => m.insert((client.to_owned(), region.to_owned()), rtt_ms) != Some(rtt_ms),
            Err(_) => false,
        };
        // Cached answers are recomputed only when a number moved.
        if changed {
            self.0
                .measured_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(())
    }

    /// Drops every measured round trip from `client`: latency routing falls back to the
    /// configured table and the prior for it.
    pub fn forget_measured_latency(&self, client: &str) {
        if let Ok(mut m) = self.0.measured.write() {
            m.retain(|(c, _), _| c != client);
        }
        self.0
            .measured_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The SOA for negative answers; its TTL is the negative-caching time (RFC 2308).
fn negative_soa(zone: &Zone) -> Record {
    let mut soa = zone.soa.clone();
    soa.ttl = zone.negative_ttl;
    soa
}

/// The mnemonic dig and RFC 1035 use (NOERROR, NXDOMAIN, ...), for labels and JSON.
pub(crate) fn rcode_label(code: ResponseCode) -> &'static str {
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
