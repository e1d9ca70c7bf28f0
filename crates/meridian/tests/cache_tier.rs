//! `meridian up` with a `[cache]`: a real Redis primary and replica in two AZs, the
//! region's primary endpoint, `meridian health` over them, failover when the primary's
//! redis-server is killed, and nothing left behind. On its own subnet, 127.81.0.0/16.

use meridian_redis::resp::Client;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;
use common::{start_up, state};

const CONFIG: &str = r#"
[deployment]
name = "cache"
zone = "cache.example"

[network]
subnet = "127.81.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[service]
instances_per_az = 1

[cache]
maxmemory = "16MiB"
failover = "2s"

[console]
enabled = false

[dns]
servers = 0
"#;

const PRIMARY: &str = "127.81.1.70:6379";
const REPLICA: &str = "127.81.1.71:6379";
const ENDPOINT: &str = "127.81.1.79:6379";
const LB: &str = "127.81.1.1:8080";

async fn client(addr: &str, password: &str) -> Option<Client> {
    let addr: SocketAddr = addr.parse().unwrap();
    Client::connect(addr, Some(password), Duration::from_secs(2))
        .await
        .ok()
}

async fn role(addr: &str, password: &str) -> Option<String> {
    let mut c = client(addr, password).await?;
    c.info("replication")
        .await
        .ok()?
        .get("role")
        .map(str::to_owned)
}

async fn get(addr: &str, password: &str, key: &str) -> Option<Vec<u8>> {
    client(addr, password).await?.get(key).await.ok().flatten()
}

/// Polls `cond` every 100 ms until it holds, or fails after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn health(state_dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("health")
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// How the region's instances served a quote, through its load balancer: the status and the
/// `Meridian-Quote-Cache` header.
async fn quote(symbol: &str) -> (u16, String) {
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(5));
    let (code, headers, _) = common::get(&client, &format!("http://{LB}/api/quotes/{symbol}"))
        .await
        .unwrap_or_else(|e| panic!("the load balancer answers: {e}"));
    let cache = headers
        .get("meridian-quote-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned();
    (code, cache)
}

