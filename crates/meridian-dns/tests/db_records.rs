//! `db-writer.<zone>` and `db-reader.<zone>`: generated from `[database]`, answered by
//! latency over the database nodes, and left out for a node whose keeper's /health fails
//! (checked by the DNS's own health engine against fake keepers on loopback).

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_config::Config;
use meridian_dns::{Dns, DnsOptions};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"

[network]
subnet = "127.85.0.0/16"
admin_port = 9931

[[region]]
name = "r-us"
primary = true
location = { lat = 40.7, lon = -74.0 }
azs = ["r-us-a", "r-us-b"]

[[region]]
name = "r-eu"
location = { lat = 51.5, lon = -0.1 }
azs = ["r-eu-a"]

[database]
port = 5532

[dns]
servers = 1
port = 8053
[dns.health_check]
interval = "1s"
timeout = "300ms"
healthy_threshold = 1
unhealthy_threshold = 1

[[client_location]]
name = "nyc"
location = { lat = 40.71, lon = -74.01 }

[[client_location]]
name = "lon"
location = { lat = 51.51, lon = -0.13 }
"#;

const NYC: &str = "127.85.200.9";
const LON: &str = "127.85.201.9";

fn dns_of(cfg: &Config) -> (Dns, DnsOptions) {
    let node = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == meridian_config::Role::Dns)
        .expect("a dns node");
    let mut opts = DnsOptions::from_config(cfg, &node).expect("options");
    // As `up` runs it: nothing measured yet, so the latency model is what ranks regions.
    opts.prior = meridian_sim::world::prior(cfg);
    (Dns::new(&opts), opts)
}

fn a(dns: &Dns, name: &str, src: &str) -> Vec<String> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    let out = dns
        .handle(&m.to_vec().unwrap(), src.parse::<IpAddr>().unwrap(), true)
        .expect("an answer");
    let r = Message::from_vec(&out).unwrap();
    assert!(r.answers.iter().all(|x| x.ttl <= 5), "RDS-like short TTL");
    r.answers
        .iter()
        .filter_map(|x| match &x.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn generated_from_the_database_and_named_in_the_config() {
    let cfg = Config::parse(CONFIG, "t.toml").unwrap();
    let names: Vec<(&str, bool)> = cfg
        .dns
        .records
        .iter()
        .map(|r| (r.name.as_str(), r.generated))
        .collect();
    assert_eq!(names, [("db-writer", true), ("db-reader", true)]);
    // A record set the user writes is kept instead of the generated one.
    let own = format!(
        "{CONFIG}\n[[dns.record]]\nname = \"db-reader\"\ntype = \"A\"\nvalues = [\"192.0.2.7\"]\n"
    );
    let cfg = Config::parse(&own, "t.toml").unwrap();
    let reader: Vec<_> = cfg
        .dns
        .records
        .iter()
        .filter(|r| r.name == "db-reader")
        .collect();
    assert_eq!(reader.len(), 1);
    assert!(!reader[0].generated);
    // Without [database], no database names.
    let none = CONFIG.replace("[database]\nport = 5532\n", "");
    let cfg = Config::parse(&none, "t.toml").unwrap();
    assert!(cfg.dns.records.is_empty());
}

#[test]
fn answers_the_nearest_healthy_region() {
    let cfg = Config::parse(CONFIG, "t.toml").unwrap();
    let (dns, _) = dns_of(&cfg);
    // The writer: the primary's node in the home region; elsewhere the region's own relay.
    assert_eq!(a(&dns, "db-writer.t.example.", NYC), ["127.85.1.60"]);
    assert_eq!(a(&dns, "db-writer.t.example.", LON), ["127.85.2.60"]);
    // The reader: the home region's standby before its primary; London its replica.
    assert_eq!(a(&dns, "db-reader.t.example.", NYC), ["127.85.1.61"]);
    assert_eq!(a(&dns, "db-reader.t.example.", LON), ["127.85.2.60"]);
    dns.board().report_failure("db:db-r-eu-a", "test");
    assert_eq!(a(&dns, "db-reader.t.example.", LON), ["127.85.1.61"]);
    assert_eq!(a(&dns, "db-writer.t.example.", LON), ["127.85.1.60"]);
    dns.board().report_failure("db:db-r-us-a", "test");
    assert_eq!(a(&dns, "db-writer.t.example.", NYC), ["127.85.1.61"]);
}

/// A keeper's /health: 200 while `healthy`, else 503.
async fn fake_keeper(addr: SocketAddr, healthy: Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let (code, body) = if healthy.load(Ordering::SeqCst) {
                    ("200 OK", r#"{"status":"healthy"}"#)
                } else {
                    ("503 Service Unavailable", r#"{"status":"unhealthy"}"#)
                };
                let reply = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_keeper_fails_its_health_check_leaves_the_answers() {
    let cfg = Config::parse(CONFIG, "t.toml").unwrap();
    let mut flags = Vec::new();
    for node in cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == meridian_config::Role::Db)
    {
        let flag = Arc::new(AtomicBool::new(true));
        fake_keeper(node.admin, flag.clone()).await;
        flags.push((node.name, flag));
    }
    let (dns, opts) = dns_of(&cfg);
    let checks = dns.start_health_checks(&opts.check);
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .expect("a keeper")
    };
    let wait_for = |name: &'static str, src: &'static str, want: &'static str| {
        let dns = dns.clone();
        async move {
            for _ in 0..50 {
                if a(&dns, name, src) == [want] {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "{name} from {src} never answered {want}: {:?}",
                a(&dns, name, src)
            );
        }
    };
    wait_for("db-reader.t.example.", LON, "127.85.2.60").await;
    flag("db-r-eu-a").store(false, Ordering::SeqCst);
    wait_for("db-reader.t.example.", LON, "127.85.1.61").await;
    wait_for("db-writer.t.example.", LON, "127.85.1.60").await;
    flag("db-r-eu-a").store(true, Ordering::SeqCst);
    wait_for("db-reader.t.example.", LON, "127.85.2.60").await;
    wait_for("db-writer.t.example.", LON, "127.85.2.60").await;
    for c in checks {
        c.abort();
    }
}
