//! `meridian rollout` against a running `meridian up`, under a steady load through the
//! balancers: a rollout to a new version replaces every instance with no failed request;
//! a rollout to a version that fails its health checks is rolled back by the circuit
//! breaker, again with no failed request, and the reason is in the events; a version that
//! answers 5xx is rolled back on the region's 5xx rate during the bake time.

use std::time::{Duration, Instant};

mod common;
use common::rollout::{
    assert_instances_run, failures as failed_in, instances, versions as versions_in, Load,
};
use common::{get, rollout, start_up};

/// Two regions (the primary with two AZs) on 127.67.0.0/16, this test's own subnet.
const CONFIG: &str = r#"
[deployment]
name = "rollout"
zone = "rollout.example"

[network]
subnet = "127.67.0.0/16"

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a"]

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[service]
runtime = "demo"
instances_per_az = 1

[service.deployment]
minimum_healthy_percent = 100
maximum_percent = 200
health_check_timeout = "4s"
max_5xx_rate = 0.01
bake_time = "2s"

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
async fn rollout_replaces_every_instance_and_a_broken_version_rolls_back() {
    let dir = common::tempdir();
    let cfg = dir.join("rollout.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (_up, _) = start_up(&cfg, &state_dir).await;
    assert_instances_run(&state_dir, 3, "1").await;
    let lbs = vec!["127.67.1.1:8080".to_owned(), "127.67.2.1:8080".to_owned()];

    // A good version: every instance replaced, no request failed, traffic moves over.
    let load = Load::start(lbs.clone(), Duration::from_millis(5));
    let (code, stdout, stderr) = rollout(&state_dir, "2").await;
    let seen = load.finish().await;
    let (sent, failures, versions) = (seen.len(), failed_in(&seen), versions_in(&seen));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("every instance runs version 2"), "{stdout}");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 50, "only {sent} requests were sent");
    assert_eq!(versions.first().map(String::as_str), Some("1"));
    assert_eq!(versions.last().map(String::as_str), Some("2"));
    // The primary region goes first: its lines come before eu-west-1's.
    let primary = stderr.find("us-east-1 / us-east-1a").expect(&stderr);
    let other = stderr.find("eu-west-1 / eu-west-1a").expect(&stderr);
    assert!(primary < other, "{stderr}");
    assert_instances_run(&state_dir, 3, "2").await;
    let names: Vec<String> = instances(&state_dir).into_iter().map(|i| i.0).collect();
    assert!(names.iter().all(|n| n.ends_with("-b")), "{names:?}");

    // A version that fails its health checks: the circuit breaker rolls it back.
    let load = Load::start(lbs.clone(), Duration::from_millis(5));
    let (code, stdout, stderr) = rollout(&state_dir, "3-broken").await;
    let seen = load.finish().await;
    let (sent, failures, versions) = (seen.len(), failed_in(&seen), versions_in(&seen));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("rolled back to version 2")
            && stdout.contains("did not pass its health checks"),
        "{stdout}"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(
        versions.iter().all(|v| v == "2"),
        "a broken instance served"
    );
    assert_instances_run(&state_dir, 3, "2").await;
    let events = std::fs::read_to_string(state_dir.join("events.log")).unwrap();
    assert!(
        events.contains(
            "circuit breaker: svc-us-east-1a-1 (version 3-broken) did not pass its health checks"
        ),
        "{events}"
    );
    assert!(
        events.contains("rolled back: every instance runs version 2"),
        "{events}"
    );
    // The console's source: the supervisor's rollout series carries the state and why.
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
    let (_, _, metrics) = get(&client, "http://127.67.0.1:9900/metrics")
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    let line = metrics
        .lines()
        .find(|l| l.contains("version=\"3-broken\"") && l.contains("state=\"rolled_back\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains("did not pass its health checks") && line.ends_with(" 1"),
        "{line}"
    );

    // The next good version moves the instances back to their first homes.
    let (code, stdout, _) = rollout(&state_dir, "4").await;
    assert_eq!(code, 0, "{stdout}");
    assert_instances_run(&state_dir, 3, "4").await;
    let names: Vec<String> = instances(&state_dir).into_iter().map(|i| i.0).collect();
    assert!(names.iter().all(|n| !n.ends_with("-b")), "{names:?}");

    // A version that passes its health checks but fails requests: the region's 5xx rate
    // trips the breaker while the new instance bakes beside the old ones.
    let load = Load::start(lbs.clone(), Duration::from_millis(5));
    let (code, stdout, stderr) = rollout(&state_dir, "5-5xx").await;
    let failures = failed_in(&load.finish().await);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("rolled back to version 4") && stdout.contains("lb-us-east-1's 5xx rate"),
        "{stdout}"
    );
    assert!(
        failures.iter().all(|f| f.contains(" 500 ")),
        "only the faulty version's answers failed: {failures:?}"
    );
    assert_instances_run(&state_dir, 3, "4").await;
    let load = Load::start(lbs, Duration::from_millis(5));
    let until = Instant::now() + Duration::from_secs(30);
    while load.answered() < 20 {
        assert!(Instant::now() < until, "the load stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = load.finish().await;
    let (failures, versions) = (failed_in(&seen), versions_in(&seen));
    assert!(failures.is_empty(), "{failures:?}");
    assert!(versions.iter().all(|v| v == "4"), "{versions:?}");
}
