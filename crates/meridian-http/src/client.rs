//! One request, one answer: how health probes, tools, the console and peer nodes ask a
//! node something. Every request is bounded twice (a deadline and a body limit), so a
//! slow or hostile peer costs a caller at most those. Proxied traffic uses the pooled
//! clients in `upstream.rs` instead; this one opens a fresh connection per request, which
//! is what a probe wants (it also proves the target accepts connections).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Trailers, when the answer had any (gRPC's status travels in them).
    pub trailers: Option<http::HeaderMap>,
    /// From the start of the connect to the end of the body.
    pub latency: Duration,
}

/// Where to speak TLS, and whom to trust.
#[derive(Clone)]
pub struct Tls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name the certificate must carry (SNI).
    pub server_name: String,
}

/// Why a request got no answer. The texts are short on purpose: they end up in health
/// reports and status pages ("connection refused", "timed out after 2000ms").
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection refused")]
    Refused,
    #[error("connection reset")]
    Reset,
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("bad server name {name}: {reason}")]
    ServerName { name: String, reason: String },
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("request failed: {0}")]
    Request(hyper::Error),
    #[error("reading the body failed: {0}")]
    Body(crate::body::BoxError),
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot build the request: {0}")]
    Build(#[from] http::Error),
}

impl ClientError {
    /// A connect error in the words health reports use.
    pub fn from_connect(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ClientError::Refused,
            std::io::ErrorKind::ConnectionReset => ClientError::Reset,
            _ => ClientError::Connect(e),
        }
    }
}

/// Callers that report errors as text (tools, status pages) take the message.
impl From<ClientError> for String {
    fn from(e: ClientError) -> Self {
        e.to_string()
    }
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

/// Sends one request on a fresh connection and reads the whole response, at most
/// `max_body` bytes of it, within `timeout`.
pub async fn fetch(
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, ClientError> {
    fetch_with(None, None, addr, req, timeout, max_body).await
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
) -> Result<Fetched, ClientError> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    fetch(addr, req.body(Full::new(Bytes::new()))?, timeout, max_body).await
}

/// [`fetch`] from the local address `local`.
pub async fn fetch_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, ClientError> {
    fetch_with(local, None, addr, req, timeout, max_body).await
}

/// [`fetch_from`] over HTTP/2 with prior knowledge (h2c): how gRPC health checks call.
pub async fn fetch_h2c(
    local: Option<IpAddr>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, ClientError> {
    fetch_over(Version::Http2, local, None, addr, req, timeout, max_body).await
}

/// [`fetch_from`], over TLS when `tls` is given.
pub async fn fetch_with(
    local: Option<IpAddr>,
    tls: Option<&Tls>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, ClientError> {
    fetch_over(Version::Http1, local, tls, addr, req, timeout, max_body).await
}

/// The HTTP version a request is sent in.
#[derive(Clone, Copy)]
enum Version {
    Http1,
    /// With prior knowledge: no upgrade, no ALPN.
    Http2,
}

async fn fetch_over(
    version: Version,
    local: Option<IpAddr>,
    tls: Option<&Tls>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, ClientError> {
    let start = Instant::now();
    let work = async {
        let stream = connect_from(local, addr)
            .await
            .map_err(ClientError::from_connect)?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => exchange(version, stream, req, max_body, start).await,
            Some(t) => {
                let name = rustls::pki_types::ServerName::try_from(t.server_name.clone()).map_err(
                    |e| ClientError::ServerName {
                        name: t.server_name.clone(),
                        reason: e.to_string(),
                    },
                )?;
                let stream = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(ClientError::TlsHandshake)?;
                exchange(version, stream, req, max_body, start).await
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(timeout)),
    }
}

/// One request and its whole (bounded) response on a connected stream.
async fn exchange<S>(
    version: Version,
    stream: S,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
    start: Instant,
) -> Result<Fetched, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let (res, conn_task) = match version {
        Version::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(ClientError::Handshake)?;
            let conn_task = tokio::spawn(conn);
            (sender.send_request(req).await, conn_task)
        }
        Version::Http2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(ClientError::Handshake)?;
            let conn_task = tokio::spawn(conn);
            (sender.send_request(req).await, conn_task)
        }
    };
    let answer = match res {
        Ok(res) => read_whole(res, max_body, start).await,
        Err(e) => Err(ClientError::Request(e)),
    };
    conn_task.abort();
    answer
}

/// The whole answer, at most `max_body` bytes of body, trailers kept.
async fn read_whole(
    res: http::Response<hyper::body::Incoming>,
    max_body: usize,
    start: Instant,
) -> Result<Fetched, ClientError> {
    let (parts, body) = res.into_parts();
    let collected = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(ClientError::Body)?;
    let trailers = collected.trailers().cloned();
    Ok(Fetched {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
        latency: start.elapsed(),
    })
}
