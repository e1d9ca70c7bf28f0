//! Our HTTP/2 server (`serve_handlers`) frames answers as hyper's did: the length of a body
//! that has content, none on a HEAD or a 204, the Date always.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::net::TcpStream;

/// Answers `/empty` with nothing, `/gone` 204, `/big` 4 MiB, anything else "hello".
#[derive(Clone)]
struct Answers;

impl meridian_http::Handler for Answers {
    fn call<B>(
        &self,
        req: Request<B>,
        _: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<meridian_http::Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        let res = match req.uri().path() {
            "/empty" => Response::new(meridian_http::empty()),
            "/big" => Response::new(meridian_http::full(vec![0u8; 4 << 20])),
            "/gone" => {
                let mut r = Response::new(meridian_http::full("ignored"));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            _ => Response::new(meridian_http::full("hello")),
        };
        Box::pin(async move { res })
    }
}

#[tokio::test]
async fn lengths_and_dates_as_hyper_gave_them() {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        meridian_http::ServerOptions::default(),
        None,
        |_| Answers,
        std::future::pending(),
    ));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut ask = |method: &str, path: &str| {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://test{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req);
        async move {
            let res = tokio::time::timeout(Duration::from_secs(5), res)
                .await
                .unwrap()
                .unwrap();
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };
    let (get, body) = ask("GET", "/hello").await;
    assert_eq!(body, "hello");
    assert_eq!(get.headers["content-length"], "5");
    assert!(get.headers.contains_key("date"));
    // A HEAD's answer says nothing of a length it does not know, and carries no body.
    let (head, body) = ask("HEAD", "/hello").await;
    assert!(body.is_empty());
    assert!(head.headers.get("content-length").is_none(), "{head:?}");
    let (empty, _) = ask("GET", "/empty").await;
    assert!(empty.headers.get("content-length").is_none(), "{empty:?}");
    let (gone, body) = ask("GET", "/gone").await;
    assert_eq!(gone.status, 204);
    assert!(body.is_empty(), "a 204 has no content");
    assert!(gone.headers.get("content-length").is_none(), "{gone:?}");
}

/// A client that stops reading (its flow-control window shut) does not hold the answer
/// for ever: after the idle timeout its stream is reset.
#[tokio::test]
async fn an_answer_the_client_stops_taking_is_reset_after_the_idle_timeout() {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = meridian_http::ServerOptions {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    tokio::spawn(meridian_http::serve_handlers(
        listener,
        opts,
        None,
        |_| Answers,
        std::future::pending(),
    ));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .adaptive_window(false)
        .initial_stream_window_size(65_535)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://test/big")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    // The body is not read while the server waits for window, then read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("the body neither ended nor failed");
    assert!(
        read.is_err(),
        "the whole answer came: the stream was never reset"
    );
}
