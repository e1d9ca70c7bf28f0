//! WebSockets through the balancer: tunnels to demo instances, counted per target,
//! cut when idle, drained with a close frame. Addresses 127.56.20–29.x.

use futures_util::{SinkExt, StreamExt};
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::{LbOptions, LoadBalancer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{http_get, wait_healthy};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn at(net: u8, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::Ipv4Addr::new(127, 56, net, host).into(), port)
}

async fn up(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "{addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A demo instance; the sender stops it.
async fn instance(addr: SocketAddr, name: &str) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: "test-1a".into(),
            instance: name.into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    };
    tokio::spawn(meridian_demo::serve(addr, opts, async {
        let _ = rx.await;
    }));
    up(addr).await;
    tx
}

fn options(net: u8, targets: &[(SocketAddr, &str)]) -> LbOptions {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    // The default deployment's settings, with the one implicit group they describe (not
    // its declared groups and rules: the gRPC group would check these targets too).
    config.target_groups.clear();
    config.rules.clear();
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    config.deregistration_delay = Duration::from_millis(600);
    config.idle_timeout = Duration::from_secs(1);
    let targets: Vec<(SocketAddr, String)> =
        targets.iter().map(|(a, n)| (*a, n.to_string())).collect();
    common::lb_options("lb-ws", at(net, 1, 80), at(net, 1, 9900), &targets, config)
}

