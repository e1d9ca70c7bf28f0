//! The load balancer against real targets on loopback.

mod common;

use common::start;

use meridian_config::{Algorithm, NodeSpec, Role};
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::{LbOptions, LoadBalancer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn node(name: &str, addr: SocketAddr) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        role: Role::Service,
        region: Some("test-1".into()),
        az: Some("test-1a".into()),
        address: addr,
        admin: addr,
    }
}

async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A demo origin on an ephemeral port.
async fn demo(name: &str, processing: Duration) -> NodeSpec {
    let (node, stop) = stoppable_demo(name, processing).await;
    std::mem::forget(stop); // runs until the test ends
    node
}

/// A demo origin that stops (refusing new connections) when the sender is used.
async fn stoppable_demo(
    name: &str,
    processing: Duration,
) -> (NodeSpec, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = meridian_demo::router(DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: "test-1a".into(),
            instance: name.into(),
        },
        processing_time: processing,
        database: None,
        quote_cache: None,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (node(name, addr), tx)
}

/// What a scripted target does with a request that is not a health check.
#[derive(Clone, Copy)]
enum Then {
    /// Writes these bytes and drops the connection: with nothing sent the peer sees a
    /// reset, else a cut body.
    Reply(&'static [u8]),
    /// Resets the connection (SO_LINGER 0): a process killed mid-request.
    Reset,
    /// Writes these bytes and then keeps the connection open, sending nothing more.
    Stall(&'static [u8]),
}

/// A target that passes health checks but misbehaves on every other request: a process
/// that crashes mid-request.
async fn scripted(name: &str, then: Then) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"GET /health ") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                match then {
                    Then::Reply(reply) => {
                        let _ = s.write_all(reply).await;
                    }
                    Then::Reset => {
                        let _ = s.set_zero_linger();
                    }
                    Then::Stall(reply) => {
                        let _ = s.write_all(reply).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    node(name, addr)
}

/// Resets every request after reading it.
async fn resetting(name: &str) -> NodeSpec {
    scripted(name, Then::Reply(b"")).await
}

/// Sends a response head and a tenth of the promised body, then goes away.
async fn cut_short(name: &str) -> NodeSpec {
    scripted(
        name,
        Then::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"),
    )
    .await
}

/// A target nobody listens on: connections are refused.
async fn dead(name: &str) -> NodeSpec {
    node(name, free_addr().await)
}

fn options(targets: Vec<NodeSpec>, algorithm: Algorithm) -> LbOptions {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    // The default deployment's settings, with the one implicit group they describe (not
    // its declared groups and rules: the gRPC group would check these targets too).
    config.target_groups.clear();
    config.rules.clear();
    config.algorithm = algorithm;
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    config.deregistration_delay = Duration::from_millis(500);
    LbOptions {
        tls: None,
        name: "lb-test".into(),
        region: "test-1".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        targets,
        config,
        signer: None,
        access_log: None,
    }
}

async fn wait_healthy(admin: SocketAddr, n: u64) {
    let client = reqwest_like();
    // A bounded wait, generous for a loaded machine; it returns as soon as they are.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok((200, body)) = client.get(admin, "/health").await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["healthy_targets"].as_u64() == Some(n) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("targets did not become healthy");
}

/// A tiny HTTP client for tests: one request per connection, returns status and body.
struct Client;
fn reqwest_like() -> Client {
    Client
}
impl Client {
    async fn get(&self, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let (s, _, b) = raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await?;
        Ok((s, b))
    }
}

/// Sends raw bytes, reads the response to EOF, returns status, head and body.
async fn raw(addr: SocketAddr, request: &str) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no head in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    // Undo chunked encoding crudely for small bodies.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n")
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .join("")
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let targets = vec![
        demo("a", Duration::ZERO).await,
        demo("b", Duration::ZERO).await,
        demo("c", Duration::ZERO).await,
    ];
    let (lb, admin) = start(options(targets, Algorithm::RoundRobin)).await;
    wait_healthy(admin, 3).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200);
        *counts
            .entry(header(&head, "x-meridian-instance").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_target() {
    // "slow" holds each request 400 ms; with concurrent load the fast one takes most.
    let targets = vec![
        demo("slow", Duration::from_millis(400)).await,
        demo("fast", Duration::ZERO).await,
    ];
    let (lb, admin) = start(options(targets, Algorithm::LeastOutstandingRequests)).await;
    wait_healthy(admin, 2).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 10)).await;
            let (_, head, _) = raw(
                lb,
                "GET /api/quotes/MSFT HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            header(&head, "x-meridian-instance").unwrap().to_owned()
        }));
    }
    let mut slow = 0;
    for t in tasks {
        if t.await.unwrap() == "slow" {
            slow += 1;
        }
    }
    assert!(slow <= 2, "the busy target got {slow} of 20 requests");
}

