//! Autoscaling (ECS service auto scaling, target tracking on requests per target) against
//! a running `meridian up`: a load step that doubles the requests per target scales the
//! region out within 30 s, a rollout then replaces the added instance too, and once the
//! load drops the region scales back in after the scale-in cooldown; no request fails
//! while instances join and leave.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{get, rollout, start_up, state};

/// One region with two AZs on 127.69.0.0/16, this test's own subnet: 2 instances to start,
/// at most 4, tracking 15 requests per second per instance.
const CONFIG: &str = r#"
[deployment]
name = "scale"
zone = "scale.example"

[network]
subnet = "127.69.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[service]
runtime = "demo"
instances_per_az = 1
processing_time = "5ms"

[service.autoscaling]
min = 2
max = 4
metric = "requests_per_target"
target = 15
scale_out_cooldown = "10s"
scale_in_cooldown = "25s"
metric_interval = "1s"

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

const LB: &str = "127.69.1.1:8080";
const SUPERVISOR: &str = "127.69.0.1:9900";

/// GETs through the balancer at `rate` per second (changed while it runs), each on its
/// own task so a slow answer does not slow the rate; at most 20,000 of them or three
/// minutes: (requests, failures with what failed).
struct Load {
    rate: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU32::new(rate));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, r, f) = (stop.clone(), rate.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let client =
                meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
            let began = Instant::now();
            let mut next = tokio::time::Instant::now();
            let mut inflight = Vec::new();
            let mut sent = 0usize;
            while !s.load(Ordering::Relaxed)
                && sent < 20_000
                && began.elapsed() < Duration::from_secs(180)
            {
                next += Duration::from_secs_f64(1.0 / f64::from(r.load(Ordering::Relaxed)));
                tokio::time::sleep_until(next).await;
                sent += 1;
                let (client, f) = (client.clone(), f.clone());
                inflight.push(tokio::spawn(async move {
                    match get(&client, &format!("http://{LB}/api/quotes/AAPL")).await {
                        Ok((200, _, _)) => {}
                        Ok((status, _, body)) => f
                            .lock()
                            .unwrap()
                            .push(format!("{status} {}", String::from_utf8_lossy(&body))),
                        Err(e) => f.lock().unwrap().push(e),
                    }
                }));
            }
            for t in inflight {
                let _ = t.await;
            }
            sent
        });
        Load {
            rate,
            stop,
            task,
            failures,
        }
    }

    fn set_rate(&self, rate: u32) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.task.await.unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (sent, failures)
    }
}

