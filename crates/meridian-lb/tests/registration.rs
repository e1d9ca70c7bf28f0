//! Registering and deregistering one target while the balancer runs, over its admin port
//! with the admin token (what a rollout does to each instance): a registered target takes
//! traffic once healthy; a deregistered one finishes its requests in flight, gets no new
//! ones, its WebSockets get a close frame within the deregistration delay, and it ends
//! `unused`. Addresses 127.67.10–19.x.

use futures_util::StreamExt;
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;

const TOKEN: &str = "registration-test-token";

fn at(net: u8, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::Ipv4Addr::new(127, 67, net, host).into(), port)
}

async fn up(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "{addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A demo instance that takes `work` over each API request.
async fn instance(addr: SocketAddr, name: &str, work: Duration) {
    let opts = DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: "test-1a".into(),
            instance: name.into(),
        },
        processing_time: work,
        database: None,
        quote_cache: None,
    };
    tokio::spawn(meridian_demo::serve(addr, opts, std::future::pending()));
    up(addr).await;
}

/// One request; (status, head, body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn instance_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("x-meridian-instance: "))
        .unwrap_or("none")
        .to_owned()
}

/// `target`'s (state, health, outstanding) in `/targets`.
async fn target(admin: SocketAddr, name: &str) -> Option<(String, String, i64)> {
    let (_, _, body) = call(admin, "GET", "/targets", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == name)
        .map(|t| {
            (
                t["state"].as_str().unwrap().to_owned(),
                t["health"].as_str().unwrap().to_owned(),
                t["outstanding_requests"].as_i64().unwrap(),
            )
        })
}

/// Polls until `name` satisfies `ok` (at most 10 s).
async fn wait_target(admin: SocketAddr, name: &str, ok: impl Fn(&str, &str, i64) -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = target(admin, name).await;
        if let Some((s, h, o)) = &t {
            if ok(s, h, *o) {
                return;
            }
        }
        assert!(Instant::now() < until, "{name} is {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn options(net: u8, targets: &[(SocketAddr, &str)]) -> LbOptions {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    // The default deployment's settings, with the one implicit group they describe (not
    // its declared groups and rules: the gRPC group would check these targets too).
    config.target_groups.clear();
    config.rules.clear();
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    config.deregistration_delay = Duration::from_millis(800);
    let targets: Vec<(SocketAddr, String)> =
        targets.iter().map(|(a, n)| (*a, n.to_string())).collect();
    common::lb_options("lb-reg", at(net, 1, 80), at(net, 1, 9900), &targets, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_deregister_with_draining() {
    // i-a is slow (a request to it is still in flight when it is deregistered).
    let (a, b) = (at(10, 11, 8000), at(10, 12, 8000));
    instance(a, "i-a", Duration::from_millis(500)).await;
    instance(b, "i-b", Duration::ZERO).await;
    let opts = options(10, &[(a, "i-a")]);
    let (lb, admin) = (opts.listen, opts.admin);
    tokio::spawn(meridian_lb::run_with_token(
        opts,
        Some(meridian_http::secrets::AdminToken::from(TOKEN)),
        std::future::pending(),
    ));
    up(lb).await;
    up(admin).await;
    wait_target(admin, "i-a", |s, h, _| s == "registered" && h == "healthy").await;
    let url = format!("ws://{lb}/ws/quotes?symbols=AAPL");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    // Changes need the token; a bad request says what to give.
    let register = format!("/targets/register?target={b}&az=test-1a&name=i-b");
    assert_eq!(call(admin, "POST", &register, None).await.0, 401);
    let (status, _, body) = call(admin, "POST", "/targets/register?target=nope", Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(admin, "POST", &register, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"target_groups\""), "{body}");
    wait_target(admin, "i-b", |s, h, _| s == "registered" && h == "healthy").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (status, head, _) = call(lb, "GET", "/api/quotes/AAPL", None).await;
        assert_eq!(status, 200);
        seen.insert(instance_of(&head));
    }
    assert_eq!(seen.len(), 2, "both targets serve: {seen:?}");

    // Requests in flight to i-a when it is deregistered (by address) still finish.
    let inflight: Vec<_> = (0..4)
        .map(|_| tokio::spawn(call(lb, "GET", "/api/quotes/AAPL", None)))
        .collect();
    wait_target(admin, "i-a", |_, _, o| o > 0).await;
    let (status, _, body) = call(
        admin,
        "POST",
        &format!("/targets/deregister?target={a}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(target(admin, "i-a").await.unwrap().0, "draining");
    for r in inflight {
        assert_eq!(r.await.unwrap().0, 200);
    }
    // No new request reaches it.
    for _ in 0..10 {
        let (status, head, _) = call(lb, "GET", "/api/quotes/AAPL", None).await;
        assert_eq!((status, instance_of(&head).as_str()), (200, "i-b"));
    }
    // Its WebSocket gets a close frame within the deregistration delay (and a margin).
    let until = Instant::now() + Duration::from_secs(5);
    let code = loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the socket was still open after 5 s"),
            Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| c.code),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    wait_target(admin, "i-a", |s, _, _| s == "unused").await;
    let (status, _, _) = call(admin, "POST", "/targets/deregister?target=i-a", Some(TOKEN)).await;
    assert_eq!(status, 404, "an unused target cannot be deregistered again");

    // Registered again, it is decided by new checks and serves once healthy.
    let again = format!("/targets/register?target={a}&az=test-1a&name=i-a");
    assert_eq!(call(admin, "POST", &again, Some(TOKEN)).await.0, 200);
    wait_target(admin, "i-a", |s, h, _| s == "registered" && h == "healthy").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(instance_of(
            &call(lb, "GET", "/api/quotes/AAPL", None).await.1,
        ));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Another address under a registered name is refused.
    let clash = format!(
        "/targets/register?target={}&az=test-1a&name=i-a",
        at(10, 13, 8000)
    );
    assert_eq!(call(admin, "POST", &clash, Some(TOKEN)).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_nothing_can_be_registered() {
    let a = at(11, 11, 8000);
    instance(a, "i-a", Duration::ZERO).await;
    let opts = options(11, &[(a, "i-a")]);
    let admin = opts.admin;
    tokio::spawn(meridian_lb::run(opts, std::future::pending()));
    up(admin).await;
    let (status, _, _) = call(admin, "POST", "/targets/deregister?target=i-a", Some(TOKEN)).await;
    assert_eq!(status, 401);
    assert_eq!(target(admin, "i-a").await.unwrap().0, "registered");
}
