//! Latency routing follows measured round trips, with no WAN and no latency model: a PoP
//! and a DNS node run as they would on real hosts (`meridian run --node`), two regions'
//! balancers are stand-ins whose health answers the test slows down, and the DNS answers
//! for the PoP's client location move to whichever region the PoP measures faster.

mod common;

use common::ask;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[deployment]
name = "measured"
zone = "measured.example"

[network]
subnet = "127.48.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a"]

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "16MiB"
disk_cache = "0B"

[distribution]
origin_protocol = "http"
access_log = false

[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1", "lb:eu-west-1"]
selection = "latency"
[distribution.origin_group.health_check]
path = "/health"
interval = "1s"
timeout = "900ms"

[dns]
servers = 1
[dns.health_check]
interval = "1s"
timeout = "900ms"

[[dns.record]]
name = "api"
type = "A"
policy = "latency"
ttl = "1s"
[[dns.record.answer]]
id = "us"
alias = "lb:us-east-1"
[[dns.record.answer]]
id = "eu"
alias = "lb:eu-west-1"

[[client_location]]
name = "london"
location = { lat = 51.51, lon = -0.13 }

[simulation]
wan = false
prior = false
"#;

/// A region's balancer as the PoP and the DNS see it: `/health` answers 200, after
/// `delay` while `slow` is set (each probe opens a new connection, so the delay is what
/// the PoP measures).
async fn stand_in_balancer(addr: SocketAddr, slow: Arc<AtomicBool>, delay: Duration) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("balancer address");
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let slow = slow.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf).await;
            if slow.load(Ordering::Relaxed) {
                tokio::time::sleep(delay).await;
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        });
    }
}

/// Waits (bounded) until the DNS answers `want` to the client location, polling.
fn answers_within(dns: &str, from: &str, want: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < limit {
        last = ask(dns, from, "api.measured.example.");
        if last.as_deref() == Some(want) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "after {limit:?} the answer is still {last:?}, not {want}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_answers_follow_the_round_trips_a_pop_measures() {
    let dir = common::tempdir();
    let cfg_path = dir.join("measured.toml");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let cfg = meridian_config::Config::parse(CONFIG, "measured.toml").expect("config");
    // One token for both nodes, as a real deployment mounts it.
    let state = common::state_with_token(&dir, "measured-test-token");

    let us_slow = Arc::new(AtomicBool::new(true));
    let eu_slow = Arc::new(AtomicBool::new(false));
    let delay = Duration::from_millis(120);
    let us = cfg.lb_address("us-east-1").unwrap();
    let eu = cfg.lb_address("eu-west-1").unwrap();
    tokio::spawn(stand_in_balancer(us, us_slow.clone(), delay));
    tokio::spawn(stand_in_balancer(eu, eu_slow.clone(), delay));

    let run = |node: &str| common::run_node(&cfg_path, &state, node);
    let _nodes = common::Nodes(vec![run("edge-london"), run("dns-1")]);
    let dns_node = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == meridian_config::Role::Dns)
        .unwrap();
    let dns = dns_node.address.to_string();
    // An address in the London client location's network (`client_source`).
    let london = "127.48.200.9".to_owned();
    assert!(cfg
        .client_source("london")
        .unwrap()
        .contains(london.parse().unwrap()));

    // The DNS node lists what it routes by: wait (bounded) until the PoP has measured both
    // regions for London, so the answer below is a comparison of two measurements.
    let listed = || async {
        let got = meridian_http::client::call(
            dns_node.admin,
            http::Method::GET,
            "/latency",
            None,
            Duration::from_secs(2),
            1 << 16,
        )
        .await
        .ok()?;
        Some(String::from_utf8_lossy(&got.body).into_owned())
    };
    let start = Instant::now();
    let mut seen = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        seen = listed().await.unwrap_or_default();
        if seen.contains("\"london\"") && seen.contains("us-east-1") && seen.contains("eu-west-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.contains("us-east-1") && seen.contains("eu-west-1"),
        "the DNS lists London's measured round trips to both regions: {seen}"
    );

    // With no model, only the measurements tell the regions apart (the first answer,
    // us-east-1, is what nothing would give): the PoP measures us-east-1 slow, so London
    // is sent to eu-west-1.
    let took = tokio::task::spawn_blocking({
        let (dns, london, want) = (dns.clone(), london.clone(), eu.ip().to_string());
        move || answers_within(&dns, &london, &want, Duration::from_secs(30))
    })
    .await
    .unwrap();
    if let Err(e) = took {
        panic!("us-east-1 measured slow: {e}");
    }

    // Now eu-west-1 turns slow and us-east-1 fast: the answer follows.
    eu_slow.store(true, Ordering::Relaxed);
    us_slow.store(false, Ordering::Relaxed);
    let took = tokio::task::spawn_blocking({
        let want = us.ip().to_string();
        move || answers_within(&dns, &london, &want, Duration::from_secs(45))
    })
    .await
    .unwrap();
    if let Err(e) = took {
        panic!("eu-west-1 measured slow: {e}");
    }
}
