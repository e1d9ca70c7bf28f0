//! `meridian up` end to end: start a deployment, serve through it, lose an instance under
//! load without failing a request, and stop leaving no process behind.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{alive, get, start_up, state};

/// Two regions on their own subnet so the test never meets a running default deployment.
const CONFIG: &str = r#"
[deployment]
name = "e2e"
zone = "e2e.example"

[network]
subnet = "127.42.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a", "eu-west-1b"]

[service]
runtime = "demo"
instances_per_az = 1

[load_balancer]
algorithm = "round_robin"
deregistration_delay = "1s"

[load_balancer.health_check]
interval = "1s"
timeout = "300ms"
healthy_threshold = 2
unhealthy_threshold = 2

[supervisor]
restart_backoff = "300ms"
stop_timeout = "5s"

[dns]
servers = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_survives_an_instance_kill_and_stops_clean() {
    let dir = common::tempdir();
    let cfg = dir.join("e2e.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (up, printed) = start_up(&cfg, &state_dir).await;
    assert!(
        printed.contains("lb-us-east-1") && printed.contains("svc-eu-west-1b-1"),
        "{printed}"
    );

    let st = state(&state_dir);
    assert_eq!(st["status"], "running");
    assert_eq!(st["deployment"], "e2e");
    assert_eq!(st["zone"], "e2e.example");
    let nodes = st["nodes"].as_array().unwrap().clone();
    // Four instances, two balancers, and the console every deployment gets.
    assert_eq!(nodes.len(), 7);
    assert_eq!(nodes.iter().filter(|n| n["role"] == "console").count(), 1);
    for n in &nodes {
        // The console belongs to no region.
        let keys: &[&str] = if n["role"] == "console" {
            &["role", "name", "address", "pid"]
        } else {
            &["role", "name", "region", "address", "pid"]
        };
        for key in keys {
            assert!(!n[key].is_null(), "{key} missing in {n}");
        }
        assert!(alive(n["pid"].as_i64().unwrap()));
    }

    // Every region's balancer answers from its own region.
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));
    for lb in nodes.iter().filter(|n| n["role"] == "lb") {
        let region = lb["region"].as_str().unwrap();
        for path in ["/health", "/api/quotes/AAPL"] {
            let (status, headers, _) = get(
                &client,
                &format!("http://{}{path}", lb["address"].as_str().unwrap()),
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "{path} via {region}");
            assert_eq!(headers["x-meridian-region"], region, "{path}");
        }
    }

    // The console `up` started sees both regions healthy.
    let console = nodes.iter().find(|n| n["role"] == "console").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut regions = serde_json::Value::Null;
    for _ in 0..50 {
        if let Ok((200, _, body)) = get(&client, &format!("http://{console}/api/overview")).await {
            let o: serde_json::Value = serde_json::from_slice(&body).unwrap();
            regions = o["regions"].clone();
            let all = regions
                .as_array()
                .map(|r| r.len() == 2 && r.iter().all(|r| r["status"] == "healthy"));
            if all == Some(true) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        regions
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["status"] == "healthy")),
        "console: {regions}"
    );

    // `meridian health --state-dir` agrees.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("health")
        .arg("--state-dir")
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Steady GETs through us-east-1 while one of its instances is killed with SIGKILL.
    let lb = nodes.iter().find(|n| n["name"] == "lb-us-east-1").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let victim = nodes
        .iter()
        .find(|n| n["name"] == "svc-us-east-1a-1")
        .unwrap()
        .clone();
    let victim_pid = victim["pid"].as_i64().unwrap();
    let load = {
        let client = client.clone();
        let url = format!("http://{lb}/api/quotes/AAPL");
        tokio::spawn(async move {
            let (mut ok, mut failed, mut errors) = (0u32, 0u32, Vec::new());
            let start = Instant::now();
            // Bounded: at most 1500 requests or 4 seconds.
            for _ in 0..1500 {
                if start.elapsed() > Duration::from_secs(4) {
                    break;
                }
                match get(&client, &url).await {
                    Ok((200, _, _)) => ok += 1,
                    Ok((s, _, b)) => {
                        failed += 1;
                        errors.push(format!("{s}: {}", String::from_utf8_lossy(&b)));
                    }
                    Err(e) => {
                        failed += 1;
                        errors.push(e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    unsafe {
        libc::kill(victim_pid as i32, libc::SIGKILL);
    }
    let (ok, failed, errors) = load.await.unwrap();
    eprintln!("load through lb-us-east-1 while killing svc-us-east-1a-1: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "failed requests after the kill: {errors:?}");
    assert!(ok > 100, "only {ok} requests were sent");

    // The instance comes back with a new pid and rejoins the target group.
    let admin = nodes.iter().find(|n| n["name"] == "lb-us-east-1").unwrap()["admin"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_pid = loop {
        let st = state(&state_dir);
        let n = st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "svc-us-east-1a-1")
            .unwrap()
            .clone();
        let (_, _, body) = get(&client, &format!("http://{admin}/targets"))
            .await
            .unwrap();
        let targets: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let health = targets["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == "svc-us-east-1a-1")
            .unwrap()["health"]
            .clone();
        if n["restarts"] == 1
            && n["pid"].as_i64().is_some_and(|p| p != victim_pid)
            && health == "healthy"
        {
            break n["pid"].as_i64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "instance did not rejoin: {n} {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(alive(new_pid));
    let mut served_by_restarted = false;
    for _ in 0..20 {
        let (_, h, _) = get(&client, &format!("http://{lb}/api/quotes/AAPL"))
            .await
            .unwrap();
        served_by_restarted |= h["x-meridian-instance"] == "svc-us-east-1a-1";
    }
    assert!(
        served_by_restarted,
        "the restarted instance gets traffic again"
    );

    // Stop: every process goes away, quickly.
    let mut up = up;
    let pids: Vec<i64> = state(&state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["pid"].as_i64())
        .collect();
    let stopped_at = Instant::now();
    let status = tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    for pid in pids {
        assert!(!alive(pid), "node process {pid} outlived `up`");
    }
    assert_eq!(state(&state_dir)["status"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_users_own_server_command() {
    let dir = common::tempdir();
    let exe = env!("CARGO_BIN_EXE_meridian");
    // The user's server here is the demo origin started as a plain command, which proves
    // the {host}/{port} substitution and that `up` supervises foreign processes.
    let config = format!(
        r#"
[deployment]
name = "own"
zone = "own.example"

[network]
subnet = "127.43.0.0/16"

[[region]]
name = "local-1"
location = {{ lat = 0, lon = 0 }}
azs = ["local-1a"]

[dns]
servers = 0

[service]
runtime = "command"
command = ["{exe}", "demo-origin", "--listen", "{{host}}:{{port}}", "--instance", "mine"]
"#
    );
    let cfg = dir.join("own.toml");
    std::fs::write(&cfg, config).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));
    let (status, headers, _) = get(&client, "http://127.43.1.1:8080/api/quotes/MSFT")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-instance"], "mine");
    let pids: Vec<i64> = state(&state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["pid"].as_i64())
        .collect();
    // The user's server, its balancer and the console.
    assert_eq!(pids.len(), 3);
    let status = tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived `up`");
    }
}
