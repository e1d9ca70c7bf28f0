//! The demo origin's listener cuts off a client that trickles its request head
//! (slowloris), and still serves and stops as before.

use meridian_demo::{DemoOptions, Identity};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let addr: SocketAddr = "127.93.0.1:8000".parse().unwrap();
    let opts = DemoOptions {
        identity: Identity {
            region: "r".into(),
            az: "r-a".into(),
            instance: "i".into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    };
    let server = meridian_http::ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(meridian_demo::serve_with(addr, opts, server, async {
        let _ = stop_rx.await;
    }));
    let mut connected = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr).await {
            connected = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut s = connected.expect("the origin listens");
    // A head without its final empty line, then silence.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: origin\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "the origin kept a connection whose head never ended"
    );

    // A whole request is still answered, with the instance's identity.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut res = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut res))
        .await
        .expect("answered")
        .unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("x-meridian-instance: i"),
        "{res}"
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the origin stops when asked")
        .unwrap()
        .unwrap();
}
