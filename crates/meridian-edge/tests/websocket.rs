//! WebSockets end to end: a viewer through a PoP and a regional balancer to demo
//! instances (the RichesReach quote stream), over plain HTTP and TLS. Addresses 127.56.x.y.

mod common;

use common::{eventually, get, ip_in, pop_in, raw};
use futures_util::{SinkExt, StreamExt};
use meridian_demo::{DemoOptions, Identity};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Socket<S> = tokio_tungstenite::WebSocketStream<S>;

/// A demo instance on `addr`; the sender stops it (its sockets get close 1001).
async fn instance(addr: SocketAddr, name: &str) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = DemoOptions {
        identity: Identity {
            region: "r1".into(),
            az: "r1a".into(),
            instance: name.into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    };
    tokio::spawn(meridian_demo::serve(addr, opts, async {
        let _ = rx.await;
    }));
    eventually("the instance starts", Duration::from_secs(10), || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    tx
}

/// A balancer on `listen` in front of `targets`, checking them every 100 ms.
async fn balancer(listen: SocketAddr, targets: &[(SocketAddr, &str)]) {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    config.deregistration_delay = Duration::from_millis(500);
    common::start_balancer("lb-ws", listen, targets, config).await;
}

/// Two instances behind a balancer behind a PoP, all on 127.56.`net`.
async fn deployment(net: u8) -> (common::Pop, Vec<(String, tokio::sync::oneshot::Sender<()>)>) {
    let a = SocketAddr::new(ip_in(56, net, 2), 80);
    let b = SocketAddr::new(ip_in(56, net, 3), 80);
    let lb = SocketAddr::new(ip_in(56, net, 10), 80);
    let stops = vec![
        ("i-a".to_owned(), instance(a, "i-a").await),
        ("i-b".to_owned(), instance(b, "i-b").await),
    ];
    balancer(lb, &[(a, "i-a"), (b, "i-b")]).await;
    let pop = pop_in(56, net, &[format!("http://{lb}")], "").await;
    // Both instances healthy at the balancer before the first handshake.
    eventually(
        "the balancer sees both instances",
        Duration::from_secs(20),
        || async {
            raw(
                SocketAddr::new(lb.ip(), 9901),
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
            .contains("\"healthy_targets\":2")
        },
    )
    .await;
    (pop, stops)
}

/// Reads quote frames for `for_how_long`; returns them (as JSON) and fails on anything else.
async fn quotes<S>(ws: &mut Socket<S>, for_how_long: Duration) -> Vec<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let until = tokio::time::Instant::now() + for_how_long;
    let mut got = Vec::new();
    while tokio::time::Instant::now() < until {
        let next = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a frame within 2 s");
        match next {
            Some(Ok(Message::Text(t))) => got.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Pong(_))) => {}
            other => panic!("expected a quote frame, got {other:?}"),
        }
    }
    got
}

/// The instance every frame names (they must agree: one tunnel, one instance).
fn instance_of(frames: &[serde_json::Value]) -> String {
    let first = frames[0]["instance"].as_str().unwrap().to_owned();
    assert!(frames.iter().all(|f| f["instance"] == first.as_str()));
    first
}

/// Waits for the socket's end: a close frame's code, or None for a plain EOF/reset.
async fn closed<S>(ws: &mut Socket<S>, within: Duration) -> Option<CloseCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let until = tokio::time::Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the socket was still open after {within:?}"),
            Ok(Some(Ok(Message::Close(c)))) => return c.map(|c| c.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
        }
    }
}

