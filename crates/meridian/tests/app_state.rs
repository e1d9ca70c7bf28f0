//! `meridian up` with a `[database]` and the demo service: orders are written from every
//! region through its writer endpoints (a write far from the home region pays the WAN), and
//! a portfolio read right after a write is served by the region's own replica and shows it.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{start_up, state};

/// Two regions on their own subnet, with the WAN: Virginia holds the primary and its
/// synchronous standby, Singapore a replica.
const CONFIG: &str = r#"
[deployment]
name = "app-state"
zone = "app.example"

[network]
subnet = "127.82.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[[region]]
name = "ap-southeast-1"
location = { lat = 1.35, lon = 103.82 }
azs = ["ap-southeast-1a"]

[service]
instances_per_az = 1
processing_time = "0ms"

[database]
home_region = "us-east-1"

[simulation]
wan = true

[console]
enabled = false

[dns]
servers = 0

# A PoP with the default distribution's API behaviours: portfolios never cached, orders
# POSTed through.
[[edge]]
name = "singapore"
location = { lat = 1.29, lon = 103.85 }
memory_cache = "64MiB"
disk_cache = "64MiB"

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1", "lb:ap-southeast-1"]
selection = "latency"

[[distribution.cache_policy]]
name = "api"
default_ttl = "300s"
query_strings = "all"

[[distribution.cache_policy]]
name = "disabled"
min_ttl = "0s"
default_ttl = "0s"
max_ttl = "0s"
query_strings = "all"

[[distribution.origin_request_policy]]
name = "all-viewer"
headers = "all"
query_strings = "all"
cookies = "all"

[[distribution.behavior]]
path_pattern = "/api/portfolio/*"
origin_group = "regions"
cache_policy = "disabled"
origin_request_policy = "all-viewer"
allowed_methods = ["GET", "HEAD", "OPTIONS"]

[[distribution.behavior]]
path_pattern = "/api/*"
origin_group = "regions"
cache_policy = "api"
origin_request_policy = "all-viewer"
allowed_methods = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"]

[distribution.default_behavior]
origin_group = "regions"
cache_policy = "api"
"#;

struct Answer {
    status: u16,
    head: String,
    body: serde_json::Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 exchange on a fresh connection, within 10 s.
async fn exchange(lb: &str, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(lb).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: api.app.example\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // Chunked or not, the demo's JSON body is the one line that starts with '{'.
        let json = body
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            head: head.to_owned(),
            body: json,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("an answer within 10s")
}

async fn order(lb: &str, user: &str, quantity: i64) -> Answer {
    let body = format!(r#"{{"user":"{user}","symbol":"AAPL","side":"buy","quantity":{quantity}}}"#);
    exchange(lb, "POST", "/api/orders", "", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_every_region_and_read_your_writes_on_the_local_replica() {
    let dir = common::tempdir();
    let cfg = dir.join("app.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let (virginia, singapore) = ("127.82.1.1:8080", "127.82.2.1:8080");

    // The first order may come before the writer endpoints lead anywhere: bounded retries.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let a = order(virginia, "warmup", 1).await;
        if a.status == 201 {
            break;
        }
        assert!(
            Instant::now() < until,
            "no order taken within 60s: {} {}",
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same order from each region: Singapore's crosses the WAN to Virginia's primary.
    let mut fastest = Vec::new();
    let mut last = None;
    for (lb, region) in [(virginia, "us-east-1"), (singapore, "ap-southeast-1")] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let a = order(lb, "mei", 5).await;
            assert_eq!(a.status, 201, "{region}: {}", a.body);
            assert_eq!(a.body["region"], region, "{}", a.body);
            assert_eq!(a.header("x-meridian-region"), Some(region));
            best = best.min(a.body["write_ms"].as_f64().unwrap());
            last = Some(a);
        }
        fastest.push(best);
    }
    eprintln!(
        "fastest order write: {:.1} ms in us-east-1, {:.1} ms from ap-southeast-1",
        fastest[0], fastest[1]
    );
    assert!(
        fastest[1] > fastest[0] + 50.0,
        "a write from Singapore pays the round trips to Virginia: {fastest:?}"
    );

    // Read right after the write, in Singapore: the local replica, once it has the write.
    let last = last.unwrap();
    let lsn = last.body["commit_lsn"].as_str().unwrap().to_owned();
    let header = format!("Meridian-Min-Lsn: {lsn}\r\n");
    let read = exchange(singapore, "GET", "/api/portfolio/mei", &header, "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.header("meridian-read-from"),
        Some("replica"),
        "{}",
        read.body
    );
    assert_eq!(read.body["positions"][0]["quantity"], 30, "{}", read.body);
    assert_eq!(read.body["orders"][0]["id"], last.body["order"]["id"]);
    // In Virginia the reader is the synchronous standby: it has every acknowledged write.
    let read = exchange(virginia, "GET", "/api/portfolio/mei", &header, "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.header("meridian-read-from"),
        Some("replica"),
        "{}",
        read.body
    );
    assert_eq!(read.body["positions"][0]["quantity"], 30, "{}", read.body);

    // Through the PoP: the POST reaches the application, the cookie it sets makes the next
    // read see the order, and no portfolio is ever served from the cache.
    let nodes = state(&state_dir)["nodes"].as_array().unwrap().clone();
    let pop = nodes.iter().find(|n| n["role"] == "edge").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    for (n, user) in [(1, "lin"), (2, "lin"), (3, "kai")] {
        let placed = order(&pop, user, 1).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let cookie = placed
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let header = format!("Cookie: {cookie}\r\n");
        let read = exchange(&pop, "GET", &format!("/api/portfolio/{user}"), &header, "").await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_ne!(read.header("x-cache"), Some("Hit from meridian"));
        assert_eq!(read.body["user"], user);
        let want = if user == "lin" { n } else { 1 };
        assert_eq!(read.body["positions"][0]["quantity"], want, "{}", read.body);
    }

    let bad = exchange(singapore, "POST", "/api/orders", "", r#"{"user":"mei"}"#).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let health = exchange(singapore, "GET", "/health", "", "").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body["database"]["schema_ready"], true,
        "{}",
        health.body
    );

    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
}
