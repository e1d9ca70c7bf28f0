//! The deployment model: what one `meridian.toml` describes.

use crate::units::ByteSize;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A whole deployment, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where the config came from, for messages (`<embedded default>` or a path).
    pub origin: String,
    pub deployment: Deployment,
    pub network: Network,
    pub regions: Vec<Region>,
    pub service: Service,
    pub load_balancer: LoadBalancer,
    pub supervisor: Supervisor,
    pub edges: Vec<Pop>,
    pub distribution: crate::Distribution,
    pub dns: Dns,
    pub client_locations: Vec<ClientLocation>,
    pub simulation: Simulation,
    pub console: crate::Console,
    /// The data tier; None when the deployment keeps no state of its own.
    pub database: Option<crate::Database>,
    /// The cache tier (ElastiCache); None when the deployment runs no Redis.
    pub cache: Option<crate::CacheTier>,
    /// Where the admin token and the edge signing key come from.
    pub secrets: crate::Secrets,
}

/// The simulated world: the latency model, and whether `up` puts WAN relays between places.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// Run a `wan` node whose relays delay traffic between places by the modelled latency.
    pub wan: bool,
    /// Route inflation over the great circle.
    pub inflation: f64,
    /// Fixed cost added to every round trip (last mile, switching).
    #[serde(with = "crate::serde_duration")]
    pub access: Duration,
    /// Random extra delay per packet burst, up to this much (order is kept).
    #[serde(with = "crate::serde_duration")]
    pub jitter: Duration,
    /// Per-connection bandwidth limit in bytes per second (None: unlimited).
    pub bandwidth: Option<ByteSize>,
    /// Measured or agreed round trips between two named places that replace the model.
    pub latency: Vec<PlaceLatency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaceLatency {
    pub from: String,
    pub to: String,
    #[serde(with = "crate::serde_duration")]
    pub rtt: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            wan: false,
            inflation: crate::geo::DEFAULT_INFLATION,
            access: Duration::from_secs_f64(crate::geo::DEFAULT_ACCESS_MS / 1e3),
            jitter: Duration::ZERO,
            bandwidth: None,
            latency: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    /// The DNS zone the deployment answers for, without a trailing dot.
    pub zone: String,
}

/// Where nodes listen: one loopback /16 and a port per kind of listener.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// First two octets of the node subnet (`127.10` of `127.10.0.0/16`).
    pub subnet: [u8; 2],
    pub lb_port: u16,
    /// HTTPS viewer port of each edge PoP (HTTP is on `lb_port`).
    pub https_port: u16,
    pub service_port: u16,
    pub admin_port: u16,
}

impl Network {
    pub fn addr(&self, third: u8, fourth: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], third, fourth)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Region {
    pub name: String,
    pub primary: bool,
    pub location: Coordinates,
    pub azs: Vec<String>,
    /// Overrides `service.instances_per_az` for this region.
    pub instances_per_az: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub runtime: ServiceRuntime,
    pub instances_per_az: u32,
}

/// What an application instance runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ServiceRuntime {
    /// The built-in RichesReach API stand-in.
    Demo {
        #[serde(with = "crate::serde_duration")]
        processing_time: Duration,
    },
    /// A user's own server; `{host}` and `{port}` in the arguments are filled in.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] = &["round_robin", "least_outstanding_requests"];
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastOutstandingRequests => "least_outstanding_requests",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub algorithm: Algorithm,
    pub health_check: HealthCheck,
    #[serde(with = "crate::serde_duration")]
    pub target_timeout: Duration,
    #[serde(with = "crate::serde_duration")]
    pub deregistration_delay: Duration,
    pub max_retries: u32,
    pub max_request_body: ByteSize,
    /// ALB's idle timeout: a client's request body, or a target's response body, that
    /// sends nothing for this long is given up on (408 for a body not yet forwarded).
    #[serde(with = "crate::serde_duration")]
    pub idle_timeout: Duration,
    /// Origin access control: refuse requests the edge did not sign (or signed more than
    /// a few minutes ago), so the region cannot be reached around the CDN.
    pub require_edge_signature: bool,
    /// Paths a GET or HEAD may take unsigned all the same: the health checks of the DNS and
    /// of monitoring, which sign nothing (Route 53's checks reach an ALB the same way).
    pub unsigned_paths: Vec<String>,
    /// The port the balancer serves TLS on; None: `lb_port` + 363 (8443 by default).
    pub tls_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckProtocol {
    Http,
    Tcp,
}

