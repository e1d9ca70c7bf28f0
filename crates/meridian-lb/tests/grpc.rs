//! gRPC through the balancer (ALB's `grpc` target groups): unary and server-streaming calls
//! to demo instances over h2c with their trailers, a target's error status passed on, the
//! balancer's own failures in gRPC's shape, and the gRPC health check protocol deciding
//! health. Addresses 127.66.1–9.x.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_config::{ProtocolVersion, StatusMatcher};
use meridian_demo::grpc::{Quote, QuoteRequest, Writer, NOT_SERVING, SERVING};
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::{http_get, wait_healthy};

fn at(net: u8, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::Ipv4Addr::new(127, 66, net, host).into(), port)
}

async fn up(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "{addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A demo instance (HTTP/1.1 and h2c on one port); runs until the test ends.
async fn instance(addr: SocketAddr, name: &str) {
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
    tokio::spawn(meridian_demo::serve(addr, opts, std::future::pending()));
    up(addr).await;
}

/// A balancer whose one target group is `grpc`, checked with the gRPC health protocol.
fn options(net: u8, targets: &[SocketAddr]) -> LbOptions {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    let mut group = config.effective_target_groups().remove(0);
    group.name = "quotes".into();
    group.protocol_version = ProtocolVersion::Grpc;
    group.health_check.path = meridian_health::GRPC_HEALTH_CHECK_PATH.into();
    group.health_check.grpc_codes = Some(StatusMatcher(vec![(0, 0)]));
    group.health_check.interval = Duration::from_millis(100);
    group.health_check.timeout = Duration::from_millis(80);
    group.health_check.healthy_threshold = 1;
    group.health_check.unhealthy_threshold = 1;
    config.target_groups = vec![group];
    config.rules.clear();
    let targets: Vec<(SocketAddr, String)> = targets
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, format!("i-{i}")))
        .collect();
    common::lb_options(
        "lb-grpc",
        at(net, 1, 80),
        at(net, 1, 9900),
        &targets,
        config,
    )
}

/// What a gRPC call got: the head, each data frame with when it arrived, the trailers.
struct Call {
    head: http::response::Parts,
    frames: Vec<(Instant, Bytes)>,
    trailers: Option<HeaderMap>,
}

impl Call {
    /// `grpc-status` from the trailers, or from the head of a trailers-only answer.
    fn status(&self) -> Option<String> {
        let v = self
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.head.headers.get("grpc-status"))?;
        Some(v.to_str().ok()?.to_owned())
    }

    fn quotes(&self) -> Vec<Quote> {
        let body: Vec<u8> = self.frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
        meridian_http::grpc::messages(&body)
            .expect("well-framed messages")
            .iter()
            .map(|m| Quote::decode(m).expect("a Quote"))
            .collect()
    }
}

/// One gRPC call over h2c (prior knowledge), as a gRPC client makes it.
async fn call(addr: SocketAddr, path: &str, message: &[u8], content_type: &str) -> Call {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(meridian_http::grpc::frame(message)))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("a response head within 5 s")
        .unwrap();
    read(res).await
}

