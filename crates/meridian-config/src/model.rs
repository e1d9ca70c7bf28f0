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
    pub dns: Dns,
    pub client_locations: Vec<ClientLocation>,
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

/// An edge point of presence (declared now; served once the edge issue lands).
#[derive(Debug, Clone, Serialize)]
pub struct Pop {
    pub name: String,
    pub location: Coordinates,
    pub memory_cache: ByteSize,
    pub disk_cache: ByteSize,
}

/// The global DNS (declared now; served once the DNS issue lands).
#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    pub servers: u32,
    #[serde(with = "crate::serde_duration")]
    pub default_ttl: Duration,
}

/// A place simulated clients send traffic from.
#[derive(Debug, Clone, Serialize)]
pub struct ClientLocation {
    pub name: String,
    pub location: Coordinates,
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
