//! A small zone with one record set per routing policy, and helpers to query it.
#![allow(dead_code)]

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_config::Config;
use meridian_dns::{Dns, DnsOptions};
use std::net::IpAddr;
use std::str::FromStr;

pub const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"

[network]
subnet = "127.77.0.0/16"

[[region]]
name = "r-us"
primary = true
location = { lat = 40.7, lon = -74.0 }
azs = ["r-us-a"]

[[region]]
name = "r-eu"
location = { lat = 51.5, lon = -0.1 }
azs = ["r-eu-a"]

[[region]]
name = "r-ap"
location = { lat = 1.3, lon = 103.8 }
azs = ["r-ap-a"]

[dns]
servers = 1
port = 8053

[[dns.record]]
name = "s"
type = "A"
values = ["192.0.2.1", "192.0.2.2"]

[[dns.record]]
name = "w"
type = "A"
policy = "weighted"
[[dns.record.answer]]
id = "one"
values = ["192.0.2.10"]
weight = 1
health_check = "http://127.0.0.1:9/w1"
[[dns.record.answer]]
id = "three"
values = ["192.0.2.11"]
weight = 3
health_check = "http://127.0.0.1:9/w3"
[[dns.record.answer]]
id = "zero"
values = ["192.0.2.12"]
weight = 0

[[dns.record]]
name = "api"
type = "A"
policy = "latency"
[[dns.record.answer]]
id = "r-us"
alias = "lb:r-us"
[[dns.record.answer]]
id = "r-eu"
alias = "lb:r-eu"
[[dns.record.answer]]
id = "r-ap"
alias = "lb:r-ap"

[[dns.record]]
name = "f"
type = "A"
policy = "failover"
[[dns.record.answer]]
id = "main"
values = ["192.0.2.20"]
failover = "primary"
health_check = "http://127.0.0.1:9/primary"
[[dns.record.answer]]
id = "backup"
values = ["192.0.2.21"]
failover = "secondary"
health_check = "http://127.0.0.1:9/secondary"

[[dns.record]]
name = "g"
type = "A"
policy = "geolocation"
[[dns.record.answer]]
id = "gb"
values = ["192.0.2.30"]
geo = "GB"
health_check = "http://127.0.0.1:9/gb"
[[dns.record.answer]]
id = "europe"
values = ["192.0.2.31"]
geo = "EU"
[[dns.record.answer]]
id = "rest"
values = ["192.0.2.32"]
geo = "*"

[[dns.record]]
name = "p"
type = "A"
policy = "geoproximity"
[[dns.record.answer]]
id = "paris"
values = ["192.0.2.50"]
location = { lat = 48.86, lon = 2.35 }
[[dns.record.answer]]
id = "newyork"
values = ["192.0.2.51"]
location = { lat = 40.7, lon = -74.0 }
[[dns.record.answer]]
id = "singapore"
values = ["192.0.2.52"]
location = { lat = 1.3, lon = 103.8 }

[[dns.record]]
name = "m"
type = "A"
policy = "multivalue"
[[dns.record.answer]]
id = "m1"
values = ["192.0.2.61"]
health_check = "http://127.0.0.1:9/m1"
[[dns.record.answer]]
id = "m2"
values = ["192.0.2.62"]
[[dns.record.answer]]
id = "m3"
values = ["192.0.2.63"]
[[dns.record.answer]]
id = "m4"
values = ["192.0.2.64"]
[[dns.record.answer]]
id = "m5"
values = ["192.0.2.65"]
[[dns.record.answer]]
id = "m6"
values = ["192.0.2.66"]
[[dns.record.answer]]
id = "m7"
values = ["192.0.2.67"]
[[dns.record.answer]]
id = "m8"
values = ["192.0.2.68"]
[[dns.record.answer]]
id = "m9"
values = ["192.0.2.69"]
[[dns.record.answer]]
id = "m10"
values = ["192.0.2.70"]

[[dns.record]]
name = "ip"
type = "A"
policy = "ip_based"
[[dns.record.answer]]
id = "london-net"
values = ["192.0.2.40"]
cidrs = ["127.77.201.0/24"]
[[dns.record.answer]]
id = "our-net"
values = ["192.0.2.41"]
cidrs = ["127.77.0.0/16"]
[[dns.record.answer]]
id = "everyone"
values = ["192.0.2.42"]
cidrs = ["*"]

[[dns.record]]
name = "www"
type = "CNAME"
values = ["s"]

[[dns.record]]
name = "deep.sub"
type = "TXT"
values = ["hello"]

[[dns.record]]
name = "mail"
type = "MX"
values = ["10 mx1", "20 mx2.other.example."]

[[client_location]]
name = "nyc"
location = { lat = 40.71, lon = -74.01 }
country = "US"
continent = "NA"

[[client_location]]
name = "lon"
location = { lat = 51.51, lon = -0.13 }
country = "GB"
continent = "EU"

[[client_location]]
name = "fra"
location = { lat = 50.11, lon = 8.68 }
country = "DE"
continent = "EU"

[[client_location]]
name = "sgp"
location = { lat = 1.29, lon = 103.85 }
country = "SG"
continent = "AS"
"#;

/// Client addresses by location (see CONFIG's client locations, in order).
pub const NYC: &str = "127.77.200.9";
pub const LON: &str = "127.77.201.9";
pub const FRA: &str = "127.77.202.9";
pub const SGP: &str = "127.77.203.9";
pub const NOWHERE: &str = "10.1.2.3";

pub fn config(extra: &str) -> Config {
    Config::parse(&format!("{CONFIG}{extra}"), "test.toml").unwrap()
}

pub fn options(cfg: &Config) -> DnsOptions {
    let node = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == meridian_config::Role::Dns)
        .unwrap();
    let mut opts = DnsOptions::from_config(cfg, &node).unwrap();
    // As `up` runs it: the latency model ranks what is neither measured nor configured.
    opts.prior = meridian_sim::world::prior(cfg);
    opts
}

pub fn server(extra: &str) -> Dns {
    Dns::new(&options(&config(extra)))
}

pub fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), t));
    m
}

pub fn with_ecs(mut m: Message, net: &str, prefix: u8) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        net.parse().unwrap(),
        prefix,
        0,
    )));
    m.set_edns(e);
    m
}

/// Sends a message through the server's handler as UDP from `src`.
pub fn ask(dns: &Dns, m: &Message, src: &str) -> Message {
    let out = dns
        .handle(&m.to_vec().unwrap(), src.parse::<IpAddr>().unwrap(), true)
        .expect("an answer");
    Message::from_vec(&out).unwrap()
}

pub fn a(dns: &Dns, name: &str, src: &str) -> Vec<String> {
    let r = ask(dns, &query(name, RecordType::A), src);
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|x| match &x.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Marks a health target down (as a failed passive check would).
pub fn down(dns: &Dns, key: &str) {
    dns.board().report_failure(key, "test");
}

/// Marks a health target up.
pub fn up(dns: &Dns, key: &str) {
    for _ in 0..3 {
        dns.board().observe(
            key,
            meridian_health::ProbeOutcome {
                healthy: true,
                latency: std::time::Duration::ZERO,
                detail: "test".into(),
            },
        );
    }
}
