//! The caching standards a PoP follows beyond Cache-Control: targeted cache control
//! (RFC 9213: CDN-Cache-Control and our own Meridian-CDN-Cache-Control), headers a response
//! names in Connection (never stored), and Age values that are not a number (ignored).
//! Addresses: 127.59/16.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// An origin that answers `/<name>` with the headers the query names (`h=Name:Value`,
/// repeatable, `%20` for a space), counting calls per path.
async fn header_origin(
    addr: SocketAddr,
) -> (
    Arc<Mutex<HashMap<String, u32>>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let h = hits.clone();
    let stop = serve_with(addr, move |req: Request<hyper::body::Incoming>| {
        let h = h.clone();
        async move {
            let path = req.uri().path().to_owned();
            if path != "/health" {
                *h.lock().unwrap().entry(path.clone()).or_default() += 1;
            }
            let mut res = Response::builder().status(200);
            for pair in req.uri().query().unwrap_or("").split('&') {
                if let Some(("h", v)) = pair.split_once('=') {
                    let v = v.replace("%20", " ");
                    if let Some((name, value)) = v.split_once(':') {
                        res = res.header(name, value);
                    }
                }
            }
            res.body(Full::new(Bytes::from(format!("body of {path}"))))
                .unwrap()
        }
    })
    .await;
    (hits, stop)
}

#[tokio::test]
async fn targeted_cache_control_speaks_to_the_edge_and_never_reaches_viewers() {
    let oa = SocketAddr::new(ip_in(59, 1, 2), 80);
    let (hits, _o) = header_origin(oa).await;
    let p = pop_in(59, 1, &[format!("http://{oa}")], "").await;
    let count = |path: &str| *hits.lock().unwrap().get(path).unwrap_or(&0);

    // CDN-Cache-Control: max-age=60 with Cache-Control: no-store is kept 60 s by the edge;
    // the viewer sees only Cache-Control.
    let url = "/cdn?h=Cache-Control:no-store&h=CDN-Cache-Control:max-age=60";
    let first = get(p.http, url).await;
    let second = get(p.http, url).await;
    assert_eq!(count("/cdn"), 1, "the second request is a hit");
    assert!(
        second.h("x-cache").starts_with("Hit"),
        "{:?}",
        second.headers
    );
    for r in [&first, &second] {
        assert_eq!(r.h("cache-control"), "no-store");
        assert!(
            r.headers.get("cdn-cache-control").is_none(),
            "{:?}",
            r.headers
        );
    }

    // CDN-Cache-Control: private is not stored, whatever Cache-Control says.
    let url = "/private?h=Cache-Control:max-age=600&h=CDN-Cache-Control:private";
    get(p.http, url).await;
    get(p.http, url).await;
    assert_eq!(count("/private"), 2);

    // Our own target wins over CDN-Cache-Control.
    let url = "/ours?h=Meridian-CDN-Cache-Control:no-store&h=CDN-Cache-Control:max-age=600";
    get(p.http, url).await;
    get(p.http, url).await;
    assert_eq!(count("/ours"), 2);

    // An invalid targeted field (not a structured dictionary) falls back to Cache-Control.
    let url = "/invalid?h=Cache-Control:no-store&h=CDN-Cache-Control:max-age=60s";
    get(p.http, url).await;
    get(p.http, url).await;
    assert_eq!(count("/invalid"), 2, "Cache-Control: no-store applies");
    let url = "/invalid2?h=Cache-Control:max-age=600&h=CDN-Cache-Control:Max-Age=0";
    get(p.http, url).await;
    get(p.http, url).await;
    assert_eq!(count("/invalid2"), 1, "Cache-Control: max-age=600 applies");
}

#[tokio::test]
async fn connection_named_headers_are_not_stored_and_a_bad_age_is_ignored() {
    let oa = SocketAddr::new(ip_in(59, 2, 2), 80);
    let (hits, _o) = header_origin(oa).await;
    let p = pop_in(59, 2, &[format!("http://{oa}")], "").await;
    let count = |path: &str| *hits.lock().unwrap().get(path).unwrap_or(&0);

    let url = "/conn?h=Cache-Control:max-age=60&h=Connection:x-session-hint&h=X-Session-Hint:abc&h=X-Kept:yes";
    get(p.http, url).await;
    let hit = get(p.http, url).await;
    assert_eq!(count("/conn"), 1);
    assert!(
        hit.headers.get("x-session-hint").is_none(),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.h("x-kept"), "yes");

    // `Age: 10a` is not a number: ignored, so a 60 s object is fresh, not 10 s old or stale.
    let url = "/age?h=Cache-Control:max-age=5&h=Age:10a";
    get(p.http, url).await;
    let hit = get(p.http, url).await;
    assert_eq!(count("/age"), 1, "still fresh: the bad Age did not age it");
    let age: u64 = hit.h("age").parse().unwrap_or(99);
    assert!(age < 5, "age {age}");
}

#[tokio::test]
async fn a_transfer_coding_the_edge_cannot_decode_is_a_clean_502() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let oa = SocketAddr::new(ip_in(59, 3, 2), 80);
    let listener = tokio::net::TcpListener::bind(oa).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_string();
                let answer: &[u8] = if head.starts_with("GET /health") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                } else if head.starts_with("GET /gzip-chunked") {
                    b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\n\x1f\x8b\x08\x00raw-gzip-bytes"
                };
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let p = pop_in(59, 3, &[format!("http://{oa}")], "").await;
    for path in ["/gzip", "/gzip-chunked"] {
        let r = get(p.http, path).await;
        assert_eq!(r.status, 502, "{path}: {:?}", r.body);
        assert!(
            !r.body.starts_with(b"\x1f\x8b"),
            "{path}: never the undecoded bytes"
        );
    }
    // The PoP keeps serving.
    assert_eq!(get(p.http, "/health").await.status, 200);
}

#[tokio::test]
async fn a_member_slower_than_usual_is_hedged_to_the_next_one() {
    let a = SocketAddr::new(ip_in(59, 4, 2), 80);
    let b = SocketAddr::new(ip_in(59, 4, 3), 80);
    let serve = |name: &'static str, addr: SocketAddr| {
        serve_with(
            addr,
            move |req: Request<hyper::body::Incoming>| async move {
                // Member a freezes on /freeze/*, as a region whose machines stopped answering.
                if name == "a" && req.uri().path().starts_with("/freeze/") {
                    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
                }
                Response::builder()
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from(name)))
                    .unwrap()
            },
        )
    };
    let _a = serve("a", a).await;
    let _b = serve("b", b).await;
    let p = pop_in(59, 4, &[format!("http://{a}"), format!("http://{b}")], "").await;
    // Member a answers first while it is well: its usual latency is learnt.
    for i in 0..20 {
        let r = get(p.http, &format!("/warm/{i}")).await;
        assert_eq!(&r.body[..], b"a");
    }
    let started = std::time::Instant::now();
    let r = get(p.http, "/freeze/1").await;
    let took = started.elapsed();
    assert_eq!(&r.body[..], b"b", "the hedge to member b answered");
    // Without a hedge it would wait for the group's response timeout (700 ms here).
    assert!(
        took < std::time::Duration::from_millis(400),
        "hedged well before the response timeout: {took:?}"
    );
    let metrics = get(p.admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.contains("reason=\"hedge\"") && !l.ends_with(" 0")),
        "{text}"
    );
}