fn demo_upgrades(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("meridian_http_requests_total{") && l.contains("/ws/quotes"))
        .filter(|l| l.contains("status=\"101\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotes_stream_through_a_pop_and_a_balancer_and_are_never_cached() {
    let (pop, _stops) = deployment(1).await;
    let url = format!("ws://{}/ws/quotes?symbols=AAPL,MSFT", pop.http);
    let (mut ws, res) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(res.status(), 101);
    let frames = quotes(&mut ws, Duration::from_secs(5)).await;
    // One frame per symbol every 100–250 ms.
    assert!(frames.len() >= 30, "{} frames in 5 s", frames.len());
    let on = instance_of(&frames);
    assert!(on == "i-a" || on == "i-b", "{on}");
    let symbols: std::collections::HashSet<_> = frames
        .iter()
        .map(|f| f["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["AAPL", "MSFT"].into_iter().collect());
    assert!(frames.iter().all(|f| f["price"].as_f64().unwrap() > 0.0));
    // Pings are answered through both proxies.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(Ok(Message::Pong(p))) = ws.next().await {
                return p;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&pong[..], b"are you there");
    let metrics = String::from_utf8_lossy(&get(pop.admin, "/metrics").await.body).into_owned();
    assert!(
        metrics.contains("meridian_edge_websocket_connections 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meridian_edge_websocket_connections_opened_total 1"),
        "{metrics}"
    );

    // A second handshake for the same URL is not an answer from the cache: it reaches an
    // instance (two upgrades over the two instances' counts).
    let (mut again, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert!(!quotes(&mut again, Duration::from_millis(600))
        .await
        .is_empty());
    let mut upgrades = 0;
    let mut seen = String::new();
    for host in [2, 3] {
        let m = get(SocketAddr::new(ip_in(56, 1, host), 80), "/metrics").await;
        seen += &String::from_utf8_lossy(&m.body);
        upgrades += demo_upgrades(&String::from_utf8_lossy(&m.body));
    }
    assert_eq!(upgrades, 2, "{seen}");
    ws.close(None).await.unwrap();
    again.close(None).await.unwrap();
    eventually(
        "the PoP counts the tunnels closed",
        Duration::from_secs(5),
        || async {
            let m = String::from_utf8_lossy(&get(pop.admin, "/metrics").await.body).into_owned();
            m.contains("meridian_edge_websocket_connections 0")
                && m.lines().any(|l| {
                    l.starts_with("meridian_edge_websocket_bytes_out_total ")
                        && l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) > Some(1000.0)
                })
        },
    )
    .await;

    // Without the upgrade headers it is an ordinary GET: the origin's own refusal.
    for _ in 0..2 {
        let plain = get(pop.http, "/ws/quotes").await;
        assert!(
            matches!(plain.status.as_u16(), 400 | 426),
            "{}",
            plain.status
        );
        assert!(!plain.h("x-meridian-instance").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_instance_closes_the_socket_and_a_reconnect_lands_on_the_other() {
    let (pop, mut stops) = deployment(2).await;
    let url = format!("ws://{}/ws/quotes?symbols=NVDA", pop.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let on = instance_of(&quotes(&mut ws, Duration::from_secs(2)).await);
    let i = stops.iter().position(|(n, _)| *n == on).unwrap();
    let (_, stop) = stops.remove(i);
    let _ = stop.send(());
    // The instance says goodbye (1001) through the balancer and the PoP.
    assert_eq!(
        closed(&mut ws, Duration::from_secs(5)).await,
        Some(CloseCode::Away)
    );
    // Reconnecting lands on the instance still up.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let now_on = instance_of(&quotes(&mut ws, Duration::from_secs(1)).await);
    assert_ne!(now_on, on);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotes_stream_to_tls_viewers_and_malformed_upgrades_never_hang() {
    let (pop, _stops) = deployment(3).await;
    let tls = common::tls_to_pop(&pop, b"http/1.1").await;
    let (mut ws, res) =
        tokio_tungstenite::client_async("wss://edge.test/ws/quotes?symbols=AAPL", tls)
            .await
            .unwrap();
    assert_eq!(res.status(), 101);
    let frames = quotes(&mut ws, Duration::from_secs(2)).await;
    assert!(frames.len() >= 6, "{} frames", frames.len());
    instance_of(&frames);

    // Malformed handshakes are ordinary requests: answered, never held open.
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    for (req, ok) in [
        (
            format!("POST /ws/quotes HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade, close\r\n{key}Content-Length: 0\r\n\r\n"),
            &["405", "400", "403"][..],
        ),
        (
            format!("GET /ws/quotes HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{key}Connection: close\r\n\r\n"),
            &["426", "400"][..],
        ),
        (
            format!("GET /ws/quotes HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n{key}\r\n"),
            &["426", "400", "505"][..],
        ),
    ] {
        let got = tokio::time::timeout(Duration::from_secs(5), raw(pop.http, &req))
            .await
            .expect("an answer, not a hang");
        let status = got.split(' ').nth(1).unwrap_or("");
        assert!(ok.contains(&status), "{req:?} got {got}");
        assert!(!got.contains(" 101 "), "{got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http2_viewer_opens_the_quote_stream_with_an_extended_connect() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (pop, _stops) = deployment(4).await;
    let tcp = TcpStream::connect(pop.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // One ordinary request first: the PoP's SETTINGS (with ENABLE_CONNECT_PROTOCOL) have
    // then arrived, and an extended CONNECT may be sent.
    let warm = http::Request::get(format!("http://{}/health", pop.http))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let _ = send.send_request(warm).await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}/ws/quotes?symbols=NVDA", pop.http))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = send.send_request(req).await.unwrap();
    // RFC 8441: a 200 (not a 101), and no accept (there was no key).
    assert_eq!(res.status(), 200, "{:?}", res.headers());
    assert!(res.headers().get("sec-websocket-accept").is_none());
    assert!(!res.headers().get("x-meridian-instance").unwrap().is_empty());
    let stream = hyper::upgrade::on(&mut res).await.unwrap();
    let mut ws = Socket::from_raw_socket(
        TokioIo::new(stream),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let frames = quotes(&mut ws, Duration::from_secs(2)).await;
    assert!(frames.len() >= 4, "{} frames", frames.len());
    assert!(frames.iter().all(|f| f["symbol"] == "NVDA"), "{frames:?}");
    instance_of(&frames);
    // The same connection still serves ordinary requests beside the tunnel.
    let again = http::Request::get(format!("http://{}/health", pop.http))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(again).await.unwrap().status(), 200);
    ws.close(None).await.unwrap();
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, None);

    // An origin that answers an ordinary 200 opened no WebSocket: the client must not take
    // that 2xx for an open one.
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}/api/quotes/AAPL", pop.http))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 502, "{:?}", res.headers());
}
