//! WebSockets through a whole deployment run by `meridian up`: a viewer's socket to a PoP
//! goes through the WAN's relays and the region's balancer to a demo instance (the
//! RichesReach quote stream). The stream holds for 30 s; a frozen instance (SIGSTOP: a
//! machine that stops answering without closing anything) ends the socket within the
//! balancer's idle timeout, and a reconnect lands on a healthy instance; a rollout drains
//! open sockets with a close frame (1001), and a reconnect lands on the new version.

use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{rollout, start_up, state};

/// One region of two AZs, a PoP, the WAN; this test's own subnet, 127.88.0.0/16.
const CONFIG: &str = r#"
[deployment]
name = "wsup"
zone = "wsup.example"

[network]
subnet = "127.88.0.0/16"

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
health_check_timeout = "6s"
bake_time = "1s"

[load_balancer]
idle_timeout = "3s"
deregistration_delay = "1s"

[load_balancer.health_check]
interval = "1s"
timeout = "300ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[edge]]
name = "ashburn"
location = { lat = 39.0, lon = -77.5 }
memory_cache = "16MiB"
disk_cache = "0B"

[distribution]
origin_protocol = "http"
access_log = false

[dns]
servers = 0

[console]
enabled = false

[supervisor]
restart_backoff = "300ms"
stop_timeout = "5s"
"#;

/// How long the balancer lets a tunnel sit without a byte (the config's `idle_timeout`).
const IDLE: Duration = Duration::from_secs(3);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads quote frames for `for_how_long`: (frames, the longest gap between two). Fails on
/// anything but a quote.
async fn quotes(ws: &mut Socket, for_how_long: Duration) -> (Vec<serde_json::Value>, Duration) {
    let began = Instant::now();
    let (mut frames, mut last, mut gap) = (Vec::new(), Instant::now(), Duration::ZERO);
    while began.elapsed() < for_how_long {
        let next = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a frame within 2 s");
        match next {
            Some(Ok(Message::Text(t))) => {
                frames.push(serde_json::from_str(&t).expect("a JSON quote"));
                gap = gap.max(last.elapsed());
                last = Instant::now();
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("the stream ended after {:?}: {other:?}", began.elapsed()),
        }
    }
    (frames, gap)
}

/// The instance every frame names (they must agree).
fn instance_of(frames: &[serde_json::Value]) -> String {
    let first = frames[0]["instance"].as_str().unwrap().to_owned();
    assert!(frames.iter().all(|f| f["instance"] == first.as_str()));
    first
}

/// Waits for the socket to end: the close frame's code (None: cut without one), and when.
async fn ended(ws: &mut Socket, within: Duration) -> (Option<CloseCode>, Duration) {
    let began = Instant::now();
    loop {
        let left = within.saturating_sub(began.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the socket was still open after {within:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => return (frame.map(|f| f.code), began.elapsed()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return (None, began.elapsed()),
        }
    }
}

/// The pid and version of each running service instance, by name.
fn instances(state_dir: &std::path::Path) -> Vec<(String, i64, String)> {
    state(state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "service")
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["pid"].as_i64().unwrap_or(-1),
                n["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotes_stream_for_30s_a_frozen_instance_ends_the_socket_and_a_rollout_drains_it() {
    let dir = common::tempdir();
    let state_dir = dir.join("state");
    let cfg = dir.join("wsup.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let pop = common::first_node(&state_dir, "edge")["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("ws://{pop}/ws/quotes?symbols=AAPL,NVDA");

    // 30 s of quotes through the PoP, the balancer and an instance.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (frames, gap) = quotes(&mut ws, Duration::from_secs(30)).await;
    let on = instance_of(&frames);
    eprintln!("30 s on {on}: {} frames, longest gap {gap:?}", frames.len());
    // Every frame came within 2 s of the one before (`quotes`); how close is a timing
    // figure for the log, not an assertion on a shared machine.
    assert!(frames.len() >= 100, "{} frames in 30 s", frames.len());

    // Freeze that instance: nothing closes, nothing moves; the balancer's idle timeout
    // ends the tunnel, and the viewer's socket with it.
    let pid = instances(&state_dir)
        .into_iter()
        .find(|(n, _, _)| *n == on)
        .map(|(_, pid, _)| pid)
        .expect("the instance is in endpoints.json");
    // SAFETY: kill(2) on the pid of a child of the `up` this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    let (_, took) = ended(&mut ws, IDLE + Duration::from_secs(3)).await;
    eprintln!("the frozen instance's socket ended after {took:?}");
    // A reconnect lands on the other instance (the frozen one fails its checks meanwhile,
    // and a handshake to it would time out, not land).
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (frames, _) = quotes(&mut ws, Duration::from_secs(2)).await;
    let now_on = instance_of(&frames);
    assert_ne!(now_on, on, "the reconnect landed on the frozen instance");
    // SAFETY: as above.
    unsafe {
        libc::kill(pid as i32, libc::SIGCONT);
    }

    // A rollout replaces the instance under the open socket: the balancer drains it with
    // a close frame, and a reconnect reaches the new version.
    let watcher = tokio::spawn(async move {
        let (code, took) = ended(&mut ws, Duration::from_secs(90)).await;
        (code, took)
    });
    let (code, out, err) = rollout(&state_dir, "2").await;
    assert_eq!(code, 0, "the rollout failed:\n{out}\n{err}");
    let (close, took) = watcher.await.unwrap();
    eprintln!("the rollout closed the socket with {close:?} after {took:?}");
    assert_eq!(close, Some(CloseCode::Away), "a close frame, 1001");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (frames, _) = quotes(&mut ws, Duration::from_secs(1)).await;
    let landed = instance_of(&frames);
    let now = instances(&state_dir);
    assert!(
        now.iter().any(|(n, _, v)| *n == landed && v == "2"),
        "the reconnect landed on {landed}, not an instance of version 2: {now:?}"
    );
    assert!(up.stop().is_some());
}
