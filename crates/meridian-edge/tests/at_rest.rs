//! Encryption at rest, end to end: an object the disk tier holds is sealed on disk and a
//! disk hit still serves the origin's bytes, whole or by range.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// A body larger than a memory-tier object may be (32 MiB / 8), so it goes to disk; a
/// marker every 1000 bytes shows whether plaintext reached the file.
fn big_body() -> Bytes {
    let mut b = Vec::with_capacity(5 << 20);
    let mut i = 0u64;
    while b.len() < 5 << 20 {
        b.extend_from_slice(format!("SECRET-QUOTE-{i:010}|").as_bytes());
        b.extend(std::iter::repeat_n(b'.', 976));
        i += 1;
    }
    b.truncate(5 << 20);
    Bytes::from(b)
}

async fn big_origin(addr: SocketAddr, body: Bytes) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("cache-control", "max-age=600")
                                .header("content-type", "application/octet-stream")
                                .body(Full::new(body))
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

async fn disk_objects(p: &Pop) -> u64 {
    let stream = tokio::net::TcpStream::connect(p.admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/cache")
        .header("host", "admin")
        .header("authorization", format!("Bearer {}", p.token))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["disk_objects"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_disk_hit_serves_the_right_bytes_from_a_sealed_file() {
    let body = big_body();
    let oa = SocketAddr::new(ip_in(86, 40, 2), 80);
    big_origin(oa, body.clone()).await;
    let p = pop_in(86, 40, &[format!("http://{oa}")], "").await;

    let first = get(p.http, "/big").await;
    assert_eq!(first.body, body);
    eventually(
        "the large object reached the disk tier",
        Duration::from_secs(20),
        || async { disk_objects(&p).await >= 1 },
    )
    .await;

    let hit = get(p.http, "/big").await;
    assert_eq!(hit.h("x-cache"), "Hit from meridian");
    assert_eq!(hit.body.len(), body.len());
    assert!(hit.body == body, "a disk hit serves the origin's bytes");

    // A range across a 64 KiB record boundary decrypts only what it needs.
    let start = 65_536 - 10;
    let end = 3 * 65_536 + 5;
    let range = format!("bytes={start}-{end}");
    let part = send(p.http, "GET", "/big", &[("range", &range)]).await;
    assert_eq!(part.status, http::StatusCode::PARTIAL_CONTENT);
    assert!(part.body == body.slice(start..end + 1));

    // The files hold no plaintext, and the key is an owner-only secret.
    let dir = p.state.join("cache").join("pop");
    let mut files = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!raw.windows(13).any(|w| w == b"SECRET-QUOTE-"));
        files += 1;
    }
    assert!(files >= 1);
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(p.state.join("disk-cache-key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    // A byte flipped on disk: the response stops before the altered record (never wrong
    // bytes), and the next request is a miss that refills the object.
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut raw = std::fs::read(&file).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 0x01;
    std::fs::write(&file, &raw).unwrap();
    let served = get_lossy(p.http, "/big").await;
    assert!(
        served.len() < body.len(),
        "the altered object is not served whole"
    );
    assert!(
        served == body.slice(..served.len()),
        "what was sent is the origin's bytes"
    );
    let again = get(p.http, "/big").await;
    assert_eq!(again.h("x-cache"), "Miss from meridian");
    assert!(again.body == body);
    let _ = std::fs::remove_dir_all(&p.state);
}

/// The body bytes that arrive before the response ends, cleanly or not.
async fn get_lossy(addr: SocketAddr, path: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "edge.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    got.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    got
}
