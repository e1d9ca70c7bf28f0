//! `meridian rollout --strategy canary|blue-green` against a running `meridian up`, under a
//! steady load through both regions' balancers: during a canary's bake the new version
//! takes about its percent of the primary region's requests (and none of the other
//! region's, which waits its turn); the rollout completes with no failed request and the
//! balancer back to its groups alone; a canary that answers 5xx rolls back by itself
//! during the bake, every instance on the old version, and one that fails its health
//! checks never takes a request; a blue/green shift with a
//! termination wait, and a linear one, complete with no failed request; the console shows
//! both versions side by side while a canary takes traffic.

use std::time::{Duration, Instant};

mod common;
use common::rollout::{assert_instances_run, failures, instances, Load};
use common::{get, rollout_with, start_up, state};

/// Two regions (the primary with two AZs) on 127.74.0.0/16, this test's own subnet.
const CONFIG: &str = r#"
[deployment]
name = "canary"
zone = "canary.example"

[network]
subnet = "127.74.0.0/16"

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
health_check_timeout = "4s"
max_5xx_rate = 0.01

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

const US: &str = "127.74.2.1:8080";
const EU: &str = "127.74.1.1:8080";
const SUPERVISOR: &str = "127.74.0.1:9900";

/// The primary balancer looks as it did before a rollout: its green twin takes no share
/// and holds no registered target, and the group's registered targets are exactly the
/// running instances of the region.
async fn assert_balancer_settled(state_dir: &std::path::Path) {
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
    let (_, _, body) = get(&client, "http://127.74.2.1:9900/target-groups")
        .await
        .unwrap();
    let groups: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for g in groups["target_groups"].as_array().unwrap() {
        assert_eq!(g["twin_percent"], 0, "{groups}");
    }
    let (_, _, body) = get(&client, "http://127.74.2.1:9900/targets")
        .await
        .unwrap();
    let targets: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut registered: Vec<(String, bool)> = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "registered")
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["target_group"].as_str().unwrap().ends_with("-green"),
            )
        })
        .collect();
    registered.sort();
    let mut running: Vec<(String, bool)> = instances(state_dir)
        .into_iter()
        .filter(|i| i.0.contains("us-east-1"))
        .map(|i| (i.0, false))
        .collect();
    running.sort();
    assert_eq!(registered, running, "{targets}");
}

