//! Through `meridian up`: the disk cache key is made with the other secrets, an
//! invalidation by `meridian invalidate` and a refused attempt reach the PoP's audit file,
//! `meridian audit` prints them and the console's audit panel shows them newest first.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{first_node, get, start_up};

const CONFIG: &str = r#"
[deployment]
name = "audit-up"
zone = "audit.example"

[network]
subnet = "127.86.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[supervisor]
restart_backoff = "300ms"
stop_timeout = "5s"

[[edge]]
name = "paris"
location = { lat = 48.85, lon = 2.35 }
memory_cache = "16MiB"
disk_cache = "16MiB"

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_through_up_are_audited_and_shown() {
    let dir = common::tempdir();
    let cfg = dir.join("audit.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _) = start_up(&cfg, &state_dir).await;

    use std::os::unix::fs::PermissionsExt;
    let key = state_dir.join("disk-cache-key");
    let meta = std::fs::metadata(&key).expect("up made the disk cache key");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);

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
    let edge = first_node(&state_dir, "edge");
    let admin = edge["admin"].as_str().unwrap().to_owned();
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));
    let req = http::Request::post(format!("http://{admin}/invalidate"))
        .body(meridian_http::full(r#"{"paths":["/x"]}"#))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 401);
    // The supervisor's admin actions (rollouts, applies, restarts) are audited too.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("endpoints.json")).unwrap())
            .unwrap();
    let supervisor = state["supervisor_admin"].as_str().unwrap().to_owned();
    let req = http::Request::post(format!("http://{supervisor}/rollout?version=2"))
        .body(meridian_http::empty())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 401);

    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["audit", "--json", "--since", "10m", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = std::fs::read_to_string(state_dir.join("admin-token")).unwrap();
    assert!(!text.contains(token.trim()), "no token in the audit output");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_owned(),
                e["result"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("edge-paris".to_owned(), 200),
            ("edge-paris".to_owned(), 401),
            ("supervisor".to_owned(), 401)
        ],
        "{text}"
    );
    assert_eq!(events[0]["target"], "/static/*");
    assert_eq!(events[2]["action"], "POST /rollout", "{text}");

    let console = first_node(&state_dir, "console");
    let url = format!("http://{}/api/audit", console["address"].as_str().unwrap());
    let (s, _, body) = get(&client, &url).await.unwrap();
    assert_eq!(s, 200);
    let shown: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    let shown: Vec<u64> = shown
        .iter()
        .map(|e| e["result"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, [401, 401, 200], "newest first");
    up.stop();
}