#[tokio::test]
async fn target_loss_is_retried_on_a_healthy_target() {
    // One live target, one that resets mid-request, one that goes away.
    let (gone, stop) = stoppable_demo("gone", Duration::ZERO).await;
    let gone_at = gone.address;
    let targets = vec![
        demo("live", Duration::ZERO).await,
        resetting("crashing").await,
        gone,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60); // one probe now, then passive only
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 3).await;
    stop.send(()).unwrap();
    // Wait until it is really gone (refusing connections), however slow the machine.
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(gone_at).await.is_ok() {
        assert!(Instant::now() < until, "the stopped target still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
        assert_eq!(header(&head, "x-meridian-instance"), Some("live"));
    }
    // The refusing target was marked unhealthy by live traffic.
    let (_, body) = reqwest_like().get(admin, "/targets").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let gone = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "gone")
        .unwrap();
    assert_eq!(gone["health"], "unhealthy", "{v}");
    let (_, metrics) = reqwest_like().get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("meridian_lb_retries_total{reason=\"io\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meridian_lb_retries_total{reason=\"connect\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_cut_short_is_retried_for_idempotent_requests() {
    let targets = vec![cut_short("cut").await, demo("live", Duration::ZERO).await];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    for _ in 0..6 {
        let (s, head, body) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
        assert_eq!(header(&head, "x-meridian-instance"), Some("live"));
        assert!(body.contains("AAPL"), "{body}");
    }
}

#[tokio::test]
async fn post_is_not_replayed_after_a_mid_request_failure() {
    let targets = vec![
        resetting("crashing").await,
        demo("live", Duration::ZERO).await,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    let mut refused = 0;
    for _ in 0..4 {
        let (s, _, body) = raw(
            lb,
            "POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .await
        .unwrap();
        if s == 502 {
            assert!(body.contains("not safe to retry"), "{body}");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "round robin sends every other POST to the crashing target"
    );
}

#[tokio::test]
async fn post_goes_elsewhere_when_connect_fails() {
    let targets = vec![dead("gone").await, demo("live", Duration::ZERO).await];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, _) = start(opts).await;
    let body = r#"{"query":"{ __typename }"}"#;
    for _ in 0..4 {
        let req = format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let (s, _, b) = raw(lb, &req).await.unwrap();
        assert_eq!(s, 200, "{b}");
        assert!(b.contains("Query"));
    }
}

#[tokio::test]
async fn no_target_answers_gives_502_or_503_with_a_reason() {
    let (lb, _) = start(options(
        vec![dead("gone-1").await, dead("gone-2").await],
        Algorithm::RoundRobin,
    ))
    .await;
    let (s, _, body) = raw(lb, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(s, 502);
    assert!(body.contains("gone-1") && body.contains("gone-2"), "{body}");
    let (lb, _) = start(options(vec![], Algorithm::RoundRobin)).await;
    let (s, _, body) = raw(lb, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(s, 503);
    assert!(body.contains("no registered targets"), "{body}");
}

#[tokio::test]
async fn slow_target_gives_504() {
    let mut opts = options(
        vec![demo("slow", Duration::from_millis(1500)).await],
        Algorithm::RoundRobin,
    );
    opts.config.target_timeout = Duration::from_millis(300);
    let (lb, _) = start(opts).await;
    let (s, _, body) = raw(
        lb,
        "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(s, 504);
    assert!(body.contains("300ms"), "{body}");
}

/// A target that answers with the request head it received.
async fn echo(name: &str) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                    head.len()
                );
                let _ = s.write_all(res.as_bytes()).await;
            });
        }
    });
    node(name, addr)
}

