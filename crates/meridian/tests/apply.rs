//! `meridian apply` against a running `meridian up`, under a steady load through the PoPs:
//! a changed cache policy TTL and a new DNS record set reach every PoP and DNS node within
//! 2 s, with no failed request and no node restarted; a broken config exits 2 and changes
//! nothing.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{ask, get, start_up, state};

/// One region, two PoPs, two DNS servers on 127.72.0.0/16, this test's own subnet. The
/// `api` policy caches nothing until `apply` gives it a TTL.
const CONFIG: &str = r#"
[deployment]
name = "apply"
zone = "apply.example"

[network]
subnet = "127.72.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[load_balancer]
deregistration_delay = "500ms"

[supervisor]
restart_backoff = "300ms"
stop_timeout = "5s"

[console]
enabled = false

[dns]
servers = 2

[[edge]]
name = "ashburn"
location = { lat = 39.04, lon = -77.49 }
memory_cache = "32MiB"
disk_cache = "32MiB"

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "32MiB"
disk_cache = "32MiB"

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]

[[distribution.cache_policy]]
name = "api"
min_ttl = "0s"
default_ttl = "0s"
max_ttl = "0s"
query_strings = "all"

[distribution.default_behavior]
origin_group = "regions"
cache_policy = "api"
"#;

const OLD_TTL: &str = "min_ttl = \"0s\"\ndefault_ttl = \"0s\"\nmax_ttl = \"0s\"";
const NEW_TTL: &str = "min_ttl = \"60s\"\ndefault_ttl = \"60s\"\nmax_ttl = \"60s\"";
const RECORD: &str = "\n[[dns.record]]\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.7\"]\n";

/// Addresses of every node of `role`: (name, address).
fn nodes(dir: &std::path::Path, role: &str) -> Vec<(String, String)> {
    state(dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == role)
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap().to_owned();
            (s("name"), s("address"))
        })
        .collect()
}