/// The region's entry of the supervisor's `GET /autoscaling`.
async fn region(client: &meridian_http::UpstreamClient) -> serde_json::Value {
    let (status, _, body) = get(client, &format!("http://{SUPERVISOR}/autoscaling"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["regions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["region"] == "us-east-1"))
        .cloned()
        .unwrap_or_else(|| panic!("no us-east-1 in {v}"))
}

/// Polls `GET /autoscaling` until `done` holds, at most `within`; the last answer.
async fn wait_for(
    client: &meridian_http::UpstreamClient,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = region(client).await;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}: {r}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn running_instances(state_dir: &std::path::Path) -> Vec<String> {
    state(state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "service")
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_load_scales_out_and_back_in_with_no_failed_request() {
    let dir = common::tempdir();
    let cfg = dir.join("scale.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (_up, _) = start_up(&cfg, &state_dir).await;
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
    let before = region(&client).await;
    assert_eq!(
        (before["desired"].as_u64(), before["running"].as_u64()),
        (Some(2), Some(2)),
        "{before}"
    );
    assert_eq!(before["metric"], "requests_per_target");

    // R: 20 requests/s, 10 per instance, under the target of 15: nothing changes.
    let load = Load::start(20);
    let steady = wait_for(
        &client,
        Duration::from_secs(20),
        "a datapoint at the base load",
        |r| r["value"].as_f64().is_some_and(|v| v > 5.0),
    )
    .await;
    assert_eq!(steady["running"], 2, "{steady}");
    assert!(steady["last_event"].is_null(), "{steady}");

    // 2R: 20 per instance, over the target; ceil(2 x 20 / 15) = 3 instances.
    let step = Instant::now();
    load.set_rate(40);
    let out = wait_for(&client, Duration::from_secs(30), "a scale-out", |r| {
        r["running"].as_u64() >= Some(3)
    })
    .await;
    eprintln!("scaled out {:?} after the step: {out}", step.elapsed());
    assert_eq!(out["last_event"]["direction"], "out", "{out}");
    assert_eq!(out["last_event"]["state"], "succeeded", "{out}");
    let added = running_instances(&state_dir);
    // 3 as the policy computes it; 4 if the load generator caught up in a burst.
    let scaled_to = out["running"].as_u64().unwrap() as usize;
    assert_eq!(added.len(), scaled_to, "{added:?}");
    assert!(added.iter().any(|n| n == "svc-us-east-1a-2"), "{added:?}");
    let endpoints = state(&state_dir);
    assert_eq!(
        endpoints["autoscaling"][0]["region"], "us-east-1",
        "{endpoints}"
    );
    assert!(endpoints["autoscaling"][0]["running"].as_u64() >= Some(3));
    assert!(load.failures().is_empty(), "{:?}", load.failures());
    let scaled_out_at = out["last_event"]["at"].as_u64().unwrap();

    // A rollout replaces the added instance too, and nothing scales while it runs.
    let (code, stdout, stderr) = rollout(&state_dir, "2").await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let nodes = state(&state_dir)["nodes"].as_array().unwrap().clone();
    let services: Vec<_> = nodes.iter().filter(|n| n["role"] == "service").collect();
    assert_eq!(services.len(), scaled_to, "{services:?}");
    assert!(services.iter().all(|n| n["version"] == "2"), "{services:?}");
    assert!(
        services.iter().any(|n| n["name"] == "svc-us-east-1a-2-b"),
        "{services:?}"
    );
    assert_eq!(region(&client).await["last_event"]["direction"], "out");

    // Back to R (fewer than 7 per instance): in after 15 low datapoints and the cooldown.
    load.set_rate(20);
    let back = wait_for(&client, Duration::from_secs(60), "a scale-in", |r| {
        r["running"] == 2 && r["last_event"]["direction"] == "in"
    })
    .await;
    let scaled_in_at = back["last_event"]["at"].as_u64().unwrap();
    assert!(
        scaled_in_at >= scaled_out_at + 25,
        "scaled in {}s after scaling out, inside the 25s cooldown: {back}",
        scaled_in_at - scaled_out_at
    );
    assert_eq!(back["last_event"]["state"], "succeeded", "{back}");
    assert_eq!(back["desired"], 2, "{back}");
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 500, "only {sent} requests were sent");
    assert_eq!(running_instances(&state_dir).len(), 2);

    // Each activity counted, and written to the event log.
    let (_, _, metrics) = get(&client, &format!("http://{SUPERVISOR}/metrics"))
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        "meridian_supervisor_scaling_events_total{region=\"us-east-1\",direction=\"out\"} 1",
        "meridian_supervisor_scaling_events_total{region=\"us-east-1\",direction=\"in\"} 1",
        "meridian_supervisor_running_instances{region=\"us-east-1\"} 2",
        "meridian_supervisor_desired_instances{region=\"us-east-1\"} 2",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    let events = std::fs::read_to_string(state_dir.join("events.log")).unwrap();
    assert!(
        events.contains(&format!(
            "autoscaling: us-east-1 scaling out from 2 to {scaled_to}:"
        )),
        "{events}"
    );
    assert!(
        events.contains(&format!(
            "autoscaling: us-east-1 scaling in from {scaled_to} to 2:"
        )),
        "{events}"
    );
}