/// Opens a quote socket and reads frames for `secs`; returns it and the instance named.
async fn open(lb: SocketAddr, secs: f64) -> (Ws, String) {
    let url = format!("ws://{lb}/ws/quotes?symbols=AAPL");
    let (mut ws, res) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .expect("a handshake within 5 s")
    .unwrap();
    assert_eq!(res.status(), 101);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut on = None;
    let mut n = 0;
    while Instant::now() < until || on.is_none() {
        let m = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a frame within 2 s");
        let Some(Ok(Message::Text(t))) = m else {
            panic!("expected a quote, got {m:?}")
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let i = v["instance"].as_str().unwrap().to_owned();
        assert!(
            on.get_or_insert(i.clone()) == &i,
            "one tunnel, one instance"
        );
        n += 1;
    }
    assert!(n >= 1, "{n} frames");
    (ws, on.unwrap_or_default())
}

/// A balancer for `opts` served with `server`'s limits, once `healthy` targets are; the
/// tasks returned run its health checks.
async fn serve(
    opts: &LbOptions,
    server: meridian_http::ServerOptions,
    healthy: usize,
) -> (LoadBalancer, Vec<tokio::task::JoinHandle<()>>) {
    let lb = LoadBalancer::new(opts);
    let checks = lb.start_health_checks(opts);
    let listener = TcpListener::bind(opts.listen).await.unwrap();
    let proxy = lb.clone();
    tokio::spawn(meridian_http::serve(
        listener,
        server,
        move |peer| proxy.service(peer),
        std::future::pending(),
    ));
    let until = Instant::now() + Duration::from_secs(20);
    while lb.group().healthy_count() < healthy {
        assert!(Instant::now() < until, "targets did not become healthy");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    (lb, checks)
}

/// Reads until the socket ends: the close code, or None for an end without a close frame.
async fn end_of(ws: &mut Ws, within: Duration) -> (Option<CloseCode>, usize) {
    let until = tokio::time::Instant::now() + within;
    let mut frames = 0;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the socket was still open after {within:?}"),
            Ok(Some(Ok(Message::Close(c)))) => return (c.map(|c| c.code), frames),
            Ok(Some(Ok(_))) => frames += 1,
            Ok(Some(Err(_))) | Ok(None) => return (None, frames),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_target_gets_close_1001_after_the_deregistration_delay() {
    let (a, b) = (at(20, 2, 80), at(20, 3, 80));
    let _sa = instance(a, "i-a").await;
    let _sb = instance(b, "i-b").await;
    let opts = options(20, &[(a, "i-a"), (b, "i-b")]);
    let (lb, _checks) = serve(&opts, meridian_http::ServerOptions::default(), 2).await;
    let (mut first, on) = open(opts.listen, 0.5).await;
    let (mut second, other_on) = open(opts.listen, 0.5).await;
    assert_ne!(
        on, other_on,
        "round robin puts the two sockets on the two targets"
    );
    assert_eq!(lb.websocket_connections(), 2);

    let started = Instant::now();
    let drain = tokio::spawn({
        let lb = lb.clone();
        let on = on.clone();
        async move { lb.drain_target_websockets(&on).await }
    });
    // Quotes keep coming during the delay, then the close frame, between two frames.
    let (code, frames) = end_of(&mut first, Duration::from_secs(4)).await;
    assert_eq!(code, Some(CloseCode::Away));
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert!(frames >= 2, "{frames} frames during the delay");
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .unwrap()
        .unwrap();
    // The other target's socket is untouched.
    let m = tokio::time::timeout(Duration::from_secs(2), second.next()).await;
    assert!(matches!(m, Ok(Some(Ok(Message::Text(_))))), "{m:?}");
    assert_eq!(lb.websocket_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_balancer_closes_its_tunnels_with_1001_and_counts_them_per_target() {
    let a = at(21, 2, 80);
    let _sa = instance(a, "i-a").await;
    let opts = options(21, &[(a, "i-a")]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(meridian_lb::run(opts.clone(), async {
        let _ = stopped.await;
    }));
    up(opts.listen).await;
    wait_healthy(opts.admin, 1).await;
    let (mut ws, on) = open(opts.listen, 0.3).await;
    assert_eq!(on, "i-a");
    let metrics = http_get(opts.admin, "/metrics").await;
    assert!(
        metrics.contains("lb_websocket_connections{target=\"i-a\"} 1"),
        "{metrics}"
    );
    let _ = stop.send(());
    let (code, _) = end_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Away));
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the balancer stops")
        .unwrap()
        .unwrap();
}

/// Copies `r` to `w` until EOF; once frozen, holds both and passes nothing.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::select! {
            n = r.read(&mut buf) => n,
            _ = frozen.wait_for(|f| *f) => break,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) if *frozen.borrow() => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _held = (r, w);
    std::future::pending::<()>().await;
}

/// A TCP relay in front of `to` that can be frozen: a machine that stops answering
/// without closing anything.
async fn freezable(listen: SocketAddr, to: SocketAddr) -> Arc<tokio::sync::watch::Sender<bool>> {
    let frozen = Arc::new(tokio::sync::watch::channel(false).0);
    let listener = TcpListener::bind(listen).await.unwrap();
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let rx = f.subscribe();
            tokio::spawn(async move {
                if *rx.borrow() {
                    // Accepted and held: the frozen machine's kernel still completes
                    // handshakes, nothing answers.
                    let _held = client;
                    std::future::pending::<()>().await;
                    return;
                }
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pump(cr, sw, rx.clone()), pump(sr, cw, rx));
            });
        }
    });
    frozen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_target_is_cut_after_the_idle_timeout_and_a_reconnect_lands_elsewhere() {
    let (a, relay, b) = (at(22, 2, 80), at(22, 4, 80), at(22, 3, 80));
    let _sa = instance(a, "i-a").await;
    let _sb = instance(b, "i-b").await;
    let frozen = freezable(relay, a).await;
    let opts = options(22, &[(relay, "i-a"), (b, "i-b")]);
    tokio::spawn(meridian_lb::run(opts.clone(), std::future::pending()));
    up(opts.listen).await;
    wait_healthy(opts.admin, 2).await;
    // Round robin: one of two sockets lands on the relayed instance.
    let (s1, on1) = open(opts.listen, 0.2).await;
    let (s2, on2) = open(opts.listen, 0.2).await;
    let mut ws = if on1 == "i-a" { s1 } else { s2 };
    assert!(on1 == "i-a" || on2 == "i-a");

    frozen.send_replace(true);
    let started = Instant::now();
    let (code, _) = end_of(&mut ws, Duration::from_secs(5)).await;
    // Cut by the balancer's idle timeout (1 s): no close frame from a frozen machine.
    assert_eq!(code, None);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    // The frozen target fails its checks; the reconnect goes to the other one.
    wait_healthy(opts.admin, 1).await;
    let (_ws, on) = open(opts.listen, 0.5).await;
    assert_eq!(on, "i-b");
}

