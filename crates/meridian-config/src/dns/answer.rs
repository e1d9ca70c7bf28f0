//! One answer of a record set (Route 53's record with its set identifier), and the
//! fields each routing policy needs of it.

use super::policy::Policy;
use super::value::{read_values, RecordKind};
use crate::common::CONTINENTS;
use crate::error::Diagnostics;
use crate::geo::{read_location, Coordinates};
use crate::network::Cidr;
use crate::read::Table;
use serde::Serialize;

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

/// `plain_answer` for the generated record sets.
pub(crate) fn empty_answer(id: &str) -> Answer {
    plain_answer(id, Vec::new())
}

pub(super) fn plain_answer(id: &str, values: Vec<String>) -> Answer {
    Answer {
        id: id.to_owned(),
        values,
        alias: None,
        evaluate_target_health: false,
        health_check: None,
        weight: 1,
        location: None,
        region: None,
        bias: 0,
        failover: None,
        geo: None,
        cidrs: Vec::new(),
        ip_default: false,
        alias_at: None,
    }
}

pub(super) fn parse_alias(
    d: &mut Diagnostics,
    alias: &str,
    key: &str,
    span: std::ops::Range<usize>,
) -> Option<AliasTarget> {
    match alias.split_once(':') {
        Some(("lb", r)) => Some(AliasTarget::Lb(r.to_owned())),
        Some(("pop", p)) => Some(AliasTarget::Pop(p.to_owned())),
        _ => {
            d.error(span, key, format!("`{alias}` is not an alias target"), "write \"lb:<region>\" for a region's load balancer or \"pop:<name>\" for an edge PoP");
            None
        }
    }
}

pub(super) fn read_answer(
    t: &Table,
    d: &mut Diagnostics,
    policy: Policy,
    kind: Option<RecordKind>,
) -> Option<Answer> {
    let id = t.req_str(
        d,
        "id",
        "give the answer an id (Route 53's set identifier), such as id = \"us-east-1\"",
    );
    let mut a = plain_answer("", Vec::new());
    if let Some(values) = read_values(t, d, kind) {
        a.values = values;
    }
    if let Some(alias) = t.str(d, "alias") {
        let f = t.get("alias")?;
        a.alias = parse_alias(d, &alias, &f.key, f.span.clone());
        a.alias_at = Some((f.span, f.key));
        a.evaluate_target_health = true;
    }
    if a.values.is_empty() && a.alias.is_none() {
        t.missing(
            d,
            "values",
            "add values = [\"192.0.2.1\"] or alias = \"lb:<region>\"",
        );
    }
    a.evaluate_target_health = t
        .bool(d, "evaluate_target_health")
        .unwrap_or(a.evaluate_target_health);
    if let Some(url) = t.str(d, "health_check") {
        let f = t.get("health_check")?;
        match parse_check_url(&url) {
            Some(hc) => a.health_check = Some(hc),
            None => d.error(f.span, &f.key, format!("`{url}` is not a health check URL"), "write it as http://ADDRESS:PORT/path, for example \"http://192.0.2.1:8080/health\""),
        }
    }
    a.weight = t.int(d, "weight", 0..=255).unwrap_or(1) as u32;
    a.region = t.str(d, "region");
    if t.has("location") {
        a.location = read_location(t, d);
    }
    a.bias = t.int(d, "bias", -99..=99).unwrap_or(0) as i32;
    if let Some(role) = t.str(d, "failover") {
        a.failover = match role.as_str() {
            "primary" => Some(FailoverRole::Primary),
            "secondary" => Some(FailoverRole::Secondary),
            other => {
                let f = t.get("failover")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a failover role"),
                    "use \"primary\" or \"secondary\"",
                );
                None
            }
        };
    }
    if let Some(g) = t.str(d, "geo") {
        a.geo = Some(match g.as_str() {
            "*" => GeoMatch::Default,
            c if c.len() == 2
                && c.chars().all(|x| x.is_ascii_uppercase())
                && CONTINENTS.contains(&c) =>
            {
                GeoMatch::Continent(c.to_owned())
            }
            c if c.len() == 2 && c.chars().all(|x| x.is_ascii_uppercase()) => {
                GeoMatch::Country(c.to_owned())
            }
            other => {
                let f = t.get("geo")?;
                d.error(f.span, &f.key, format!("`{other}` is not a location"), "use a continent code (AF, AN, AS, EU, NA, OC, SA), a two-letter country code such as \"GB\", or \"*\" for the default");
                GeoMatch::Default
            }
        });
    }
    if let Some(list) = t.str_list(d, "cidrs") {
        for c in list {
            if c.get_ref() == "*" {
                a.ip_default = true;
            } else if let Some(cidr) = Cidr::parse(c.get_ref()) {
                a.cidrs.push(cidr);
            } else {
                d.error(c.span(), &format!("{}.cidrs", t.path), format!("`{}` is not a network", c.get_ref()), "write networks as \"203.0.113.0/24\" or \"2001:db8::/32\", or \"*\" for everyone else");
            }
        }
    }
    // Each policy needs its own fields.
    let need = |d: &mut Diagnostics, ok: bool, key: &str, fix: &str| {
        if !ok {
            t.missing(d, key, fix);
        }
    };
    match policy {
        Policy::Failover => need(
            d,
            a.failover.is_some(),
            "failover",
            "add failover = \"primary\" or \"secondary\"",
        ),
        Policy::Geolocation => need(
            d,
            a.geo.is_some(),
            "geo",
            "add geo = \"EU\" (continent), \"GB\" (country) or \"*\" (default)",
        ),
        Policy::IpBased => need(
            d,
            !a.cidrs.is_empty() || a.ip_default,
            "cidrs",
            "add cidrs = [\"203.0.113.0/24\"] (or [\"*\"] for everyone else)",
        ),
        Policy::Latency => need(
            d,
            a.region.is_some() || a.location.is_some() || a.alias.is_some(),
            "region",
            "add region = \"us-east-1\" (or location, or an alias)",
        ),
        Policy::Geoproximity => need(
            d,
            a.region.is_some() || a.location.is_some() || a.alias.is_some(),
            "location",
            "add location = { lat = .., lon = .. } (or region, or an alias)",
        ),
        _ => {}
    }
    t.finish(d);
    a.id = id?;
    Some(a)
}

fn parse_check_url(url: &str) -> Option<(std::net::SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((authority.parse().ok()?, path.to_owned()))
}
