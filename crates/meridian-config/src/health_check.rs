//! Health checks as ALB and Route 53 define them, read the same way wherever a section
//! has a `health_check` table (balancer, DNS, origin groups).

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

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
    /// ALB's `GrpcCode` matcher: set, the check is a gRPC call (HTTP/2, POST to `path`)
    /// and these `grpc-status` codes pass. Only a `grpc` target group's check has it.
    pub grpc_codes: Option<StatusMatcher>,
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
            grpc_codes: None,
        }
    }
}

/// ALB's default gRPC health check: a call to a method no service has, answered
/// UNIMPLEMENTED (12) by any live gRPC server.
pub const GRPC_DEFAULT_PATH: &str = "/AWS.ALB/healthcheck";
pub const GRPC_DEFAULT_CODES: (u16, u16) = (12, 12);

/// Status codes that count as success, as ALB's matcher writes them: `"200"`, `"200,301"`,
/// `"200-299"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatcher(pub Vec<(u16, u16)>);

impl StatusMatcher {
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_within(text, 100, 599, "status code")
    }

    /// ALB's `GrpcCode`: gRPC status codes from 0 to 99.
    pub fn parse_grpc(text: &str) -> Result<Self, String> {
        Self::parse_within(text, 0, 99, "gRPC status code")
    }

    fn parse_within(text: &str, min: u16, max: u16, what: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo
                .parse()
                .map_err(|_| format!("`{part}` is not a {what}"))?;
            let hi: u16 = hi
                .parse()
                .map_err(|_| format!("`{part}` is not a {what}"))?;
            if !(min..=max).contains(&lo) || !(min..=max).contains(&hi) || lo > hi {
                return Err(format!(
                    "`{part}` is not a range of {what}s within {min}-{max}"
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

/// Reads a health check; bounds follow ALB's (interval 1 s to 300 s, thresholds 2 to 10),
/// except that Meridian allows a 1 s interval and a threshold of 1 for fast failover.
pub(crate) fn read_health_check(t: &Table, d: &mut Diagnostics) -> Option<HealthCheck> {
    let mut hc = HealthCheck::default();
    if let Some(p) = t.str(d, "protocol") {
        match p.as_str() {
            "http" => hc.protocol = CheckProtocol::Http,
            "tcp" => hc.protocol = CheckProtocol::Tcp,
            other => {
                let f = t.get("protocol")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a health check protocol"),
                    "use \"http\" or \"tcp\"",
                );
            }
        }
    }
    if let Some(path) = t.str(d, "path") {
        if !path.starts_with('/') {
            let f = t.get("path")?;
            d.error(
                f.span,
                &f.key,
                format!("`{path}` is not an absolute path"),
                format!("start it with a slash: \"/{path}\""),
            );
        }
        hc.path = path;
    }
    hc.interval = t.duration(d, "interval").unwrap_or(hc.interval);
    hc.timeout = t.duration(d, "timeout").unwrap_or(hc.timeout);
    hc.healthy_threshold = t.int(d, "healthy_threshold", 1..=10).unwrap_or(2) as u32;
    hc.unhealthy_threshold = t.int(d, "unhealthy_threshold", 1..=10).unwrap_or(2) as u32;
    if let Some(m) = t.str(d, "matcher") {
        match StatusMatcher::parse(&m) {
            Ok(sm) => hc.matcher = sm,
            Err(problem) => {
                let f = t.get("matcher")?;
                d.error(
                    f.span,
                    &f.key,
                    problem,
                    "write codes like \"200\", \"200,302\" or \"200-299\"",
                );
            }
        }
    }
    hc.body_contains = t.str(d, "body_contains");
    if let Some(m) = t.str(d, "grpc_code") {
        match StatusMatcher::parse_grpc(&m) {
            Ok(sm) => hc.grpc_codes = Some(sm),
            Err(problem) => {
                let f = t.get("grpc_code")?;
                d.error(
                    f.span,
                    &f.key,
                    problem,
                    "write gRPC codes like \"0\", \"0,12\" or \"0-99\"",
                );
            }
        }
    }
    if let Some(f) = t.get("interval") {
        if hc.interval < Duration::from_secs(1) || hc.interval > Duration::from_secs(300) {
            d.error(
                f.span,
                &f.key,
                "the health check interval must be from 1s to 300s",
                "use an interval such as \"1s\" (fastest) or \"30s\"",
            );
        }
    }
    if hc.timeout >= hc.interval {
        if let Some(f) = t.get("timeout").or_else(|| t.get("interval")) {
            d.error(
                f.span,
                &f.key,
                format!(
                    "the timeout ({}) must be shorter than the interval ({})",
                    crate::units::format_duration(hc.timeout),
                    crate::units::format_duration(hc.interval)
                ),
                "lower `timeout` or raise `interval`",
            );
        }
    }
    t.finish(d);
    Some(hc)
}