/// A health check as ALB and Route 53 define one.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub protocol: CheckProtocol,
    pub path: String,
    #[serde(with = "crate::serde_duration")]
    pub interval: Duration,
    #[serde(with = "crate::serde_duration")]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    pub matcher: StatusMatcher,
    /// When set, the response body must contain this text.
    pub body_contains: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            protocol: CheckProtocol::Http,
            path: "/health".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: StatusMatcher(vec![(200, 299)]),
            body_contains: None,
        }
    }
}

/// Status codes that count as success, as ALB's matcher writes them: `"200"`, `"200,301"`,
/// `"200-299"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatcher(pub Vec<(u16, u16)>);

impl StatusMatcher {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo
                .parse()
                .map_err(|_| format!("`{part}` is not a status code"))?;
            let hi: u16 = hi
                .parse()
                .map_err(|_| format!("`{part}` is not a status code"))?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(format!(
                    "`{part}` is not a range of status codes within 100-599"
                ));
            }
            ranges.push((lo, hi));
        }
        Ok(StatusMatcher(ranges))
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl std::fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for StatusMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Supervisor {
    #[serde(with = "crate::serde_duration")]
    pub restart_backoff: Duration,
    #[serde(with = "crate::serde_duration")]
    pub restart_backoff_max: Duration,
    #[serde(with = "crate::serde_duration")]
    pub ready_timeout: Duration,
    #[serde(with = "crate::serde_duration")]
    pub stop_timeout: Duration,
}

/// An edge point of presence: a caching proxy near viewers.
#[derive(Debug, Clone, Serialize)]
pub struct Pop {
    pub name: String,
    pub location: Coordinates,
    pub memory_cache: ByteSize,
    pub disk_cache: ByteSize,
    /// Seal the disk tier's files (AES-256-GCM) under the deployment's `disk-cache-key`;
    /// on by default whenever there is a disk tier.
    pub disk_encryption: bool,
}

/// The global DNS: authoritative servers for the deployment's zone.
#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    /// How many DNS nodes `up` runs (each answers the whole zone).
    pub servers: u32,
    /// UDP and TCP port of every DNS node.
    pub port: u16,
    /// Threads answering UDP on each node (default: one per core).
    pub udp_threads: u32,
    #[serde(with = "crate::serde_duration")]
    pub default_ttl: Duration,
    /// What a record set answers when every candidate is unhealthy.
    pub when_all_unhealthy: AllUnhealthy,
    pub records: Vec<RecordSet>,
    /// How answer targets are checked (`[dns.health_check]`): Route 53's fast checks.
    pub health_check: HealthCheck,
    /// Measured or agreed round trips that replace the modelled ones.
    pub latency_overrides: Vec<LatencyOverride>,
    /// A BIND zone file with static records served beside the record sets above
    /// (relative paths are relative to the config file).
    pub zone_file: Option<std::path::PathBuf>,
    /// A MaxMind DB (GeoIP2/GeoLite2 Country or City) that places clients outside the
    /// configured client locations.
    pub geoip_database: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthy {
    /// Answer as if all were healthy, as Route 53 does.
    FailOpen,
    /// Answer with no records (NODATA).
    FailClosed,
    /// Answer with these fixed values.
    Static(Vec<String>),
}

/// A DNS record type Meridian serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RecordKind {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    NS,
    CAA,
}

impl RecordKind {
    pub const NAMES: &'static [&'static str] = &["A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "A" => RecordKind::A,
            "AAAA" => RecordKind::AAAA,
            "CNAME" => RecordKind::CNAME,
            "TXT" => RecordKind::TXT,
            "MX" => RecordKind::MX,
            "NS" => RecordKind::NS,
            "CAA" => RecordKind::CAA,
            _ => return None,
        })
    }
}

