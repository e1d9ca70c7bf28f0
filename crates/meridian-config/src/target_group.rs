//! `[[load_balancer.target_group]]`: ALB's target groups, each with its own targets,
//! health check, algorithm, draining, stickiness and slow start.
//!
//! The config has one service, so a group's targets are that service's instances in the
//! balancer's region, all of them or those in the AZs the group names (`azs`).

use crate::error::Diagnostics;
use crate::health_check::{read_health_check, HealthCheck};
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

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

/// One target group.
#[derive(Debug, Clone, Serialize)]
pub struct TargetGroup {
    pub name: String,
    /// Only the instances in these AZs (None: every instance of the region).
    pub azs: Option<Vec<String>>,
    pub health_check: HealthCheck,
    pub algorithm: Algorithm,
    #[serde(with = "crate::serde_duration")]
    pub deregistration_delay: Duration,
    pub stickiness: Option<Stickiness>,
    /// ALB's slow start: a target that becomes healthy gets a linearly rising share of
    /// new requests over this window (zero: off).
    #[serde(with = "crate::serde_duration")]
    pub slow_start: Duration,
}

/// ALB's stickiness attributes of a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Stickiness {
    /// The balancer's own cookie names the target, for `duration`.
    LbCookie {
        #[serde(with = "crate::serde_duration")]
        duration: Duration,
    },
    /// Stick while the application's cookie `cookie_name` is present, keyed by its value.
    AppCookie {
        cookie_name: String,
        #[serde(with = "crate::serde_duration")]
        duration: Duration,
    },
}

/// The name of the group a balancer has when the config declares none.
pub const DEFAULT_TARGET_GROUP: &str = "default";

/// Reads one `[[load_balancer.target_group]]`; defaults come from `base` (the implicit
/// group `[load_balancer]` describes).
pub(crate) fn read_target_group(
    t: &Table,
    d: &mut Diagnostics,
    name: String,
    base: &TargetGroup,
) -> Option<TargetGroup> {
    let mut g = TargetGroup {
        name,
        ..base.clone()
    };
    if let Some(a) = t.choice(d, "algorithm", Algorithm::NAMES) {
        g.algorithm = match a {
            "round_robin" => Algorithm::RoundRobin,
            _ => Algorithm::LeastOutstandingRequests,
        };
    }
    if let Some(azs) = t.str_list(d, "azs") {
        if azs.is_empty() {
            if let Some(f) = t.get("azs") {
                d.error(
                    f.span,
                    &f.key,
                    "`azs` is empty: the group would have no targets",
                    "name at least one AZ, or remove `azs` to take every instance of the region",
                );
            }
        }
        g.azs = Some(azs.into_iter().map(|a| a.into_inner()).collect());
    }
    g.deregistration_delay = t
        .duration(d, "deregistration_delay")
        .unwrap_or(g.deregistration_delay);
    if let Some(s) = t.duration(d, "slow_start") {
        if !s.is_zero() && !(30..=900).contains(&s.as_secs()) {
            if let Some(f) = t.get("slow_start") {
                d.error(
                    f.span,
                    &f.key,
                    "slow start must be from 30s to 900s (as ALB's), or 0 for off",
                    "use a window such as \"30s\", or \"0s\" to turn it off",
                );
            }
        }
        g.slow_start = s;
    }
    if let Some(s) = t.table(d, "stickiness") {
        g.stickiness = read_stickiness(&s, d);
    }
    if let Some(hc) = t.table(d, "health_check") {
        g.health_check = read_health_check(&hc, d)?;
    }
    t.finish(d);
    Some(g)
}

fn read_stickiness(t: &Table, d: &mut Diagnostics) -> Option<Stickiness> {
    let kind = t.choice(d, "type", &["lb_cookie", "app_cookie"]);
    let duration = t
        .duration(d, "duration")
        .unwrap_or(Duration::from_secs(86400));
    if let Some(f) = t.get("duration") {
        // ALB's range: 1 second to 7 days.
        if duration < Duration::from_secs(1) || duration > Duration::from_secs(7 * 86400) {
            d.error(
                f.span,
                &f.key,
                "the stickiness duration must be from 1s to 7 days",
                "use a duration such as \"1h\"",
            );
        }
    }
    let cookie = t.str(d, "cookie_name");
    let out = match kind {
        Some("lb_cookie") => Some(Stickiness::LbCookie { duration }),
        Some(_) => match cookie {
            Some(c) if is_cookie_name(&c) => Some(Stickiness::AppCookie {
                cookie_name: c,
                duration,
            }),
            Some(c) => {
                if let Some(f) = t.get("cookie_name") {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{c}` is not a usable cookie name"),
                        "use letters, digits, `-` and `_`, not starting with AWSALB",
                    );
                }
                None
            }
            None => {
                t.missing(
                    d,
                    "cookie_name",
                    "add the application's cookie, such as `cookie_name = \"SESSION\"`",
                );
                None
            }
        },
        None => {
            if !t.has("type") {
                t.missing(
                    d,
                    "type",
                    "add `type = \"lb_cookie\"` or `type = \"app_cookie\"`",
                );
            }
            None
        }
    };
    t.finish(d);
    out
}

fn is_cookie_name(c: &str) -> bool {
    !c.is_empty()
        && !c.starts_with("AWSALB")
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