/// Every node's (name, pid, restarts): what a restart would change.
fn pids(dir: &std::path::Path) -> Vec<(String, i64, i64)> {
    state(dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["pid"].as_i64().unwrap_or(-1),
                n["restarts"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// `meridian apply --config FILE --yes`: (exit code, stdout, stderr).
fn apply(state_dir: &std::path::Path, file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["apply", "--yes", "--config"])
        .arg(file)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The x-cache of a second GET of one URL through `pop`: a hit once the policy caches.
async fn second_look(client: &meridian_http::UpstreamClient, pop: &str) -> String {
    let url = format!("http://{pop}/api/quotes/MSFT");
    let _ = get(client, &url).await;
    match get(client, &url).await {
        Ok((200, h, _)) => h
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned(),
        Ok((s, _, _)) => format!("status {s}"),
        Err(e) => e,
    }
}

/// GETs of distinct keys through every PoP in turn until told to stop (at most 20,000,
/// or two minutes): (requests, failures).
fn load(
    pops: Vec<String>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let client =
            meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
        let began = Instant::now();
        let (mut sent, mut failures) = (0usize, Vec::new());
        while !stop.load(Ordering::Relaxed)
            && sent < 20_000
            && began.elapsed() < Duration::from_secs(120)
        {
            let pop = &pops[sent % pops.len()];
            sent += 1;
            count.store(sent, Ordering::Relaxed);
            match get(
                &client,
                &format!("http://{pop}/api/quotes/AAPL?load={sent}"),
            )
            .await
            {
                Ok((200, _, _)) => {}
                Ok((s, _, b)) => {
                    failures.push(format!("{pop}: {s} {}", String::from_utf8_lossy(&b)))
                }
                Err(e) => failures.push(format!("{pop}: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (sent, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reloads_pops_and_dns_in_place_and_refuses_a_broken_config() {
    let dir = common::tempdir();
    let state_dir = dir.join("state");
    let cfg = dir.join("apply.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let pops: Vec<String> = nodes(&state_dir, "edge").into_iter().map(|n| n.1).collect();
    let dns: Vec<String> = nodes(&state_dir, "dns").into_iter().map(|n| n.1).collect();
    assert_eq!((pops.len(), dns.len()), (2, 2));
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));

    // Before: nothing is cached, and www is not in the zone.
    for pop in &pops {
        let x = second_look(&client, pop).await;
        assert!(x.starts_with("Miss"), "{pop} caches before apply: {x}");
    }
    for d in &dns {
        assert_eq!(ask(d, "127.0.0.1", "www.apply.example"), None, "{d}");
    }
    let before = pids(&state_dir);
    let running = std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let traffic = load(pops.clone(), stop.clone(), count.clone());
    // The load runs through the change: 100 requests before it and 100 after.
    let sent_by = |n: usize, count: Arc<AtomicUsize>| async move {
        let began = Instant::now();
        while count.load(Ordering::Relaxed) < n && began.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        count.load(Ordering::Relaxed) >= n
    };
    assert!(sent_by(100, count.clone()).await, "the load runs");

    let new = dir.join("new.toml");
    std::fs::write(&new, CONFIG.replace(OLD_TTL, NEW_TTL) + RECORD).unwrap();
    let began = Instant::now();
    let (state2, new2) = (state_dir.clone(), new.clone());
    let applied = tokio::task::spawn_blocking(move || apply(&state2, &new2));
    // Every PoP caches and every DNS node answers www, polled until 2 s have passed.
    let (mut pops_done, mut dns_done) = (vec![false; pops.len()], vec![false; dns.len()]);
    let mut seen = vec![String::new(); pops.len()];
    while began.elapsed() < Duration::from_secs(2)
        && !(pops_done.iter().all(|d| *d) && dns_done.iter().all(|d| *d))
    {
        for (i, pop) in pops.iter().enumerate() {
            if !pops_done[i] {
                seen[i] = second_look(&client, pop).await;
                pops_done[i] = seen[i].starts_with("Hit");
            }
        }
        for (i, d) in dns.iter().enumerate() {
            if !dns_done[i] {
                dns_done[i] =
                    ask(d, "127.0.0.1", "www.apply.example").as_deref() == Some("192.0.2.7");
            }
        }
    }
    let took = began.elapsed();
    let (code, out, err) = applied.await.unwrap();
    assert_eq!(code, 0, "apply failed:\n{out}\n{err}");
    assert!(
        pops_done.iter().all(|d| *d),
        "a PoP did not take the new TTL within 2 s: {seen:?}\n{out}"
    );
    assert!(
        dns_done.iter().all(|d| *d),
        "a DNS node did not answer www within 2 s: {dns_done:?}\n{out}"
    );
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    assert!(
        out.contains("~ edge-ashburn: cache policy \"api\" default_ttl 0ms → 1m (reload)"),
        "{out}"
    );
    assert!(out.contains("+ dns-1: dns record set www"), "{out}");
    assert!(out.contains("4 node(s) reloaded, 0 restarted"), "{out}");
    // The cached object carries an Age, as a hit under the new TTL does.
    let (_, h, _) = get(&client, &format!("http://{}/api/quotes/MSFT", pops[1]))
        .await
        .unwrap();
    assert!(h.get("age").is_some(), "{h:?}");

    let after = count.load(Ordering::Relaxed) + 100;
    assert!(sent_by(after, count.clone()).await, "the load runs on");
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent >= after, "the load ran ({sent} requests)");
    assert_eq!(pids(&state_dir), before, "no node restarted");
    let events = std::fs::read_to_string(state_dir.join("events.log")).unwrap_or_default();
    assert!(events.contains("apply: config"), "{events}");
    assert_ne!(
        std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap(),
        running
    );

    // A broken config: exit 2, the errors printed as validate prints them, nothing changed.
    let running = std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap();
    let nodes_read = std::fs::read_to_string(&cfg).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, CONFIG.replace(OLD_TTL, "default_tl = \"5s\"")).unwrap();
    let (code, out, err) = apply(&state_dir, &broken);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("default_tl"), "{err}");
    assert_eq!(
        std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap(),
        running
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), nodes_read);
    for pop in &pops {
        let x = second_look(&client, pop).await;
        assert!(x.starts_with("Hit"), "{pop}: {x}");
    }
    for d in &dns {
        assert_eq!(
            ask(d, "127.0.0.1", "www.apply.example").as_deref(),
            Some("192.0.2.7")
        );
    }
    assert_eq!(pids(&state_dir), before, "no node restarted");

    // SIGHUP with a file that does not validate: the node says so and keeps its config.
    let pid = before.iter().find(|n| n.0 == "edge-ashburn").unwrap().1;
    let log = state_dir.join("logs").join("edge-ashburn.log");
    std::fs::write(&cfg, "[deployment\n").unwrap();
    unsafe {
        libc::kill(pid as i32, libc::SIGHUP);
    }
    let began = Instant::now();
    let refused = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("keeping the current config")
    };
    while !refused() && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&cfg, &nodes_read).unwrap();
    assert!(refused(), "the PoP logs the refusal");
    let x = second_look(&client, &pops[0]).await;
    assert!(
        x.starts_with("Hit"),
        "the PoP serves the config it had: {x}"
    );
    assert_eq!(pids(&state_dir), before, "no node restarted");

    // A change that moves nodes is refused whole (exit 1), nothing changed.
    let fewer = dir.join("fewer.toml");
    let applied_text = std::fs::read_to_string(&new).unwrap();
    std::fs::write(&fewer, applied_text.replace("servers = 2", "servers = 1")).unwrap();
    let (code, out, err) = apply(&state_dir, &fewer);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("dns-2") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap(),
        running
    );
    // So is turning autoscaling on: its policy is made when `up` starts.
    let scaled = dir.join("scaled.toml");
    std::fs::write(
        &scaled,
        applied_text.replace(
            "instances_per_az = 1\n",
            "instances_per_az = 1\n[service.autoscaling]\nmin = 1\nmax = 2\nmetric = \"requests_per_target\"\ntarget = 15\n",
        ),
    )
    .unwrap();
    let (code, out, err) = apply(&state_dir, &scaled);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("[service.autoscaling]") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(state_dir.join("meridian.toml")).unwrap(),
        running
    );

    // A balancer setting is a reload: the balancer takes it in place, no process restarts.
    let lb_change = dir.join("lb.toml");
    let lb_text = applied_text.replace(
        "deregistration_delay = \"500ms\"",
        "deregistration_delay = \"700ms\"",
    );
    std::fs::write(&lb_change, &lb_text).unwrap();
    let (code, out, err) = apply(&state_dir, &lb_change);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("~ lb-us-east-1: load_balancer deregistration_delay 500ms → 700ms (reload)"),
        "{out}"
    );
    assert!(out.contains("1 node(s) reloaded, 0 restarted"), "{out}");
    assert_eq!(pids(&state_dir), before, "no node restarted");

    // SIGHUP to the balancer with a file it cannot take in place (its access log turned
    // on): it says so in one line and keeps serving what it had, in the same process.
    let lb_pid = before.iter().find(|n| n.0 == "lb-us-east-1").unwrap().1;
    let lb_log = state_dir.join("logs").join("lb-us-east-1.log");
    let needs_restart = lb_text.replace(
        "deregistration_delay = \"700ms\"",
        "deregistration_delay = \"700ms\"\naccess_log = true",
    );
    std::fs::write(&cfg, &needs_restart).unwrap();
    unsafe {
        libc::kill(lb_pid as i32, libc::SIGHUP);
    }
    let began = Instant::now();
    let refused = || {
        std::fs::read_to_string(&lb_log)
            .unwrap_or_default()
            .contains("reload refused, keeping the current config")
    };
    while !refused() && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&cfg, &lb_text).unwrap();
    assert!(refused(), "the balancer logs the refusal");
    assert!(
        std::fs::read_to_string(&lb_log)
            .unwrap_or_default()
            .contains("access_log"),
        "and says what needs the restart"
    );
    assert_eq!(pids(&state_dir), before, "no node restarted");

    // A balancer change it cannot take in place (its access log file is opened at start)
    // restarts that node alone, at once, and it is not counted as a crash.
    let lb_restart = dir.join("lb-restart.toml");
    std::fs::write(
        &lb_restart,
        lb_text.replace(
            "deregistration_delay = \"700ms\"",
            "deregistration_delay = \"700ms\"\naccess_log = true",
        ),
    )
    .unwrap();
    let (code, out, err) = apply(&state_dir, &lb_restart);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("! lb-us-east-1: load_balancer access_log false → true (restart)"),
        "{out}"
    );
    assert!(out.contains("0 node(s) reloaded, 1 restarted"), "{out}");
    let after = pids(&state_dir);
    for ((name, pid, restarts), (name2, pid2, restarts2)) in before.iter().zip(&after) {
        assert_eq!((name, restarts), (name2, restarts2));
        assert_eq!(
            pid == pid2,
            name != "lb-us-east-1",
            "{name}: {pid} then {pid2}"
        );
    }
    let events = std::fs::read_to_string(state_dir.join("events.log")).unwrap_or_default();
    assert!(
        events.contains("node lb-us-east-1 restarted as asked"),
        "{events}"
    );

    // The supervisor's own door: no token, 401; a config that does not parse, 422; what
    // runs is what the last apply sent, and nothing changed.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("endpoints.json")).unwrap())
            .unwrap();
    let supervisor: std::net::SocketAddr =
        state["supervisor_admin"].as_str().unwrap().parse().unwrap();
    let token = std::fs::read_to_string(state_dir.join("admin-token")).unwrap();
    let post = |token: Option<String>, body: &'static str| async move {
        let mut req = http::Request::post("/config").header("host", "supervisor");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {}", t.trim()));
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        meridian_http::client::fetch(supervisor, req, Duration::from_secs(10), 1 << 20)
            .await
            .unwrap()
    };
    assert_eq!(post(None, "[deployment]").await.status, 401);
    let refused = post(Some(token.clone()), "[deployment\n").await;
    assert_eq!(refused.status, 422);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("does not validate"),
        "{:?}",
        refused.body
    );
    let running = meridian_http::client::call(
        supervisor,
        http::Method::GET,
        "/config",
        Some(token.trim()),
        Duration::from_secs(5),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&running.body),
        std::fs::read_to_string(&lb_restart).unwrap()
    );
    assert_eq!(pids(&state_dir), after, "no node restarted");
    assert!(up.stop().is_some());
}