/// Route 53's routing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Simple,
    Weighted,
    Latency,
    Failover,
    Geolocation,
    Geoproximity,
    Multivalue,
    IpBased,
}

impl Policy {
    pub const NAMES: &'static [&'static str] = &[
        "simple",
        "weighted",
        "latency",
        "failover",
        "geolocation",
        "geoproximity",
        "multivalue",
        "ip_based",
    ];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simple" => Policy::Simple,
            "weighted" => Policy::Weighted,
            "latency" => Policy::Latency,
            "failover" => Policy::Failover,
            "geolocation" => Policy::Geolocation,
            "geoproximity" => Policy::Geoproximity,
            "multivalue" => Policy::Multivalue,
            "ip_based" => Policy::IpBased,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        Policy::NAMES[self as usize]
    }
}

/// All records of one name and type, and how to choose among them.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSet {
    /// Relative to the zone; `@` is the apex.
    pub name: String,
    pub kind: RecordKind,
    #[serde(with = "crate::serde_duration")]
    pub ttl: Duration,
    pub policy: Policy,
    pub answers: Vec<Answer>,
    /// Derived from the topology (the database endpoints), not written in `[dns]`.
    pub generated: bool,
}

/// Where an alias points: a region's load balancer, an edge PoP, or a database node's
/// endpoints (generated from `[database]`, named by the node's AZ).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum AliasTarget {
    Lb(String),
    Pop(String),
    /// The writer endpoint the database node in this AZ serves (a relay to the leader).
    DbWriter(String),
    /// The database node in this AZ itself: its region's reader.
    DbReader(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverRole {
    Primary,
    Secondary,
}

/// Geolocation match: most specific wins (country, then continent, then default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum GeoMatch {
    Country(String),
    Continent(String),
    Default,
}

/// One record (Route 53: one record of a record set, with its set identifier).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub id: String,
    /// Literal values (addresses, names, text); empty for an alias.
    pub values: Vec<String>,
    pub alias: Option<AliasTarget>,
    pub evaluate_target_health: bool,
    /// A check of this answer's own endpoint: (address, path).
    pub health_check: Option<(std::net::SocketAddr, String)>,
    pub weight: u32,
    /// Latency and geoproximity: where the answer lives (a region's or PoP's coordinates).
    pub location: Option<Coordinates>,
    /// Latency: the region whose latency table row applies.
    pub region: Option<String>,
    pub bias: i32,
    pub failover: Option<FailoverRole>,
    pub geo: Option<GeoMatch>,
    /// IP-based: client networks this answer is for (`*` in config = everyone else).
    pub cidrs: Vec<Cidr>,
    pub ip_default: bool,
    /// Where the alias is written (span and key), for errors found after reading.
    #[serde(skip)]
    pub alias_at: Option<(std::ops::Range<usize>, String)>,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The `n`th address of the network (1 is its first host): where a simulated client
    /// of a location sends from.
    pub fn host(&self, n: u32) -> std::net::IpAddr {
        match self.addr {
            std::net::IpAddr::V4(v) => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v).wrapping_add(n)))
            }
            std::net::IpAddr::V6(v) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v).wrapping_add(n.into()),
            )),
        }
    }

    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let prefix: u8 = p.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn bits(ip: std::net::IpAddr) -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let (a, alen) = bits(self.addr);
        let (b, blen) = bits(ip);
        if alen != blen {
            return false;
        }
        // IPv4 sits in the top 32 bits, so a prefix counts from the top either way.
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        (a & mask) == (b & mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A round trip that replaces the modelled one between a client location and a region.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyOverride {
    pub client: String,
    pub region: String,
    #[serde(with = "crate::serde_duration")]
    pub rtt: Duration,
}

/// A place simulated clients send traffic from.
#[derive(Debug, Clone, Serialize)]
pub struct ClientLocation {
    pub name: String,
    pub location: Coordinates,
    /// ISO 3166 country code and continent code (AF, AN, AS, EU, NA, OC, SA), for
    /// geolocation routing.
    pub country: Option<String>,
    pub continent: Option<String>,
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
