//! A server whose process was frozen (SIGSTOP, as `chaos kill-pop` does; a paused VM) past
//! every one of its timeouts loses nothing its clients did meanwhile. At the thaw the
//! runtime may see its timers before the bytes waiting in its sockets, so each timeout
//! that waits on a client gets one grace period (`grace_timer.rs`).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use meridian_http::{Body, BoxError, ServerOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the frozen server answers: "hello", a request body's length, or [`HUGE`] bytes.
#[derive(Clone)]
struct Answer;

/// Far more than the socket buffers between the client and the server hold.
const HUGE: usize = 32 << 20;

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
        Box::pin(async move {
            match req.uri().path() {
                "/up" => {
                    let n = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes().len(),
                        Err(_) => 0,
                    };
                    Response::new(meridian_http::full(n.to_string()))
                }
                "/huge" => Response::new(meridian_http::full(vec![b'x'; HUGE])),
                _ => Response::new(meridian_http::full("hello")),
            }
        })
    }
}

/// Reads until the answer ends with "hello" (or 5 s pass without a byte).
async fn answered(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"hello") {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk));
        match read.await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads `s` into `got` until `until` bytes are in, the stream ends, or nothing comes for
/// `quiet`.
async fn read_up_to(s: &mut TcpStream, got: &mut usize, until: usize, quiet: Duration) {
    let mut chunk = vec![0u8; 256 * 1024];
    while *got < until {
        match tokio::time::timeout(quiet, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => *got += n,
            _ => return,
        }
    }
}

/// Frozen well past the head timeout (300 ms) and the idle and write-stall timeout
/// (400 ms), the server then answers: requests sent on idle connections (our HTTP/1 loop's,
/// and hyper's for a connection whose first request had a body), a connection made and
/// sent on during the freeze, and the rest of an answer the client went on reading while
/// the server could not write. A thawed PoP dropped each of them.
#[test]
fn what_clients_did_while_the_server_was_frozen_is_answered() {
    const NAME: &str = "what_clients_did_while_the_server_was_frozen_is_answered";
    if std::env::var_os("FROZEN_SERVER").is_some() {
        return frozen_server();
    }
    // The server is this test run again in a process of its own, which is frozen.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env("FROZEN_SERVER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id().to_string();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let child = Kill(child);
    let addr: SocketAddr = std::io::BufRead::lines(out)
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening ")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
        })
        .expect("the server process says where it listens");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let get = b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n";
        // First (its write stall, 400 ms, is the longest timeout): an answer far larger
        // than the socket buffers, its start read, so the server waits to write the rest.
        let mut huge = TcpStream::connect(addr).await.unwrap();
        huge.write_all(b"GET /huge HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut huge_got = 0;
        read_up_to(&mut huge, &mut huge_got, 1 << 20, Duration::from_secs(5)).await;
        assert!(huge_got >= 1 << 20, "the answer did not start: {huge_got}");

        // Then connections answered once and idle, their head timeout (300 ms) running.
        let mut idle = Vec::new();
        for _ in 0..5 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(get).await.unwrap();
            assert!(answered(&mut s).await.ends_with("hello"));
            idle.push(s);
        }
        // Served by hyper from their first request on (it has a body).
        for _ in 0..5 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let mut got = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert!(
                got[..n].ends_with(b"\r\n\r\n5"),
                "{:?}",
                String::from_utf8_lossy(&got[..n])
            );
            idle.push(s);
        }
        signal("-STOP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        for s in &mut idle {
            s.write_all(get).await.unwrap();
        }
        // A new connection (the kernel completes it) and its request.
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        fresh.write_all(get).await.unwrap();
        // What the socket buffers held of the huge answer is read meanwhile.
        read_up_to(&mut huge, &mut huge_got, HUGE, Duration::from_millis(200)).await;
        // Thawed well past every timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal("-CONT");
        for (i, s) in idle.iter_mut().enumerate() {
            let got = answered(s).await;
            assert!(
                got.starts_with("HTTP/1.1 200 OK") && got.ends_with("hello"),
                "idle connection {i}: {got:?}"
            );
        }
        let got = answered(&mut fresh).await;
        assert!(
            got.ends_with("hello"),
            "the connection made while frozen: {got:?}"
        );
        read_up_to(
            &mut huge,
            &mut huge_got,
            HUGE + 1024,
            Duration::from_secs(5),
        )
        .await;
        assert!(
            huge_got > HUGE,
            "the huge answer was cut at the thaw: {huge_got} bytes of {HUGE} and a head"
        );
    });
    drop(child);
}

/// The frozen test's server: a multi-thread runtime of two workers (a node's has one
/// per core), a 300 ms head timeout, a 400 ms idle and write-stall timeout.
fn frozen_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        let opts = ServerOptions {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(400),
            ..Default::default()
        };
        let serve =
            meridian_http::serve_handlers(listener, opts, None, |_| Answer, std::future::pending());
        // Bounded: a server its test left behind ends by itself.
        let _ = tokio::time::timeout(Duration::from_secs(60), serve).await;
    })
}
