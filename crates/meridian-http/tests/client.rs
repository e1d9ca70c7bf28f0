//! The one-request client's bounds: a body limit, a deadline, and errors in the words
//! health reports use.

use meridian_http::client::{call, ClientError};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every connection with `answer` after reading the request head;
/// with `None` it reads and never answers.
async fn server(answer: Option<&'static str>) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned()).await;
                match answer {
                    Some(a) => {
                        let _ = s.write_all(a.as_bytes()).await;
                    }
                    None => {
                        let _ = s.read(&mut buf).await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_call_carries_the_token_and_reads_the_answer() {
    let (addr, mut heads) = server(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
    ))
    .await;
    let got = call(
        addr,
        http::Method::POST,
        "/promote?x=1",
        Some("s3cret"),
        Duration::from_secs(5),
        1024,
    )
    .await
    .expect("an answer");
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"hello");
    assert_eq!(
        got.headers.get("x-a").map(|v| v.as_bytes()),
        Some(&b"b"[..])
    );
    let head = heads.recv().await.expect("the server saw the request");
    assert!(head.starts_with("POST /promote?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer s3cret\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_error_not_a_truncated_answer() {
    let whole: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 2048\r\n\r\n{}",
            "a".repeat(2048)
        )
        .into_boxed_str(),
    );
    let (addr, _heads) = server(Some(whole)).await;
    let got = call(
        addr,
        http::Method::GET,
        "/metrics",
        None,
        Duration::from_secs(5),
        1024,
    )
    .await;
    let e = got.expect_err("2048 bytes are over a 1024-byte limit");
    assert!(matches!(e, ClientError::Body(_)), "{e:?}");
    assert!(e.to_string().contains("length limit"), "{e}");
    let got = call(
        addr,
        http::Method::GET,
        "/metrics",
        None,
        Duration::from_secs(5),
        4096,
    )
    .await;
    assert_eq!(got.expect("within the limit").body.len(), 2048);
}

#[tokio::test]
async fn a_peer_that_never_answers_costs_the_deadline() {
    let (addr, _heads) = server(None).await;
    let started = std::time::Instant::now();
    let got = call(
        addr,
        http::Method::GET,
        "/health",
        None,
        Duration::from_millis(200),
        1024,
    )
    .await;
    match got {
        Err(e @ ClientError::Timeout(_)) => assert_eq!(e.to_string(), "timed out after 200ms"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline bounds the call"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let got = call(
        addr,
        http::Method::GET,
        "/health",
        None,
        Duration::from_secs(2),
        1024,
    )
    .await;
    let e = got.expect_err("nothing listens");
    assert!(matches!(e, ClientError::Refused), "{e:?}");
    assert_eq!(String::from(e), "connection refused");
}
