//! Targets that behave as a test needs (demo instances, scripted failures, echoes) and
//! the balancer options and raw client the balancer's tests share.

use meridian_config::{Algorithm, NodeSpec, Role};
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn node(name: &str, addr: SocketAddr) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        role: Role::Service,
        region: Some("test-1".into()),
        az: Some("test-1a".into()),
        address: addr,
        admin: addr,
    }
}

pub async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A demo origin on an ephemeral port.
pub async fn demo(name: &str, processing: Duration) -> NodeSpec {
    let (node, stop) = stoppable_demo(name, processing).await;
    std::mem::forget(stop); // runs until the test ends
    node
}

/// A demo origin that stops (refusing new connections) when the sender is used.
pub async fn stoppable_demo(
    name: &str,
    processing: Duration,
) -> (NodeSpec, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = meridian_demo::router(DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: "test-1a".into(),
            instance: name.into(),
        },
        processing_time: processing,
        database: None,
        quote_cache: None,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (node(name, addr), tx)
}

/// What a scripted target does with a request that is not a health check.
#[derive(Clone, Copy)]
pub enum Then {
    /// Writes these bytes and drops the connection: with nothing sent the peer sees a
    /// reset, else a cut body.
    Reply(&'static [u8]),
    /// Resets the connection (SO_LINGER 0): a process killed mid-request.
    Reset,
    /// Writes these bytes and then keeps the connection open, sending nothing more.
    Stall(&'static [u8]),
}

/// A target that passes health checks but misbehaves on every other request: a process
/// that crashes mid-request.
pub async fn scripted(name: &str, then: Then) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"GET /health ") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                match then {
                    Then::Reply(reply) => {
                        let _ = s.write_all(reply).await;
                    }
                    Then::Reset => {
                        let _ = s.set_zero_linger();
                    }
                    Then::Stall(reply) => {
                        let _ = s.write_all(reply).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    node(name, addr)
}

/// Resets every request after reading it.
pub async fn resetting(name: &str) -> NodeSpec {
    scripted(name, Then::Reply(b"")).await
}

/// Sends a response head and a tenth of the promised body, then goes away.
pub async fn cut_short(name: &str) -> NodeSpec {
    scripted(
        name,
        Then::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"),
    )
    .await
}

/// A target nobody listens on: connections are refused.
pub async fn dead(name: &str) -> NodeSpec {
    node(name, free_addr().await)
}

pub fn options(targets: Vec<NodeSpec>, algorithm: Algorithm) -> LbOptions {
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    // The default deployment's settings, with the one implicit group they describe (not
    // its declared groups and rules: the gRPC group would check these targets too).
    config.target_groups.clear();
    config.rules.clear();
    config.algorithm = algorithm;
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    config.deregistration_delay = Duration::from_millis(500);
    LbOptions {
        tls: None,
        name: "lb-test".into(),
        region: "test-1".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        targets,
        config,
        signer: None,
        access_log: None,
    }
}

/// A tiny HTTP client for tests: one request per connection, returns status and body.
pub struct Client;
pub fn reqwest_like() -> Client {
    Client
}
impl Client {
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let (s, _, b) = raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await?;
        Ok((s, b))
    }
}

/// Sends raw bytes, reads the response to EOF, returns status, head and body.
pub async fn raw(addr: SocketAddr, request: &str) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no head in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    // Undo chunked encoding crudely for small bodies.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n")
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .join("")
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A target that answers each request (one per read) with what `reply` makes of the
/// bytes it read.
pub async fn answering(name: &str, reply: fn(&str) -> String) -> NodeSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let res = reply(&String::from_utf8_lossy(&buf[..n]));
                    if s.write_all(res.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    node(name, addr)
}

/// An answer whose body is `head`, and which closes the connection.
pub fn echo_of(head: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        head.len()
    )
}

/// A target that answers with the request head it received.
pub async fn echo(name: &str) -> NodeSpec {
    answering(name, echo_of).await
}
