//! The simulated planet end to end on a small deployment with WAN relays: `meridian bench
//! global` writes its three reports and the edge beats "before" far from the primary, and
//! a short `meridian chaos kill-region` loses no request for cacheable content and sees
//! the region leave and come back.

use std::process::Command;

mod common;
use common::start_up;

const CONFIG: &str = r#"
[deployment]
name = "sim-e2e"
zone = "sim.example"

[network]
subnet = "127.46.0.0/16"

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

[supervisor]
stop_timeout = "5s"

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "64MiB"
disk_cache = "0B"

[distribution]
access_log = false
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1", "lb:eu-west-1"]
response_timeout = "2s"
[distribution.origin_group.health_check]
timeout = "900ms"
[[distribution.cache_policy]]
name = "default"
default_ttl = "300s"
query_strings = "all"
[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 1
[[dns.record]]
name = "api"
type = "A"
policy = "latency"
ttl = "1s"
[[dns.record.answer]]
id = "us-east-1"
alias = "lb:us-east-1"
[[dns.record.answer]]
id = "eu-west-1"
alias = "lb:eu-west-1"
[[dns.record]]
name = "cdn"
type = "A"
policy = "geoproximity"
ttl = "1s"
[[dns.record.answer]]
id = "london"
alias = "pop:london"

[simulation]
wan = true

[[client_location]]
name = "new-york"
location = { lat = 40.71, lon = -74.01 }

[[client_location]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_global_and_a_short_chaos_run() {
    let dir = common::tempdir();
    let cfg = dir.join("sim.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, printed) = start_up(&cfg, &state_dir).await;
    assert!(printed.contains("wan"), "{printed}");

    let out = dir.join("global");
    let run = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "bench",
            "global",
            "--duration",
            "6s",
            "--rate",
            "10",
            "--out",
        ])
        .arg(&out)
        .arg("--state-dir")
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in ["report.md", "report.json", "latency.svg"] {
        assert!(out.join(f).exists(), "{f} written");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let london = report["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "london")
        .unwrap()
        .clone();
    let p50 = |arch: &str| london["results"][arch]["p50_ms"].as_f64().unwrap();
    // London to us-east-1 is ~90 ms modelled; to the London PoP ~2 ms.
    assert!(p50("Before") > 60.0, "{london}");
    assert!(p50("Full") < p50("Before") / 3.0, "{london}");
    assert!(std::fs::read_to_string(out.join("latency.svg"))
        .unwrap()
        .starts_with("<svg"));

    let chaos_dir = dir.join("chaos");
    let run = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "chaos",
            "kill-region",
            "eu-west-1",
            "--duration",
            "8s",
            "--outage",
            "4s",
            "--rate",
            "10",
            "--out",
        ])
        .arg(&chaos_dir)
        .arg("--state-dir")
        .arg(&state_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let chaos: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chaos_dir.join("chaos.json")).unwrap())
            .unwrap();
    assert_eq!(chaos["failed_cacheable"], 0, "{chaos}");
    assert!(chaos["requests"].as_u64().unwrap() > 50, "{chaos}");
    assert!(
        chaos["edge_detect_seconds"].as_f64().is_some(),
        "the PoP noticed: {chaos}"
    );
    assert!(
        chaos["recovery_seconds"].as_f64().is_some(),
        "the region came back: {chaos}"
    );

    let status = tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
