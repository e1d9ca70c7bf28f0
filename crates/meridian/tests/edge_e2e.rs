//! Edge PoPs through `meridian up`, checked from outside: a second GET is a hit that never
//! reaches a region, concurrent first GETs reach the origin once, losing the preferred
//! region (frozen or killed) costs no GET, cached objects are served with every region
//! down, `meridian invalidate` makes the next GET a miss, and the balancers refuse what the
//! PoP did not sign.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{get, start_up, state};

const CONFIG: &str = r#"
[deployment]
name = "edge-e2e"
zone = "edge.example"

[network]
subnet = "127.45.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[load_balancer]
deregistration_delay = "500ms"
require_edge_signature = true

[supervisor]
restart_backoff = "300ms"
stop_timeout = "5s"

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "64MiB"
disk_cache = "64MiB"

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1", "lb:eu-west-1"]
selection = "latency"
response_timeout = "1s"

[[distribution.cache_policy]]
name = "default"
default_ttl = "300s"
query_strings = "all"

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 0
"#;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn signal_region(nodes: &[serde_json::Value], region: &str, sig: i32) {
    for n in nodes.iter().filter(|n| n["region"] == region) {
        if let Some(pid) = n["pid"].as_i64() {
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }
}

/// GETs distinct uncached keys through the PoP for `secs`; returns (ok, failures).
async fn steady_misses(
    client: &meridian_http::UpstreamClient,
    pop: &str,
    tag: &str,
    secs: u64,
) -> (u32, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    let start = Instant::now();
    for i in 0..2000 {
        if start.elapsed() > Duration::from_secs(secs) {
            break;
        }
        match get(client, &format!("http://{pop}/api/quotes/AAPL?{tag}={i}")).await {
            Ok((200, _, _)) => ok += 1,
            Ok((s, _, b)) => failed.push(format!("{s}: {}", String::from_utf8_lossy(&b))),
            Err(e) => failed.push(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pops_cache_collapse_fail_over_serve_when_regions_are_down_and_invalidate() {
    let dir = common::tempdir();
    let cfg = dir.join("edge.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, printed) = start_up(&cfg, &state_dir).await;
    assert!(printed.contains("edge-london"), "{printed}");
    let st = state(&state_dir);
    let nodes = st["nodes"].as_array().unwrap().clone();
    let edge = nodes.iter().find(|n| n["role"] == "edge").unwrap();
    let pop = edge["address"].as_str().unwrap().to_owned();
    let admin = edge["admin"].as_str().unwrap().to_owned();
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));

    // A second GET is a hit and does not reach the origin.
    let (s, h, first) = get(&client, &format!("http://{pop}/static/app.css"))
        .await
        .unwrap();
    assert_eq!(
        (s, h["x-cache"].to_str().unwrap()),
        (200, "Miss from meridian"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(
        h["x-meridian-region"], "eu-west-1",
        "London prefers the nearer region"
    );
    let (_, _, m) = get(&client, &format!("http://{admin}/metrics"))
        .await
        .unwrap();
    let fetches = metric(
        &String::from_utf8_lossy(&m),
        "meridian_edge_origin_fetches_total",
    );
    let (_, h, again) = get(&client, &format!("http://{pop}/static/app.css"))
        .await
        .unwrap();
    assert_eq!(h["x-cache"], "Hit from meridian");
    assert_eq!(again, first);
    // Origin access control: the PoP signs its origin requests; around it, the balancers
    // answer 403 (their health path apart).
    for lb in nodes.iter().filter(|n| n["role"] == "lb") {
        let public = lb["address"].as_str().unwrap();
        let (s, _, body) = get(&client, &format!("http://{public}/static/app.css"))
            .await
            .unwrap();
        assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
        let (s, _, _) = get(&client, &format!("http://{public}/health"))
            .await
            .unwrap();
        assert_eq!(s, 200);
    }
    // 100 concurrent first GETs of a new key: one origin fetch.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = client.clone();
        let url = format!("http://{pop}/static/app.js");
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().0, 200);
    }
    let (_, _, m) = get(&client, &format!("http://{admin}/metrics"))
        .await
        .unwrap();
    let after = metric(
        &String::from_utf8_lossy(&m),
        "meridian_edge_origin_fetches_total",
    );
    assert_eq!(
        after - fetches,
        1.0,
        "100 concurrent first GETs reached the origin once"
    );

    // Freeze the preferred region (a partition): no GET fails.
    signal_region(&nodes, "eu-west-1", libc::SIGSTOP);
    let (ok, failed) = steady_misses(&client, &pop, "frozen", 4).await;
    signal_region(&nodes, "eu-west-1", libc::SIGCONT);
    assert!(
        failed.is_empty(),
        "{} failed while eu-west-1 was frozen: {failed:?}",
        failed.len()
    );
    assert!(ok > 20, "{ok}");
    // Kill it: connections are refused, still no GET fails.
    signal_region(&nodes, "eu-west-1", libc::SIGKILL);
    let (ok, failed) = steady_misses(&client, &pop, "killed", 2).await;
    assert!(
        failed.is_empty(),
        "{} failed after eu-west-1 was killed: {failed:?}",
        failed.len()
    );
    assert!(ok > 20, "{ok}");

    // Every region down: cached objects are still served.
    let nodes_now = state(&state_dir)["nodes"].as_array().unwrap().clone();
    for r in ["us-east-1", "eu-west-1"] {
        signal_region(&nodes_now, r, libc::SIGSTOP);
    }
    let (s, h, body) = get(&client, &format!("http://{pop}/static/app.css"))
        .await
        .unwrap();
    assert_eq!(
        (s, h["x-cache"].to_str().unwrap()),
        (200, "Hit from meridian")
    );
    assert_eq!(body, first);
    for r in ["us-east-1", "eu-west-1"] {
        signal_region(&nodes_now, r, libc::SIGCONT);
    }

    // Invalidation reaches the PoP and reports completion.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["invalidate", "--paths", "/static/*", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Completed"));
    let (_, h, _) = get(&client, &format!("http://{pop}/static/app.css"))
        .await
        .unwrap();
    assert_eq!(h["x-cache"], "Miss from meridian");

    let status = tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
