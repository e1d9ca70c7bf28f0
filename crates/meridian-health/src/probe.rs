//! One probe of one target.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use meridian_config::{CheckProtocol, HealthCheck};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What one probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    pub healthy: bool,
    /// Time from connect to the end of the response.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    /// What was seen, for logs and status pages ("200 OK", "connection refused", ...).
    pub detail: String,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Bodies beyond this are not read: a health page is small.
const MAX_BODY: usize = 64 * 1024;

/// A response read in full, for checks and reports.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub latency: Duration,
}

/// Connects to `addr`, from `local` when given (so a node's checks leave from its own
/// address, as its traffic does).
pub async fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(ip) = local else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Sends one request on a fresh connection and reads the whole (bounded) response.
/// A fresh connection per probe means a probe also proves the target accepts connections.
pub async fn fetch(
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, String> {
    fetch_from(None, addr, req, timeout, max_body).await
}

/// One request with an empty body to a node's admin endpoint (`/metrics`, `/explain`,
/// ...), with a Bearer `token` when given: how tools and the console ask nodes.
pub async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, String> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    fetch(addr, req, timeout, max_body).await
}

/// Where to speak TLS, and whom to trust.
#[derive(Clone)]
pub struct Tls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name the certificate must carry (SNI).
    pub server_name: String,
}

/// [`fetch`] from the local address `local`.
pub async fn fetch_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, String> {
    fetch_with(local, None, addr, req, timeout, max_body).await
}

/// [`fetch`] over TLS when `tls` is given.
pub async fn fetch_with(
    local: Option<IpAddr>,
    tls: Option<&Tls>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, String> {
    let start = Instant::now();
    let work = async {
        let stream = connect_from(local, addr)
            .await
            .map_err(|e| describe_io(&e))?;
        let _ = stream.set_nodelay(true);
        let (parts, body) = match tls {
            None => exchange(stream, req, max_body).await?,
            Some(t) => {
                let name = rustls::pki_types::ServerName::try_from(t.server_name.clone())
                    .map_err(|e| format!("bad server name {}: {e}", t.server_name))?;
                let stream = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                exchange(stream, req, max_body).await?
            }
        };
        Ok(Fetched {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            latency: start.elapsed(),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}

/// One HTTP/1.1 request and its whole (bounded) response on a connected stream.
async fn exchange<S>(
    stream: S,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(http::response::Parts, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?
        .to_bytes();
    conn_task.abort();
    Ok((parts, body))
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => format!("connect failed: {e}"),
    }
}

/// Probes `addr` once as `check` says.
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> ProbeOutcome {
    probe_from(None, addr, check).await
}

/// [`probe`] from the local address `local`.
pub async fn probe_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    check: &HealthCheck,
) -> ProbeOutcome {
    let start = Instant::now();
    match check.protocol {
        CheckProtocol::Tcp => {
            let r = tokio::time::timeout(check.timeout, connect_from(local, addr)).await;
            let (healthy, detail) = match r {
                Ok(Ok(_)) => (true, "connected".to_owned()),
                Ok(Err(e)) => (false, describe_io(&e)),
                Err(_) => (
                    false,
                    format!("timed out after {}ms", check.timeout.as_millis()),
                ),
            };
            ProbeOutcome {
                healthy,
                latency: start.elapsed(),
                detail,
            }
        }
        CheckProtocol::Http if check.grpc_codes.is_some() => {
            let codes = check.grpc_codes.as_ref().unwrap_or(&check.matcher);
            let work = async {
                match connect_from(local, addr).await {
                    Ok(stream) => crate::grpc::check(stream, addr, &check.path, codes).await,
                    Err(e) => (false, describe_io(&e)),
                }
            };
            let (healthy, detail) = match tokio::time::timeout(check.timeout, work).await {
                Ok(r) => r,
                Err(_) => (
                    false,
                    format!("timed out after {}ms", check.timeout.as_millis()),
                ),
            };
            ProbeOutcome {
                healthy,
                latency: start.elapsed(),
                detail,
            }
        }
        CheckProtocol::Http => {
            let req = http::Request::get(check.path.as_str())
                .header(http::header::HOST, addr.to_string())
                .header(http::header::USER_AGENT, "Meridian-HealthChecker/1.0")
                .body(Full::new(Bytes::new()));
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    return ProbeOutcome {
                        healthy: false,
                        latency: Duration::ZERO,
                        detail: format!("bad health check path: {e}"),
                    }
                }
            };
            match fetch_from(local, addr, req, check.timeout, MAX_BODY).await {
                Err(detail) => ProbeOutcome {
                    healthy: false,
                    latency: start.elapsed(),
                    detail,
                },
                Ok(f) => {
                    let status_ok = check.matcher.matches(f.status);
                    let body_ok = match &check.body_contains {
                        Some(needle) => f
                            .body
                            .windows(needle.len().max(1))
                            .any(|w| w == needle.as_bytes()),
                        None => true,
                    };
                    let detail = if !status_ok {
                        format!("status {} does not match {}", f.status, check.matcher)
                    } else if !body_ok {
                        format!(
                            "status {} but body lacks {:?}",
                            f.status,
                            check.body_contains.as_deref().unwrap_or("")
                        )
                    } else {
                        format!("status {}", f.status)
                    };
                    ProbeOutcome {
                        healthy: status_ok && body_ok,
                        latency: f.latency,
                        detail,
                    }
                }
            }
        }
    }
}
