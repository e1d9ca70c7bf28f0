//! Helpers for the API protection tests: an origin that echoes what reached it, requests
//! from a chosen address with a body, and scratch directories for keys.

use super::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An origin that echoes what reached it (path and query, the forwarded user, the body's
/// length) and counts every request; `/slow/*` answers after 300 ms.
pub async fn echo_origin(addr: SocketAddr) -> (Arc<AtomicU32>, tokio::sync::oneshot::Sender<()>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let stop = serve_with(addr, move |req: Request<hyper::body::Incoming>| {
        let c = c.clone();
        async move {
            let uri = req.uri().to_string();
            // The PoP's health checks are not requests a viewer made.
            let n = if uri.starts_with("/health") {
                0
            } else {
                c.fetch_add(1, Ordering::SeqCst) + 1
            };
            let user = req
                .headers()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if uri.starts_with("/slow/") {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let answer = json!({ "uri": uri, "user": user, "body_len": body.len(), "call": n });
            Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .header(
                    "cache-control",
                    if uri.contains("/cacheable") {
                        "max-age=60"
                    } else {
                        "private"
                    },
                )
                .body(Full::new(Bytes::from(answer.to_string())))
                .unwrap()
        }
    })
    .await;
    (calls, stop)
}

/// One request from `source` with a body.
pub async fn request(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    send_body_on(stream, method, path, "edge.test", headers, body).await
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A state dir file for the test's keys.
pub fn key_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meridian-protect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
