//! The listener's limits: a connection cap that idle connections give way under, idle
//! connections closed, HTTP/2 pings.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_http::ServerOptions;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The two ways a listener serves: hyper's server for hyper services (`serve_conns`), or
/// hyper's HTTP/1.1 and our own HTTP/2 for handlers (`serve_handlers`). Each limit holds
/// for both.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Hyper,
    Handlers,
}

const KINDS: [Kind; 2] = [Kind::Hyper, Kind::Handlers];

/// Answers "ok" after `delay`, counting the requests begun.
#[derive(Clone)]
struct Ok200 {
    counter: Arc<AtomicUsize>,
    delay: Duration,
}

impl Ok200 {
    fn answer(&self) -> impl std::future::Future<Output = Response<meridian_http::Body>> {
        self.counter.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        async move {
            tokio::time::sleep(delay).await;
            Response::new(meridian_http::full("ok"))
        }
    }
}

impl meridian_http::Handler for Ok200 {
    fn call<B>(
        &self,
        _req: Request<B>,
        _interim: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<meridian_http::Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        Box::pin(self.answer())
    }
}

/// Serves `answer` on `listener` the `kind` way until `shutdown`.
async fn serve_kind(
    kind: Kind,
    listener: tokio::net::TcpListener,
    opts: ServerOptions,
    answer: Ok200,
    shutdown: impl std::future::Future<Output = ()>,
) {
    match kind {
        Kind::Hyper => {
            meridian_http::serve(
                listener,
                opts,
                move |_| {
                    let answer = answer.clone();
                    hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let res = answer.answer();
                        async move { Ok::<_, Infallible>(res.await) }
                    })
                },
                shutdown,
            )
            .await
        }
        Kind::Handlers => {
            meridian_http::serve_handlers(listener, opts, None, move |_| answer.clone(), shutdown)
                .await
        }
    }
}

/// A server answering "ok" (after `delay`), stopped when the returned sender is dropped.
async fn server(
    kind: Kind,
    opts: ServerOptions,
    delay: Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr, stop, _) = counting_server(kind, opts, delay).await;
    (addr, stop)
}

/// [`server`], with the number of requests its handler has begun: a test waits on it
/// to know a request is in flight, instead of sleeping and hoping it is.
async fn counting_server(
    kind: Kind,
    opts: ServerOptions,
    delay: Duration,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Arc<AtomicUsize>,
) {
    let started = Arc::new(AtomicUsize::new(0));
    let answer = Ok200 {
        counter: started.clone(),
        delay,
    };
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_kind(kind, listener, opts, answer, async move {
        let _ = rx.await;
    }));
    (addr, tx, started)
}

/// Waits until `started` reaches `n`, for at most 10 s.
async fn until_started(started: &AtomicUsize, n: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < until,
            "{n} requests did not begin"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads one HTTP/1.1 response whose body is "ok" (the head and the body end with it).
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response was whole");
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"\r\n\r\nok") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_while_every_connection_is_busy() {
    for kind in KINDS {
        at_the_connection_cap_a_new_client_waits_while_every_connection_is_busy_with(kind).await;
    }
}

async fn at_the_connection_cap_a_new_client_waits_while_every_connection_is_busy_with(kind: Kind) {
    let opts = ServerOptions {
        max_connections: 1,
        ..Default::default()
    };
    let (addr, _stop, started) = counting_server(kind, opts, Duration::from_millis(1500)).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(GET).await.unwrap();
    until_started(&started, 1).await;

    // a's request is in flight: b waits (the kernel completed its handshake).
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(GET).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), b.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "b was served while a's request held the only connection"
    );
    assert!(
        read_response(&mut a).await.starts_with("HTTP/1.1 200"),
        "a is served whole"
    );
    // a is idle now, so it makes room for b.
    let res = tokio::time::timeout(Duration::from_secs(10), read_response(&mut b))
        .await
        .expect("b is served once a has nothing in flight");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

