//! What the balancer does to the heads it passes on: the forwarding fields it adds, the
//! hop-by-hop fields it drops both ways, a retried request's head, honest framing.

mod common;

use common::targets::*;
use common::{start, wait_healthy};
use meridian_config::{Algorithm, NodeSpec};
use std::time::Duration;

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
    answering(name, |_| {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
         X-Request-Id: theirs\r\nConnection: keep-alive, X-Hop\r\n\
         X-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
         Date: Tue, 01 Jan 2030 00:00:00 GMT\r\nSet-Cookie: a=1\r\n\
         Set-Cookie: b=2\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\nhello"
            .to_owned()
    })
    .await
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
