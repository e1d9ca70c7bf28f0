//! The zone as the server holds it: record sets resolved to wire-format data, aliases
//! resolved to addresses, and the health target of every answer.

use hickory_proto::rr::rdata::{caa::CAA, A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use meridian_config::{
    AliasTarget, AllUnhealthy, Cidr, Config, Coordinates, FailoverRole, GeoMatch, Policy,
    RecordKind, Role,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("dns.record `{record}`{}: {problem}", answer.as_ref().map(|a| format!(" answer `{a}`")).unwrap_or_default())]
pub struct ZoneError {
    pub record: String,
    pub answer: Option<String>,
    pub problem: String,
}

/// Something a health check watches; answers that depend on it name it by `key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthTarget {
    pub key: String,
    pub addr: SocketAddr,
    pub path: String,
}

impl RtAnswer {
    /// An answer with data and no routing attributes (a simple record).
    fn plain(id: &str, rdata: Vec<RData>) -> Self {
        RtAnswer {
            id: id.to_owned(),
            rdata,
            health: None,
            weight: 1,
            location: None,
            region: None,
            bias: 0,
            failover: None,
            geo: None,
            cidrs: Vec::new(),
            ip_default: false,
        }
    }
}

/// One answer of a record set, ready to put on the wire.
#[derive(Debug, Clone)]
pub struct RtAnswer {
    pub id: String,
    pub rdata: Vec<RData>,
    /// The health target that decides whether this answer may be given.
    pub health: Option<String>,
    pub weight: u32,
    pub location: Option<Coordinates>,
    pub region: Option<String>,
    pub bias: i32,
    pub failover: Option<FailoverRole>,
    pub geo: Option<GeoMatch>,
    pub cidrs: Vec<Cidr>,
    pub ip_default: bool,
}

#[derive(Debug, Clone)]
pub struct RtSet {
    pub name: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub policy: Policy,
    pub answers: Vec<RtAnswer>,
}

/// The zone a DNS node serves.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub soa: Record,
    pub ns: Vec<Record>,
    pub glue: Vec<Record>,
    /// Record sets by owner name (a name has few types; a short scan beats a second key).
    sets: HashMap<Name, Vec<RtSet>>,
    /// Every name that exists, including empty non-terminals, for NXDOMAIN vs NODATA.
    existing: HashSet<Name>,
    pub when_all_unhealthy: Vec<RData>,
    pub fail_closed: bool,
    pub health_targets: Vec<HealthTarget>,
    /// (client location, region) -> round trip in ms, from the config's overrides.
    pub latency_overrides: HashMap<(String, String), f64>,
    pub primary_region: String,
    pub negative_ttl: u32,
}

fn name_err(record: &str, answer: Option<&str>, problem: impl Into<String>) -> ZoneError {
    ZoneError {
        record: record.to_owned(),
        answer: answer.map(str::to_owned),
        problem: problem.into(),
    }
}

