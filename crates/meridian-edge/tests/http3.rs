//! HTTP/3 at the edge (`http_version = "http2and3"`): an h3 client over QUIC gets what an
//! h2 client gets (body, headers, `x-cache`), bodies stream both ways, a broken stream or
//! connection harms no other, HTTP/3 is announced with `Alt-Svc` and counted by protocol.
//! PoPs on 127.101.0.0/16.

mod common;

use bytes::{Buf, Bytes};
use common::{eventually, get, ip_in, pop_in, serve_with, Pop};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BLOCK: u8 = 101;
/// A body larger than any one QUIC or HTTP/2 flow-control window: it must stream.
const BIG: usize = 3 << 20;

fn big_body() -> Bytes {
    (0..BIG)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// What the scripted origin saw: GETs of `/big/*`, and each POST body.
#[derive(Clone, Default)]
struct Seen {
    gets: Arc<AtomicU32>,
    posts: Arc<Mutex<Vec<Bytes>>>,
}

/// An origin on 127.101.`net`.2: `/big/*` a cacheable 3 MiB body, `/obj/*` a small one,
/// POST echoes its body uncached.
async fn origin(net: u8) -> (Seen, tokio::sync::oneshot::Sender<()>) {
    let seen = Seen::default();
    let s = seen.clone();
    let big = big_body();
    let stop = serve_with(SocketAddr::new(ip_in(BLOCK, net, 2), 80), move |req| {
        let (s, big) = (s.clone(), big.clone());
        async move {
            let path = req.uri().path().to_owned();
            if req.method() == http::Method::POST {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                s.posts.lock().unwrap().push(body.clone());
                return Response::builder()
                    .header("cache-control", "no-store")
                    .header("x-posted", body.len().to_string())
                    .body(Full::new(body))
                    .unwrap();
            }
            // Health checks ask too: only the objects' fetches count.
            if path.starts_with("/big/") {
                s.gets.fetch_add(1, Ordering::SeqCst);
            }
            let body = if path.starts_with("/big/") {
                big
            } else {
                Bytes::from(format!("object {path}"))
            };
            Response::builder()
                .header("cache-control", "max-age=60")
                .header("etag", "\"v7\"")
                .header("content-type", "application/octet-stream")
                .header("x-from-origin", "yes")
                .body(Full::new(body))
                .unwrap()
        }
    })
    .await;
    (seen, stop)
}

async fn h3_pop(net: u8) -> (Seen, Pop, tokio::sync::oneshot::Sender<()>) {
    let (seen, stop) = origin(net).await;
    let member = format!("http://{}", SocketAddr::new(ip_in(BLOCK, net, 2), 80));
    let pop = pop_in(BLOCK, net, &[member], "http_version = \"http2and3\"\n").await;
    (seen, pop, stop)
}

fn roots(pop: &Pop) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let (cert, _) = meridian_http::tls::dev_cert_paths(&pop.state);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A QUIC connection to the PoP's HTTPS address (UDP) as `edge.test`, offering `alpn`.
async fn quic(pop: &Pop, alpn: &[u8]) -> (quinn::Endpoint, quinn::Connection) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(pop))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let net = match pop.https.ip() {
        std::net::IpAddr::V4(a) => a.octets()[2],
        std::net::IpAddr::V6(_) => unreachable!("the test PoPs are on IPv4"),
    };
    let from = SocketAddr::new(ip_in(BLOCK, net, 9), 0);
    let mut ep = quinn::Endpoint::client(from).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = ep.connect(pop.https, "edge.test").unwrap().await.unwrap();
    (ep, conn)
}

type H3Send = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// An HTTP/3 client of the PoP; the endpoint must outlive it.
async fn h3_client(pop: &Pop) -> (quinn::Endpoint, H3Send) {
    let (ep, conn) = quic(pop, b"h3").await;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    (ep, send)
}

