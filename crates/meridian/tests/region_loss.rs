//! Losing the writer region with its data: `meridian chaos kill-region` freezes every node
//! of us-east-1 (balancer, instances, both database nodes and their PostgreSQL) under a
//! write load from the other regions and direct writes to every database node. A replica
//! elsewhere is promoted within 30 s, no two nodes ever take writes at once, the old
//! primary takes no write once thawed and comes back as a replica (pg_rewind).

use std::process::Command;

mod common;
use common::start_up;

const CONFIG: &str = r#"
[deployment]
name = "region-loss"
zone = "loss.example"

[network]
subnet = "127.47.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a"]

[[region]]
name = "ap-southeast-1"
location = { lat = 1.35, lon = 103.82 }
azs = ["ap-southeast-1a"]

[service]
instances_per_az = 1

[database]
home_region = "us-east-1"
lease = "2s"

[supervisor]
restart_backoff = "200ms"
restart_backoff_max = "1s"

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "16MiB"
disk_cache = "0B"

[distribution]
access_log = false
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1", "lb:eu-west-1", "lb:ap-southeast-1"]
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
[[dns.record.answer]]
id = "ap-southeast-1"
alias = "lb:ap-southeast-1"
[[dns.record]]
name = "cdn"
type = "A"
policy = "geoproximity"
ttl = "1s"
[[dns.record.answer]]
id = "london"
alias = "pop:london"

[console]
enabled = false

[simulation]
wan = true

[[client_location]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
"#;

/// Runs `meridian chaos ARGS` (5 requests/s) against the deployment in `state_dir`: its
/// JSON report, exit status, stdout and stderr.
fn chaos(
    dir: &std::path::Path,
    state_dir: &std::path::Path,
    args: &[&str],
) -> (serde_json::Value, std::process::ExitStatus, String, String) {
    let out = dir.join("chaos");
    let run = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("chaos")
        .args(args)
        .args(["--rate", "5", "--out"])
        .arg(&out)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("chaos.json"))
            .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}")),
    )
    .unwrap();
    (report, run.status, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_elsewhere_takes_over_when_the_writer_region_freezes() {
    let dir = common::tempdir();
    let cfg = dir.join("loss.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _printed) = start_up(&cfg, &state_dir).await;

    let (report, run, stdout, stderr) = chaos(
        &dir,
        &state_dir,
        &[
            "kill-region",
            "us-east-1",
            "--duration",
            "50s",
            "--outage",
            "20s",
        ],
    );
    let data = &report["data"];
    eprintln!("{stdout}");
    assert_eq!(data["primary_before"], "db-us-east-1a", "{data}");
    let after = data["primary_after"].as_str().unwrap_or_default();
    assert!(
        after == "db-eu-west-1a" || after == "db-ap-southeast-1a",
        "a replica of another region leads: {data}"
    );
    let promoted = data["promoted_after_seconds"].as_f64().expect("promoted");
    assert!(promoted < 30.0, "promoted after {promoted}s: {data}");
    assert_eq!(data["two_writers"], false, "{data}");
    assert_eq!(data["old_primary_writes_after_promotion"], 0, "{data}");
    assert!(
        data["acknowledged"].as_u64().unwrap() > 20,
        "writes went on: {data}"
    );
    assert!(
        data["rto_seconds"].as_f64().is_some_and(|t| t < 30.0),
        "writes came back: {data}"
    );
    assert!(
        data["old_primary_rejoined_after_seconds"]
            .as_f64()
            .is_some(),
        "the old primary streams as a standby again: {data}"
    );
    assert!(run.success(), "{stdout}\n{stderr}");

    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
}

/// Losing the writer's AZ: `meridian chaos kill-az` freezes every node of us-east-1a, the
/// primary database node among them, and its report says so: the data tier's watch runs
/// as for a region, and a replica takes over with no two writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_writers_az_is_reported_with_the_data_tier() {
    let dir = common::tempdir();
    let cfg = dir.join("az.toml");
    std::fs::write(
        &cfg,
        CONFIG
            .replace("127.47.0.0/16", "127.73.0.0/16")
            .replace("name = \"region-loss\"", "name = \"az-loss\""),
    )
    .unwrap();
    let state_dir = dir.join("state");
    let (mut up, _printed) = start_up(&cfg, &state_dir).await;
    let (report, run, stdout, stderr) = chaos(
        &dir,
        &state_dir,
        &[
            "kill-az",
            "us-east-1a",
            "--duration",
            "25s",
            "--outage",
            "12s",
        ],
    );
    let data = &report["data"];
    assert_eq!(data["primary_before"], "db-us-east-1a", "{data}");
    let after = data["primary_after"].as_str().unwrap_or_default();
    assert!(
        !after.is_empty() && after != "db-us-east-1a",
        "another node leads: {data}"
    );
    assert_eq!(data["two_writers"], false, "{data}");
    assert!(
        stdout.contains("db-us-east-1a"),
        "the report names the data tier: {stdout}"
    );
    assert!(run.success(), "{stdout}\n{stderr}");
    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
}