impl Zone {
    pub fn build(cfg: &Config) -> Result<Zone, ZoneError> {
        let origin = Name::from_str(&format!("{}.", cfg.deployment.zone))
            .map_err(|e| name_err("@", None, format!("the zone name is invalid: {e}")))?
            .to_lowercase();
        let dns = &cfg.dns;
        let default_ttl = dns.default_ttl.as_secs() as u32;
        let rel = |s: &str| -> Result<Name, String> {
            if s == "@" {
                return Ok(origin.clone());
            }
            let n = Name::parse(s, Some(&origin))
                .map_err(|e| format!("`{s}` is not a domain name: {e}"))?;
            Ok(n.to_lowercase())
        };
        // SOA and NS from the DNS nodes themselves.
        let dns_nodes: Vec<_> = cfg
            .nodes()
            .into_iter()
            .filter(|n| n.role == Role::Dns)
            .collect();
        let ns_names: Vec<Name> = (1..=dns_nodes.len().max(1))
            .map(|i| rel(&format!("ns{i}")))
            .collect::<Result<_, _>>()
            .map_err(|p| name_err("@", None, p))?;
        let hostmaster = rel("hostmaster").map_err(|p| name_err("@", None, p))?;
        let serial = 2_026_112_401; // YYYYMMDDnn
        let soa = Record::from_rdata(
            origin.clone(),
            default_ttl,
            RData::SOA(SOA::new(
                ns_names[0].clone(),
                hostmaster,
                serial,
                3600,
                600,
                604_800,
                default_ttl,
            )),
        );
        let ns: Vec<Record> = ns_names
            .iter()
            .map(|n| Record::from_rdata(origin.clone(), 3600, RData::NS(NS(n.clone()))))
            .collect();
        let glue: Vec<Record> = ns_names
            .iter()
            .zip(&dns_nodes)
            .filter_map(|(n, node)| match node.address.ip() {
                IpAddr::V4(v4) => Some(Record::from_rdata(n.clone(), 3600, RData::A(A(v4)))),
                IpAddr::V6(_) => None,
            })
            .collect();

        let mut zone = Zone {
            origin: origin.clone(),
            soa,
            ns,
            glue: glue.clone(),
            sets: HashMap::default(),
            existing: HashSet::default(),
            when_all_unhealthy: Vec::new(),
            fail_closed: dns.when_all_unhealthy == AllUnhealthy::FailClosed,
            health_targets: Vec::new(),
            latency_overrides: dns
                .latency_overrides
                .iter()
                .map(|o| {
                    (
                        (o.client.clone(), o.region.clone()),
                        o.rtt.as_secs_f64() * 1000.0,
                    )
                })
                .collect(),
            primary_region: cfg.primary_region().name.clone(),
            negative_ttl: default_ttl,
        };
        if let AllUnhealthy::Static(values) = &dns.when_all_unhealthy {
            for v in values {
                let ip: IpAddr = v.parse().map_err(|_| {
                    name_err(
                        "when_all_unhealthy",
                        None,
                        format!("`{v}` is not an IP address"),
                    )
                })?;
                zone.when_all_unhealthy.push(match ip {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                });
            }
        }
        for g in &glue {
            zone.insert_name(g.name.clone());
        }
        zone.insert_name(origin.clone());

        let mut targets: Vec<HealthTarget> = Vec::new();
        for set in &dns.records {
            let name = rel(&set.name).map_err(|p| name_err(&set.name, None, p))?;
            if !origin.zone_of(&name) {
                return Err(name_err(
                    &set.name,
                    None,
                    format!("`{name}` is outside the zone {origin}"),
                ));
            }
            let rtype = record_type(set.kind);
            let mut answers = Vec::new();
            for a in &set.answers {
                let id = Some(a.id.as_str());
                let mut rt = RtAnswer {
                    id: a.id.clone(),
                    rdata: Vec::new(),
                    health: None,
                    weight: a.weight,
                    location: a.location,
                    region: a.region.clone(),
                    bias: a.bias,
                    failover: a.failover,
                    geo: a.geo.clone(),
                    cidrs: a.cidrs.clone(),
                    ip_default: a.ip_default,
                };
                for v in &a.values {
                    rt.rdata.push(
                        parse_value(set.kind, v, &rel).map_err(|p| name_err(&set.name, id, p))?,
                    );
                }
                if let Some(alias) = &a.alias {
                    let (addr, admin, location, region) = match alias {
                        AliasTarget::Lb(r) => {
                            let reg =
                                cfg.regions.iter().find(|x| &x.name == r).ok_or_else(|| {
                                    name_err(
                                        &set.name,
                                        id,
                                        format!(
                                            "alias lb:{r} names no region; regions: {}",
                                            cfg.regions
                                                .iter()
                                                .map(|x| x.name.as_str())
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    )
                                })?;
                            let addr = cfg.lb_address(r).ok_or_else(|| {
                                name_err(&set.name, id, "no load balancer address")
                            })?;
                            let admin = cfg.lb_admin(r).ok_or_else(|| {
                                name_err(&set.name, id, "no load balancer address")
                            })?;
                            (addr, admin, reg.location, Some(r.clone()))
                        }
                        AliasTarget::Pop(p) => {
                            let pop = cfg.edges.iter().find(|x| &x.name == p).ok_or_else(|| {
                                name_err(
                                    &set.name,
                                    id,
                                    format!(
                                        "alias pop:{p} names no [[edge]]; PoPs: {}",
                                        cfg.edges
                                            .iter()
                                            .map(|x| x.name.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                                )
                            })?;
                            let (addr, admin) = cfg
                                .pop_addresses(p)
                                .ok_or_else(|| name_err(&set.name, id, "no PoP address"))?;
                            (addr, admin, pop.location, None)
                        }
                        AliasTarget::DbWriter(az) | AliasTarget::DbReader(az) => {
                            let (node, location) = db_node_in(cfg, az).ok_or_else(|| {
                                name_err(&set.name, id, format!("no database node in `{az}`"))
                            })?;
                            let addr = match alias {
                                AliasTarget::DbWriter(_) => cfg.db_writer_endpoint(&node),
                                _ => node.address,
                            };
                            (addr, node.admin, location, node.region.clone())
                        }
                    };
                    if !matches!(set.kind, RecordKind::A | RecordKind::AAAA) {
                        return Err(name_err(
                            &set.name,
                            id,
                            "aliases are for A and AAAA record sets",
                        ));
                    }
                    rt.rdata.push(match addr.ip() {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    });
                    rt.location = rt.location.or(Some(location));
                    rt.region = rt.region.clone().or(region);
                    if a.evaluate_target_health {
                        let key = match alias {
                            AliasTarget::Lb(r) => format!("lb:{r}"),
                            AliasTarget::Pop(p) => format!("pop:{p}"),
                            // Writer and reader share the node's keeper: one check.
                            AliasTarget::DbWriter(az) | AliasTarget::DbReader(az) => {
                                format!("db:{}", meridian_config::db_node_name(az))
                            }
                        };
                        push_target(
                            &mut targets,
                            HealthTarget {
                                key: key.clone(),
                                addr: admin,
                                path: "/health".into(),
                            },
                        );
                        rt.health = Some(key);
                    }
                }
                if let Some(r) = &rt.region {
                    let reg = cfg.regions.iter().find(|x| &x.name == r).ok_or_else(|| {
                        name_err(
                            &set.name,
                            id,
                            format!("region `{r}` is not a region of this deployment"),
                        )
                    })?;
                    rt.location = rt.location.or(Some(reg.location));
                }
                if let Some((addr, path)) = &a.health_check {
                    let key = format!("check:{addr}{path}");
                    push_target(
                        &mut targets,
                        HealthTarget {
                            key: key.clone(),
                            addr: *addr,
                            path: path.clone(),
                        },
                    );
                    rt.health = Some(key);
                }
                answers.push(rt);
            }
            zone.insert_set(RtSet {
                name,
                rtype,
                ttl: set.ttl.as_secs() as u32,
                policy: set.policy,
                answers,
            })
            .map_err(|p| name_err(&set.name, None, p))?;
        }
        if let Some(path) = &dns.zone_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                name_err(
                    "zone_file",
                    None,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let records = crate::zonefile::parse(&text, &path.display().to_string(), &origin)
                .map_err(|e| name_err("zone_file", None, e.to_string()))?;
            zone.add_static(records)
                .map_err(|p| name_err("zone_file", None, p))?;
        }
        // A CNAME owns its name alone (RFC 1034 §3.6.2).
        for sets in zone.sets.values() {
            if sets.len() > 1 && sets.iter().any(|s| s.rtype == RecordType::CNAME) {
                return Err(name_err(
                    &sets[0].name.to_string(),
                    None,
                    "a name with a CNAME can have no other records",
                ));
            }
        }
        zone.health_targets = targets;
        Ok(zone)
    }

    /// Adds a zone file's records as simple record sets; its SOA and apex NS replace ours.
    fn add_static(&mut self, records: Vec<Record>) -> Result<(), String> {
        let mut apex_ns = Vec::new();
        let mut grouped: Vec<((Name, RecordType), Vec<Record>)> = Vec::new();
        for r in records {
            if !self.origin.zone_of(&r.name) {
                return Err(format!("{} is outside the zone {}", r.name, self.origin));
            }
            match r.record_type() {
                RecordType::SOA if r.name == self.origin => self.soa = r,
                RecordType::NS if r.name == self.origin => apex_ns.push(r),
                t => match grouped.iter_mut().find(|(k, _)| k.0 == r.name && k.1 == t) {
                    Some((_, v)) => v.push(r),
                    None => grouped.push(((r.name.clone(), t), vec![r])),
                },
            }
        }
        if !apex_ns.is_empty() {
            self.ns = apex_ns;
            self.glue.clear();
        }
        if let RData::SOA(soa) = &self.soa.data {
            self.negative_ttl = self.soa.ttl.min(soa.minimum);
        }
        for ((name, rtype), recs) in grouped {
            let ttl = recs.iter().map(|r| r.ttl).min().unwrap_or(300);
            let answer = RtAnswer::plain("zone-file", recs.into_iter().map(|r| r.data).collect());
            self.insert_set(RtSet {
                name,
                rtype,
                ttl,
                policy: Policy::Simple,
                answers: vec![answer],
            })?;
        }
        Ok(())
    }

    fn insert_set(&mut self, set: RtSet) -> Result<(), String> {
        let at = self.sets.entry(set.name.clone()).or_default();
        if at.iter().any(|s| s.rtype == set.rtype) {
            return Err(format!(
                "{} {} is defined twice (in two [[dns.record]] entries, or also in the zone file); keep one",
                set.name, set.rtype
            ));
        }
        let name = set.name.clone();
        at.push(set);
        self.insert_name(name);
        Ok(())
    }

    fn insert_name(&mut self, mut n: Name) {
        while self.origin.zone_of(&n) {
            if !self.existing.insert(n.clone()) || n == self.origin {
                break;
            }
            n = n.base_name();
        }
    }

    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    pub fn exists(&self, name: &Name) -> bool {
        self.existing.contains(name)
    }

    pub fn set(&self, name: &Name, rtype: RecordType) -> Option<&RtSet> {
        self.sets.get(name)?.iter().find(|s| s.rtype == rtype)
    }

    /// Every record set at a name (for ANY queries).
    pub fn sets_at<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a RtSet> + 'a {
        self.sets.get(name).into_iter().flatten()
    }

    pub fn all_sets(&self) -> impl Iterator<Item = &RtSet> {
        self.sets.values().flatten()
    }
}

/// The database node in `az` and its region's coordinates.
fn db_node_in(cfg: &Config, az: &str) -> Option<(meridian_config::NodeSpec, Coordinates)> {
    let db = cfg.database.as_ref()?;
    let (region, _, _) = db.instances().into_iter().find(|(_, a, _)| a == az)?;
    let location = cfg.regions.iter().find(|r| r.name == region)?.location;
    Some((cfg.db_node(&region, az)?, location))
}

fn push_target(targets: &mut Vec<HealthTarget>, t: HealthTarget) {
    if !targets.iter().any(|x| x.key == t.key) {
        targets.push(t);
    }
}

pub fn record_type(k: RecordKind) -> RecordType {
    match k {
        RecordKind::A => RecordType::A,
        RecordKind::AAAA => RecordType::AAAA,
        RecordKind::CNAME => RecordType::CNAME,
        RecordKind::TXT => RecordType::TXT,
        RecordKind::MX => RecordType::MX,
        RecordKind::NS => RecordType::NS,
        RecordKind::CAA => RecordType::CAA,
    }
}

/// Parses one configured value for a record type.
fn parse_value(
    kind: RecordKind,
    v: &str,
    rel: &dyn Fn(&str) -> Result<Name, String>,
) -> Result<RData, String> {
    Ok(match kind {
        RecordKind::A => RData::A(A(v
            .parse()
            .map_err(|_| format!("`{v}` is not an IPv4 address"))?)),
        RecordKind::AAAA => RData::AAAA(AAAA(
            v.parse()
                .map_err(|_| format!("`{v}` is not an IPv6 address"))?,
        )),
        RecordKind::CNAME => RData::CNAME(CNAME(rel(v)?)),
        RecordKind::NS => RData::NS(NS(rel(v)?)),
        RecordKind::TXT => {
            // A TXT string holds at most 255 bytes; longer text becomes several strings.
            let chunks: Vec<String> = v
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            RData::TXT(TXT::new(if chunks.is_empty() {
                vec![String::new()]
            } else {
                chunks
            }))
        }
        RecordKind::MX => {
            let (pref, host) = v
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("`{v}` is not `PREFERENCE HOST`, such as \"10 mail\""))?;
            let pref: u16 = pref
                .parse()
                .map_err(|_| format!("`{pref}` is not a preference number"))?;
            RData::MX(MX::new(pref, rel(host.trim())?))
        }
        RecordKind::CAA => {
            let parts: Vec<&str> = v.split_whitespace().collect();
            let [flags, tag, value] = parts[..] else {
                return Err(format!(
                    "`{v}` is not `FLAGS TAG \"VALUE\"`, such as 0 issue \"letsencrypt.org\""
                ));
            };
            let critical = flags == "128";
            let value = value.trim_matches('"');
            let issuer = if value.is_empty() {
                None
            } else {
                Some(Name::from_str(value).map_err(|e| format!("`{value}`: {e}"))?)
            };
            match tag {
                "issue" => RData::CAA(CAA::new_issue(critical, issuer, Vec::new())),
                "issuewild" => RData::CAA(CAA::new_issuewild(critical, issuer, Vec::new())),
                other => {
                    return Err(format!(
                        "CAA tag `{other}` is not supported; use issue or issuewild"
                    ))
                }
            }
        }
    })
}