struct Got {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Got {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn h3_send(c: &mut H3Send, method: &str, path: &str, body: Option<Bytes>) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://edge.test{path}"));
    if let Some(b) = &body {
        req = req.header("content-length", b.len());
    }
    let mut stream = c.send_request(req.body(()).unwrap()).await.unwrap();
    if let Some(b) = body {
        // In pieces, as a client streams a large upload.
        for piece in b.chunks(64 * 1024) {
            stream
                .send_data(Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
    }
    stream.finish().await.unwrap();
    let res = stream.recv_response().await.unwrap();
    let mut out = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        out.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Got {
        status: res.status(),
        headers: res.headers().clone(),
        body: out.into(),
    }
}

type H2Send = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client(pop: &Pop) -> H2Send {
    let tls = common::tls_to_pop(pop, b"h2").await;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn h2_get(c: &mut H2Send, path: &str) -> Got {
    let req = Request::get(format!("https://edge.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = c.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// The headers that describe the object and the cache's answer: equal over h2 and h3.
const SAME: &[&str] = &[
    "content-type",
    "content-length",
    "cache-control",
    "etag",
    "x-from-origin",
    "x-cache",
    "via",
    "x-meridian-pop",
    "alt-svc",
];

fn assert_same(a: &Got, b: &Got, what: &str) {
    assert_eq!(a.status, b.status, "{what}");
    assert!(a.body == b.body, "{what}: the bodies differ");
    for h in SAME {
        assert_eq!(a.h(h), b.h(h), "{what}: {h}");
    }
}

#[tokio::test]
async fn h3_gets_the_same_object_headers_and_x_cache_as_h2() {
    let (seen, pop, _o) = h3_pop(1).await;
    let (_ep, mut h3) = h3_client(&pop).await;
    let mut h2 = h2_client(&pop).await;

    // A miss over h3, then a hit over h2, then a hit over h3: one origin fetch.
    let miss3 = h3_send(&mut h3, "GET", "/big/one", None).await;
    assert_eq!(miss3.status, StatusCode::OK);
    assert_eq!(miss3.h("x-cache"), "Miss from meridian");
    assert!(miss3.body == big_body(), "the whole 3 MiB object, streamed");
    let hit2 = h2_get(&mut h2, "/big/one").await;
    let hit3 = h3_send(&mut h3, "GET", "/big/one", None).await;
    assert_eq!(hit2.h("x-cache"), "Hit from meridian");
    assert_same(&hit2, &hit3, "a hit");
    assert_eq!(seen.gets.load(Ordering::SeqCst), 1);

    // The other way round: a miss over h2 and over h3 look alike too.
    let miss2 = h2_get(&mut h2, "/obj/two").await;
    let again3 = h3_send(&mut h3, "GET", "/obj/two", None).await;
    assert_eq!(miss2.h("x-cache"), "Miss from meridian");
    assert_eq!(again3.h("x-cache"), "Hit from meridian");
    assert_eq!(again3.body, Bytes::from("object /obj/two"));
    let miss3b = h3_send(&mut h3, "GET", "/obj/three", None).await;
    assert_eq!(miss3b.h("x-cache"), "Miss from meridian");
    let mut miss2_as3 = h3_send(&mut h3, "GET", "/obj/two", None).await;
    miss2_as3
        .headers
        .insert("x-cache", miss2.headers["x-cache"].clone());
    assert_same(&miss2, &miss2_as3, "a miss");

    // HTTP/3 is announced to viewers over TLS, on the HTTPS port, and not over plain HTTP.
    assert_eq!(hit2.h("alt-svc"), "h3=\":8443\"; ma=86400");
    assert_eq!(get(pop.http, "/obj/two").await.h("alt-svc"), "");

    // A HEAD over h3 has the headers and no body.
    let head = h3_send(&mut h3, "HEAD", "/obj/two", None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.h("etag"), "\"v7\"");
}

#[tokio::test]
async fn an_h3_post_body_streams_to_the_origin_and_back() {
    let (seen, pop, _o) = h3_pop(2).await;
    let (_ep, mut h3) = h3_client(&pop).await;
    let upload: Bytes = (0..(2 << 20))
        .map(|i| (i % 7) as u8)
        .collect::<Vec<u8>>()
        .into();
    let got = h3_send(&mut h3, "POST", "/api/upload", Some(upload.clone())).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.h("x-posted"), upload.len().to_string());
    assert!(got.body == upload, "the origin's echo comes back whole");
    assert!(seen.posts.lock().unwrap().first() == Some(&upload));
    assert_eq!(got.h("x-cache"), "Miss from meridian");
}

/// A request whose DATA does not add up to its `Content-Length` is malformed (RFC 9114
/// §4.1.2): refused, never passed on with a length that is not its own.
#[tokio::test]
async fn a_body_that_is_not_its_content_length_is_refused() {
    let (seen, pop, _o) = h3_pop(6).await;
    let (_ep, mut h3) = h3_client(&pop).await;
    for (declared, sent) in [
        ("5", &b"more than five bytes"[..]),
        ("100", &b"ten bytes!"[..]),
    ] {
        let req = Request::post("https://edge.test/api/upload")
            .header("content-length", declared)
            .body(())
            .unwrap();
        let mut stream = h3.send_request(req).await.unwrap();
        stream.send_data(Bytes::from_static(sent)).await.unwrap();
        stream.finish().await.unwrap();
        let res = stream.recv_response().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "declared {declared}");
    }
    assert!(
        seen.posts.lock().unwrap().is_empty(),
        "the origin got a body"
    );
    let ok = h3_send(&mut h3, "POST", "/api/upload", Some(Bytes::from("exact"))).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn broken_streams_and_connections_do_not_stop_the_pop() {
    let (_seen, pop, _o) = h3_pop(3).await;
    // Garbage datagrams at the QUIC port.
    let udp = tokio::net::UdpSocket::bind(SocketAddr::new(ip_in(BLOCK, 3, 8), 0))
        .await
        .unwrap();
    for n in [1usize, 40, 1200] {
        udp.send_to(&vec![0xAB; n], pop.https).await.unwrap();
    }
    // A QUIC connection that speaks no HTTP/3 on its request stream.
    let (_ep1, raw) = quic(&pop, b"h3").await;
    let (mut w, _r) = raw.open_bi().await.unwrap();
    w.write_all(b"\xff\xff\xff\xffnot a frame").await.unwrap();
    let _ = w.finish();
    // A request whose body is cut off: the client resets its stream midway.
    let (_ep2, mut h3) = h3_client(&pop).await;
    let req = Request::post("https://edge.test/api/cut")
        .header("content-length", "100000")
        .body(())
        .unwrap();
    let mut stream = h3.send_request(req).await.unwrap();
    stream
        .send_data(Bytes::from_static(b"only a little"))
        .await
        .unwrap();
    stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
    drop(stream);
    // A handshake offering no HTTP/3 fails (and is only that client's problem).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&pop))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep3 = quinn::Endpoint::client(SocketAddr::new(ip_in(BLOCK, 3, 7), 0)).unwrap();
    ep3.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let refused = ep3.connect(pop.https, "edge.test").unwrap().await;
    assert!(refused.is_err(), "a QUIC handshake without h3 must fail");

    // The same connection and new ones are served.
    let got = h3_send(&mut h3, "GET", "/obj/after", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, Bytes::from("object /obj/after"));
    let (_ep4, mut fresh) = h3_client(&pop).await;
    let again = h3_send(&mut fresh, "GET", "/obj/after", None).await;
    assert_eq!(again.h("x-cache"), "Hit from meridian");
}

#[tokio::test]
async fn requests_are_counted_and_logged_by_protocol() {
    let (_seen, pop, _o) = h3_pop(4).await;
    let (_ep, mut h3) = h3_client(&pop).await;
    let mut h2 = h2_client(&pop).await;
    for _ in 0..3 {
        assert_eq!(
            h3_send(&mut h3, "GET", "/obj/m", None).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(h2_get(&mut h2, "/obj/m").await.status, StatusCode::OK);
    assert_eq!(get(pop.http, "/obj/m").await.status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&get(pop.admin, "/metrics").await.body).into_owned();
    let series = |outcome: &str, protocol: &str| {
        format!("meridian_edge_requests_total{{pop=\"pop\",cache_status=\"{outcome}\",status_class=\"2xx\",protocol=\"{protocol}\"}}")
    };
    for (line, n) in [
        (series("miss", "h3"), 1),
        (series("hit", "h3"), 2),
        (series("hit", "h2"), 1),
        (series("hit", "h1"), 1),
    ] {
        assert!(
            metrics.contains(&format!("{line} {n}\n")),
            "{line} {n}\n{metrics}"
        );
    }
    // The access log names the protocol of each request.
    let log = pop.state.join("logs").join("access-pop.log");
    eventually(
        "the access log has the h3 lines",
        Duration::from_secs(5),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.matches("HTTP/3.0").count() == 3 && text.matches("HTTP/2.0").count() == 1
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_stopping_pop_closes_its_idle_h3_connections() {
    let (_seen, mut pop, _o) = h3_pop(5).await;
    let (_ep, conn) = quic(&pop, b"h3").await;
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let closed =
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    assert_eq!(
        h3_send(&mut send, "GET", "/obj/idle", None).await.status,
        StatusCode::OK
    );
    // The PoP is told to stop while the connection is open and idle.
    drop(std::mem::replace(
        &mut pop._stop,
        tokio::sync::oneshot::channel().0,
    ));
    let ended = tokio::time::timeout(Duration::from_secs(4), closed)
        .await
        .expect("the PoP closes an idle HTTP/3 connection when it stops, not after the drain")
        .unwrap();
    assert!(ended.is_h3_no_error(), "a clean close: {ended}");
}

#[tokio::test]
async fn an_origins_early_hints_reach_an_h3_viewer_before_the_answer() {
    let oa = SocketAddr::new(ip_in(BLOCK, 7, 2), 80);
    let (release, _hits) = common::hinting_origin(oa).await;
    let pop = pop_in(
        BLOCK,
        7,
        &[format!("http://{oa}")],
        "http_version = \"http2and3\"\n",
    )
    .await;
    let (_ep, mut c) = h3_client(&pop).await;
    let req = Request::get("https://edge.test/hinted/h3")
        .header("accept", "text/html")
        .body(())
        .unwrap();
    let mut stream = c.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    // The first HEADERS frame is the hint, sent while the origin holds its answer back.
    let hint = stream.recv_response().await.unwrap();
    assert_eq!(hint.status(), StatusCode::EARLY_HINTS);
    assert_eq!(
        hint.headers().get("link").and_then(|v| v.to_str().ok()),
        Some("</app.css>; rel=preload; as=style")
    );
    release.notify_one();
    let res = stream.recv_response().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    assert_eq!(body, b"page /hinted/h3");
}