/// redis-server pids, from the keepers' /status.
async fn redis_pid(admin: &str) -> i32 {
    let addr: SocketAddr = admin.parse().unwrap();
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(5));
    let (code, _, body) = common::get(&client, &format!("http://{addr}/status"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
    s["pid"].as_i64().expect("a pid in /status") as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_multi_az_cache_cluster_that_fails_over() {
    let dir = common::tempdir();
    let cfg = dir.join("cache.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, printed) = start_up(&cfg, &state_dir).await;
    for (node, addr) in [
        ("redis-us-east-1a", "redis://127.81.1.70:6379"),
        ("redis-us-east-1b", "redis://127.81.1.71:6379"),
    ] {
        assert!(
            printed.contains(node) && printed.contains(addr),
            "{node} at {addr}:\n{printed}"
        );
    }
    assert!(
        printed.contains("us-east-1 redis://127.81.1.79:6379"),
        "{printed}"
    );
    let password = std::fs::read_to_string(state_dir.join("cache-password")).unwrap();
    let password = password.trim().to_owned();
    let pw = password.as_str();

    // Through the region's primary endpoint to the primary, and copied to the replica.
    let mut e = client(ENDPOINT, pw)
        .await
        .expect("the primary endpoint answers");
    e.set("quote:AAPL", b"189.95").await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the replica has the key",
        || async { get(REPLICA, pw, "quote:AAPL").await.is_some() },
    )
    .await;
    assert_eq!(role(PRIMARY, pw).await.as_deref(), Some("master"));
    assert_eq!(role(REPLICA, pw).await.as_deref(), Some("slave"));

    // The instances cache quotes in the region's Redis: whichever instance the balancer
    // picks, a quote made by one is a hit for the other (a window boundary aside).
    let (code, first) = quote("NVDA").await;
    assert_eq!((code, first.as_str()), (200, "miss"));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (code, how) = quote("NVDA").await;
        assert_eq!(code, 200);
        seen.push(how);
    }
    assert!(seen.iter().any(|h| h == "hit"), "{seen:?}");

    // The state file and `meridian health` cover the cache nodes.
    let cache_nodes: Vec<serde_json::Value> = state(&state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "cache")
        .cloned()
        .collect();
    assert_eq!(cache_nodes.len(), 2, "{cache_nodes:?}");
    let (ok, report) = health(&state_dir);
    assert!(ok, "{report}");
    assert!(report.contains("redis-us-east-1b"), "{report}");

    // kill -9 of the primary's redis-server: the replica takes over with the data, the
    // endpoint follows, and the old primary comes back as a replica.
    let pids = [
        redis_pid("127.81.1.70:9900").await,
        redis_pid("127.81.1.71:9900").await,
    ];
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
    }
    let took = wait_for(
        Duration::from_secs(8),
        "the replica is promoted",
        || async { role(REPLICA, pw).await.as_deref() == Some("master") },
    )
    .await;
    eprintln!("promoted {took:?} after kill -9");
    // Quotes never failed meanwhile, and come from the cache again once the endpoint leads
    // to the new primary.
    wait_for(
        Duration::from_secs(10),
        "quotes hit the cache after the failover",
        || async {
            let (code, how) = quote("AMZN").await;
            assert_eq!(code, 200, "a quote failed during the failover");
            how == "hit"
        },
    )
    .await;
    assert_eq!(
        get(REPLICA, pw, "quote:AAPL").await.as_deref(),
        Some(&b"189.95"[..]),
        "no data lost"
    );
    wait_for(
        Duration::from_secs(10),
        "a write through the endpoint",
        || async {
            match client(ENDPOINT, pw).await {
                Some(mut c) => c.set("quote:MSFT", b"411.22").await.is_ok(),
                None => false,
            }
        },
    )
    .await;
    assert!(get(REPLICA, pw, "quote:MSFT").await.is_some());
    wait_for(
        Duration::from_secs(10),
        "the old primary rejoins",
        || async {
            role(PRIMARY, pw).await.as_deref() == Some("slave")
                && get(PRIMARY, pw, "quote:MSFT").await.is_some()
        },
    )
    .await;
    wait_for(
        Duration::from_secs(15),
        "health is all healthy again",
        || async { health(&state_dir).0 },
    )
    .await;

    // Stopping the deployment stops every redis-server it started.
    let new_pid = redis_pid("127.81.1.70:9900").await;
    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
    for pid in [pids[1], new_pid] {
        assert!(!common::alive(pid as i64), "redis-server {pid} left behind");
    }
}

/// Without a redis-server, `up` says so in one line with the fix, and runs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_redis_says_how_to_install_it_and_runs_the_rest() {
    use std::io::{BufRead, BufReader};
    let dir = common::tempdir();
    let cfg = dir.join("cache.toml");
    // Its own addresses: the other test may be running.
    std::fs::write(
        &cfg,
        CONFIG.replace(
            "subnet = \"127.81.0.0/16\"",
            "subnet = \"127.81.0.0/16\"\nlb_port = 8181\nservice_port = 8101\nadmin_port = 9981",
        ),
    )
    .unwrap();
    let state_dir = dir.join("state");
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("up")
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state_dir)
        .env(meridian_redis::PROGRAM_ENV, dir.join("no-redis-server"))
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut up = Guard(Some(child));
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines.join("\n")
    });
    let printed = tokio::time::timeout(Duration::from_secs(60), printed)
        .await
        .expect("up printed its table")
        .unwrap();
    assert!(printed.contains("lb-us-east-1"), "{printed}");
    assert!(!printed.contains("redis-us-east-1a"), "{printed}");
    let said = std::fs::read_to_string(dir.join("stderr")).unwrap();
    let warnings: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("the cache tier will not run"))
        .collect();
    assert_eq!(warnings.len(), 1, "{said}");
    assert!(
        warnings[0].contains("apt-get install redis-server"),
        "{said}"
    );
    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
}

/// Stops `up` even when an assertion fails half way.
struct Guard(Option<std::process::Child>);
impl Guard {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().ok()
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}