/// A tunnel keeps its client connection's place under the server's connection cap (once
/// hyper let an upgraded connection go, its place was given back, so tunnels, two file
/// descriptors each, were outside any limit), and at the cap gives it up to a new client
/// once it has been busy longer than a request head may take.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tunnel_counts_against_the_connection_cap_and_gives_way_at_it() {
    let a = at(23, 2, 80);
    let _sa = instance(a, "i-a").await;
    let opts = options(23, &[(a, "i-a")]);
    let server = meridian_http::ServerOptions {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let (_lb, _checks) = serve(&opts, server, 1).await;
    let (mut ws, _) = open(opts.listen, 0.3).await;
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        http_get(opts.listen, "/api/quotes/AAPL"),
    )
    .await;
    assert!(
        waited.is_err(),
        "a new connection was served while a young tunnel held the only place: {waited:?}"
    );
    // Busy past the head timeout, the tunnel makes room for a new client, and ends.
    let served = http_get(opts.listen, "/api/quotes/AAPL").await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let (code, _) = end_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, None, "evicted without a close frame");
}

/// `options` with its one group speaking HTTP/2, WebSockets as streams when `streams`.
fn http2_options(net: u8, targets: &[(SocketAddr, &str)], streams: bool) -> LbOptions {
    let mut opts = options(net, targets);
    let mut group = opts.config.effective_target_groups().remove(0);
    group.protocol_version = meridian_config::ProtocolVersion::Http2;
    group.websocket_streams = streams;
    opts.config.target_groups = vec![group];
    opts
}

/// A target group that speaks HTTP/2 to its targets, with `websocket_streams`, carries a
/// client's HTTP/1.1 WebSocket as an RFC 8441 extended CONNECT stream: the client gets its
/// 101 (with the accept its key calls for, which tungstenite checks) and quotes, both ways.
/// (That one connection carries the tunnels is measured by bench/ws.sh: the balancer's
/// descriptors.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http2_target_group_carries_websockets_as_extended_connect_streams() {
    let a = at(24, 2, 80);
    let _sa = instance(a, "i-a").await;
    let opts = http2_options(24, &[(a, "i-a")], true);
    let (lb, _checks) = serve(&opts, meridian_http::ServerOptions::default(), 1).await;
    let (mut first, on) = open(opts.listen, 0.3).await;
    let (_second, _) = open(opts.listen, 0.3).await;
    assert_eq!(on, "i-a");
    assert_eq!(lb.websocket_connections(), 2);
    // Frames go both ways: a ping from the client is answered through the stream.
    first
        .send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        assert!(Instant::now() < until, "no pong through the stream");
        match tokio::time::timeout(Duration::from_secs(2), first.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(&p[..], b"hi");
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("{other:?}"),
        }
    }
    first.close(None).await.unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while lb.websocket_connections() != 1 {
        assert!(Instant::now() < until, "the closed tunnel is still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A handshake with no key has no accept to answer with: it goes to the target as a
    // plain GET (no stream asked to become a tunnel), whose refusal the client gets, and no
    // tunnel is counted.
    let mut s = TcpStream::connect(opts.listen).await.unwrap();
    s.write_all(
        b"GET /ws/quotes?symbols=AAPL HTTP/1.1\r\nHost: lb\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&got[..n]);
    assert!(got.starts_with("HTTP/1.1 4"), "{got}");
    assert!(
        got.to_ascii_lowercase()
            .contains("x-meridian-instance: i-a"),
        "{got}"
    );
    assert_eq!(lb.websocket_connections(), 1);
}

/// Without `websocket_streams` an HTTP/2 group's WebSockets go as HTTP/1.1 upgrades, as to
/// any group (a target that has not enabled RFC 8441 would reset every stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http2_target_group_without_websocket_streams_upgrades_over_http1() {
    let a = at(25, 2, 80);
    let _sa = instance(a, "i-a").await;
    let opts = http2_options(25, &[(a, "i-a")], false);
    let (lb, _checks) = serve(&opts, meridian_http::ServerOptions::default(), 1).await;
    let (_ws, on) = open(opts.listen, 0.3).await;
    assert_eq!(on, "i-a");
    assert_eq!(lb.websocket_connections(), 1);
}