#[tokio::test]
async fn forwards_client_identity_and_strips_hop_by_hop_headers() {
    let mut opts = options(vec![echo("echo").await], Algorithm::RoundRobin);
    opts.config.health_check.protocol = meridian_config::CheckProtocol::Tcp;
    let (lb, _) = start(opts).await;
    let req = "GET /x?y=1 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nX-Request-Id: abc123\r\n\r\n";
    let (s, head, seen) = raw(lb, req).await.unwrap();
    assert_eq!(s, 200);
    let seen = seen.to_ascii_lowercase();
    assert!(seen.starts_with("get /x?y=1 http/1.1"), "{seen}");
    assert!(seen.contains("host: shop.example"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-request-id: abc123"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert_eq!(header(&head, "x-request-id"), Some("abc123"));
    // Without one, the balancer makes a request id.
    let (_, head, _) = raw(lb, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(header(&head, "x-request-id").map(str::len), Some(32));
}

/// A target whose answer carries its own request id, hop-by-hop fields (standard and
/// named in `Connection`), a Date and two cookies.
async fn rich_answer(name: &str) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                // One request per read is enough for these tests' requests.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let res = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                               X-Request-Id: theirs\r\nConnection: keep-alive, X-Hop\r\n\
                               X-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
                               Date: Tue, 01 Jan 2030 00:00:00 GMT\r\nSet-Cookie: a=1\r\n\
                               Set-Cookie: b=2\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\nhello";
                    if s.write_all(res.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    node(name, addr)
}

/// A target's answer fields reach the client as sent (`meridian_http::received`), over
/// HTTP/1.1 (written from the target's head lines) and HTTP/2 (moved into the map),
/// less its hop-by-hop fields, with the balancer's request id in place of its own.
#[tokio::test]
async fn a_targets_answer_fields_pass_on_less_hop_by_hop_ones() {
    let mut opts = options(vec![rich_answer("rich").await], Algorithm::RoundRobin);
    opts.config.health_check.protocol = meridian_config::CheckProtocol::Tcp;
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let req = "GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: mine\r\nConnection: close\r\n\r\n";
    let (s, head, body) = raw(lb, req).await.unwrap();
    assert_eq!((s, body.as_str()), (200, "hello"), "{head}");
    let lower = head.to_ascii_lowercase();
    for (name, count) in [
        ("x-request-id: mine\r\n", 1),
        ("x-request-id:", 1),
        ("content-type: text/plain\r\n", 1),
        ("date: tue, 01 jan 2030 00:00:00 gmt\r\n", 1),
        ("date:", 1),
        ("set-cookie: a=1\r\n", 1),
        ("set-cookie: b=2\r\n", 1),
        ("content-length: 5\r\n", 1),
        ("content-length:", 1),
        ("x-kept: yes\r\n", 1),
        ("x-hop", 0),
        ("keep-alive", 0),
    ] {
        assert_eq!(lower.matches(name).count(), count, "{name:?} in {head}");
    }
    // The balancer's own close, once (the client asked for it).
    assert_eq!(lower.matches("connection: close").count(), 1, "{head}");

    let client = meridian_http::upstream_client_h2(Duration::from_secs(2), Duration::from_secs(5));
    let req = http::Request::get(format!("http://{lb}/x"))
        .header("x-request-id", "mine")
        .body(meridian_http::empty())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let h = res.headers();
    let all = |n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("x-request-id"), ["mine"]);
    assert_eq!(all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(all("content-type"), ["text/plain"]);
    assert_eq!(all("x-kept"), ["yes"]);
    assert_eq!(all("date"), ["Tue, 01 Jan 2030 00:00:00 GMT"]);
    assert!(
        all("x-hop").is_empty() && all("keep-alive").is_empty(),
        "{h:?}"
    );
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap();
    assert_eq!(&body.to_bytes()[..], b"hello");
}

/// The head is written once for all of a request's attempts (`retry::Head`): a request
/// retried after its first target went away reaches the next with the same fields, each
/// forwarding field once, the client's own claims replaced.
#[tokio::test]
async fn a_retried_request_reaches_the_next_target_with_the_same_head() {
    let targets = vec![resetting("crashing").await, echo("echo").await];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.protocol = meridian_config::CheckProtocol::Tcp;
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    let req = "GET /x HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nX-Request-Id: abc123\r\nConnection: close\r\n\r\n";
    for _ in 0..4 {
        let (s, head, seen) = raw(lb, req).await.unwrap();
        assert_eq!(s, 200, "{head}");
        let seen = seen.to_ascii_lowercase();
        for field in [
            "host: shop.example\r\n",
            "x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n",
            "x-forwarded-proto: http\r\n",
            "x-request-id: abc123\r\n",
        ] {
            assert_eq!(seen.matches(field).count(), 1, "{field:?} in {seen}");
        }
        // The trace header the balancer made (the access log is off here).
        assert_eq!(
            seen.matches("x-amzn-trace-id: root=1-").count(),
            1,
            "{seen}"
        );
        for name in [
            "host:",
            "x-forwarded-for:",
            "x-forwarded-proto:",
            "x-forwarded-port:",
            "x-amzn-trace-id:",
        ] {
            assert_eq!(seen.matches(name).count(), 1, "{name} in {seen}");
        }
        assert!(!seen.contains("x-forwarded-port: 1\r\n"), "{seen}");
    }
    // A client that sent no Host (HTTP/1.0): the target gets its own address as Host, once.
    for _ in 0..2 {
        let (s, head, seen) = raw(lb, "GET /x HTTP/1.0\r\n\r\n").await.unwrap();
        assert_eq!(s, 200, "{head}");
        let seen = seen.to_ascii_lowercase();
        assert_eq!(seen.matches("host: 127.0.0.1:").count(), 1, "{seen}");
        assert_eq!(seen.matches("host:").count(), 1, "{seen}");
    }
    let (_, metrics) = reqwest_like().get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("meridian_lb_retries_total{reason=\"io\"}"),
        "no request was retried: {metrics}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_and_serving_goes_on() {
    let mut opts = options(vec![demo("a", Duration::ZERO).await], Algorithm::RoundRobin);
    opts.config.max_request_body = meridian_config::ByteSize(1024);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let (s, _, _) = raw(lb, "GARBAGE\r\n\r\n").await.unwrap();
    assert_eq!(s, 400);
    let big = "x".repeat(100_000);
    let (s, _, _) = raw(
        lb,
        &format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(s, 431);
    let body = "y".repeat(2000);
    let (s, _, _) = raw(lb, &format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}")).await.unwrap();
    assert_eq!(s, 413);
    let (s, _, _) = raw(
        lb,
        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
}

#[tokio::test]
async fn direct_handle_api_is_usable() {
    // LoadBalancer can be built without a listener (for embedding).
    let lb = LoadBalancer::new(&options(vec![], Algorithm::RoundRobin));
    assert_eq!(lb.group().targets.len(), 0);
    assert_eq!(lb.name(), "lb-test");
}

/// Resets every request with a TCP reset (SO_LINGER 0): a process killed mid-request.
async fn hard_resetting(name: &str) -> NodeSpec {
    scripted(name, Then::Reset).await
}

#[tokio::test]
async fn a_reset_marks_the_target_unhealthy_at_once() {
    let targets = vec![
        hard_resetting("reset").await,
        demo("live", Duration::ZERO).await,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60); // one probe now, then passive only
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    for _ in 0..4 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
    }
    let (_, body) = reqwest_like().get(admin, "/targets").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reset = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "reset")
        .unwrap();
    assert_eq!(reset["health"], "unhealthy", "{v}");
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_a_stalled_target_body_is_cut() {
    let stalling = scripted(
        "stall",
        Then::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nthe start"),
    )
    .await;
    let mut opts = options(vec![stalling], Algorithm::RoundRobin);
    opts.config.idle_timeout = Duration::from_millis(300);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    // A client that promises 100 bytes and sends 3.
    let (s, _, _) = raw(
        lb,
        "POST /api/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc",
    )
    .await
    .unwrap();
    assert_eq!(s, 408);
    // A target that sends a head and a little body, then nothing: the client's response
    // ends (cut short) instead of hanging.
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    assert!(ended.is_ok(), "the relayed body never ended");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(out.len() < 1000, "the body was cut short, not completed");
}

/// Request smuggling: whatever framing a client sends, the target is sent a request whose
/// Content-Length is exactly the body that follows it (or the attack is refused), so no
/// hidden request can sit in a pooled target connection.
#[tokio::test]
async fn smuggling_attempts_reach_the_target_with_honest_framing_or_not_at_all() {
    let mut opts = options(vec![echo("echo").await], Algorithm::RoundRobin);
    opts.config.health_check.protocol = meridian_config::CheckProtocol::Tcp;
    let (lb, _) = start(opts).await;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let n = hidden.len();
    let attacks = [
        format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n{hidden}"),
        format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{n:x}\r\n{hidden}\r\n0\r\n\r\n"),
        format!("GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{hidden}"),
        format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{hidden}"),
    ];
    for attack in &attacks {
        let (status, _, seen) = raw(lb, attack).await.unwrap();
        if status == 400 {
            continue;
        }
        assert_eq!(status, 200, "{attack}");
        let (head, body) = seen.split_once("\r\n\r\n").unwrap();
        let length = header(head, "content-length")
            .map(|v| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        assert!(header(head, "transfer-encoding").is_none(), "{seen}");
        assert_eq!(
            length,
            body.len(),
            "the target was told {length} bytes: {seen}"
        );
    }
}

/// A target that answers every request with the head it received, lowercased.
async fn echoing_head(name: &str) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                    head.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    node(name, addr)
}

/// Origin access control: with `require_edge_signature`, only requests the edge signed
/// (and recently) reach a target, health checks excepted; the signature never reaches it.
#[tokio::test]
async fn a_balancer_that_requires_edge_signatures_refuses_the_rest() {
    use meridian_http::signing::{Signer, HEADER};
    let mut opts = options(vec![echoing_head("t1").await], Algorithm::RoundRobin);
    opts.config.require_edge_signature = true;
    let signer = std::sync::Arc::new(Signer::from_secrets("deployment-key", None));
    opts.signer = Some(signer.clone());
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let host = "t";
    let request = |path: &str, sig: Option<String>| {
        let sig = sig
            .map(|s| format!("{HEADER}: {s}\r\n"))
            .unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{sig}Connection: close\r\n\r\n")
    };
    let sign = |path: &str, at: std::time::SystemTime| {
        signer
            .sign_at(&http::Method::GET, host, path, at)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let now = std::time::SystemTime::now();

    let (status, _, body) = raw(lb, &request("/api/x?a=1", None)).await.unwrap();
    assert_eq!(status, 403, "unsigned: {body}");
    assert!(body.contains("not signed"), "{body}");

    let (status, _, body) = raw(lb, &request("/api/x?a=1", Some(sign("/api/x?a=1", now))))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("get /api/x?a=1 "), "{body}");
    assert!(
        !body.contains(HEADER),
        "the signature reached the target: {body}"
    );

    // A signature for another path, or from long ago, is refused.
    let (status, _, _) = raw(lb, &request("/api/y", Some(sign("/api/x?a=1", now))))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let old = now - Duration::from_secs(600);
    let (status, _, body) = raw(lb, &request("/api/x", Some(sign("/api/x", old))))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("away from this balancer's clock"), "{body}");

    // Health checks (Route 53's, the PoPs') sign nothing and still get through.
    let (status, _, _) = raw(lb, &request("/health", None)).await.unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = raw(lb, &request("/health/../api/x", None)).await.unwrap();
    assert_eq!(status, 403, "only the exact unsigned path");
}
