//! Our HTTP/1.1 server (`serve_handlers`) against hyper's (`serve_conns`): the same raw
//! requests to the same handler must get the same answers (fields in any order, `Date`
//! aside) and leave the connection open or closed alike. Requests our server hands to
//! hyper (bodies, malformed or oversized heads) are in the list too, also after a request
//! it served itself on the same connection.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use meridian_http::{Body, BoxError, ServerOptions};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers by path, and says what it was asked at `/echo`.
async fn answer<B>(req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path().to_owned();
    let mut res = match path.as_str() {
        "/full" => Response::new(meridian_http::full("hello")),
        "/empty" => Response::new(meridian_http::empty()),
        // The request body's length, once read whole.
        "/up" => {
            let n = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len(),
                Err(_) => 0,
            };
            Response::new(meridian_http::full(n.to_string()))
        }
        "/big" => Response::new(meridian_http::full(vec![b'x'; 100 * 1024])),
        "/stream" => {
            let chunks = ["one ", "two ", "three"]
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes()))));
            let stream = futures_util::stream::iter(chunks);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/204" => {
            let mut res = Response::new(meridian_http::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
        }
        "/304" => {
            let mut res = Response::new(meridian_http::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            res.headers_mut()
                .insert("content-length", http::HeaderValue::from_static("5"));
            res
        }
        // A function may answer with any status; a 1xx is no final answer.
        "/100" => {
            let mut res = Response::new(meridian_http::full("x"));
            *res.status_mut() = StatusCode::CONTINUE;
            res
        }
        "/close" => {
            let mut res = Response::new(meridian_http::full("bye"));
            res.headers_mut()
                .insert("connection", http::HeaderValue::from_static("close"));
            res
        }
        _ => {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::from_static(b"<unreadable>"),
            };
            let mut fields: Vec<String> = parts
                .headers
                .iter()
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            fields.sort();
            Response::new(meridian_http::full(format!(
                "{} {} {:?} [{}] {}",
                parts.method,
                parts.uri,
                parts.version,
                fields.join(" "),
                String::from_utf8_lossy(&body)
            )))
        }
    };
    res.headers_mut()
        .insert("x-answered", http::HeaderValue::from_static("yes"));
    res
}

#[derive(Clone)]
struct Answer;

impl meridian_http::Handler for Answer {
    fn call<B>(
        &self,
        req: Request<B>,
        _interim: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Box::pin(answer(req))
    }
}

fn options() -> ServerOptions {
    ServerOptions {
        max_header_bytes: 8192,
        ..Default::default()
    }
}

/// hyper's server and ours, each answering with [`answer`].
async fn servers() -> (SocketAddr, SocketAddr) {
    let hyper = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ours = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addrs = (hyper.local_addr().unwrap(), ours.local_addr().unwrap());
    tokio::spawn(meridian_http::serve(
        hyper,
        options(),
        |_| {
            hyper::service::service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(req).await)
            })
        },
        std::future::pending(),
    ));
    tokio::spawn(meridian_http::serve_handlers(
        ours,
        options(),
        None,
        |_| Answer,
        std::future::pending(),
    ));
    addrs
}

/// Sends `raw`, then reads until the server closes or is quiet for 300 ms. Returns the
/// bytes and whether the server closed.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The responses in `raw`, each with its fields sorted and `Date` blanked. `bodiless`
/// says, per response, whether it answers a HEAD (its length field is not followed).
fn normalized(raw: &[u8], bodiless: &[bool]) -> Vec<String> {
    let mut rest = raw;
    let mut out = Vec::new();
    let mut at = 0;
    while !rest.is_empty() {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            out.push(format!("partial: {}", String::from_utf8_lossy(rest)));
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        let mut fields: Vec<String> = lines
            .map(|l| match l.to_ascii_lowercase().starts_with("date:") {
                true => "date: (now)".to_owned(),
                false => l.to_owned(),
            })
            .collect();
        fields.sort();
        let field = |name: &str| {
            fields
                .iter()
                .find_map(|f| f.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        };
        let interim =
            status.contains(" 1") && status.split(' ').nth(1).is_some_and(|c| c.starts_with('1'));
        let no_body = interim
            || bodiless.get(at).copied().unwrap_or(false)
            || status.contains(" 204 ")
            || status.contains(" 304 ");
        let body = if no_body {
            Vec::new()
        } else if let Some(n) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let n = n.min(rest.len());
            let body = rest[..n].to_vec();
            rest = &rest[n..];
            body
        } else if field("transfer-encoding").as_deref() == Some("chunked") {
            let end = rest
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map_or(rest.len(), |p| p + 5);
            let body = rest[..end].to_vec();
            rest = &rest[end..];
            body
        } else {
            std::mem::take(&mut rest).to_vec()
        };
        out.push(format!(
            "{status}\n{}\n\n{}",
            fields.join("\n"),
            String::from_utf8_lossy(&body)
        ));
        // An interim head answers no request of its own.
        at += usize::from(!interim);
    }
    out
}