/// Idle connections and slowloris connections (a request head trickled in) cannot lock
/// real clients out: at the cap, the one idle longest is closed for the newcomer.
#[tokio::test]
async fn at_the_cap_idle_and_trickling_connections_make_room_for_real_clients() {
    for kind in KINDS {
        at_the_cap_idle_and_trickling_connections_make_room_for_real_clients_with(kind).await;
    }
}

async fn at_the_cap_idle_and_trickling_connections_make_room_for_real_clients_with(kind: Kind) {
    let opts = ServerOptions {
        max_connections: 20,
        ..Default::default()
    };
    let (addr, _stop) = server(kind, opts, Duration::ZERO).await;
    let mut attackers = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // Half of them send a request head one byte at a time, never finishing it.
            s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        }
        attackers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each real client stays connected, so each one needs a place of its own.
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(GET).await.unwrap();
        let res = tokio::time::timeout(Duration::from_secs(2), read_response(&mut c))
            .await
            .expect("a real client is served although the cap is held by attackers");
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        clients.push(c);
    }
    // The oldest attackers were closed to make that room.
    let mut closed = 0;
    for s in &mut attackers {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 10,
        "only {closed} attacker connections were closed"
    );
}

/// hyper re-arms the header read timeout while an HTTP/1 keep-alive connection waits for
/// its next request, so that timeout is the idle limit of HTTP/1 connections.
#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_header_timeout() {
    for kind in KINDS {
        an_idle_http1_keep_alive_connection_is_closed_after_the_header_timeout_with(kind).await;
    }
}

async fn an_idle_http1_keep_alive_connection_is_closed_after_the_header_timeout_with(kind: Kind) {
    let opts = ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (addr, _stop) = server(kind, opts, Duration::ZERO).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was kept open");
}

async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

