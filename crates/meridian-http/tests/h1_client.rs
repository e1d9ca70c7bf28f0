//! Our HTTP/1.1 client connection against scripted upstreams: how each answer's body is
//! framed (RFC 9112 §6.3), which answers are refused, what a request looks like on the
//! wire, interim heads, and when a connection may carry another request.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use meridian_http::h1_client::{H1Conn, H1Error};
use meridian_http::interim::InterimConn;
use meridian_http::Body;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that reads one request head (and `body` more bytes), hands what it read to
/// the test, writes `answer`, and closes when `close`.
async fn upstream(
    answer: &'static [u8],
    body: usize,
    close: bool,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let head = got.windows(4).position(|w| w == b"\r\n\r\n");
            if n == 0 || head.is_some_and(|h| got.len() >= h + 4 + body) {
                break;
            }
        }
        let _ = tx.send(got);
        s.write_all(answer).await.unwrap();
        if close {
            return;
        }
        // Held open until the client is done.
        let _ = s.read(&mut buf).await;
    });
    (addr, rx)
}

async fn conn(addr: SocketAddr) -> Box<H1Conn> {
    Box::new(H1Conn::new(TcpStream::connect(addr).await.unwrap()))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "t")
        .body(meridian_http::empty())
        .unwrap()
}

/// GET / from an upstream that answers `answer` (then closes when `close`): the answer's
/// body, trailers and whether its connection may be reused.
async fn whole(answer: &'static [u8], close: bool) -> (Bytes, Option<HeaderMap>, bool) {
    let (addr, _) = upstream(answer, 0, close).await;
    let res = conn(addr).await.send(get("/")).await.unwrap();
    read(res.into_body()).await
}

/// What a body read whole gives: its data, its trailers, and whether its connection
/// may carry another request.
async fn read(mut body: meridian_http::h1_client::H1Body) -> (Bytes, Option<HeaderMap>, bool) {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let reusable = body.into_reusable().is_some();
    (data.into(), trailers, reusable)
}

#[tokio::test]
async fn a_length_framed_answer_is_read_and_its_connection_kept() {
    let (addr, got) = upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
        0,
        false,
    )
    .await;
    let res = conn(addr).await.send(get("/a?b=1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-a"], "1");
    let (data, _, reusable) = read(res.into_body()).await;
    assert_eq!(data, "hello");
    assert!(reusable);
    let sent = String::from_utf8(got.await.unwrap()).unwrap();
    assert_eq!(sent, "GET /a?b=1 HTTP/1.1\r\nhost: t\r\n\r\n");
}

#[tokio::test]
async fn a_chunked_answer_is_decoded_with_its_trailers() {
    let (data, trailers, reusable) = whole(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 9\r\n\r\n", false).await;
    assert_eq!(data, "hello world");
    assert_eq!(trailers.unwrap()["x-sum"], "9");
    assert!(reusable);
}

#[tokio::test]
async fn both_framings_go_by_the_chunks_and_the_connection_is_not_reused() {
    let (data, _, reusable) = whole(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false).await;
    assert_eq!(data, "hello");
    assert!(!reusable);
}

#[tokio::test]
async fn transfer_encoding_fields_make_one_list() {
    // An empty second field does not undo the first: the chunks frame the answer, and
    // with a length beside them the connection is not trusted again.
    let (data, _, reusable) = whole(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: ,\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false).await;
    assert_eq!(data, "hello");
    assert!(!reusable);
}

/// An upstream that refuses a large upload after its head, without reading the body:
/// its answer is relayed at once, not after a write that would never finish.
#[tokio::test]
async fn an_answer_to_an_upload_the_upstream_stopped_reading_is_taken() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let req = Request::post("/upload")
        .body(meridian_http::full(vec![b'x'; 64 << 20]))
        .unwrap();
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn(addr).await.send(req),
    )
    .await
    .expect("the answer waited on the upload");
    let res = sent.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        !read(res.into_body()).await.2,
        "the upload was cut: never reused"
    );
}