#[tokio::test]
async fn our_http1_server_answers_as_hypers_does() {
    let (hyper, ours) = servers().await;
    let big_head = format!(
        "GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "y".repeat(9000)
    );
    // (what is sent, which responses answer a HEAD)
    let cases: Vec<(Vec<u8>, Vec<bool>)> = vec![
        (b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"HEAD /full HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![true]),
        (b"HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![true]),
        (b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"GET /stream HTTP/1.0\r\n\r\n".to_vec(), vec![]),
        (b"GET /full HTTP/1.0\r\n\r\n".to_vec(), vec![]),
        (
            b"GET /full HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
            vec![],
        ),
        (b"GET /full HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), vec![]),
        (b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
        (
            b"GET /echo?a=1&b=%20 HTTP/1.1\r\nHost: A.example\r\nX-Two: 1\r\nx-two: 2\r\nAccept: */*\r\n\r\n"
                .to_vec(),
            vec![],
        ),
        // Pipelined: both answered, in order.
        (
            b"GET /echo?n=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /full HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
            vec![false, true, false],
        ),
        // Bodies are hyper's, also after a request served without one.
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
            vec![],
        ),
        (
            b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
            vec![],
        ),
        (
            b"GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".to_vec(),
            vec![],
        ),
        (
            b"PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
                .to_vec(),
            vec![],
        ),
        // Malformed, or too large: hyper's own answers.
        (b"GET /full HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(), vec![]),
        (
            b"GET /full HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost a\r\n\r\n".to_vec(),
            vec![],
        ),
        (b"GET /full HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), vec![]),
        (big_head.into_bytes(), vec![]),
        (b"\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), vec![]),
    ];
    for (raw, heads) in &cases {
        let (from_hyper, hyper_closed) = exchange(hyper, raw).await;
        let (from_ours, ours_closed) = exchange(ours, raw).await;
        let sent = String::from_utf8_lossy(&raw[..raw.len().min(120)]);
        assert!(!from_ours.is_empty(), "no answer to {sent:?}");
        assert_eq!(
            normalized(&from_ours, heads),
            normalized(&from_hyper, heads),
            "answers to {sent:?}"
        );
        assert_eq!(
            ours_closed, hyper_closed,
            "connection closed after {sent:?}"
        );
    }
    // Two differences, on purpose. A handler's 1xx is no final answer: both send a 500 and
    // close (the pipelined request after it is not answered), and ours says it closes.
    let raw = b"GET /100 HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n";
    let (from_hyper, hyper_closed) = exchange(hyper, raw).await;
    let (from_ours, ours_closed) = exchange(ours, raw).await;
    assert!(hyper_closed && ours_closed);
    assert_eq!(
        normalized(&from_hyper, &[]),
        ["HTTP/1.1 500 Internal Server Error\ncontent-length: 0\ndate: (now)\n\n"]
    );
    assert_eq!(
        normalized(&from_ours, &[]),
        ["HTTP/1.1 500 Internal Server Error\nconnection: close\ncontent-length: 0\ndate: (now)\n\n"]
    );
    // And a body of unknown length to an HTTP/1.0 client that asked
    // for keep-alive runs to the connection's end, and hyper still answers
    // `connection: keep-alive`; ours does not promise what it will not do.
    let (got, closed) = exchange(
        ours,
        b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert!(closed);
    assert_eq!(
        normalized(&got, &[]),
        ["HTTP/1.0 200 OK\ndate: (now)\nx-answered: yes\n\none two three"]
    );
}

/// A head that does not come whole within the head timeout closes the connection, on a
/// new connection and between requests alike.
#[tokio::test]
async fn a_head_that_does_not_come_in_time_closes_the_connection() {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ServerOptions {
        header_read_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        opts,
        None,
        |_| Answer,
        std::future::pending(),
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /full HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "the trickled head was waited for past the timeout"
    );
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
}

/// Set when the request's answer is dropped before it is ready.
#[derive(Clone, Default)]
struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
struct Waits(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl meridian_http::Handler for Waits {
    fn call<B>(
        &self,
        _req: Request<B>,
        _interim: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let guard = Dropped(self.0.clone());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(guard);
            Response::new(meridian_http::empty())
        })
    }
}

/// A client that sends a request and hangs up does not keep its request (and whatever
/// upstream exchange it began) running: the answer is dropped, as hyper drops it.
#[tokio::test]
async fn a_request_whose_client_left_is_dropped() {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let waits = Waits::default();
    let handler = waits.clone();
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        ServerOptions::default(),
        None,
        move |_| handler.clone(),
        std::future::pending(),
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waits.0.load(std::sync::atomic::Ordering::SeqCst),
        "dropped while the client waits"
    );
    drop(s);
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !waits.0.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < until,
            "the request outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers every request with 32 MiB.
#[derive(Clone)]
struct Big;

impl meridian_http::Handler for Big {
    fn call<B>(
        &self,
        _req: Request<B>,
        _interim: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Box::pin(async { Response::new(meridian_http::full(vec![0u8; 32 << 20])) })
    }
}

/// A client that asks for a large answer and stops reading does not hold its connection
/// for ever: once a write takes nothing for the idle timeout, the connection ends.
#[tokio::test]
async fn a_client_that_stops_reading_is_let_go_after_the_idle_timeout() {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        opts,
        None,
        |_| Big,
        std::future::pending(),
    ));
    // Our own loop serves the GET; hyper the POST (a request with a body).
    let requests: [&[u8]; 2] = [
        b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
    ];
    for request in requests {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        // Not reading while the server's writes stall, then reading what was sent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        let what = String::from_utf8_lossy(&request[..4]);
        assert!(ended.is_ok(), "{what}: the connection was still open");
        assert!(
            got.len() < 32 << 20,
            "{what}: the whole answer came ({} bytes): the writes never stalled",
            got.len()
        );
    }
}

/// A server of `max_connections` answering with [`answer`] (which reads request bodies),
/// with a 500 ms head timeout.
async fn capped(max_connections: usize) -> SocketAddr {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ServerOptions {
        max_connections,
        header_read_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        opts,
        None,
        |_| Answer,
        std::future::pending(),
    ));
    addr
}

/// A connection to `addr` from `source`, with `request` sent.
async fn connect_from(source: [u8; 4], addr: SocketAddr, request: &[u8]) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    s
}

/// An upload from `source`, begun, then trickled a byte every 200 ms `bytes` times:
/// whether the server cut it.
async fn trickled_upload(
    source: [u8; 4],
    addr: SocketAddr,
    bytes: usize,
) -> tokio::task::JoinHandle<bool> {
    let head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nx";
    let mut s = connect_from(source, addr, head).await;
    tokio::spawn(async move {
        for _ in 0..bytes {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b"x").await.is_err() {
                return true;
            }
        }
        false
    })
}

/// Whether a new client from `source` is answered (200) within 5 s.
async fn let_in(source: [u8; 4], addr: SocketAddr) -> bool {
    let get = b"GET /full HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut next = connect_from(source, addr, get).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), next.read_to_end(&mut got)).await;
    read.is_ok() && got.starts_with(b"HTTP/1.1 200")
}

/// At the connection cap with every connection busy, the one busy longest (past the head
/// timeout) makes room: a client trickling a request body cannot keep everyone out.
#[tokio::test]
async fn at_the_cap_a_trickled_upload_gives_way_to_a_new_client() {
    let addr = capped(1).await;
    // For at most 6 s, while a second client asks.
    let trickle = trickled_upload([127, 0, 0, 1], addr, 30).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        let_in([127, 0, 0, 1], addr).await,
        "the new client waited behind the trickled upload"
    );
    assert!(trickle.await.unwrap(), "the trickling client was never cut");
}

/// At the cap with every connection busy, the address holding the most connections gives
/// way first: a client with many trickled uploads cannot push out another's one long
/// request, even one older than all of its own.
#[tokio::test]
async fn at_the_cap_the_address_holding_most_gives_way_first() {
    let addr = capped(3).await;
    let own = trickled_upload([127, 0, 0, 1], addr, 15).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let many = [
        trickled_upload([127, 0, 0, 2], addr, 15).await,
        trickled_upload([127, 0, 0, 2], addr, 15).await,
    ];
    // All three busy past the head timeout; a fourth client arrives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        let_in([127, 0, 0, 3], addr).await,
        "the new client was let in"
    );
    assert!(!own.await.unwrap(), "the one upload of its address was cut");
    let [a, b] = many;
    let cut = [a.await.unwrap(), b.await.unwrap()];
    assert!(
        cut.contains(&true),
        "none of the address holding two was cut"
    );
}
