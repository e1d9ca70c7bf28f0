//! An HTTP/2 connection whose only traffic is a WebSocket stream (RFC 8441) is busy, not
//! idle: the server puts a `TunnelHold` on every extended CONNECT, and while the
//! application keeps it the connection gets no idle GOAWAY. Once it is let go, the
//! connection idles out as any other. Both ways a listener serves are checked.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_http::{ServerOptions, TunnelHold};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long the application keeps a tunnel's hold: well past the idle timeout.
const HELD: Duration = Duration::from_secs(3);
const IDLE: Duration = Duration::from_millis(300);

/// Keeps the hold of an extended CONNECT for [`HELD`], as a WebSocket would, and answers
/// every request 200.
fn answer(extensions: &mut http::Extensions) -> Response<meridian_http::Body> {
    if let Some(hold) = extensions.remove::<TunnelHold>() {
        tokio::spawn(async move {
            tokio::time::sleep(HELD).await;
            drop(hold);
        });
    }
    Response::new(meridian_http::empty())
}

#[derive(Clone)]
struct Holding;

impl meridian_http::Handler for Holding {
    fn call<B>(
        &self,
        mut req: Request<B>,
        _: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<meridian_http::Body>> + Send>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        let res = answer(req.extensions_mut());
        Box::pin(async move { res })
    }
}

/// Starts a server with a short idle timeout, hyper's (`handlers` false) or ours.
async fn server(handlers: bool) -> std::net::SocketAddr {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ServerOptions {
        idle_timeout: IDLE,
        ..Default::default()
    };
    if handlers {
        tokio::spawn(meridian_http::serve_handlers(
            listener,
            opts,
            None,
            |_| Holding,
            std::future::pending(),
        ));
    } else {
        tokio::spawn(meridian_http::serve(
            listener,
            opts,
            |_| {
                hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(req.extensions_mut()))
                })
            },
            std::future::pending(),
        ));
    }
    addr
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://test/").body(Empty::new()).unwrap()
}

async fn held_streams_keep_the_connection_busy(handlers: bool) {
    let addr = server(handlers).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // After one answer the server's SETTINGS (ENABLE_CONNECT_PROTOCOL) are in.
    assert_eq!(send.send_request(get()).await.unwrap().status(), 200);
    let mut connect = Request::builder()
        .method(Method::CONNECT)
        .uri("http://test/ws")
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let opened = Instant::now();
    let res = send.send_request(connect).await.unwrap();
    assert_eq!(res.status(), 200);
    // Three idle timeouts later, while the hold is kept, the connection still serves.
    tokio::time::sleep(IDLE * 3).await;
    assert!(opened.elapsed() < HELD, "the machine was too slow to tell");
    let later = send.send_request(get()).await;
    assert!(
        later.as_ref().is_ok_and(|r| r.status() == 200),
        "handlers {handlers}: the connection idled out under its tunnel: {later:?}"
    );
    // Once the hold is let go, the connection idles out (GOAWAY) as any other. Watched
    // without a request, which would make it busy again.
    let until = Instant::now() + HELD + Duration::from_secs(5);
    while send.is_ready() {
        assert!(
            Instant::now() < until,
            "handlers {handlers}: still open after its tunnel ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_tunnel_keeps_hypers_http2_connection_busy() {
    held_streams_keep_the_connection_busy(false).await;
}

#[tokio::test]
async fn a_tunnel_keeps_our_http2_connection_busy() {
    held_streams_keep_the_connection_busy(true).await;
}