async fn h2_get(send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>) -> Bytes {
    let req = Request::get("http://test/").body(Empty::new()).unwrap();
    let res = send.send_request(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    for kind in KINDS {
        an_idle_http2_connection_is_closed_and_a_busy_one_is_not_with(kind).await;
    }
}

async fn an_idle_http2_connection_is_closed_and_a_busy_one_is_not_with(kind: Kind) {
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    // Each answer takes longer than the idle limit: a request in flight is not idleness.
    let (addr, _stop) = server(kind, opts, Duration::from_millis(800)).await;
    let (mut send, conn) = h2_client(addr).await;
    assert_eq!(h2_get(&mut send).await, "ok");
    assert_eq!(
        h2_get(&mut send).await,
        "ok",
        "the connection survived a slow answer"
    );
    // The client keeps its side open (a live sender); only the server can end it.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the server closed the idle HTTP/2 connection")
        .unwrap();
    drop(send);
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_dropped() {
    for kind in KINDS {
        an_http2_peer_that_stops_answering_pings_is_dropped_with(kind).await;
    }
}

async fn an_http2_peer_that_stops_answering_pings_is_dropped_with(kind: Kind) {
    let opts = ServerOptions {
        h2_keep_alive_interval: Some(Duration::from_millis(200)),
        h2_keep_alive_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (addr, _stop) = server(kind, opts, Duration::ZERO).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The preface and an empty SETTINGS frame, then silence: no ping is ever answered.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut frames)).await;
    assert!(closed.is_ok(), "a silent HTTP/2 peer kept its connection");
    // A PING frame (type 6) was sent before the connection was closed.
    assert!(has_frame(&frames, 6), "no PING was sent");
}

/// Whether the server's HTTP/2 frames include one of `kind`.
fn has_frame(mut b: &[u8], kind: u8) -> bool {
    for _ in 0..1000 {
        if b.len() < 9 {
            return false;
        }
        let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        if b[3] == kind {
            return true;
        }
        b = &b[(9 + len).min(b.len())..];
    }
    false
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_returns() {
    for kind in KINDS {
        shutdown_lets_a_request_in_flight_finish_then_returns_with(kind).await;
    }
}

/// A server answering "ok" after 500 ms the `kind` way until the returned sender is
/// used: its address, the count of requests begun, and its task.
async fn stoppable(
    kind: Kind,
    opts: ServerOptions,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(AtomicUsize::new(0));
    let answer = Ok200 {
        counter: started.clone(),
        delay: Duration::from_millis(500),
    };
    let served = tokio::spawn(serve_kind(kind, listener, opts, answer, async move {
        let _ = rx.await;
    }));
    (addr, tx, started, served)
}

/// The next response on `s`, which must be a 200.
async fn answered(s: &mut TcpStream) -> String {
    let res = tokio::time::timeout(Duration::from_secs(10), read_response(s))
        .await
        .expect("the request was answered");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    res
}

/// A connection our HTTP/1.1 server handed to hyper (a request with a body) hears the
/// shutdown too: its request in flight is answered and it closes, well before the drain
/// time runs out.
#[tokio::test]
async fn shutdown_closes_a_connection_hyper_serves_for_our_server() {
    let opts = ServerOptions {
        drain: Duration::from_secs(60),
        ..Default::default()
    };
    let (addr, stop, started, served) = stoppable(Kind::Handlers, opts).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A first request our server answers itself, then a wait between keep-alive
    // requests (the connection waits for a head, and for the close).
    s.write_all(GET).await.unwrap();
    answered(&mut s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    until_started(&started, 2).await;
    let _ = stop.send(());
    let res = answered(&mut s).await;
    // hyper was told: it says so on the answer.
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the connection closed on shutdown, not at the end of the drain")
        .unwrap();
}

async fn shutdown_lets_a_request_in_flight_finish_then_returns_with(kind: Kind) {
    let (addr, stop, started, served) = stoppable(kind, ServerOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    until_started(&started, 1).await;
    let _ = stop.send(());
    answered(&mut s).await;
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve returned once its connection closed")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// One HTTP/2 frame: type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The next frame from the server: (type, flags, stream, payload); None once closed.
async fn next_frame(s: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).await.ok()?;
    let n = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).await.ok()?;
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Some((h[3], h[4], stream, p))
}

/// A request that arrives while a keep-alive ping waits for its answer is served, and the
/// connection stays: the pinger never sends a second ping while one is out.
#[tokio::test]
async fn a_request_arriving_while_a_ping_is_out_is_answered() {
    for kind in KINDS {
        let opts = ServerOptions {
            h2_keep_alive_interval: Some(Duration::from_millis(200)),
            h2_keep_alive_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let (addr, _stop) = server(kind, opts, Duration::from_millis(300)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&h2_frame(4, 0, 0, &[])).await.unwrap();
        // Until the server's first PING (SETTINGS acknowledged on the way).
        let ping = loop {
            let (ty, flags, _, payload) =
                tokio::time::timeout(Duration::from_secs(5), next_frame(&mut s))
                    .await
                    .expect("a ping within 5 s")
                    .expect("the connection stays open");
            if ty == 4 && flags & 1 == 0 {
                s.write_all(&h2_frame(4, 1, 0, &[])).await.unwrap();
            }
            if ty == 6 && flags & 1 == 0 {
                break payload;
            }
        };
        // GET / over http (static table: :method GET, :scheme http, :path /), then the
        // ping's answer, late.
        s.write_all(&h2_frame(1, 5, 1, &[0x82, 0x86, 0x84]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(&h2_frame(6, 1, 0, &ping)).await.unwrap();
        let mut answered = false;
        while let Ok(Some((ty, flags, stream, payload))) =
            tokio::time::timeout(Duration::from_secs(3), next_frame(&mut s)).await
        {
            if ty == 6 && flags & 1 == 0 {
                s.write_all(&h2_frame(6, 1, 0, &payload)).await.unwrap();
            }
            assert_ne!(ty, 7, "{kind:?}: GOAWAY instead of the answer");
            if ty == 1 && stream == 1 {
                answered = true;
                break;
            }
        }
        assert!(answered, "{kind:?}: stream 1 was never answered");
    }
}
