//! 103 Early Hints (RFC 8297) through a PoP: an origin's hints reach a page navigation's
//! viewer before the final response exists, are never stored (a hit has none), and never go to an HTTP/1.0
//! client (RFC 9110 §15.2); a balancer between relays them too. HTTP/3 viewers: `http3.rs`.
//! Addresses: 127.106/16.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BLOCK: u8 = 106;

/// Reads from `s` until `buf` holds `until`, or 5 s pass.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, until: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(until) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
}

/// A page navigation over HTTP/2: the interim response that came first (None when the
/// answer came without one), and the answer still to come.
async fn h2_navigation(
    c: &mut h2::client::SendRequest<bytes::Bytes>,
    path: &str,
) -> (Option<http::Response<()>>, h2::client::ResponseFuture) {
    let req = http::Request::get(format!("http://edge.test{path}"))
        .header("accept", "text/html")
        .body(())
        .unwrap();
    let (mut answer, _) = c.send_request(req, true).unwrap();
    let hint = tokio::time::timeout(
        Duration::from_secs(5),
        std::future::poll_fn(|cx| answer.poll_informational(cx)),
    )
    .await
    .expect("a hint or the answer within 5 s");
    (hint.and_then(Result::ok), answer)
}

#[tokio::test]
async fn an_origins_early_hints_reach_an_http1_viewer_before_the_answer_and_are_not_stored() {
    let oa = SocketAddr::new(ip_in(BLOCK, 1, 2), 80);
    let (release, hits) = hinting_origin(oa).await;
    let p = pop_in(BLOCK, 1, &[format!("http://{oa}")], "").await;

    for (method, path) in [("GET", "/hinted/page"), ("POST", "/hinted/form")] {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nhost: edge.test\r\naccept: text/html\r\ncontent-length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        // The hint arrives while the origin still holds its answer back.
        let mut got = Vec::new();
        read_until(&mut s, &mut got, "\r\n\r\n").await;
        let head = String::from_utf8_lossy(&got).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 103 Early Hints\r\n"),
            "{method}: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("link: </app.css>; rel=preload; as=style\r\n"),
            "{method}: {head}"
        );
        assert!(!head.contains("HTTP/1.1 200"), "{method}: {head}");
        release.notify_one();
        read_until(&mut s, &mut got, &format!("page {path}")).await;
        let all = String::from_utf8_lossy(&got).into_owned();
        let answer = all.split_once("\r\n\r\n").map(|(_, r)| r).unwrap_or("");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{method}: {all}");
        assert!(all.ends_with(&format!("page {path}")), "{method}: {all}");
    }

    // A hit: the final answer alone, from the cache; the origin was asked once.
    let again = raw(
        p.http,
        "GET /hinted/page HTTP/1.1\r\nhost: edge.test\r\naccept: text/html\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
    assert!(!again.contains(" 103 "), "{again}");
    assert_eq!(hits.lock().unwrap().get("/hinted/page"), Some(&1));

    // HTTP/1.0: no interim response at all.
    release.notify_one();
    let old = raw(
        p.http,
        "GET /hinted/old HTTP/1.0\r\nhost: edge.test\r\naccept: text/html\r\n\r\n",
    )
    .await;
    assert!(
        old.starts_with("HTTP/1.0 200 OK\r\n") || old.starts_with("HTTP/1.1 200 OK\r\n"),
        "{old}"
    );
    assert!(!old.contains(" 103 "), "{old}");

    // Not a page navigation (no HTML accepted): browsers use no hints there, none asked.
    release.notify_one();
    let api = raw(
        p.http,
        "GET /hinted/api HTTP/1.1\r\nhost: edge.test\r\naccept: application/json\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(api.starts_with("HTTP/1.1 200 OK\r\n"), "{api}");
}

#[tokio::test]
async fn an_origins_early_hints_reach_an_h2_viewer_before_the_answer() {
    let oa = SocketAddr::new(ip_in(BLOCK, 2, 2), 80);
    let (release, _hits) = hinting_origin(oa).await;
    let p = pop_in(BLOCK, 2, &[format!("http://{oa}")], "").await;
    // HTTP/2 with prior knowledge over plain TCP, then over TLS by ALPN.
    let plain = TcpStream::connect(p.http).await.unwrap();
    let (c, conn) = h2::client::handshake(plain).await.unwrap();
    tokio::spawn(conn);
    let tls = tls_to_pop(&p, b"h2").await;
    let (c_tls, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    for (what, mut c) in [("h2c", c), ("h2 over TLS", c_tls)] {
        let path = format!("/hinted/{}", what.replace(' ', "-"));
        let (hint, answer) = h2_navigation(&mut c, &path).await;
        let hint = hint.expect("an interim response before the answer");
        assert_eq!(hint.status(), 103, "{what}");
        assert_eq!(
            hint.headers().get("link").and_then(|v| v.to_str().ok()),
            Some("</app.css>; rel=preload; as=style"),
            "{what}"
        );
        release.notify_one();
        let res = answer.await.unwrap();
        assert_eq!(res.status(), 200, "{what}");
        let mut body = res.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, format!("page {path}").as_bytes(), "{what}");
    }
}

#[tokio::test]
async fn hints_pass_the_balancer_and_the_pop() {
    let oa = SocketAddr::new(ip_in(BLOCK, 3, 2), 80);
    let (release, _hits) = hinting_origin(oa).await;
    let lb = SocketAddr::new(ip_in(BLOCK, 3, 3), 80);
    let config = meridian_config::Config::parse(BASE, "lb.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .load_balancer;
    start_balancer("lb-r1", lb, &[(oa, "svc-r1a-1")], config).await;
    let p = pop_in(BLOCK, 3, &[format!("http://{lb}")], "").await;
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /hinted/through-lb HTTP/1.1\r\nhost: edge.test\r\naccept: text/html\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{head}");
    assert!(head.contains("</app.css>; rel=preload; as=style"), "{head}");
    release.notify_one();
    read_until(&mut s, &mut got, "page /hinted/through-lb").await;
    let all = String::from_utf8_lossy(&got).into_owned();
    assert!(all.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{all}");
}

/// An origin that writes its hint and its answer together: the hint still goes first, on
/// every request (the PoP's HTTP/2 stream takes queued hints before the answer).
#[tokio::test]
async fn a_hint_that_comes_with_the_answer_still_goes_first_over_h2() {
    let oa = SocketAddr::new(ip_in(BLOCK, 4, 2), 80);
    let _origin = hinting_origin(oa).await;
    let p = pop_in(BLOCK, 4, &[format!("http://{oa}")], "").await;
    let plain = TcpStream::connect(p.http).await.unwrap();
    let (mut c, conn) = h2::client::handshake(plain).await.unwrap();
    tokio::spawn(conn);
    for k in 0..20 {
        let (hint, answer) = h2_navigation(&mut c, &format!("/hinted-now/{k}")).await;
        let hint = hint.map(|h| h.status());
        assert_eq!(hint, Some(http::StatusCode::EARLY_HINTS), "request {k}");
        assert_eq!(answer.await.unwrap().status(), 200, "request {k}");
    }
}