async fn read(res: Response<Incoming>) -> Call {
    let (head, mut body) = res.into_parts();
    let mut frames = Vec::new();
    let mut trailers = None;
    for _ in 0..100 {
        let next = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
        let Some(frame) = next.expect("the body goes on within 5 s") else {
            break;
        };
        let frame = frame.expect("the body is not cut");
        match frame.into_data() {
            Ok(d) => frames.push((Instant::now(), d)),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Call {
        head,
        frames,
        trailers,
    }
}

fn quote_request(symbol: &str, count: u32) -> Vec<u8> {
    QuoteRequest {
        symbol: symbol.into(),
        count,
    }
    .encode()
}

#[tokio::test]
async fn unary_and_server_streaming_calls_pass_with_their_trailers() {
    let targets = [at(1, 11, 7001), at(1, 12, 7001)];
    for (i, t) in targets.iter().enumerate() {
        instance(*t, &format!("i-{i}")).await;
    }
    let (lb, admin) = common::start(options(1, &targets)).await;
    // The gRPC health protocol (SERVING) is what makes them healthy.
    wait_healthy(admin, 2).await;

    let unary = call(
        lb,
        "/richesreach.v1.Quotes/GetQuote",
        &quote_request("AAPL", 0),
        "application/grpc",
    )
    .await;
    assert_eq!(unary.head.status, StatusCode::OK);
    assert_eq!(
        unary.status().as_deref(),
        Some("0"),
        "grpc-status in the trailers"
    );
    assert!(unary.trailers.is_some(), "the trailers reached the client");
    let quotes = unary.quotes();
    assert_eq!(quotes.len(), 1);
    assert_eq!(quotes[0].symbol, "AAPL");
    assert!(quotes[0].price > 0.0);

    let stream = call(
        lb,
        "/richesreach.v1.Quotes/StreamQuotes",
        &quote_request("MSFT", 5),
        "application/grpc+proto",
    )
    .await;
    assert_eq!(stream.status().as_deref(), Some("0"));
    let quotes = stream.quotes();
    assert_eq!(
        quotes.iter().map(|q| q.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(quotes.iter().all(|q| q.symbol == "MSFT"));
    // Streamed, not buffered: the target waits 50 ms between quotes, so the first
    // arrives well before the last.
    let first = stream.frames.first().unwrap().0;
    let last = stream.frames.last().unwrap().0;
    assert!(
        last.duration_since(first) >= Duration::from_millis(120),
        "the quotes arrived together ({:?} apart): the balancer buffered the stream",
        last.duration_since(first)
    );
}

#[tokio::test]
async fn a_targets_error_status_passes_on_and_the_balancers_own_failures_are_grpc_shaped() {
    let target = at(2, 11, 7001);
    instance(target, "i-0").await;
    let (lb, admin) = common::start(options(2, &[target])).await;
    wait_healthy(admin, 1).await;

    // The target's own INVALID_ARGUMENT reaches the client as it sent it.
    let bad = call(
        lb,
        "/richesreach.v1.Quotes/GetQuote",
        &quote_request("no such!", 0),
        "application/grpc",
    )
    .await;
    assert_eq!(bad.head.status, StatusCode::OK);
    assert_eq!(bad.status().as_deref(), Some("3"));
    let message = bad
        .head
        .headers
        .get("grpc-message")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        message.unwrap_or_default().contains("ticker"),
        "{:?}",
        bad.head.headers
    );

    // A method the target lacks: UNIMPLEMENTED, from the target.
    let none = call(
        lb,
        "/richesreach.v1.Quotes/Nothing",
        b"",
        "application/grpc",
    )
    .await;
    assert_eq!(none.status().as_deref(), Some("12"));

    // Not gRPC: a grpc target group refuses it.
    let plain = http_get(lb, "/api/quotes/AAPL").await;
    assert!(plain.starts_with("HTTP/1.1 415"), "{plain}");

    // A group whose only target refuses connections: HTTP 200, grpc-status 14.
    let dead = at(2, 12, 7001);
    let (lb2, _) = common::start(options(3, &[dead])).await;
    let down = call(
        lb2,
        "/richesreach.v1.Quotes/GetQuote",
        &quote_request("AAPL", 0),
        "application/grpc",
    )
    .await;
    assert_eq!(down.head.status, StatusCode::OK);
    assert_eq!(
        down.status().as_deref(),
        Some("14"),
        "{:?}",
        down.head.headers
    );
    assert!(down.head.headers.contains_key("grpc-message"));
    assert!(down.frames.is_empty(), "a trailers-only answer has no body");
}

/// A gRPC server whose health service reports `status` (SERVING or NOT_SERVING).
async fn health_server(addr: SocketAddr, status: Arc<AtomicU64>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let status = status.clone();
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let msg = Writer::default()
                    .varint(1, status.load(Ordering::SeqCst))
                    .finish();
                async move {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let body = Full::new(meridian_http::grpc::frame(&msg))
                        .map_err(|never| match never {})
                        .with_trailers(async { Some(Ok::<_, std::convert::Infallible>(trailers)) });
                    let mut res = Response::new(body);
                    res.headers_mut()
                        .insert("content-type", "application/grpc".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
}

#[tokio::test]
async fn the_grpc_health_check_marks_a_not_serving_target_unhealthy() {
    let target = at(4, 11, 7001);
    let status = Arc::new(AtomicU64::new(SERVING));
    health_server(target, status.clone()).await;
    let (_lb, admin) = common::start(options(4, &[target])).await;
    wait_healthy(admin, 1).await;

    // Still answering grpc-status 0, but NOT_SERVING: unhealthy.
    status.store(NOT_SERVING, Ordering::SeqCst);
    wait_healthy(admin, 0).await;
    let targets = http_get(admin, "/targets").await;
    assert!(targets.contains("not SERVING"), "{targets}");

    status.store(SERVING, Ordering::SeqCst);
    wait_healthy(admin, 1).await;
}
