//! Every routing policy, health handling, ECS and the zone's answers, through the
//! server's message handler.

mod common;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use std::collections::HashMap;

#[test]
fn simple_returns_every_value_and_cname_is_followed() {
    let dns = server("");
    assert_eq!(a(&dns, "s.t.example.", NYC), ["192.0.2.1", "192.0.2.2"]);
    let r = ask(&dns, &query("www.t.example.", RecordType::A), NYC);
    assert!(r.metadata.authoritative);
    assert!(matches!(r.answers[0].data, RData::CNAME(_)));
    assert_eq!(r.answers.len(), 3, "CNAME then both A records");
}

#[test]
fn weighted_follows_weights_and_uses_weight_zero_only_as_last_resort() {
    let dns = server("");
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..4000 {
        for ip in a(&dns, "w.t.example.", NYC) {
            *counts.entry(ip).or_default() += 1;
        }
    }
    let one = f64::from(counts["192.0.2.10"]);
    let three = f64::from(counts["192.0.2.11"]);
    assert!(
        !counts.contains_key("192.0.2.12"),
        "weight 0 is not used while others are healthy"
    );
    assert!((three / one - 3.0).abs() < 0.6, "ratio {}", three / one);
    down(&dns, "check:127.0.0.1:9/w1");
    down(&dns, "check:127.0.0.1:9/w3");
    assert_eq!(a(&dns, "w.t.example.", NYC), ["192.0.2.12"]);
}

#[test]
fn latency_picks_the_nearest_healthy_region() {
    let dns = server("");
    assert_eq!(a(&dns, "api.t.example.", NYC), ["127.77.1.1"]);
    assert_eq!(a(&dns, "api.t.example.", LON), ["127.77.2.1"]);
    assert_eq!(a(&dns, "api.t.example.", SGP), ["127.77.3.1"]);
    // Unknown clients get the primary region.
    assert_eq!(a(&dns, "api.t.example.", NOWHERE), ["127.77.1.1"]);
    down(&dns, "lb:r-eu");
    assert_eq!(
        a(&dns, "api.t.example.", LON),
        ["127.77.1.1"],
        "London fails over to the next nearest"
    );
    up(&dns, "lb:r-eu");
    assert_eq!(
        a(&dns, "api.t.example.", LON),
        ["127.77.2.1"],
        "and comes back"
    );
}

#[test]
fn latency_overrides_replace_the_model() {
    let dns = server("[[dns.latency]]\nclient = \"lon\"\nregion = \"r-ap\"\nrtt = \"1ms\"\n");
    assert_eq!(a(&dns, "api.t.example.", LON), ["127.77.3.1"]);
}

#[test]
fn failover_uses_the_secondary_only_when_the_primary_is_down() {
    let dns = server("");
    assert_eq!(a(&dns, "f.t.example.", NYC), ["192.0.2.20"]);
    down(&dns, "check:127.0.0.1:9/primary");
    assert_eq!(a(&dns, "f.t.example.", NYC), ["192.0.2.21"]);
}

#[test]
fn geolocation_prefers_country_then_continent_then_default() {
    let dns = server("");
    assert_eq!(a(&dns, "g.t.example.", LON), ["192.0.2.30"], "GB");
    assert_eq!(a(&dns, "g.t.example.", FRA), ["192.0.2.31"], "EU");
    assert_eq!(a(&dns, "g.t.example.", SGP), ["192.0.2.32"], "default");
    assert_eq!(
        a(&dns, "g.t.example.", NOWHERE),
        ["192.0.2.32"],
        "unknown is default"
    );
    down(&dns, "check:127.0.0.1:9/gb");
    assert_eq!(
        a(&dns, "g.t.example.", LON),
        ["192.0.2.31"],
        "an unhealthy country falls back to its continent"
    );
}