#[tokio::test]
async fn an_answer_without_a_length_runs_to_the_close() {
    let (data, _, reusable) = whole(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
    assert_eq!(data, "until the end");
    assert!(!reusable);
    // A coding other than chunked last: also to the close.
    let (data, _, reusable) = whole(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nraw bytes",
        true,
    )
    .await;
    assert_eq!(data, "raw bytes");
    assert!(!reusable);
}

#[tokio::test]
async fn bad_framing_is_an_error_not_a_guess() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0x3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
    ] {
        let (addr, _) = upstream(answer, 0, true).await;
        let err = conn(addr).await.send(get("/")).await.unwrap_err();
        assert!(
            matches!(err.error, H1Error::Malformed(_)),
            "{}: {err:?}",
            String::from_utf8_lossy(answer)
        );
    }
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        // A bare LF after the size, or inside an extension, is not a chunk line's end.
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\n\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x\nY\r\nhello\r\n0\r\n\r\n",
    ] {
        let (addr, _) = upstream(answer, 0, true).await;
        let res = conn(addr).await.send(get("/")).await.unwrap();
        let mut body = res.into_body();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "{}", String::from_utf8_lossy(answer));
        assert!(body.into_reusable().is_none());
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let (addr, _) = upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        0,
        true,
    )
    .await;
    let res = conn(addr).await.send(get("/")).await.unwrap();
    let got = res.into_body().collect().await;
    assert!(matches!(got, Err(H1Error::Closed)), "{got:?}");
    // And a close before any answer.
    let (addr, _) = upstream(b"", 0, true).await;
    let err = conn(addr).await.send(get("/")).await.unwrap_err();
    assert!(matches!(err.error, H1Error::Closed), "{err:?}");
    assert!(err.request.is_none(), "it was sent: never given back");
}

#[tokio::test]
async fn answers_without_content_have_none() {
    for (method, answer) in [
        ("HEAD", &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
        ),
        (
            "GET",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
        ),
    ] {
        let (addr, _) = upstream(answer, 0, false).await;
        let req = Request::builder()
            .method(method)
            .uri("/")
            .body(meridian_http::empty())
            .unwrap();
        let res = conn(addr).await.send(req).await.unwrap();
        let (data, _, reusable) = read(res.into_body()).await;
        assert!(data.is_empty());
        assert!(
            reusable,
            "{method}: nothing more to read, the connection is clean"
        );
    }
}

#[tokio::test]
async fn close_and_http_1_0_answers_are_not_reused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let (data, _, reusable) = whole(answer, false).await;
        assert_eq!(data, "ok");
        assert!(!reusable, "{}", String::from_utf8_lossy(answer));
    }
    let (addr, _) = upstream(
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
        0,
        false,
    )
    .await;
    let res = conn(addr).await.send(get("/")).await.unwrap();
    assert!(read(res.into_body()).await.2);
}

#[tokio::test]
async fn a_request_body_goes_with_its_length() {
    let (addr, got) = upstream(
        b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        7,
        false,
    )
    .await;
    let req = Request::post("/orders")
        .header("host", "t")
        .header("content-length", "999")
        .body(meridian_http::full("{\"a\":1}"))
        .unwrap();
    let res = conn(addr).await.send(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let sent = String::from_utf8(got.await.unwrap()).unwrap();
    assert_eq!(
        sent,
        "POST /orders HTTP/1.1\r\nhost: t\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
    );
    // An empty POST still says its length.
    let (addr, got) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0, false).await;
    let req = Request::post("/x").body(meridian_http::empty()).unwrap();
    conn(addr).await.send(req).await.unwrap();
    let sent = String::from_utf8(got.await.unwrap()).unwrap();
    assert_eq!(sent, "POST /x HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
}

#[tokio::test]
async fn a_request_body_of_unknown_length_goes_chunked() {
    let chunked = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let (addr, got) = upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        chunked.len(),
        false,
    )
    .await;
    let frames = ["abc", "de"].map(|c| {
        Ok::<_, meridian_http::BoxError>(hyper::body::Frame::data(Bytes::from_static(c.as_bytes())))
    });
    let body = BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )));
    let req = Request::post("/stream").body(body).unwrap();
    conn(addr).await.send(req).await.unwrap();
    let sent = String::from_utf8(got.await.unwrap()).unwrap();
    assert_eq!(
        sent,
        format!("POST /stream HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{chunked}")
    );
}

#[tokio::test]
async fn interim_heads_are_relayed_or_passed_over() {
    let (addr, _) = upstream(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nx-secret: no\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        0,
        false,
    )
    .await;
    let (to, hints) = InterimConn::stream();
    let mut req = get("/");
    to.current().unwrap().attach(&mut req);
    let res = conn(addr).await.send(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let heads = hints.drain();
    assert_eq!(heads.len(), 1, "the 103 only");
    assert_eq!(heads[0].headers["link"], "</a.css>; rel=preload");
    assert!(heads[0].headers.get("x-secret").is_none());
    assert_eq!(read(res.into_body()).await.0, "ok");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_reads_as_closed() {
    let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 0, true).await;
    let res = conn(addr).await.send(get("/")).await.unwrap();
    let mut body = res.into_body();
    while body.frame().await.is_some() {}
    let mut c = body.into_reusable().expect("the answer did not say close");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !c.is_closed() {
        assert!(
            std::time::Instant::now() < until,
            "the close was never seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