/// Watches the supervisor's `GET /rollout` until it ends: when each step first showed;
/// and the console's overview, for the first region card that showed both versions.
async fn steps_seen(until: Instant, console: &str) -> (Vec<(Instant, String)>, serde_json::Value) {
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
    let mut out: Vec<(Instant, String)> = Vec::new();
    let mut side_by_side = serde_json::Value::Null;
    while Instant::now() < until {
        if side_by_side.is_null() {
            if let Ok((200, _, body)) =
                get(&client, &format!("http://{console}/api/overview")).await
            {
                let o: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(r) = o["regions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["versions"].as_array().is_some_and(|v| !v.is_empty()))
                {
                    side_by_side = r.clone();
                }
            }
        }
        if let Ok((200, _, body)) = get(&client, &format!("http://{SUPERVISOR}/rollout")).await {
            let r: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            for s in r["steps"].as_array().into_iter().flatten().skip(out.len()) {
                out.push((Instant::now(), s.as_str().unwrap_or_default().to_owned()));
            }
            if r["state"] != "running" && !out.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (out, side_by_side)
}

fn step_at(steps: &[(Instant, String)], text: &str) -> Instant {
    steps
        .iter()
        .find(|s| s.1.contains(text))
        .unwrap_or_else(|| panic!("no step says `{text}`: {steps:?}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_takes_its_share_then_all_and_a_5xx_canary_rolls_back() {
    let dir = common::tempdir();
    let cfg = dir.join("canary.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (_up, _) = start_up(&cfg, &state_dir).await;
    assert_instances_run(&state_dir, 3, "1").await;

    // A good version at 5% for a 6 s bake, then all of it.
    let load = Load::start(vec![US.to_owned(), EU.to_owned()], Duration::from_millis(3));
    let began = Instant::now();
    let sd = state_dir.clone();
    let cli = tokio::spawn(async move {
        let flags = [
            "--strategy",
            "canary",
            "--canary-percent",
            "5",
            "--bake",
            "6s",
        ];
        rollout_with(&sd, "2", &flags).await
    });
    let console = state(&state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "console")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let (steps, side_by_side) =
        steps_seen(Instant::now() + Duration::from_secs(100), &console).await;
    let (code, stdout, stderr) = cli.await.unwrap();
    let seen = load.finish().await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("every instance runs version 2"), "{stdout}");
    let failed = failures(&seen);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    // The bake: from the 5% shift until the 100% one, in the primary region.
    let (from, to) = (
        step_at(&steps, "us-east-1: 5% of traffic"),
        step_at(&steps, "us-east-1: 100% of traffic"),
    );
    let window = |lb: &str| -> Vec<&str> {
        seen.iter()
            // A little inside the window: the steps are seen by polling.
            .filter(|(t, l, _)| *l == lb && *t > from + Duration::from_millis(200) && *t < to)
            .filter_map(|(_, _, r)| r.as_ref().ok().map(String::as_str))
            .collect()
    };
    let (us, eu) = (window(US), window(EU));
    let new = us.iter().filter(|v| **v == "2").count();
    let share = new as f64 / us.len() as f64;
    eprintln!(
        "canary bake: {new} of {} primary-region answers from version 2 ({:.1}%), {} eu answers; rollout took {:.1}s, {} requests, 0 failed",
        us.len(),
        share * 100.0,
        eu.len(),
        began.elapsed().as_secs_f64(),
        seen.len()
    );
    assert!(
        us.len() >= 100,
        "only {} requests during the bake",
        us.len()
    );
    assert!(us.iter().all(|v| *v == "1" || *v == "2"), "{us:?}");
    assert!(
        (0.025..=0.075).contains(&share),
        "share {share} of {}",
        us.len()
    );
    assert!(eu.iter().all(|v| *v == "1"), "eu-west-1 waits its turn");
    // The primary region went first, and the last answers are the new version's.
    assert!(step_at(&steps, "us-east-1: 100%") < step_at(&steps, "eu-west-1: 5%"));
    assert_eq!(
        seen.last()
            .and_then(|s| s.2.as_ref().ok())
            .map(String::as_str),
        Some("2")
    );
    assert_instances_run(&state_dir, 3, "2").await;
    assert_balancer_settled(&state_dir).await;
    // The console showed both versions side by side in the region card meanwhile.
    let versions = &side_by_side["versions"];
    assert_eq!(versions[0]["side"], "blue", "{side_by_side}");
    assert_eq!(versions[0]["version"], "1", "{side_by_side}");
    assert_eq!(versions[1]["side"], "green", "{side_by_side}");
    assert_eq!(versions[1]["version"], "2", "{side_by_side}");
    assert!(
        versions[1]["rps"].as_f64().is_some_and(|x| x > 0.0),
        "{side_by_side}"
    );
    assert_eq!(versions[1]["error_rate"], 0.0, "{side_by_side}");

    // A canary that answers 5xx: the alarm rings during the bake and all goes back.
    let load = Load::start(vec![US.to_owned(), EU.to_owned()], Duration::from_millis(3));
    let began = Instant::now();
    let flags = [
        "--strategy",
        "canary",
        "--canary-percent",
        "20",
        "--bake",
        "20s",
    ];
    let (code, stdout, stderr) = rollout_with(&state_dir, "3-5xx", &flags).await;
    let took = began.elapsed();
    // Some answers after the rollback: every one from the old version.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = load.finish().await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("rolled back to version 2")
            && stdout.contains("the new version's 5xx rate"),
        "{stdout}"
    );
    assert!(
        took < Duration::from_secs(20),
        "rolled back before the bake ended: {took:?}"
    );
    let failed = failures(&seen);
    // What fails is the canary's own answers (the demo's 500s), a bounded few: only its
    // share of one region until the alarm rang.
    assert!(
        failed.iter().all(|f| f.contains(" 500 ")),
        "only the faulty version's answers failed: {failed:?}"
    );
    assert!(
        failed.len() * 10 < seen.len(),
        "{} of {} failed",
        failed.len(),
        seen.len()
    );
    eprintln!(
        "5xx canary: rolled back in {:.1}s, {} of {} requests were the canary's 500s",
        took.as_secs_f64(),
        failed.len(),
        seen.len()
    );
    let after = seen.iter().rev().take(20);
    assert!(
        after.clone().all(|s| s.2.as_deref() == Ok("2")),
        "{:?}",
        after.collect::<Vec<_>>()
    );
    assert_instances_run(&state_dir, 3, "2").await;
    assert_balancer_settled(&state_dir).await;
    let events = std::fs::read_to_string(state_dir.join("events.log")).unwrap();
    assert!(events.contains("all traffic back to version 2"), "{events}");

    // A canary that never passes its health checks never takes a request.
    let load = Load::start(vec![US.to_owned(), EU.to_owned()], Duration::from_millis(3));
    let flags = [
        "--strategy",
        "canary",
        "--canary-percent",
        "20",
        "--bake",
        "20s",
    ];
    let (code, stdout, stderr) = rollout_with(&state_dir, "3-broken", &flags).await;
    let seen = load.finish().await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("rolled back to version 2")
            && stdout.contains("did not pass its health checks"),
        "{stdout}"
    );
    let failed = failures(&seen);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert!(
        seen.iter().all(|s| s.2.as_deref() == Ok("2")),
        "a broken instance served"
    );
    assert_instances_run(&state_dir, 3, "2").await;
    assert_balancer_settled(&state_dir).await;

    // Blue/green: all at once once green is healthy; blue waits 2 s, then goes.
    let load = Load::start(vec![US.to_owned(), EU.to_owned()], Duration::from_millis(3));
    let began = Instant::now();
    let flags = ["--strategy", "blue-green", "--termination-wait", "2s"];
    let (code, stdout, stderr) = rollout_with(&state_dir, "4", &flags).await;
    let seen = load.finish().await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let failed = failures(&seen);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert!(
        stderr.contains("us-east-1: 100% of traffic to version 4"),
        "{stderr}"
    );
    eprintln!(
        "blue/green: {:.1}s, {} requests, 0 failed",
        began.elapsed().as_secs_f64(),
        seen.len()
    );
    assert_instances_run(&state_dir, 3, "4").await;
    assert_balancer_settled(&state_dir).await;

    // Linear: 50% more every second, to all.
    let load = Load::start(vec![US.to_owned(), EU.to_owned()], Duration::from_millis(3));
    let flags = [
        "--strategy",
        "linear",
        "--step-percent",
        "50",
        "--step-interval",
        "1s",
    ];
    let (code, stdout, stderr) = rollout_with(&state_dir, "5", &flags).await;
    let seen = load.finish().await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let failed = failures(&seen);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    let fifty = stderr
        .find("us-east-1: 50% of traffic to version 5")
        .expect(&stderr);
    let all = stderr
        .find("us-east-1: 100% of traffic to version 5")
        .expect(&stderr);
    assert!(fifty < all, "{stderr}");
    assert_instances_run(&state_dir, 3, "5").await;
    assert_balancer_settled(&state_dir).await;
}