#[test]
fn geoproximity_uses_distance_and_bias() {
    let dns = server("");
    assert_eq!(
        a(&dns, "p.t.example.", LON),
        ["192.0.2.50"],
        "Paris is nearest London"
    );
    assert_eq!(a(&dns, "p.t.example.", NYC), ["192.0.2.51"]);
    // A strong bias toward New York pulls London in.
    let biased = CONFIG.replace(
        "id = \"newyork\"\nvalues = [\"192.0.2.51\"]",
        "id = \"newyork\"\nvalues = [\"192.0.2.51\"]\nbias = 99",
    );
    let cfg = meridian_config::Config::parse(&biased, "b.toml").unwrap();
    let dns = meridian_dns::Dns::new(&options(&cfg));
    assert_eq!(a(&dns, "p.t.example.", LON), ["192.0.2.51"]);
}

#[test]
fn multivalue_gives_at_most_eight_healthy_answers() {
    let dns = server("");
    let got = a(&dns, "m.t.example.", NYC);
    assert_eq!(got.len(), 8);
    down(&dns, "check:127.0.0.1:9/m1");
    for _ in 0..50 {
        assert!(!a(&dns, "m.t.example.", NYC).contains(&"192.0.2.61".to_string()));
    }
}

#[test]
fn ip_based_uses_the_longest_matching_network() {
    let dns = server("");
    assert_eq!(a(&dns, "ip.t.example.", LON), ["192.0.2.40"]);
    assert_eq!(a(&dns, "ip.t.example.", NYC), ["192.0.2.41"]);
    assert_eq!(a(&dns, "ip.t.example.", NOWHERE), ["192.0.2.42"]);
}

#[test]
fn all_unhealthy_fails_open_by_default() {
    let dns = server("");
    for r in ["lb:r-us", "lb:r-eu", "lb:r-ap"] {
        down(&dns, r);
    }
    assert_eq!(
        a(&dns, "api.t.example.", LON),
        ["127.77.2.1"],
        "fail open: as if all were healthy"
    );
}

#[test]
fn all_unhealthy_can_fail_closed_or_answer_statically() {
    let closed = CONFIG.replace(
        "servers = 1\n",
        "servers = 1\nwhen_all_unhealthy = \"fail_closed\"\n",
    );
    let dns = meridian_dns::Dns::new(&options(
        &meridian_config::Config::parse(&closed, "c.toml").unwrap(),
    ));
    for r in ["lb:r-us", "lb:r-eu", "lb:r-ap"] {
        down(&dns, r);
    }
    let r = ask(&dns, &query("api.t.example.", RecordType::A), LON);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert!(
        matches!(r.authorities[0].data, RData::SOA(_)),
        "NODATA carries the SOA"
    );

    let fixed = CONFIG.replace(
        "servers = 1\n",
        "servers = 1\nwhen_all_unhealthy = \"static\"\nstatic_answer = [\"192.0.2.99\"]\n",
    );
    let dns = meridian_dns::Dns::new(&options(
        &meridian_config::Config::parse(&fixed, "s.toml").unwrap(),
    ));
    for r in ["lb:r-us", "lb:r-eu", "lb:r-ap"] {
        down(&dns, r);
    }
    assert_eq!(a(&dns, "api.t.example.", LON), ["192.0.2.99"]);
}

#[test]
fn ecs_decides_the_location_and_scopes_the_answer() {
    let dns = server("");
    // Asked from New York's resolver on behalf of a Singapore client.
    let r = ask(
        &dns,
        &with_ecs(query("api.t.example.", RecordType::A), "127.77.203.0", 24),
        NYC,
    );
    let ip = match &r.answers[0].data {
        RData::A(a) => a.0.to_string(),
        _ => panic!(),
    };
    assert_eq!(ip, "127.77.3.1");
    let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!("no ECS in the answer")
    };
    assert_eq!(cs.source_prefix(), 24);
    assert_eq!(
        cs.scope_prefix(),
        24,
        "a location-dependent answer holds for the location's /24"
    );
    // A policy that does not depend on location may be reused by everyone: scope 0.
    let r = ask(
        &dns,
        &with_ecs(query("s.t.example.", RecordType::A), "127.77.203.0", 24),
        NYC,
    );
    let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!()
    };
    assert_eq!(cs.scope_prefix(), 0);
    // A wider client subnet than the location network: the scope cannot be narrower than asked.
    let r = ask(
        &dns,
        &with_ecs(query("api.t.example.", RecordType::A), "127.77.203.0", 20),
        NYC,
    );
    let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!()
    };
    assert_eq!(cs.scope_prefix(), 20);
}

