//! gRPC end to end: a viewer speaking HTTP/2 over TLS to a PoP, through a regional
//! balancer's `grpc` target group, to demo instances (the RichesReach stand-in). Unary and
//! server-streaming calls arrive with their trailers, streamed, and never from the cache.
//! Addresses 127.66.20–29.x.

mod common;

use bytes::Bytes;
use common::{eventually, ip_in, pop_in, raw};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_demo::grpc::{Quote, QuoteRequest};
use meridian_demo::{DemoOptions, Identity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

async fn instance(addr: SocketAddr, name: &str) {
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
    tokio::spawn(meridian_demo::serve(addr, opts, std::future::pending()));
    eventually("the instance starts", Duration::from_secs(10), || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// A balancer whose rule sends the Quotes service to a `grpc` group (checked with the
/// gRPC health protocol); everything else goes to the default HTTP/1.1 group.
async fn balancer(listen: SocketAddr, targets: &[(SocketAddr, &str)]) {
    let text = format!(
        r#"{}
[load_balancer]
[load_balancer.health_check]
interval = "1s"
timeout = "300ms"

[[load_balancer.target_group]]
name = "web"

[[load_balancer.target_group]]
name = "quotes"
protocol_version = "grpc"
health_check = {{ path = "/grpc.health.v1.Health/Check", grpc_code = "0", interval = "1s", timeout = "300ms" }}

[[load_balancer.rule]]
path = ["/richesreach.v1.Quotes/*"]
forward = "quotes"
"#,
        common::BASE
    );
    let config = meridian_config::Config::parse(&text, "lb.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .load_balancer;
    assert_eq!(
        config.target_groups[1].protocol_version,
        meridian_config::ProtocolVersion::Grpc
    );
    common::start_balancer("lb-grpc", listen, targets, config).await;
}

const GRPC_BEHAVIOR: &str = r#"
[[distribution.behavior]]
path_pattern = "/richesreach.v1.Quotes/*"
origin_group = "o"
grpc = true
"#;

/// Two instances behind a balancer behind a PoP, all on 127.66.`net`.
async fn deployment(net: u8) -> common::Pop {
    let a = SocketAddr::new(ip_in(66, net, 2), 80);
    let b = SocketAddr::new(ip_in(66, net, 3), 80);
    let lb = SocketAddr::new(ip_in(66, net, 10), 80);
    instance(a, "i-a").await;
    instance(b, "i-b").await;
    balancer(lb, &[(a, "i-a"), (b, "i-b")]).await;
    let pop = pop_in(66, net, &[format!("http://{lb}")], GRPC_BEHAVIOR).await;
    eventually(
        "the gRPC group sees both instances",
        Duration::from_secs(20),
        || async {
            let t = raw(
                SocketAddr::new(lb.ip(), 9901),
                "GET /targets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            t.matches("grpc-status 0").count() >= 2
        },
    )
    .await;
    pop
}

/// An HTTP/2 connection to the PoP over TLS (h2 by ALPN), as a gRPC client opens one.
async fn h2_over_tls(pop: &common::Pop) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = common::tls_to_pop(pop, b"h2").await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the PoP speaks h2"
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

struct Call {
    head: http::response::Parts,
    frames: Vec<(Instant, Bytes)>,
    trailers: Option<HeaderMap>,
}

impl Call {
    fn status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.head.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
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

async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    symbol: &str,
    count: u32,
) -> Call {
    let msg = QuoteRequest {
        symbol: symbol.into(),
        count,
    }
    .encode();
    let req = Request::post(format!("https://edge.test/richesreach.v1.Quotes/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "5S")
        .body(Full::new(meridian_http::grpc::frame(&msg)))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("a response head within 5 s")
        .unwrap();
    let (head, mut body) = res.into_parts();
    let mut frames = Vec::new();
    let mut trailers = None;
    for _ in 0..100 {
        let next = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
        let Some(frame) = next.expect("the body goes on within 5 s") else {
            break;
        };
        match frame.expect("the body is not cut").into_data() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unary_and_streaming_calls_pass_the_pop_and_the_balancer_with_trailers() {
    let pop = deployment(20).await;
    let mut h2 = h2_over_tls(&pop).await;

    let first = call(&mut h2, "GetQuote", "AAPL", 0).await;
    assert_eq!(first.head.status, StatusCode::OK);
    assert_eq!(first.status(), Some("0"), "{:?}", first.head.headers);
    assert!(first.trailers.is_some(), "the trailers reached the viewer");
    let q1 = first.quotes();
    assert_eq!(q1.len(), 1);
    assert_eq!(q1[0].symbol, "AAPL");

    // Never cached: the same call again is answered by an instance anew.
    let second = call(&mut h2, "GetQuote", "AAPL", 0).await;
    assert_eq!(second.status(), Some("0"));
    let q2 = second.quotes();
    assert_ne!(
        q1[0].served, q2[0].served,
        "the second call came from a cache"
    );
    let x_cache = second
        .head
        .headers
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        !x_cache.unwrap_or_default().contains("Hit"),
        "{:?}",
        second.head.headers
    );

    let stream = call(&mut h2, "StreamQuotes", "MSFT", 5).await;
    assert_eq!(stream.status(), Some("0"));
    let quotes = stream.quotes();
    assert_eq!(
        quotes.iter().map(|q| q.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let spread = stream.frames.last().unwrap().0 - stream.frames.first().unwrap().0;
    assert!(
        spread >= Duration::from_millis(120),
        "the quotes arrived together ({spread:?} apart): something buffered the stream"
    );

    // The instance's own error status reaches the viewer.
    let bad = call(&mut h2, "GetQuote", "no such!", 0).await;
    assert_eq!(bad.status(), Some("3"), "{:?}", bad.head.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grpc_call_with_no_origin_is_unavailable_in_grpcs_shape() {
    // A member nobody listens on: the PoP's 502 becomes grpc-status 14.
    let dead = SocketAddr::new(ip_in(66, 21, 10), 80);
    let pop = pop_in(66, 21, &[format!("http://{dead}")], GRPC_BEHAVIOR).await;
    let mut h2 = h2_over_tls(&pop).await;
    let down = call(&mut h2, "GetQuote", "AAPL", 0).await;
    assert_eq!(down.head.status, StatusCode::OK);
    assert_eq!(down.status(), Some("14"), "{:?}", down.head.headers);
    assert!(down.frames.is_empty());
}
