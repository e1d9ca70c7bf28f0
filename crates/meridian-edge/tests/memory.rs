//! Slow viewers on large misses must not make a PoP hold the objects: each fill waits for
//! its first viewer (back-pressure to the origin), and what fills keep before storing is
//! capped for the whole PoP. Alone in its own test binary, so the process's resident
//! memory is the PoP's (and its test origin's).

mod common;
use common::*;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;
/// `/big/<n>`: chunked, no length, past the largest object the PoP keeps (16 MiB here).
const BIG: usize = 48 << 20;
/// `/sized/<n>`: with a Content-Length, small enough to be kept.
const SIZED: usize = 12 << 20;

/// An origin that sends large bodies as fast as it is allowed to, counting the bodies
/// still being sent.
async fn large_origin(addr: SocketAddr, active: Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (chunk, active) = (chunk.clone(), active.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (chunk, active) = (chunk.clone(), active.clone());
                    async move {
                        let sized = req.uri().path().starts_with("/sized/");
                        let total = if sized { SIZED } else { BIG };
                        let guard = Active::new(active);
                        let frames = (0..total / CHUNK).map(move |_| {
                            let _ = &guard;
                            Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
                        });
                        let mut res = Response::builder().header("cache-control", "max-age=60");
                        if sized {
                            res = res.header("content-length", total);
                        }
                        Ok::<_, std::convert::Infallible>(
                            res.body(StreamBody::new(futures_util::stream::iter(frames)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

/// Counts a body while it exists.
struct Active(Arc<AtomicUsize>);

impl Active {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Active(n)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A viewer that asks for `path`, reads a little and then stops reading.
async fn slow_viewer(addr: SocketAddr, path: String) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_viewers_on_large_misses_hold_bounded_memory() {
    let active = Arc::new(AtomicUsize::new(0));
    let origin = SocketAddr::new(ip(60, 2), 80);
    large_origin(origin, active.clone()).await;
    let p = pop(60, &[format!("http://{origin}")], "").await;
    // Warm up allocator and pools, then measure from here.
    let _ = get(p.http, "/sized/warm-up").await;
    let base = rss_bytes();

    let viewers: Vec<_> = (0..16)
        .flat_map(|i| [format!("/big/{i}"), format!("/sized/{i}")])
        .map(|path| tokio::spawn(slow_viewer(p.http, path)))
        .collect();
    let mut held = Vec::new();
    for v in viewers {
        held.push(v.await.unwrap());
    }
    // The origin would send 16 x 48 MiB + 16 x 12 MiB = 960 MiB if nothing pushed back.
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grew = peak.saturating_sub(base);
    assert!(
        grew < 160 << 20,
        "32 stalled viewers on large misses grew the PoP by {} MiB",
        grew >> 20
    );
    // The PoP still serves others meanwhile.
    assert_eq!(get(p.http, "/sized/other").await.status, 200);

    // Once every viewer has gone, no fill goes on for no one.
    drop(held);
    let until = Instant::now() + Duration::from_secs(20);
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        active.load(Ordering::SeqCst),
        0,
        "origin bodies still being read"
    );
}