#[test]
fn negative_answers_soa_ns_and_refusals() {
    let dns = server("");
    let r = ask(&dns, &query("nope.t.example.", RecordType::A), NYC);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
    // NODATA: the name exists, the type does not.
    let r = ask(&dns, &query("s.t.example.", RecordType::AAAA), NYC);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
    // An empty non-terminal exists too.
    let r = ask(&dns, &query("sub.t.example.", RecordType::A), NYC);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let r = ask(&dns, &query("t.example.", RecordType::SOA), NYC);
    assert!(matches!(r.answers[0].data, RData::SOA(_)));
    let r = ask(&dns, &query("t.example.", RecordType::NS), NYC);
    assert!(matches!(r.answers[0].data, RData::NS(_)));
    assert!(!r.additionals.is_empty(), "glue for the name servers");
    let r = ask(&dns, &query("example.com.", RecordType::A), NYC);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    let r = ask(&dns, &query("mail.t.example.", RecordType::MX), NYC);
    assert_eq!(r.answers.len(), 2);
    let r = ask(&dns, &query("deep.sub.t.example.", RecordType::TXT), NYC);
    assert!(matches!(r.answers[0].data, RData::TXT(_)));
}

#[test]
fn explain_names_the_rule_and_candidates() {
    let dns = server("");
    down(&dns, "lb:r-eu");
    let v = dns
        .explain("api.t.example", "A", LON.parse().unwrap())
        .unwrap();
    assert_eq!(v["client"]["location"]["name"], "lon");
    let d = &v["decisions"][0]["decision"];
    assert_eq!(d["policy"], "latency");
    assert_eq!(d["chosen"][0], "r-us");
    let eu = d["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "r-eu")
        .unwrap();
    assert_eq!(eu["healthy"], false);
    assert!(d["rule"].as_str().unwrap().contains("lowest round trip"));
}

#[test]
fn zone_file_records_are_served_and_errors_name_the_line() {
    let dir = std::env::temp_dir().join(format!("meridian-zone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zone = dir.join("t.zone");
    std::fs::write(&zone, "$ORIGIN t.example.\n$TTL 300\nlegacy IN A 192.0.2.200\n       IN TXT \"kept\"\nold 60 IN CNAME legacy\n").unwrap();
    let dns = server("");
    assert!(
        a(&dns, "legacy.t.example.", NYC).is_empty(),
        "not served without the file"
    );
    let with_file = CONFIG.replace(
        "servers = 1\n",
        &format!("servers = 1\nzone_file = \"{}\"\n", zone.display()),
    );
    let cfg = meridian_config::Config::parse(&with_file, "z.toml").unwrap();
    let dns = meridian_dns::Dns::new(&options(&cfg));
    assert_eq!(a(&dns, "legacy.t.example.", NYC), ["192.0.2.200"]);
    assert_eq!(
        a(&dns, "old.t.example.", NYC),
        ["192.0.2.200"],
        "CNAME into the file's records"
    );
    let r = ask(&dns, &query("legacy.t.example.", RecordType::TXT), NYC);
    assert_eq!(r.answers.len(), 1);

    std::fs::write(
        &zone,
        "$TTL 300\nok IN A 192.0.2.1\n\nbad IN A not-an-address\n",
    )
    .unwrap();
    let e = meridian_dns::Zone::build(&cfg).unwrap_err().to_string();
    assert!(e.contains(&format!("{}:4:", zone.display())), "{e}");
    assert!(e.contains("IPv4"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn measured_latency_overrides_the_table_and_the_model() {
    let dns = server("");
    assert_eq!(a(&dns, "api.t.example.", LON), ["127.77.2.1"]);
    dns.set_measured_latency("lon", "r-ap", 0.5).unwrap();
    assert_eq!(
        a(&dns, "api.t.example.", LON),
        ["127.77.3.1"],
        "a cached answer is not reused after a measurement"
    );
    assert!(dns
        .set_measured_latency("atlantis", "r-ap", 1.0)
        .unwrap_err()
        .contains("atlantis"));
    assert!(dns.set_measured_latency("lon", "r-mars", 1.0).is_err());
    assert!(dns.set_measured_latency("lon", "r-ap", f64::NAN).is_err());
}
